//! `gov.tax_payments`: one row per entity and tax year 2022-2024 in which it
//! already existed, with a few filings missing (more often for distressed
//! entities).

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};

use crate::DatagenError;
use crate::calendar::days_from_civil;
use crate::entities::Entity;
use crate::pipeline::{BATCH_ROWS, Emitter};
use crate::random::{chance, normal, round2, stream};
use crate::reference::industries::INDUSTRIES;

const STREAM: &str = "gov.tax_payments";

/// The tax years covered.
pub(crate) const YEARS: [i32; 3] = [2022, 2023, 2024];

struct Rows {
    credit_code: StringBuilder,
    year: Int64Builder,
    tax_paid: Float64Builder,
    vat: Float64Builder,
    len: usize,
}

impl Rows {
    fn new() -> Self {
        Rows {
            credit_code: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 18),
            year: Int64Builder::with_capacity(BATCH_ROWS),
            tax_paid: Float64Builder::with_capacity(BATCH_ROWS),
            vat: Float64Builder::with_capacity(BATCH_ROWS),
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
            Arc::new(self.year.finish()),
            Arc::new(self.tax_paid.finish()),
            Arc::new(self.vat.finish()),
        ];
        emit.emit(columns)
    }
}

/// Emits `gov.tax_payments` for `entities`.
pub(crate) fn produce(seed: u64, entities: &[Entity], emit: &mut Emitter) -> Result<(), DatagenError> {
    let mut rng = stream(seed, STREAM);
    let mut rows = Rows::new();
    for entity in entities {
        let profile = &INDUSTRIES[entity.industry];
        let missing_share = if entity.health < -1.0 { 0.10 } else { 0.03 };
        // Size and health set the level; each year adds its own noise.
        let level = profile.tax_per_head * entity.heads().powf(0.9) * (0.4 * entity.health).exp();
        for (i, &year) in YEARS.iter().enumerate() {
            if entity.founded >= days_from_civil(year, 1, 1) {
                continue;
            }
            // Draw every entity-year's randomness whether or not it is kept,
            // so a missing filing does not shift later rows.
            let missing = chance(&mut rng, missing_share);
            let noise = normal(&mut rng);
            let share_noise = normal(&mut rng);
            if missing {
                continue;
            }
            let trend = (entity.usage_trend * 12.0 * i as f64).exp();
            let tax_paid = round2((level * trend * (0.25 * noise).exp()).max(0.01));
            let share = (profile.vat_share + 0.08 * share_noise).clamp(0.05, 0.95);
            let vat = round2(tax_paid * share);
            rows.credit_code.append_value(&entity.credit_code);
            rows.year.append_value(i64::from(year));
            rows.tax_paid.append_value(tax_paid);
            rows.vat.append_value(vat);
            rows.len += 1;
            if rows.len >= BATCH_ROWS {
                rows.flush(emit)?;
            }
        }
    }
    rows.flush(emit)
}
