//! Per-(privacy unit, group) partial statistics, computed by DataFusion.
//!
//! From the checked row source the engine builds (as a logical plan, never
//! as SQL text)
//!
//! ```text
//! Aggregate  GROUP BY __u, __g0.. : count(*), per measure count/sum/sum of squares
//!   Filter   __u IS NOT NULL
//!     Projection  __u = unit, __gi = group keys, __mj = grid value of measure j
//!       row source
//! ```
//!
//! where a grid value is `CAST(round((clamp(x, lower, upper) - centre) /
//! quantum) AS BIGINT)`, computed in one vectorised pass ([`crate::grid`]):
//! clamping to the policy's bounds and the move to integers happen in the
//! engine; sums are exact integer sums.
//! The result is handed to the DP crate for bounding and release.

use crate::query::{AggregateFn, CheckedQuery};
use crate::{JobSession, SqlError};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast as cast_expr, col, lit, when};
use sandbox_dp::aggregate::AggregateSpec;
use sandbox_dp::bounding::{GroupTotals, Partials};
use sandbox_dp::fixed_point::Quantizer;
use sandbox_dp::quantile::{DEFAULT_CANDIDATES, QuantileGrid, Spacing};
use sandbox_policy::PublicKey;
use std::collections::HashMap as StdHashMap;

/// Hash maps on the partials path use foldhash (randomly seeded): SipHash
/// was a fifth of the DP overhead on 10M-row joins.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

/// One measure column of the partials.
#[derive(Debug, Clone)]
pub struct MeasureColumn {
    pub expr: Expr,
    pub grid: Quantizer,
    /// Also sum squares (variances).
    pub squares: bool,
}

/// How each aggregate maps to measure columns, and its DP spec.
pub fn plan_measures(q: &CheckedQuery) -> Result<(Vec<AggregateSpec>, Vec<MeasureColumn>), SqlError> {
    plan_measures_with(q, DEFAULT_CANDIDATES, Spacing::Linear)
}

/// [`plan_measures`] with `candidates` points, spaced by `spacing`, on each
/// quantile's grid.
pub fn plan_measures_with(
    q: &CheckedQuery,
    candidates: usize,
    spacing: Spacing,
) -> Result<(Vec<AggregateSpec>, Vec<MeasureColumn>), SqlError> {
    let mut specs = Vec::new();
    let mut measures = Vec::new();
    let bad_bounds = |e: sandbox_dp::DpError| SqlError::Internal(e.to_string());
    for a in &q.aggregates {
        let bounds = || {
            a.bounds
                .ok_or_else(|| SqlError::Internal("measure without bounds".into()))
        };
        // Job functions in their split form, so that a row's call is shared
        // with the flag of its default (`crate::defaults`).
        let argument = || {
            a.argument
                .clone()
                .ok_or_else(|| SqlError::Internal("aggregate without argument".into()))
                .and_then(crate::guest::split_calls)
        };
        let measure = measures.len();
        let spec = match a.function {
            AggregateFn::CountRows => AggregateSpec::CountRows,
            AggregateFn::CountUnits => AggregateSpec::CountUnits,
            AggregateFn::CountValues => {
                let grid = Quantizer::for_sum(0.0, 1.0).map_err(bad_bounds)?;
                // A non-null indicator: grid value 0 when present, NULL otherwise.
                let e = when(argument()?.is_not_null(), lit(0i64))
                    .otherwise(lit(ScalarValue::Int64(None)))
                    .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
                measures.push(MeasureColumn {
                    expr: e,
                    grid,
                    squares: false,
                });
                AggregateSpec::CountValues { measure }
            }
            AggregateFn::Quantile => {
                let (lo, hi) = bounds()?;
                let alpha = a
                    .quantile
                    .ok_or_else(|| SqlError::Internal("quantile without α".into()))?;
                let grid = QuantileGrid::new(lo, hi, candidates, alpha)
                    .map_err(bad_bounds)?
                    .with_spacing(spacing);
                let indicator = Quantizer::for_sum(0.0, 1.0).map_err(bad_bounds)?;
                // The clamped value (NULL and NaN stay NULL: not counted).
                let x = crate::clamp::call(cast_expr(argument()?, DataType::Float64), lo, hi);
                let present = |condition: Expr| -> Result<Expr, SqlError> {
                    when(condition, lit(0i64))
                        .otherwise(lit(ScalarValue::Int64(None)))
                        .map_err(|e| SqlError::Internal(e.strip_backtrace()))
                };
                measures.push(MeasureColumn {
                    expr: present(x.clone().is_not_null())?,
                    grid: indicator,
                    squares: false,
                });
                for m in grid.thresholds() {
                    measures.push(MeasureColumn {
                        expr: present(x.clone().lt(lit(m)))?,
                        grid: indicator,
                        squares: false,
                    });
                }
                AggregateSpec::Quantile { count: measure, grid }
            }
            AggregateFn::Sum | AggregateFn::Avg | AggregateFn::Variance | AggregateFn::Stddev => {
                let (lo, hi) = bounds()?;
                let grid = match a.function {
                    AggregateFn::Sum => Quantizer::for_sum(lo, hi),
                    AggregateFn::Avg => Quantizer::for_mean(lo, hi),
                    _ => Quantizer::for_variance(lo, hi),
                }
                .map_err(bad_bounds)?;
                let squares = matches!(a.function, AggregateFn::Variance | AggregateFn::Stddev);
                measures.push(MeasureColumn {
                    expr: grid_expr(argument()?, &grid),
                    grid,
                    squares,
                });
                match a.function {
                    AggregateFn::Sum => AggregateSpec::Sum { measure, grid },
                    AggregateFn::Avg => AggregateSpec::Avg { measure, grid },
                    AggregateFn::Variance => AggregateSpec::Variance { measure, grid },
                    _ => AggregateSpec::Stddev { measure, grid },
                }
            }
        };
        specs.push(spec);
    }
    Ok((specs, measures))
}

/// `CAST(round((clamp(x, lower, upper) - centre) / quantum) AS BIGINT)`
/// in one pass ([`crate::grid`]): NULL and NaN stay NULL (missing), where
/// `least(greatest(x, lower), upper)` would count a NULL as the lower bound.
fn grid_expr(x: Expr, g: &Quantizer) -> Expr {
    crate::grid::call(cast_expr(x, DataType::Float64), *g)
}

/// The groups of the partials: public key sets enumerate every group up
/// front; otherwise the observed groups are candidates for DP partition
/// selection.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSet {
    pub public: bool,
    /// Key values per group, in group-id order.
    pub keys: Vec<Vec<serde_json::Value>>,
}

/// What the engine hands to the release: the groups and the privacy
/// units' contributions to them.
#[derive(Debug, Clone)]
pub struct GroupStatistics {
    pub groups: GroupSet,
    pub contributions: Contributions,
}

/// The units' contributions, in one of two forms.
#[derive(Debug, Clone)]
pub enum Contributions {
    /// One partial per (unit, group), bounded by the release step: the
    /// dominance rule needs each unit's own contribution to a group.
    Partials(Partials),
    /// Per-group totals, bounded inside the engine
    /// ([`crate::contribution`]).
    Totals {
        totals: GroupTotals,
        bounding: crate::contribution::Bounding,
        /// Whether `totals.units` holds each group's count of distinct
        /// units; false (zeros) when the job asked not to count them (its
        /// release reads no unit counts) and counting would have cost a
        /// distinct aggregation.
        units_counted: bool,
    },
}

/// The cross product of the public key sets, if every key has one and it is
/// not too large.
pub fn public_groups(q: &CheckedQuery, max_groups: usize) -> Option<Vec<Vec<PublicKey>>> {
    let mut combos: Vec<Vec<PublicKey>> = vec![Vec::new()];
    for k in &q.group_keys {
        let keys = k.public_keys.as_ref()?;
        if combos.len().saturating_mul(keys.len()) > max_groups {
            return None;
        }
        combos = combos
            .into_iter()
            .flat_map(|c| {
                keys.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push(v.clone());
                    c
                })
            })
            .collect();
    }
    Some(combos)
}

pub(crate) fn key_json(k: &PublicKey) -> serde_json::Value {
    match k {
        PublicKey::Int(i) => serde_json::Value::from(*i),
        PublicKey::Str(s) => serde_json::Value::from(s.clone()),
    }
}

fn scalar_key(v: &ScalarValue) -> Option<PublicKey> {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Some(PublicKey::Str(s.clone()))
        }
        ScalarValue::Int8(Some(i)) => Some(PublicKey::Int(*i as i64)),
        ScalarValue::Int16(Some(i)) => Some(PublicKey::Int(*i as i64)),
        ScalarValue::Int32(Some(i)) => Some(PublicKey::Int(*i as i64)),
        ScalarValue::Int64(Some(i)) => Some(PublicKey::Int(*i)),
        _ => None,
    }
}

pub(crate) fn scalar_json(v: &ScalarValue) -> serde_json::Value {
    if v.is_null() {
        return serde_json::Value::Null;
    }
    match scalar_key(v) {
        Some(k) => key_json(&k),
        None => match v {
            ScalarValue::Float64(Some(f)) => serde_json::Value::from(*f),
            ScalarValue::Float32(Some(f)) => serde_json::Value::from(*f as f64),
            ScalarValue::Boolean(Some(b)) => serde_json::Value::from(*b),
            other => serde_json::Value::from(other.to_string()),
        },
    }
}

/// Maps an engine error to a job error without exposing data-dependent
/// details to the analyst.
pub(crate) fn execution_error(e: &DataFusionError, memory: usize) -> SqlError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => SqlError::Memory(memory),
        _ => {
            tracing::warn!(error = %e, "SQL job failed during execution");
            SqlError::Execution
        }
    }
}

/// Runs the partials plan and collects its output: one partial per (unit,
/// group), for a release that needs each unit's contribution (dominance).
/// Every other release bounds in the engine ([`crate::contribution`]).
pub async fn compute_partials(
    session: &JobSession,
    q: &CheckedQuery,
    measures: &[MeasureColumn],
    choice_key: u64,
) -> Result<GroupStatistics, SqlError> {
    let limits = session.limits();
    let internal = |e: DataFusionError| SqlError::Internal(e.strip_backtrace());
    let mut projection = vec![crate::contribution::unit_expr(&q.row_source, &q.unit_columns)?.alias("__u")];
    for (i, g) in q.group_keys.iter().enumerate() {
        projection.push(g.expr.clone().alias(format!("__g{i}")));
    }
    for (j, m) in measures.iter().enumerate() {
        projection.push(m.expr.clone().alias(format!("__m{j}")));
    }
    let mut group_by = vec![col("__u")];
    group_by.extend((0..q.group_keys.len()).map(|i| col(format!("__g{i}"))));
    let mut aggs = vec![count(lit(1i64)).alias("__rows")];
    for (j, m) in measures.iter().enumerate() {
        let c = col(format!("__m{j}"));
        aggs.push(count(c.clone()).alias(format!("__c{j}")));
        aggs.push(sum(c.clone()).alias(format!("__s{j}")));
        if m.squares {
            aggs.push(sum(c.clone() * c).alias(format!("__q{j}")));
        }
    }
    // The same keyed priority as the in-engine bounding, so that both
    // forms choose the same groups for a unit under the same key.
    let mut hashed = vec![col("__u")];
    hashed.extend((0..q.group_keys.len()).map(|i| col(format!("__g{i}"))));
    let mut with_priority: Vec<Expr> = group_by.clone();
    with_priority.push(col("__rows"));
    for (j, m) in measures.iter().enumerate() {
        with_priority.extend([col(format!("__c{j}")), col(format!("__s{j}"))]);
        if m.squares {
            with_priority.push(col(format!("__q{j}")));
        }
    }
    with_priority.push(crate::contribution::choice_priority(choice_key, hashed).alias("__prio"));
    // Rows without a unit, and rows whose keys lie outside their public
    // sets, are filtered before the aggregation (as in
    // `contribution::compute_totals`): left in, each distinct outside key
    // would be a partial of its own, dropped only when assembled, and cost
    // memory in proportion to data the job never releases (red team of
    // 2026-12-01, out-of-set keys).
    let mut keep = col("__u").is_not_null();
    if public_groups(q, limits.max_groups).is_some()
        && let Some(in_sets) = crate::contribution::keys_in_public_sets(q)?
    {
        keep = keep.and(in_sets);
    }
    let (source, projection) = crate::guest::hoist_raw_calls(q.row_source.clone(), projection)?;
    let plan = LogicalPlanBuilder::from(source)
        .project(projection)
        .and_then(|b| b.filter(keep))
        .and_then(|b| b.aggregate(group_by, aggs))
        .and_then(|b| b.project(with_priority))
        .and_then(|b| b.build())
        .map_err(internal)?;

    let started = std::time::Instant::now();
    let batches = execute(session, plan).await?;
    let executed = started.elapsed();
    let result = assemble(q, measures, &batches, limits.max_groups);
    tracing::debug!(?executed, assembled = ?(started.elapsed() - executed), "partials computed");
    result
}

/// Rows of an analysis job's input, each with its privacy unit (`__u`,
/// first column), for assignment to blocks. They never leave the process.
pub async fn collect_rows(
    session: &JobSession,
    rows: &crate::query::CheckedRows,
) -> Result<Vec<RecordBatch>, SqlError> {
    let internal = |e: DataFusionError| SqlError::Internal(e.strip_backtrace());
    let unit = crate::contribution::unit_expr(&rows.row_source, &rows.unit_columns)?;
    let schema = rows.row_source.schema().clone();
    let mut projection = vec![cast_expr(unit, DataType::Utf8).alias("__u")];
    for (i, name) in rows.columns.iter().enumerate() {
        let (qualifier, field) = schema.qualified_field(i);
        projection.push(Expr::Column(datafusion::common::Column::new(qualifier.cloned(), field.name())).alias(name));
    }
    let plan = LogicalPlanBuilder::from(rows.row_source.clone())
        .project(projection)
        .and_then(|b| b.filter(col("__u").is_not_null()))
        .and_then(|b| b.build())
        .map_err(internal)?;
    execute(session, plan).await
}

/// Executes a plan within the job's deadline and memory pool.
pub(crate) async fn execute(
    session: &JobSession,
    plan: datafusion::logical_expr::LogicalPlan,
) -> Result<Vec<RecordBatch>, SqlError> {
    let limits = session.limits();
    let state = session.state().clone();
    let memory = limits.memory_bytes;
    let runner = session.runner().clone();
    let run = async move {
        // Optimise, then make every expression total (see `crate::total`)
        // on exactly the plan that runs: no later pass adds casts.
        let optimized = state.optimize(&plan).map_err(Failure::Engine)?;
        let total = crate::total::make_total(optimized)
            .map_err(|e| Failure::Engine(DataFusionError::Plan(format!("cannot make the plan total: {e}"))))?;
        let physical = state
            .query_planner()
            .create_physical_plan(&total, &state)
            .await
            .map_err(Failure::Engine)?;
        // What the runner cannot execute is refused before any of it runs:
        // the refusal depends on the plan, not on the data.
        runner.admit(&physical).map_err(Failure::Refused)?;
        let batches = runner
            .run(physical.clone(), state.task_ctx())
            .await
            .map_err(Failure::Engine)?;
        // Per-operator times and row counts, for profiling a job's plan
        // (operator log only; the embedded runner fills them in).
        if tracing::enabled!(tracing::Level::TRACE) {
            let metrics = datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(physical.as_ref())
                .indent(true)
                .to_string();
            tracing::trace!(plan = %metrics, "executed plan with its metrics");
        }
        Ok(batches)
    };
    match tokio::time::timeout(limits.deadline, run).await {
        Err(_) => Err(SqlError::Deadline(limits.deadline)),
        Ok(Err(Failure::Refused(e))) => Err(e),
        Ok(Err(Failure::Engine(e))) => Err(execution_error(&e, memory)),
        Ok(Ok(b)) => Ok(b),
    }
}

/// Why [`execute`] stopped short of the plan's output.
enum Failure {
    /// The runner cannot execute this plan (decided before it runs).
    Refused(SqlError),
    /// The engine or the cluster failed.
    Engine(DataFusionError),
}

mod assemble;
use assemble::assemble;
