//! Carrying the privacy unit to the aggregation.
//!
//! The user's row source may drop the privacy-unit column (a subquery that
//! selects only a few columns). Contribution bounding needs it, so every
//! scan of a protected dataset is wrapped to add its unit column under a
//! name made for this job, `__sandbox_unit_<random>_N` (128 random bits
//! from the OS), and every projection above it passes exactly those
//! columns through. Other nodes only have their schemas recomputed.
//!
//! Units are tracked by these names, which no query can guess or produce:
//! the checker refuses every name starting with `__sandbox` in any case on
//! the planned plan, and the rewrite never recognises a column by a prefix.
//! The checker has already made sure that all protected scans are joined
//! on their privacy units, so the unit columns of a row are equal wherever
//! they are not NULL (see `crate::checker`). The rewrite works on the
//! logical plan, so it does not depend on the executor.

use crate::SqlError;
use crate::checker::PolicyLookup;
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};
use sandbox_model::DatasetId;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Prefix of the reserved unit columns.
pub const UNIT_PREFIX: &str = "__sandbox_unit_";

/// A fresh, unguessable stem for one job's unit columns.
fn unit_stem() -> Result<String, SqlError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| SqlError::Internal(format!("no randomness for unit names: {e}")))?;
    Ok(format!("{UNIT_PREFIX}{}_", hex::encode(bytes)))
}

/// Rewrites `plan` so its output carries one unit column per protected
/// scan; returns those columns and the plan.
pub fn add_unit_columns(
    plan: &LogicalPlan,
    policies: &dyn PolicyLookup,
    protected: &BTreeSet<DatasetId>,
) -> Result<(Vec<Column>, LogicalPlan), SqlError> {
    let stem = unit_stem()?;
    let mut names: BTreeSet<String> = BTreeSet::new();
    let internal = |e: datafusion::error::DataFusionError| SqlError::Internal(e.strip_backtrace());
    let rewritten =
        plan.clone()
            .transform_up(|node| match node {
                LogicalPlan::TableScan(ref scan) => {
                    let dataset: Option<DatasetId> = match &scan.table_name {
                        datafusion::common::TableReference::Partial { schema, table }
                        | datafusion::common::TableReference::Full { schema, table, .. } => {
                            format!("{schema}.{table}").parse().ok()
                        }
                        _ => None,
                    };
                    let Some(dataset) = dataset.filter(|d| protected.contains(d)) else {
                        return Ok(Transformed::no(node));
                    };
                    let Some(unit) = policies.policy(&dataset).and_then(|p| p.privacy_unit.clone()) else {
                        return Ok(Transformed::no(node));
                    };
                    let schema = node.schema().clone();
                    let unit_col = schema.columns().into_iter().find(|c| c.name == unit).ok_or_else(|| {
                        datafusion::error::DataFusionError::Plan(format!("unit column {unit} missing"))
                    })?;
                    let mut exprs: Vec<Expr> = schema.columns().into_iter().map(Expr::Column).collect();
                    let name = format!("{stem}{}", names.len());
                    exprs.push(Expr::Column(unit_col).alias(name.clone()));
                    names.insert(name);
                    let projection = Projection::try_new(exprs, Arc::new(node))?;
                    Ok(Transformed::yes(LogicalPlan::Projection(projection)))
                }
                LogicalPlan::Projection(p) => {
                    let mut exprs = p.expr.clone();
                    let already: BTreeSet<String> = p.schema.fields().iter().map(|f| f.name().clone()).collect();
                    for c in p.input.schema().columns() {
                        if names.contains(&c.name) && !already.contains(&c.name) {
                            exprs.push(Expr::Column(c));
                        }
                    }
                    let projection = Projection::try_new(exprs, p.input.clone())?;
                    Ok(Transformed::yes(LogicalPlan::Projection(projection)))
                }
                other => Ok(Transformed::yes(other.recompute_schema()?)),
            })
            .map_err(internal)?
            .data;
    let units: Vec<Column> = rewritten
        .schema()
        .columns()
        .into_iter()
        .filter(|c| names.contains(&c.name))
        .collect();
    if units.is_empty() {
        return Err(SqlError::Internal("no privacy unit reached the aggregation".into()));
    }
    Ok((units, rewritten))
}
