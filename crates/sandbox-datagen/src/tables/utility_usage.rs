//! `gov.utility_usage`: one row per entity per month. Electricity scales
//! with size, industry intensity, season and latent health; distressed
//! entities' usage falls month after month. Months before an entity was
//! founded have a row with zero usage. This is the large table (about ten
//! million rows at `Scale::bench_10m`), so the loop avoids allocation.

use std::f64::consts::TAU;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, StringBuilder};

use crate::DatagenError;
use crate::calendar::{days_from_civil, month_label, month_of};
use crate::entities::Entity;
use crate::pipeline::{BATCH_ROWS, Emitter};
use crate::random::{Normals, chance, log_normal, round2, stream};
use crate::reference::industries::{INDUSTRIES, MANUFACTURING};

const STREAM: &str = "gov.utility_usage";

/// Seasonal multipliers for one calendar month.
#[derive(Debug, Clone, Copy)]
struct Season {
    electricity: f64,
    /// Extra factor for manufacturing (the Spring Festival shutdown).
    manufacturing: f64,
    water: f64,
    gas: f64,
}

/// Shanghai's load has a summer air-conditioning peak and a smaller winter
/// heating peak; water peaks in summer, gas in winter.
fn season(month: u32) -> Season {
    let m = f64::from(month);
    Season {
        electricity: 1.0 + 0.15 * (TAU * (m - 7.5) / 6.0).cos() + 0.05 * (TAU * (m - 7.5) / 12.0).cos(),
        manufacturing: if month == 2 { 0.8 } else { 1.0 },
        water: 1.0 + 0.12 * (TAU * (m - 7.5) / 12.0).cos(),
        gas: 1.0 + 0.45 * (TAU * (m - 1.0) / 12.0).cos(),
    }
}

struct Rows {
    credit_code: StringBuilder,
    month: StringBuilder,
    electricity: Float64Builder,
    water: Float64Builder,
    gas: Float64Builder,
    len: usize,
}

impl Rows {
    fn new() -> Self {
        Rows {
            credit_code: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 18),
            month: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 7),
            electricity: Float64Builder::with_capacity(BATCH_ROWS),
            water: Float64Builder::with_capacity(BATCH_ROWS),
            gas: Float64Builder::with_capacity(BATCH_ROWS),
            len: 0,
        }
    }

    fn flush(&mut self, emit: &mut Emitter) -> Result<(), DatagenError> {
        if self.len == 0 {
            return Ok(());
        }
        self.len = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.credit_code.finish()),
            Arc::new(self.month.finish()),
            Arc::new(self.electricity.finish()),
            Arc::new(self.water.finish()),
            Arc::new(self.gas.finish()),
        ];
        emit.emit(columns)
    }
}

/// Emits `gov.utility_usage` for `entities` over the first `months` months
/// from 2023-01.
pub(crate) fn produce(seed: u64, entities: &[Entity], months: u32, emit: &mut Emitter) -> Result<(), DatagenError> {
    let mut rng = stream(seed, STREAM);
    let mut normals = Normals::default();
    let labels: Vec<String> = (0..months).map(month_label).collect();
    let seasons: Vec<Season> = (0..months).map(|i| season(month_of(i).1)).collect();
    // First day of the following month: an entity founded before it has
    // usage in the month.
    let month_ends: Vec<i32> = (1..=months)
        .map(|i| {
            let (year, month) = month_of(i);
            days_from_civil(year, month, 1)
        })
        .collect();
    let mut rows = Rows::new();
    for entity in entities {
        let profile = &INDUSTRIES[entity.industry];
        let manufacturing = profile.section == MANUFACTURING;
        let has_gas = chance(&mut rng, profile.gas_share);
        // Entity-specific level: size × health × an idiosyncratic factor.
        let level = entity.heads().powf(0.9) * (0.3 * entity.health).exp() * log_normal(&mut rng, 0.0, 0.3);
        let electricity_base = level * profile.kwh_per_head;
        let water_base = level * profile.water_per_head;
        let gas_base = level * profile.gas_per_head;
        let monthly_growth = entity.usage_trend.exp();
        let mut growth = 1.0;
        for ((label, season), &month_end) in labels.iter().zip(&seasons).zip(&month_ends) {
            let mut electricity =
                electricity_base * season.electricity * growth * (0.08 * normals.next(&mut rng)).exp();
            if manufacturing {
                electricity *= season.manufacturing;
            }
            let mut water = water_base * season.water * growth * (0.12 * normals.next(&mut rng)).exp();
            let mut gas = if has_gas {
                gas_base * season.gas * growth * (0.15 * normals.next(&mut rng)).exp()
            } else {
                0.0
            };
            if entity.founded >= month_end {
                (electricity, water, gas) = (0.0, 0.0, 0.0);
            }
            rows.credit_code.append_value(&entity.credit_code);
            rows.month.append_value(label);
            rows.electricity.append_value(round2(electricity));
            rows.water.append_value(round2(water));
            rows.gas.append_value(round2(gas));
            rows.len += 1;
            if rows.len >= BATCH_ROWS {
                rows.flush(emit)?;
            }
            growth *= monthly_growth;
        }
    }
    rows.flush(emit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summer_and_winter_peaks() {
        let jul = season(7).electricity;
        let apr = season(4).electricity;
        let jan = season(1).electricity;
        let oct = season(10).electricity;
        assert!(jul > jan && jan > apr && jan > oct, "{jul} {jan} {apr} {oct}");
        assert!(season(1).gas > season(7).gas);
    }
}
