//! Desensitization (脱敏) beneath the plan: a dataset whose policy gives a
//! dimension or public column a rule (`[desensitize]`, see
//! [`sandbox_policy::desensitize`]) is registered in the job's session as
//! a table whose scan reads its files and coarsens that column before any
//! other operator sees it: the column *is* its coarsened value.
//!
//! ```text
//! TableScan gov.x  →  Projection [desensitize(age) AS age, desensitize(visit) AS visit, …]
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
//! GROUP BY, CASE, a function, a subquery, an analysis job's input — reads
//! the coarsened value, so no expression can recover a finer granularity
//! than the rule allows: `GROUP BY age` groups by 5-year bands (the groups
//! are the bands, not rows generalized after grouping), `WHERE age = 37`
//! matches no row (a band's value is its lower bound, 35), and `GROUP BY
//! CASE WHEN age = 37 …` sees only bands. The checker and the rest of the
//! plan see an ordinary scan of the dataset, with its lineage unchanged;
//! the released public key set of such a column is the coarsened one
//! ([`sandbox_policy::ColumnPolicy::released_public_keys`]).
//!
//! A measure's rule is not applied here: a measure leaves only aggregated,
//! with DP noise, so its rule concerns sample datasets only.
//!
//! The coarsening is one function ([`function`]) calling exactly the
//! policy crate's [`sandbox_policy::Desensitization`] functions, the same
//! ones that coarsen public keys and sample datasets; it keeps the column's
//! Arrow type and cannot fail on any value (total, like every expression a
//! job runs, see [`crate::total`]).

mod function;
mod table;

use crate::SqlError;
use crate::checker::PolicyLookup;
use crate::session::TableBinding;
use sandbox_model::{ColumnRole, DatasetId};
use sandbox_policy::{Desensitization, Policy};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) use table::desensitized_table;

/// The rules the runtime applies beneath every job on `policy`'s dataset:
/// those of its dimension and public columns (column name → rule).
pub fn scan_rules(policy: &Policy) -> BTreeMap<String, Desensitization> {
    policy
        .columns
        .iter()
        .filter(|(_, c)| c.has(ColumnRole::Dimension) || c.has(ColumnRole::Public))
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
