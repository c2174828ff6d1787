//! Desensitization (脱敏) beneath the plan: a dataset whose policy gives a
//! column a rule (`[desensitize]`, see [`sandbox_policy::desensitize`]) is
//! registered in the job's session as a table whose scan reads its files
//! and coarsens that column before any other operator sees it: the column
//! *is* its coarsened value.
//!
//! ```text
//! TableScan gov.x  →  Projection [desensitize(age) AS age, desensitize(cost) AS cost, …]
//!                       TableScan <the files of gov.x>
//! ```
//!
//! The table is not a view: the planner, the checker and the rewrite see
//! an ordinary scan of the dataset, so the lineage of a column (its roles,
//! that it *is* the dataset's column, its public keys) is unchanged; the
//! projection exists only inside the scan's execution plan, where no query
//! can reach beneath it. The table accepts no pushed-down filters, so every
//! filter of the query runs above the coarsening.
//!
//! Every reference a query makes to the column — in SELECT, WHERE, JOIN,
//! GROUP BY, CASE, a function, a subquery, an aggregate's argument, an
//! analysis job's input — reads the coarsened value, so no expression can
//! recover a finer granularity than the rule allows: `GROUP BY age` groups
//! by 5-year bands (the groups are the bands, not rows generalized after
//! grouping), `WHERE age = 37` matches no row (a band's value is its lower
//! bound, 35), and `GROUP BY CASE WHEN age = 37 …` sees only bands. The
//! checker and the rest of the plan see an ordinary scan of the dataset,
//! with its lineage unchanged; the released public key set of such a
//! column is the coarsened one
//! ([`sandbox_policy::ColumnPolicy::released_public_keys`]).
//!
//! A rule means one thing whatever the column's role: a measure's rule
//! applies here too, so `SUM(cost)` sums the coarsened values and a filter
//! on `cost` compares coarsened values. The checker clamps a measure to its
//! policy bounds *above* this scan, so the order per row is coarsen, then
//! clamp: the sensitivity of an aggregate depends only on the bounds (and
//! the contribution bounds), not on the rule, and a coarsened value that
//! falls outside the bounds (a band label below the lower bound, a
//! bottom-coding edge) is clamped like any stored value.
//!
//! The coarsening is one function ([`function`]) calling exactly the
//! policy crate's [`sandbox_policy::Desensitization`] functions, the same
//! ones that coarsen public keys and sample datasets; it keeps the column's
//! Arrow type and cannot fail on any value (total, like every expression a
//! job runs, see [`crate::total`]).

pub(crate) mod function;
mod table;

use crate::SqlError;
use crate::checker::PolicyLookup;
use crate::session::TableBinding;
use sandbox_model::DatasetId;
use sandbox_policy::{Desensitization, Policy};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) use table::desensitized_table;

/// The rules the runtime applies beneath every job on `policy`'s dataset:
/// every column's rule, whatever its role (column name → rule). Validation
/// allows rules on dimension, public and measure columns only; a rule is
/// never skipped here for its role, so a rule the owner wrote is a rule
/// every job reads through.
pub fn scan_rules(policy: &Policy) -> BTreeMap<String, Desensitization> {
    policy
        .columns
        .iter()
        .filter_map(|(name, c)| c.desensitize.clone().map(|r| (name.clone(), r)))
        .collect()
}

/// Fails unless every dataset of `datasets` is bound with exactly the
/// rules its policy gives ([`scan_rules`]): the session's tables were built
/// from bindings the runtime made, and a job must not run on a table that
/// misses a rule (defence in depth; an `Internal` error, never expected).
pub fn require_applied(
    bindings: &BTreeMap<DatasetId, TableBinding>,
    datasets: &BTreeSet<DatasetId>,
    policies: &dyn PolicyLookup,
) -> Result<(), SqlError> {
    for d in datasets {
        let wanted = policies.policy(d).map(scan_rules).unwrap_or_default();
        let bound = bindings.get(d).map(|b| &b.desensitize);
        if bound != Some(&wanted) {
            return Err(SqlError::Internal(format!(
                "{d} is not bound with its policy's desensitization rules"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
