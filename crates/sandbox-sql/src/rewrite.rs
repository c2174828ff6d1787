//! Carrying the privacy unit to the aggregation.
//!
//! The user's row source may drop the privacy-unit column (a subquery that
//! selects only a few columns). Contribution bounding needs it, so every
//! scan of a protected dataset is wrapped to add its unit column under a
//! reserved name `__sandbox_unit_N`, and every projection above it passes
//! those columns through. Other nodes only have their schemas recomputed.
//! The rewrite works on the logical plan, so it does not depend on the
//! executor.

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

/// Rewrites `plan` so its output carries one unit column per protected
/// scan; returns those columns and the plan.
pub fn add_unit_columns(
    plan: &LogicalPlan,
    policies: &dyn PolicyLookup,
    protected: &BTreeSet<DatasetId>,
) -> Result<(Vec<Column>, LogicalPlan), SqlError> {
    let mut counter = 0usize;
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
                    exprs.push(Expr::Column(unit_col).alias(format!("{UNIT_PREFIX}{counter}")));
                    counter += 1;
                    let projection = Projection::try_new(exprs, Arc::new(node))?;
                    Ok(Transformed::yes(LogicalPlan::Projection(projection)))
                }
                LogicalPlan::Projection(p) => {
                    let mut exprs = p.expr.clone();
                    let already: BTreeSet<String> = p.schema.fields().iter().map(|f| f.name().clone()).collect();
                    for c in p.input.schema().columns() {
                        if c.name.starts_with(UNIT_PREFIX) && !already.contains(&c.name) {
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
        .filter(|c| c.name.starts_with(UNIT_PREFIX))
        .collect();
    if units.is_empty() {
        return Err(SqlError::Internal("no privacy unit reached the aggregation".into()));
    }
    Ok((units, rewritten))
}
