//! Rows that took a job function's default, counted so that the count can
//! be released with DP.
//!
//! A job's WebAssembly function never fails the job: a row whose call fails
//! (trap, error, wrong number of values) takes the midpoint of the declared
//! bounds ([`crate::guest`]). An analyst must learn when most of a result
//! is such defaults, without learning which rows failed. This module gives
//! the runtime the exact, contribution-bounded count; the runtime adds the
//! noise (`sandbox_runtime`, with its share of the job's ε).
//!
//! What is counted: the rows the job's groups are computed from (after
//! its WHERE, its public key sets and its contribution bounding, before
//! partition selection) for which a call of a job function **in an
//! aggregate's argument** failed (several calls in one row count once; a
//! group key holding one is counted too, though the checker refuses job
//! functions in GROUP BY today). Calls inside the row source (a WHERE
//! clause, a subquery's SELECT list, a join condition) are not counted:
//! their rows may not reach the aggregation at all. The calls are found on
//! the checked plan, by the function behind each call (a
//! [`crate::guest::GuestUdf`]),
//! never by name.
//!
//! Bounding: the flag is one more measure of the job's own pass, bounded
//! exactly as the job's measures (the job's G, R, L and choice key, in the
//! engine or in the release step): a unit keeps
//! at most `min(G · R, L)` rows over all groups, so adding or removing one
//! unit changes the count by at most that — the sensitivity the runtime
//! calibrates to.

use crate::SqlError;
use crate::guest::{GuestRaw, split_calls};
use crate::partials::MeasureColumn;
use crate::query::CheckedQuery;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::functions::expr_fn::greatest;
use datafusion::logical_expr::{Expr, cast};
use sandbox_dp::fixed_point::Quantizer;

/// The per-row flag (`1.0` when any job-function call in a group key or an
/// aggregate's argument failed, else `0.0`) over the row source's columns,
/// or `None` when no such call exists (then nothing is counted and no ε is
/// set aside). A row's flag is `raw IS NULL` of each call's raw form
/// ([`crate::guest::split_calls`]), the very column the measure's value
/// is computed from ([`crate::guest::hoist_raw_calls`] evaluates it once
/// per row for both), so the flag depends on that row alone and agrees
/// with the value.
///
/// # Errors
/// Internal only (the rewrite of the calls cannot fail on a checked query).
pub fn defaulted_row_flag(q: &CheckedQuery) -> Result<Option<Expr>, SqlError> {
    let mut flags = Vec::new();
    let roots = q
        .group_keys
        .iter()
        .map(|k| &k.expr)
        .chain(q.aggregates.iter().filter_map(|a| a.argument.as_ref()));
    for root in roots {
        // The same raw calls as the measures' (`partials::plan_measures`
        // splits every argument alike), so each row's call is shared
        // once hoisted.
        let split = split_calls(root.clone())?;
        // A visit cannot fail here: the closure never returns an error.
        let _ = split.apply(|e| {
            if let Expr::ScalarFunction(call) = e
                && call.func.inner().is::<GuestRaw>()
            {
                flags.push(cast(e.clone().is_null(), DataType::Float64));
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    Ok(match flags.len() {
        0 => None,
        1 => flags.pop(),
        _ => Some(greatest(flags)),
    })
}

/// The flag of [`defaulted_row_flag`] as a measure column (0 or 1 a row),
/// to total with a job's own measures in one pass: its bounded sum over
/// all groups is the count of defaulted rows ([`take_defaulted_rows`] in
/// the engine's totals; the runtime's release step where it bounds).
///
/// # Errors
/// None in practice (the grid [0, 1] is valid).
pub fn defaulted_row_measure(flag: Expr) -> Result<MeasureColumn, SqlError> {
    Ok(MeasureColumn {
        expr: cast(flag, DataType::Int64),
        grid: Quantizer::for_sum(0.0, 1.0).map_err(|e| SqlError::Internal(e.to_string()))?,
        squares: false,
    })
}

/// Removes the last measure of `totals` (the [`defaulted_row_measure`])
/// and returns its sum over all groups: the bounded count of defaulted
/// rows.
pub fn take_defaulted_rows(totals: &mut sandbox_dp::bounding::GroupTotals) -> u64 {
    let flagged: i128 = totals.measures.pop().map(|m| m.sum.iter().sum()).unwrap_or(0);
    u64::try_from(flagged.max(0)).unwrap_or(u64::MAX)
}
