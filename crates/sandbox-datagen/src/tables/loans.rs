//! `bank.loans`: the bank's own loan book. About 35 % of entities borrow,
//! 1-3 loans each. Whether a loan defaulted follows the entity's logistic
//! default model (latent health and size), so defaults concentrate among
//! small firms and firms whose utility usage is falling.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};

use crate::DatagenError;
use crate::entities::Entity;
use crate::pipeline::{BATCH_ROWS, Emitter};
use crate::random::{UniqueIds, Weighted, chance, log_normal, normal, round2, stream};

const STREAM: &str = "bank.loans";

/// Share of entities with at least one loan.
const BORROWER_SHARE: f64 = 0.35;
/// Loan terms offered, in months, with their relative frequency.
const TERMS: [(i64, f64); 5] = [(6, 0.10), (12, 0.35), (24, 0.25), (36, 0.20), (60, 0.10)];
/// Relative frequency of 1, 2 and 3 loans per borrower.
const LOANS_PER_BORROWER: [f64; 3] = [0.6, 0.3, 0.1];
/// Loan numbers are ten digits.
const LOAN_ID_SPACE: u64 = 10_000_000_000;

struct Rows {
    loan_id: StringBuilder,
    credit_code: StringBuilder,
    amount: Float64Builder,
    rate: Float64Builder,
    term_months: Int64Builder,
    defaulted: Int64Builder,
    len: usize,
}

impl Rows {
    fn new() -> Self {
        Rows {
            loan_id: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 11),
            credit_code: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 18),
            amount: Float64Builder::with_capacity(BATCH_ROWS),
            rate: Float64Builder::with_capacity(BATCH_ROWS),
            term_months: Int64Builder::with_capacity(BATCH_ROWS),
            defaulted: Int64Builder::with_capacity(BATCH_ROWS),
            len: 0,
        }
    }

    fn flush(&mut self, emit: &mut Emitter) -> Result<(), DatagenError> {
        if self.len == 0 {
            return Ok(());
        }
        self.len = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.loan_id.finish()),
            Arc::new(self.credit_code.finish()),
            Arc::new(self.amount.finish()),
            Arc::new(self.rate.finish()),
            Arc::new(self.term_months.finish()),
            Arc::new(self.defaulted.finish()),
        ];
        emit.emit(columns)
    }
}

/// Emits `bank.loans` for `entities`.
pub(crate) fn produce(seed: u64, entities: &[Entity], emit: &mut Emitter) -> Result<(), DatagenError> {
    let mut rng = stream(seed, STREAM);
    let mut ids = UniqueIds::new(LOAN_ID_SPACE);
    let terms = Weighted::new(TERMS.iter().map(|&(_, w)| w));
    let counts = Weighted::new(LOANS_PER_BORROWER);
    let mut rows = Rows::new();
    let mut loan_id = String::with_capacity(11);
    for entity in entities {
        if !chance(&mut rng, BORROWER_SHARE) {
            continue;
        }
        let p_default = entity.default_probability();
        let loans = counts.sample(&mut rng) + 1;
        for _ in 0..loans {
            loan_id.clear();
            // Writing to a String cannot fail.
            let _ = write!(loan_id, "L{:010}", ids.draw(&mut rng));
            let amount = round2((8.0 * entity.heads().powf(0.8) * log_normal(&mut rng, 0.0, 0.5)).clamp(1.0, 5_000.0));
            // Risk-based pricing: riskier borrowers pay more.
            let rate = round2((3.2 + 25.0 * p_default + 0.5 * normal(&mut rng)).clamp(3.0, 12.0));
            let term = TERMS[terms.sample(&mut rng)].0;
            let defaulted = chance(&mut rng, p_default);
            rows.loan_id.append_value(&loan_id);
            rows.credit_code.append_value(&entity.credit_code);
            rows.amount.append_value(amount);
            rows.rate.append_value(rate);
            rows.term_months.append_value(term);
            rows.defaulted.append_value(i64::from(defaulted));
            rows.len += 1;
            if rows.len >= BATCH_ROWS {
                rows.flush(emit)?;
            }
        }
    }
    rows.flush(emit)
}
