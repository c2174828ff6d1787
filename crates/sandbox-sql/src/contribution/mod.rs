//! Contribution bounding inside the engine: from the checked row source to
//! per-group totals, as one DataFusion logical plan, so that only one row
//! per group leaves the engine.
//!
//! ```text
//! Sort        __g0.. (observed groups only: ids do not depend on scan order)
//!  Aggregate  GROUP BY __g0.. : units = count(*), rows = Σ __kr,
//!             per measure Σ __kc, Σ __ks, Σ __kq          (exact, in Decimal128)
//!   Projection __kc = least(__c, __kr), __ks = row_cap(__s, __c, __kr),
//!              __kq = row_cap_squares(__q, __c, __kr)
//!    Filter   __kr > 0                          (with a total cap L)
//!     Projection __kr = least(__r1, greatest(L - (__running - __r1), 0))   (with L; else __r1)
//!      Filter  __rank <= G
//!       Window __rank = row_number(), __running = Σ __r1 (rows frame, with L)
//!              OVER (PARTITION BY __u ORDER BY __prio, __g0..)
//!              (only when a unit can exceed G groups, or with L)
//!        Projection  __prio = choice_priority[key](__u, __g0..), __r1 = least(__rows, R)
//!      Aggregate  GROUP BY __u, __g0.. : __rows = count(*), per measure
//!                 __c = count(__m), __s = Σ __m, __q = Σ __m²
//!       Filter    __u IS NOT NULL [AND every key in its public key set]
//!        Projection  __u = unit, __gi = group keys, __mj = grid value of measure j
//!         row source
//! ```
//!
//! This is exactly the bounding of `sandbox_dp::bounding::bounded_totals`
//! (G groups per unit chosen by the smallest keyed priority, ties broken by
//! the group's key; R rows per kept group, and with L the rows left of L by
//! the unit's groups earlier in priority order; sums scaled by `k/n` for k
//! kept of n values and clamped), run where the data is: every step is a function of one
//! unit's own partials and the job's key, so adding or removing a unit
//! changes each group's row count by at most R, its unit count by 1, a
//! measure's sum by at most `R · max_abs` grid steps, and at most G groups,
//! with at most `min(G · R, L)` rows over all of them.
//! [`Bounding::Exact`] (threshold release) keeps every partial whole.
//!
//! The unit is grouped on its own value and type (no per-row cast to text),
//! and the window only runs when a unit can reach more groups than it may
//! keep (a public key set no larger than G needs no choice).

pub(crate) mod functions;
mod read;

pub use functions::{ChoicePriority, RowCap, UnitHash};
pub use read::PublicIndex;
use read::{exact_column, read_totals};

use crate::multiplicity::UnitBounds;
use crate::partials::{Contributions, GroupSet, GroupStatistics, MeasureColumn, public_groups};
use crate::query::CheckedQuery;
use crate::{JobSession, SqlError};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Int64Type};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Column, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::functions::expr_fn::{coalesce, greatest, least};
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, sum};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::{ScalarFunction, WindowFunction};
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, ExprSchemable, LogicalPlan, LogicalPlanBuilder, ScalarUDF, WindowFrame, WindowFrameBound,
    WindowFrameUnits, WindowFunctionDefinition, cast as cast_expr, col, lit,
};
use sandbox_dp::bounding::{ContributionBounds, GroupTotals};
use sandbox_policy::PublicKey;
use std::sync::Arc;

/// How partials are bounded before they are totalled per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounding {
    /// Every partial whole (threshold release on exact data); sums still
    /// clamped to what their rows' grid values can reach.
    Exact,
    /// G groups per unit and R rows per kept group, under the job's choice
    /// key.
    PerGroup { bounds: ContributionBounds, key: u64 },
}

/// The decimal type per-group sums are taken in: exact for any realistic
/// number of units (a sum of 64-bit values cannot overflow 38 digits below
/// 10^19 terms), where a 64-bit sum could wrap.
const EXACT_SUM: DataType = DataType::Decimal128(38, 0);

/// Builds and runs the bounding plan (see the module docs) and reads its
/// per-group totals.
///
/// Errors: [`SqlError::Deadline`] and [`SqlError::Memory`] from the job's
/// limits, [`SqlError::Execution`] for an engine failure (details only in
/// the server log), [`SqlError::Internal`] for a plan that cannot be built.
///
/// `unit_bounds` are public bounds on any unit's rows and groups in the
/// row source ([`crate::multiplicity`]); where they show that bounding
/// cannot bind ([`bounding_can_bind`]), the per-unit stage is skipped and
/// the totals are one aggregation of the rows (the same totals).
pub async fn compute_totals(
    session: &JobSession,
    q: &CheckedQuery,
    measures: &[MeasureColumn],
    bounding: Bounding,
    unit_bounds: UnitBounds,
    count_units: bool,
) -> Result<GroupStatistics, SqlError> {
    let limits = session.limits();
    let internal = |e: DataFusionError| SqlError::Internal(e.strip_backtrace());
    let public = public_groups(q, limits.max_groups);
    let k = q.group_keys.len();
    let keys: Vec<String> = (0..k).map(|i| format!("__g{i}")).collect();
    let key_cols = || keys.iter().map(col).collect::<Vec<_>>();

    // Where bounding cannot bind, the totals are one aggregation of the
    // rows per group (`unbounded_totals`), counting units as below.
    let unbounded = unit_bounds
        .rows
        .filter(|_| !bounding_can_bind(bounding, public.as_ref().map(|p| p.len()), unit_bounds))
        .map(|n| {
            // A unit with at most one row in each group is counted by its rows.
            if n <= 1 || unit_bounds.rows_per_group.is_some_and(|r| r <= 1) {
                UnitCount::Rows
            } else if count_units {
                UnitCount::Distinct
            } else {
                UnitCount::NotCounted
            }
        });

    // Rows with a key outside its public set cost nothing that depends on
    // them, on every path: left as they are, each distinct such key would
    // be a group of its own in the engine, costing memory in proportion to
    // data the job never releases, at a limit the query could move (red
    // team of 2026-12-01, out-of-set keys). Where rows are aggregated
    // straight into groups, every key (and the unit, where units are
    // counted distinctly) is made NULL unless all keys lie in their sets:
    // one extra group, with no unit in it, that the release never reads,
    // and no copy of the rows (`public_set`). Before a per-unit stage,
    // whose groups are (unit, key) and whose choice of groups must see
    // in-set keys only, such rows are filtered out; so they are where a
    // measure calls a job function, so that no call runs on them.
    //
    // Below a join, the filter is pushed to the side that holds the keys
    // (417k entities rather than 10M usage rows in the two-table bench
    // shape), which costs less than a membership test on every joined
    // row: such plans keep the filter.
    let measure_exprs: Vec<Expr> = measures.iter().map(|m| m.expr.clone()).collect();
    let joins = q
        .row_source
        .exists(|p| Ok(matches!(p, LogicalPlan::Join(_))))
        .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
    let null_out_of_set =
        unbounded.is_some() && public.is_some() && !joins && !crate::guest::has_raw_calls(&measure_exprs);
    let key_exprs: Vec<Expr> = q.group_keys.iter().map(|g| g.expr.clone()).collect();
    let key_sets: Vec<&[PublicKey]> = q
        .group_keys
        .iter()
        .map(|g| g.public_keys.as_deref().unwrap_or_default())
        .collect();
    // One membership test per row: the flag expression is the same in
    // every call, so DataFusion's common-subexpression pass evaluates it
    // once and each key reads it.
    let public_row = public_set::in_sets(key_exprs.clone(), &key_sets);
    let if_public = |value: Expr| public_set::keep_if(value, public_row.clone());

    // Rows: unit, keys, grid values; units present; keys in their public sets.
    let unit = unit_expr(&q.row_source, &q.unit_columns)?;
    let unit = if null_out_of_set && unbounded == Some(UnitCount::Distinct) {
        if_public(unit)
    } else {
        unit
    };
    // Units counted distinctly are counted by a keyed 64-bit hash where
    // they are not integers already: DataFusion counts distinct integers
    // per group in one hash set, strings group by group (see `UnitHash`
    // for why a shared hash keeps the count's sensitivity).
    let unit_type = unit
        .get_type(q.row_source.schema())
        .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
    let unit = if unbounded == Some(UnitCount::Distinct) && !unit_type.is_integer() {
        use std::hash::BuildHasher;
        let key = foldhash::fast::RandomState::default().hash_one(0x756e_6974_u64);
        Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(ScalarUDF::from(UnitHash::new(key))),
            vec![unit],
        ))
    } else {
        unit
    };
    let mut projection = vec![unit.alias("__u")];
    for (i, g) in q.group_keys.iter().enumerate() {
        let key = if null_out_of_set {
            if_public(g.expr.clone())
        } else {
            g.expr.clone()
        };
        projection.push(key.alias(&keys[i]));
    }
    for (j, m) in measures.iter().enumerate() {
        projection.push(m.expr.clone().alias(format!("__m{j}")));
    }
    // Rows without a unit are dropped; where the verified files have no
    // NULL unit the filter is left out, so a plan that needs no unit (units
    // counted by rows) does not read the unit column at all.
    let unit_present = (!unit_bounds.unit_never_null).then(|| col("__u").is_not_null());
    let in_public_sets = if public.is_some() && !null_out_of_set {
        keys_in_public_sets(q)?
    } else {
        None
    };
    let keep = match (unit_present, in_public_sets) {
        (Some(a), Some(b)) => Some(a.and(b)),
        (a, b) => a.or(b),
    };
    let (source, projection) = crate::guest::hoist_raw_calls(q.row_source.clone(), projection)?;
    let projected = LogicalPlanBuilder::from(source).project(projection).map_err(internal)?;
    let rows = match keep {
        Some(keep) => projected.filter(keep).map_err(internal)?,
        None => projected,
    };
    if let Some(units) = unbounded {
        return unbounded_totals(session, q, measures, rows, public, bounding, units).await;
    }

    // Partials per (unit, group).
    let mut by_unit = vec![col("__u")];
    by_unit.extend(key_cols());
    let mut partial_aggs = vec![count(lit(1i64)).alias("__rows")];
    for (j, m) in measures.iter().enumerate() {
        let v = col(format!("__m{j}"));
        partial_aggs.push(count(v.clone()).alias(format!("__c{j}")));
        partial_aggs.push(sum(v.clone()).alias(format!("__s{j}")));
        if m.squares {
            partial_aggs.push(sum(v.clone() * v).alias(format!("__q{j}")));
        }
    }
    let mut plan = rows.aggregate(by_unit, partial_aggs).map_err(internal)?;

    // The rows each partial keeps (`__kr`): all of them (exact), at most R,
    // and, with a total cap L, what the unit's earlier groups in priority
    // order left of L. Each unit's G groups of smallest priority stay where
    // it has a choice.
    let mut partial_columns = vec![col("__u")];
    partial_columns.extend(key_cols());
    for (j, m) in measures.iter().enumerate() {
        partial_columns.extend([col(format!("__c{j}")), col(format!("__s{j}"))]);
        if m.squares {
            partial_columns.push(col(format!("__q{j}")));
        }
    }
    match bounding {
        Bounding::Exact => {
            let mut columns = partial_columns.clone();
            columns.push(col("__rows").alias("__kr"));
            plan = plan.project(columns).map_err(internal)?;
        }
        Bounding::PerGroup { bounds, key } => {
            let r = bounds.max_rows_per_group as i64;
            let total_cap = bounds.max_rows_per_unit.map(i64::from);
            let choose = needs_choice(bounds, public.as_ref().map(|p| p.len()));
            let mut columns = partial_columns.clone();
            columns.push(least(vec![col("__rows"), lit(r)]).alias("__r1"));
            if choose || total_cap.is_some() {
                let mut hashed = vec![col("__u")];
                hashed.extend(key_cols());
                columns.push(choice_priority(key, hashed).alias("__prio"));
                let mut order = vec![col("__prio").sort(true, false)];
                order.extend(key_cols().into_iter().map(|c| c.sort(true, true)));
                let rank = row_number()
                    .partition_by(vec![col("__u")])
                    .order_by(order.clone())
                    .build()
                    .map_err(internal)?
                    .alias("__rank");
                let mut windows = vec![rank];
                if total_cap.is_some() {
                    let frame = WindowFrame::new_bounds(
                        WindowFrameUnits::Rows,
                        WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
                        WindowFrameBound::CurrentRow,
                    );
                    // An aggregate over a window: `sum(...)` itself is
                    // an aggregate expression, which takes no window clause.
                    let running_sum =
                        WindowFunction::new(WindowFunctionDefinition::AggregateUDF(sum_udaf()), vec![col("__r1")]);
                    let running = Expr::from(running_sum)
                        .partition_by(vec![col("__u")])
                        .order_by(order)
                        .window_frame(frame)
                        .build()
                        .map_err(internal)?
                        .alias("__running");
                    windows.push(running);
                }
                plan = plan
                    .project(columns)
                    .and_then(|b| b.window(windows))
                    .and_then(|b| b.filter(col("__rank").lt_eq(lit(bounds.max_groups_per_unit as u64))))
                    .map_err(internal)?;
            } else {
                plan = plan.project(columns).map_err(internal)?;
            }
            let mut columns = partial_columns.clone();
            match total_cap {
                None => columns.push(col("__r1").alias("__kr")),
                Some(l) => {
                    let before = col("__running") - col("__r1");
                    let left = greatest(vec![lit(l) - before, lit(0i64)]);
                    columns.push(least(vec![col("__r1"), left]).alias("__kr"));
                }
            }
            plan = plan.project(columns).map_err(internal)?;
            if total_cap.is_some() {
                // A group the unit's total cap left no rows is not one of
                // its groups.
                plan = plan.filter(col("__kr").gt(lit(0i64))).map_err(internal)?;
            }
        }
    }
    let call =
        |f: RowCap, args: Vec<Expr>| Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(ScalarUDF::from(f)), args));
    let mut bounded = key_cols();
    bounded.push(col("__kr"));
    for (j, m) in measures.iter().enumerate() {
        let (c, s) = (col(format!("__c{j}")), col(format!("__s{j}")));
        bounded.push(least(vec![c.clone(), col("__kr")]).alias(format!("__kc{j}")));
        bounded.push(call(RowCap::sum(m.grid.max_abs), vec![s, c.clone(), col("__kr")]).alias(format!("__ks{j}")));
        if m.squares {
            let q = col(format!("__q{j}"));
            bounded.push(call(RowCap::squares(m.grid.max_abs), vec![q, c, col("__kr")]).alias(format!("__kq{j}")));
        }
    }
    plan = plan.project(bounded).map_err(internal)?;

    // Totals per group, exact.
    let exact_sum = |c: &str| sum(cast_expr(col(c), EXACT_SUM));
    let mut totals = vec![count(lit(1i64)).alias("__units"), exact_sum("__kr").alias("__trows")];
    for (j, m) in measures.iter().enumerate() {
        totals.push(exact_sum(&format!("__kc{j}")).alias(format!("__tc{j}")));
        totals.push(exact_sum(&format!("__ks{j}")).alias(format!("__ts{j}")));
        if m.squares {
            totals.push(exact_sum(&format!("__kq{j}")).alias(format!("__tq{j}")));
        }
    }
    let statistics = aggregate_and_read(session, q, measures, plan, totals, public, bounding, true).await?;
    tracing::debug!("bounded totals computed in the engine");
    Ok(statistics)
}

/// The last step of both plans: one row per group with `totals`
/// (observed groups sorted by key, so ids do not depend on scan order),
/// executed under the job's limits and read into [`GroupStatistics`].
#[allow(clippy::too_many_arguments)]
async fn aggregate_and_read(
    session: &JobSession,
    q: &CheckedQuery,
    measures: &[MeasureColumn],
    plan: LogicalPlanBuilder,
    totals: Vec<Expr>,
    public: Option<Vec<Vec<PublicKey>>>,
    bounding: Bounding,
    units_counted: bool,
) -> Result<GroupStatistics, SqlError> {
    let batches = group_totals(session, q, plan, totals, public.is_some()).await?;
    read_totals(q, measures, &batches, public, bounding, units_counted)
}

/// One row per group with `totals`, executed under the job's limits;
/// observed groups (no public key sets) sorted by key, so that group ids
/// do not depend on scan order.
async fn group_totals(
    session: &JobSession,
    q: &CheckedQuery,
    plan: LogicalPlanBuilder,
    totals: Vec<Expr>,
    public_groups: bool,
) -> Result<Vec<RecordBatch>, SqlError> {
    let internal = |e: DataFusionError| SqlError::Internal(e.strip_backtrace());
    let k = q.group_keys.len();
    let key_cols = || (0..k).map(|i| col(format!("__g{i}"))).collect::<Vec<_>>();
    let mut plan = plan.aggregate(key_cols(), totals).map_err(internal)?;
    if !public_groups && k > 0 {
        plan = plan
            .sort(key_cols().into_iter().map(|c| c.sort(true, true)).collect::<Vec<_>>())
            .map_err(internal)?;
    }
    let plan = plan.build().map_err(internal)?;
    let started = std::time::Instant::now();
    let batches = crate::partials::execute(session, plan).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "group totals executed");
    Ok(batches)
}

/// How [`unbounded_totals`] counts each group's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitCount {
    /// By its rows: no unit has more than one row.
    Rows,
    /// By `COUNT(DISTINCT unit)`.
    Distinct,
    /// Not at all (the release reads no unit counts).
    NotCounted,
}

/// The totals where bounding cannot bind: one aggregation of the rows per
/// group, the same totals as the per-unit plan (every partial kept whole,
/// no row capped). A unit is counted once per group: by its rows when it
/// has at most one row in any group, else by `count(DISTINCT unit)`.
///
/// Grid values are summed in `Int64`, cheaper than the per-unit plan's
/// `Decimal128`; where a group's row count could let such a sum wrap
/// ([`int64_sums_exact`]) the totals are computed again in `Decimal128`, so
/// the totals are exact either way.
async fn unbounded_totals(
    session: &JobSession,
    q: &CheckedQuery,
    measures: &[MeasureColumn],
    rows: LogicalPlanBuilder,
    public: Option<Vec<Vec<PublicKey>>>,
    bounding: Bounding,
    units: UnitCount,
) -> Result<GroupStatistics, SqlError> {
    let units_counted = units != UnitCount::NotCounted;
    let units = match units {
        UnitCount::Rows => count(lit(1i64)),
        UnitCount::Distinct => count_distinct(col("__u")),
        // A placeholder aggregate, zeroed when read.
        UnitCount::NotCounted => count(lit(1i64)),
    };
    // Sums of grid values in `Int64` (DataFusion's sum wraps on overflow),
    // or in `Decimal128` (exact for any row count).
    let totals = |exact: bool| {
        let total = |e: Expr| if exact { sum(cast_expr(e, EXACT_SUM)) } else { sum(e) };
        let mut totals = vec![units.clone().alias("__units"), count(lit(1i64)).alias("__trows")];
        for (j, m) in measures.iter().enumerate() {
            let v = col(format!("__m{j}"));
            totals.push(count(v.clone()).alias(format!("__tc{j}")));
            totals.push(total(v.clone()).alias(format!("__ts{j}")));
            if m.squares {
                totals.push(total(v.clone() * v).alias(format!("__tq{j}")));
            }
        }
        totals
    };
    let public_groups = public.is_some();
    let batches = group_totals(session, q, rows.clone(), totals(false), public_groups).await?;
    let batches = if int64_sums_exact(&batches, q.group_keys.len(), measures, public_groups)? {
        batches
    } else {
        tracing::debug!("a group has enough rows to overflow an Int64 sum: summing again in Decimal128");
        group_totals(session, q, rows, totals(true), public_groups).await?
    };
    let statistics = read_totals(q, measures, &batches, public, bounding, units_counted)?;
    tracing::debug!("totals computed without a per-unit stage");
    Ok(statistics)
}

/// Whether every `Int64` sum in `batches` (laid out as [`unbounded_totals`]
/// aggregates them: keys, units, rows, then per measure count, sum and
/// sum of squares) is exact: a sum of `n` grid values of magnitude at most
/// `max_abs` stays within `n · max_abs` at every step of any summation
/// order, so it cannot wrap when that product fits in `i64` (for squares,
/// `n · max_abs²`). With the grids of [`sandbox_dp::fixed_point`] that holds
/// below 2^43 rows a group for sums and 2^33 for squares.
///
/// With `public_groups`, a row with a NULL key is the group of the rows
/// outside the public sets, which is never read: its sums need not be
/// exact (and its size must not cost a second pass).
fn int64_sums_exact(
    batches: &[RecordBatch],
    keys: usize,
    measures: &[MeasureColumn],
    public_groups: bool,
) -> Result<bool, SqlError> {
    for batch in batches {
        let read = |row: usize| !public_groups || (0..keys).all(|i| batch.column(i).is_valid(row));
        let mut next = keys + 2;
        for m in measures {
            let counts = exact_column(batch.column(next))?;
            let largest = counts
                .iter()
                .enumerate()
                .filter(|(row, _)| read(*row))
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0);
            let max_abs = i128::from(m.grid.max_abs);
            if largest * max_abs > i128::from(i64::MAX)
                || (m.squares && largest * max_abs * max_abs > i128::from(i64::MAX))
            {
                return Ok(false);
            }
            next += if m.squares { 3 } else { 2 };
        }
    }
    Ok(true)
}

/// Whether bounding can change any total, given public bounds on each
/// unit's rows and groups: it cannot when a unit has no more rows than R
/// in one group (all its rows, or a declared key's bound per group), no
/// more rows than L (with a total cap), and no more groups
/// than it may keep (a public key set no larger than G needs no choice).
/// [`Bounding::Exact`] keeps every partial whole. Without a bound on the
/// rows, bounding can bind.
pub fn bounding_can_bind(bounding: Bounding, possible_groups: Option<usize>, unit: UnitBounds) -> bool {
    let Bounding::PerGroup { bounds, .. } = bounding else {
        return false;
    };
    let Some(rows) = unit.rows else { return true };
    let rows_per_group = unit.rows_per_group.map_or(rows, |r| r.min(rows));
    let rows_fit = rows_per_group <= u64::from(bounds.max_rows_per_group);
    let total_fits = bounds.max_rows_per_unit.is_none_or(|l| rows <= u64::from(l));
    let groups_fit = unit.groups.is_some_and(|g| g <= u64::from(bounds.max_groups_per_unit))
        || !needs_choice(bounds, possible_groups);
    !(rows_fit && total_fits && groups_fit)
}

/// `sandbox_choice_priority(unit, keys..)` under the job's choice key.
pub fn choice_priority(key: u64, unit_and_keys: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::from(ChoicePriority::new(key))),
        unit_and_keys,
    ))
}

/// Whether bounding needs a window over each unit's partials: a choice of
/// G groups among more that a unit can reach, or a total cap L.
pub fn needs_window(bounding: Bounding, possible_groups: Option<usize>) -> bool {
    match bounding {
        Bounding::Exact => false,
        Bounding::PerGroup { bounds, .. } => {
            needs_choice(bounds, possible_groups) || bounds.max_rows_per_unit.is_some()
        }
    }
}

/// Whether a unit can reach more groups than it may keep: with a public key
/// set of K groups a unit touches at most K, so G ≥ K needs no choice.
pub fn needs_choice(bounds: ContributionBounds, possible_groups: Option<usize>) -> bool {
    possible_groups.is_none_or(|k| (bounds.max_groups_per_unit as usize) < k)
}

/// The privacy unit of a row of `source` in its own type: the first
/// non-null unit column (they are equal wherever a join put two side by
/// side). Columns of different types are compared as text.
pub fn unit_expr(source: &LogicalPlan, unit_columns: &[Column]) -> Result<Expr, SqlError> {
    let schema = source.schema();
    let types: Vec<DataType> = unit_columns
        .iter()
        .map(|c| {
            schema
                .qualified_field_from_column(c)
                .map(|(_, f)| f.data_type().clone())
                .map_err(|e| SqlError::Internal(e.strip_backtrace()))
        })
        .collect::<Result<_, _>>()?;
    let same_type = types.windows(2).all(|w| w[0] == w[1]);
    let mut exprs: Vec<Expr> = unit_columns
        .iter()
        .cloned()
        .map(Expr::Column)
        .map(|e| if same_type { e } else { cast_expr(e, DataType::Utf8) })
        .collect();
    match exprs.len() {
        0 => Err(SqlError::Internal("no unit".into())),
        1 => Ok(exprs.remove(0)),
        _ => Ok(coalesce(exprs)),
    }
}

/// `key IN (public set)`, compared as the group index compares them:
/// text keys with the set's strings, integer keys with its integers. A key
/// of another type matches nothing (as in the release's group index).
///
/// The literals take the key's own type (`Utf8View` strings for a Parquet
/// string column, `Int32` for an `Int32` key) so that the filter compares
/// each row's key as it is, with no per-row cast; an integer outside the
/// key type's range cannot equal any key and is left out of the list.
/// `__g0 IN set0 AND __g1 IN set1 …` over the projected keys of `q` (see
/// [`in_public_set`]); `None` without keys. For plans whose groups are the
/// public key sets' cross product.
///
/// # Errors
/// Internal only (a key whose type cannot be derived).
pub(crate) fn keys_in_public_sets(q: &CheckedQuery) -> Result<Option<Expr>, SqlError> {
    let schema = q.row_source.schema();
    let mut all: Option<Expr> = None;
    for (i, g) in q.group_keys.iter().enumerate() {
        let key_type = g
            .expr
            .get_type(schema)
            .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
        let member = in_public_set(
            col(format!("__g{i}")),
            &key_type,
            g.public_keys.as_deref().unwrap_or_default(),
        );
        all = Some(match all {
            Some(e) => e.and(member),
            None => member,
        });
    }
    Ok(all)
}

fn in_public_set(key: Expr, key_type: &DataType, set: &[PublicKey]) -> Expr {
    let list: Vec<Expr> = match key_type {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => set
            .iter()
            .filter_map(|k| match k {
                PublicKey::Str(s) => Some(lit(match key_type {
                    DataType::Utf8View => ScalarValue::Utf8View(Some(s.clone())),
                    DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(s.clone())),
                    _ => ScalarValue::Utf8(Some(s.clone())),
                })),
                PublicKey::Int(_) => None,
            })
            .collect(),
        t if t.is_integer() => set
            .iter()
            .filter_map(|k| match k {
                PublicKey::Int(i) => ScalarValue::Int64(Some(*i)).cast_to(t).ok().map(lit),
                PublicKey::Str(_) => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if list.is_empty() {
        return lit(false);
    }
    key.in_list(list, false)
}

pub mod public_set;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod red_team_1201;

#[cfg(test)]
mod red_team_keys;

#[cfg(test)]
mod red_team_null;

#[cfg(test)]
mod red_team_support;

#[cfg(test)]
mod red_team_unithash;
