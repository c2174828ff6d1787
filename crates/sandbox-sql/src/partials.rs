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
//! quantum) AS BIGINT)`: clamping to the policy's bounds and the move to
//! integers happen vectorised in the engine; sums are exact integer sums.
//! The result is handed to the DP crate for bounding and release.

use crate::query::{AggregateFn, CheckedQuery};
use crate::{JobSession, SqlError};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::functions::expr_fn::{coalesce, greatest, least, round};
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast as cast_expr, col, lit, when};
use datafusion::physical_plan::collect;
use sandbox_dp::aggregate::AggregateSpec;
use sandbox_dp::bounding::{MeasurePartials, Partials};
use sandbox_dp::fixed_point::Quantizer;
use sandbox_policy::PublicKey;
use std::collections::HashMap;

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
    let mut specs = Vec::new();
    let mut measures = Vec::new();
    let bad_bounds = |e: sandbox_dp::DpError| SqlError::Internal(e.to_string());
    for a in &q.aggregates {
        let bounds = || {
            a.bounds
                .ok_or_else(|| SqlError::Internal("measure without bounds".into()))
        };
        let argument = || {
            a.argument
                .clone()
                .ok_or_else(|| SqlError::Internal("aggregate without argument".into()))
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

/// `CAST(round((clamp(x) - centre) / quantum) AS BIGINT)`.
fn grid_expr(x: Expr, g: &Quantizer) -> Expr {
    let x = cast_expr(x, DataType::Float64);
    let clamped = least(vec![greatest(vec![x, lit(g.lower)]), lit(g.upper)]);
    let scaled = (clamped - lit(g.center)) / lit(g.quantum);
    cast_expr(round(vec![scaled]), DataType::Int64)
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

#[derive(Debug, Clone)]
pub struct PartialsResult {
    pub partials: Partials,
    pub groups: GroupSet,
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

fn key_json(k: &PublicKey) -> serde_json::Value {
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

fn scalar_json(v: &ScalarValue) -> serde_json::Value {
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

/// Runs the partials plan and collects its output.
pub async fn compute_partials(
    session: &JobSession,
    q: &CheckedQuery,
    measures: &[MeasureColumn],
) -> Result<PartialsResult, SqlError> {
    let limits = session.limits();
    let internal = |e: DataFusionError| SqlError::Internal(e.strip_backtrace());
    let unit_exprs: Vec<Expr> = q.unit_columns.iter().cloned().map(Expr::Column).collect();
    let unit = if unit_exprs.len() == 1 {
        unit_exprs
            .into_iter()
            .next()
            .ok_or_else(|| SqlError::Internal("no unit".into()))?
    } else {
        coalesce(unit_exprs)
    };
    let mut projection = vec![cast_expr(unit, DataType::Utf8).alias("__u")];
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
    let plan = LogicalPlanBuilder::from(q.row_source.clone())
        .project(projection)
        .and_then(|b| b.filter(col("__u").is_not_null()))
        .and_then(|b| b.aggregate(group_by, aggs))
        .and_then(|b| b.build())
        .map_err(internal)?;

    let state = session.state().clone();
    let memory = limits.memory_bytes;
    let run = async move {
        let physical = state.create_physical_plan(&plan).await?;
        collect(physical, state.task_ctx()).await
    };
    let batches = match tokio::time::timeout(limits.deadline, run).await {
        Err(_) => return Err(SqlError::Deadline(limits.deadline)),
        Ok(Err(e)) => return Err(execution_error(&e, memory)),
        Ok(Ok(b)) => b,
    };
    assemble(q, measures, &batches, limits.max_groups)
}

fn int_column(batch: &RecordBatch, i: usize) -> Result<ArrayRef, SqlError> {
    let a = batch.column(i);
    cast(a, &DataType::Int64).map_err(|e| SqlError::Internal(e.to_string()))
}

fn assemble(
    q: &CheckedQuery,
    measures: &[MeasureColumn],
    batches: &[RecordBatch],
    max_groups: usize,
) -> Result<PartialsResult, SqlError> {
    let k = q.group_keys.len();
    let public = public_groups(q, max_groups);
    let public_index: Option<HashMap<Vec<PublicKey>, u32>> = public
        .as_ref()
        .map(|combos| combos.iter().enumerate().map(|(i, c)| (c.clone(), i as u32)).collect());
    let mut observed: HashMap<Vec<ScalarValue>, u32> = HashMap::new();
    let mut observed_keys: Vec<Vec<ScalarValue>> = Vec::new();
    let mut units: HashMap<String, u32> = HashMap::new();
    let mut p = Partials {
        measures: measures
            .iter()
            .map(|m| MeasurePartials {
                sumsq: m.squares.then(Vec::new),
                max_abs: m.grid.max_abs,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    for batch in batches {
        let u = cast(batch.column(0), &DataType::Utf8).map_err(|e| SqlError::Internal(e.to_string()))?;
        let u = u.as_string::<i32>();
        let mut col_i = 1 + k;
        let rows = int_column(batch, col_i)?;
        col_i += 1;
        let mut mcols = Vec::new();
        for m in measures {
            let c = int_column(batch, col_i)?;
            let s = int_column(batch, col_i + 1)?;
            let sq = if m.squares {
                Some(int_column(batch, col_i + 2)?)
            } else {
                None
            };
            col_i += if m.squares { 3 } else { 2 };
            mcols.push((c, s, sq));
        }
        for r in 0..batch.num_rows() {
            if u.is_null(r) {
                continue;
            }
            let key: Vec<ScalarValue> = (0..k)
                .map(|i| ScalarValue::try_from_array(batch.column(1 + i), r))
                .collect::<Result<_, _>>()
                .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
            let group = match &public_index {
                Some(index) => {
                    let Some(pk) = key.iter().map(scalar_key).collect::<Option<Vec<_>>>() else {
                        continue;
                    };
                    match index.get(&pk) {
                        Some(g) => *g,
                        None => continue,
                    }
                }
                None => match observed.get(&key) {
                    Some(g) => *g,
                    None => {
                        if observed_keys.len() >= max_groups {
                            tracing::warn!(max_groups, "query exceeded the group limit");
                            return Err(SqlError::Execution);
                        }
                        let g = observed_keys.len() as u32;
                        observed.insert(key.clone(), g);
                        observed_keys.push(key);
                        g
                    }
                },
            };
            let next = units.len() as u32;
            let unit = *units.entry(u.value(r).to_string()).or_insert(next);
            p.unit.push(unit);
            p.group.push(group);
            p.rows.push(rows.as_primitive::<Int64Type>().value(r));
            for (mp, (c, s, sq)) in p.measures.iter_mut().zip(&mcols) {
                let get = |a: &ArrayRef| {
                    let a = a.as_primitive::<Int64Type>();
                    if a.is_null(r) { 0 } else { a.value(r) }
                };
                mp.count.push(get(c));
                mp.sum.push(get(s));
                if let (Some(v), Some(sq)) = (mp.sumsq.as_mut(), sq) {
                    v.push(get(sq));
                }
            }
        }
    }
    let groups = match public {
        Some(combos) => GroupSet {
            public: true,
            keys: combos.iter().map(|c| c.iter().map(key_json).collect()).collect(),
        },
        None => GroupSet {
            public: false,
            keys: observed_keys
                .iter()
                .map(|c| c.iter().map(scalar_json).collect())
                .collect(),
        },
    };
    Ok(PartialsResult { partials: p, groups })
}
