//! `gov.legal_entities` (法人库): one row per entity of the entity model,
//! with a generated company name.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Builder, Float64Builder, Int64Builder, StringBuilder};
use rand::RngCore;

use crate::DatagenError;
use crate::entities::Entity;
use crate::pipeline::{BATCH_ROWS, Emitter};
use crate::random::{below, stream};
use crate::reference::districts;
use crate::reference::industries::INDUSTRIES;
use crate::reference::names::{BRAND_SYLLABLES, CITY, LEGAL_FORM};

/// Label of the name stream (names are not part of the entity model).
const STREAM: &str = "gov.legal_entities/names";

struct Rows {
    credit_code: StringBuilder,
    name: StringBuilder,
    district: StringBuilder,
    industry: StringBuilder,
    registered_capital: Float64Builder,
    founded: Date32Builder,
    insured_employees: Int64Builder,
    len: usize,
}

impl Rows {
    fn new() -> Self {
        Rows {
            credit_code: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 18),
            name: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 40),
            district: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 12),
            industry: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS),
            registered_capital: Float64Builder::with_capacity(BATCH_ROWS),
            founded: Date32Builder::with_capacity(BATCH_ROWS),
            insured_employees: Int64Builder::with_capacity(BATCH_ROWS),
            len: 0,
        }
    }

    fn push(&mut self, entity: &Entity, name: &str) {
        self.credit_code.append_value(&entity.credit_code);
        self.name.append_value(name);
        self.district.append_value(districts::name(entity.district));
        self.industry.append_value(INDUSTRIES[entity.industry].section);
        self.registered_capital.append_value(entity.registered_capital);
        self.founded.append_value(entity.founded);
        self.insured_employees.append_value(entity.insured_employees);
        self.len += 1;
    }

    fn flush(&mut self, emit: &mut Emitter) -> Result<(), DatagenError> {
        if self.len == 0 {
            return Ok(());
        }
        self.len = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.credit_code.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.district.finish()),
            Arc::new(self.industry.finish()),
            Arc::new(self.registered_capital.finish()),
            Arc::new(self.founded.finish()),
            Arc::new(self.insured_employees.finish()),
        ];
        emit.emit(columns)
    }
}

/// 上海 + two-character brand + industry word + 有限公司.
fn company_name(rng: &mut impl RngCore, entity: &Entity, out: &mut String) {
    out.clear();
    out.push_str(CITY);
    let first = below(rng, BRAND_SYLLABLES.len() as u64) as usize;
    // The second syllable differs from the first (no "华华").
    let second = (first + 1 + below(rng, BRAND_SYLLABLES.len() as u64 - 1) as usize) % BRAND_SYLLABLES.len();
    out.push_str(BRAND_SYLLABLES[first]);
    out.push_str(BRAND_SYLLABLES[second]);
    let words = INDUSTRIES[entity.industry].name_words;
    out.push_str(words[below(rng, words.len() as u64) as usize]);
    out.push_str(LEGAL_FORM);
}

/// Emits `gov.legal_entities` for `entities`.
pub(crate) fn produce(seed: u64, entities: &[Entity], emit: &mut Emitter) -> Result<(), DatagenError> {
    let mut rng = stream(seed, STREAM);
    let mut rows = Rows::new();
    let mut name = String::new();
    for entity in entities {
        company_name(&mut rng, entity, &mut name);
        rows.push(entity, &name);
        if rows.len >= BATCH_ROWS {
            rows.flush(emit)?;
        }
    }
    rows.flush(emit)
}
