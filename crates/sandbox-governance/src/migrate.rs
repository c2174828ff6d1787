//! Upgrades a database written by an earlier version of the store, when it
//! opens.
//!
//! Before fixed-point accounting, `budgets` and `charges` held ε and δ as
//! `DOUBLE PRECISION`. They are converted in place, in one write
//! transaction (both backends have transactional DDL, so a failure changes
//! nothing): each charge is rounded **up** to whole units (ε 1e-9, δ 1e-15),
//! each ε total **down**, and each line's spent amount becomes the larger
//! of the sum of its converted charges and its old spent column (rounded to
//! the nearest unit, which removes floating-point drift but never the
//! record of a charge). Lines get no δ total of their own (the policy's δ
//! budget applies). The conversion is recorded in the ledger as a
//! `schema_migrated` entry.

use crate::GovernanceError;
use crate::amount::{Delta, Epsilon};
use crate::audit;
use crate::db::Tx;
use crate::store::Store;
use serde_json::json;
use std::collections::HashMap;

const BUDGETS: &str = "CREATE TABLE budgets (
    grant_id TEXT NOT NULL REFERENCES grants(id),
    dataset TEXT NOT NULL,
    epsilon_total BIGINT NOT NULL,
    epsilon_spent BIGINT NOT NULL DEFAULT 0,
    delta_total BIGINT,
    delta_spent BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (grant_id, dataset)
)";

const CHARGES: &str = "CREATE TABLE charges (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    dataset TEXT NOT NULL,
    epsilon BIGINT NOT NULL,
    delta BIGINT NOT NULL,
    PRIMARY KEY (job_id, dataset)
)";

/// The declared type of a column, lower case (`""` if there is none).
fn column_type(tx: &mut dyn Tx, backend: &str, table: &str, column: &str) -> Result<String, GovernanceError> {
    let row = if backend == "postgresql" {
        tx.query_opt(
            "SELECT CAST(data_type AS TEXT) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = CAST(?1 AS TEXT)
               AND column_name = CAST(?2 AS TEXT)",
            &[table.into(), column.into()],
        )?
    } else {
        tx.query_opt(
            "SELECT type FROM pragma_table_info(?1) WHERE name = ?2",
            &[table.into(), column.into()],
        )?
    };
    Ok(row.map(|r| r.text(0)).transpose()?.unwrap_or_default().to_lowercase())
}

/// `x · 10^scale` rounded to the nearest integer, for old spent columns.
fn nearest(x: f64, scale: i32, what: &str) -> Result<i64, GovernanceError> {
    let units = (x * 10f64.powi(scale)).round();
    if units.is_finite() && units >= 0.0 && units < i64::MAX as f64 {
        Ok(units as i64)
    } else {
        Err(GovernanceError::Storage(format!(
            "cannot convert the recorded {what} {x} to fixed-point units"
        )))
    }
}

/// Converts `budgets` and `charges` from floating point to fixed point if
/// they are still in the old form; a no-op otherwise.
pub(crate) fn upgrade(store: &Store) -> Result<(), GovernanceError> {
    let backend = store.backend_name();
    store.write(|tx| {
        let ty = column_type(tx, backend, "budgets", "epsilon_total")?;
        if !(ty.contains("double") || ty.contains("real") || ty.contains("float")) {
            return Ok(());
        }
        let charges = tx.query(
            "SELECT c.job_id, c.dataset, c.epsilon, c.delta, j.grant_id
             FROM charges c JOIN jobs j ON j.id = c.job_id",
            &[],
        )?;
        let budgets = tx.query(
            "SELECT grant_id, dataset, epsilon_total, epsilon_spent, delta_spent FROM budgets",
            &[],
        )?;
        let mut converted = Vec::with_capacity(charges.len());
        let mut sums: HashMap<(String, String), (i64, i64)> = HashMap::new();
        for r in &charges {
            let (job, dataset, grant) = (r.text(0)?, r.text(1)?, r.text(4)?);
            let eps = Epsilon::charge(r.real(2)?)?;
            let delta = Delta::charge(r.real(3)?)?;
            let sum = sums.entry((grant, dataset.clone())).or_default();
            sum.0 = sum.0.saturating_add(eps.units());
            sum.1 = sum.1.saturating_add(delta.units());
            converted.push((job, dataset, eps, delta));
        }
        let mut lines = Vec::with_capacity(budgets.len());
        for r in &budgets {
            let (grant, dataset) = (r.text(0)?, r.text(1)?);
            let total = Epsilon::total(r.real(2)?)?;
            let (charged_eps, charged_delta) = sums.get(&(grant.clone(), dataset.clone())).copied().unwrap_or_default();
            let spent = nearest(r.real(3)?, Epsilon::SCALE, "ε")?.max(charged_eps);
            let delta_spent = nearest(r.real(4)?, Delta::SCALE, "δ")?.max(charged_delta);
            lines.push((grant, dataset, total, spent, delta_spent));
        }
        tx.execute("DROP TABLE charges", &[])?;
        tx.execute("DROP TABLE budgets", &[])?;
        tx.execute(BUDGETS, &[])?;
        tx.execute(CHARGES, &[])?;
        for (grant, dataset, total, spent, delta_spent) in &lines {
            tx.execute(
                "INSERT INTO budgets (grant_id, dataset, epsilon_total, epsilon_spent, delta_spent)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                &[
                    grant.into(),
                    dataset.into(),
                    total.units().into(),
                    (*spent).into(),
                    (*delta_spent).into(),
                ],
            )?;
        }
        for (job, dataset, eps, delta) in &converted {
            tx.execute(
                "INSERT INTO charges (job_id, dataset, epsilon, delta) VALUES (?1, ?2, ?3, ?4)",
                &[job.into(), dataset.into(), eps.units().into(), delta.units().into()],
            )?;
        }
        audit::append(
            tx,
            "platform",
            "schema_migrated",
            json!({
                "change": "privacy budgets in fixed-point units (ε 1e-9, δ 1e-15): charges rounded up, totals down",
                "budgets": lines.len(),
                "charges": converted.len(),
            }),
        )?;
        Ok(())
    })
}
