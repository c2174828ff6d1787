//! `gov.districts`: the public 16-row district lookup.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray};

use crate::DatagenError;
use crate::pipeline::Emitter;
use crate::reference::districts::{DISTRICT_STATS, division_code};

/// Emits the single batch of `gov.districts`.
pub(crate) fn produce(emit: &mut Emitter) -> Result<(), DatagenError> {
    let names = StringArray::from_iter_values(DISTRICT_STATS.iter().map(|d| d.name));
    let codes = StringArray::from_iter_values((0..DISTRICT_STATS.len()).map(division_code));
    let areas = Float64Array::from_iter_values(DISTRICT_STATS.iter().map(|d| d.area_km2));
    let population = Float64Array::from_iter_values(DISTRICT_STATS.iter().map(|d| d.population_10k));
    let columns: Vec<ArrayRef> = vec![Arc::new(names), Arc::new(codes), Arc::new(areas), Arc::new(population)];
    emit.emit(columns)
}
