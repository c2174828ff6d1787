//! Post-processing of a released table: HAVING, expressions of aggregates
//! in the SELECT list (ratios, shares, roundings), ORDER BY and LIMIT,
//! evaluated on the released (noisy) values.
//!
//! Everything here is a function of the released rows only — group keys
//! that are public or were chosen by DP partition selection, and noisy or
//! rounded cells — never of the partials or of exact data: this module is
//! given nothing else. So it costs no ε (post-processing), and HAVING
//! cannot change which groups partition selection chose: it only drops
//! rows of the released table.
//!
//! # Intervals of computed outputs
//!
//! A computed output `f(A₁, …, A_k)` of k distinct released aggregates gets a
//! 95% interval for `f` of the exact (bounded) statistics, by interval
//! arithmetic over intervals of the `Aᵢ` that hold simultaneously with
//! probability ≥ 95%:
//!
//! * k = 1: the aggregate's own 95% interval (`100 * AVG(x)`, `ROUND(SUM(x))`);
//! * k ≥ 2: each aggregate's interval at level `1 - 0.05/k` (union bound:
//!   the probability that one of them misses is at most `k · 0.05/k`). This
//!   needs an interval at another level, which the sandbox can compute for
//!   a value that is one discrete Laplace statistic (COUNT, SUM; not
//!   rounded) from its noise scale; for means, variances and rounded values
//!   the interval is unavailable (`ci95: None`).
//!
//! Interval arithmetic is exact for `+ - *`, for `/` when the divisor's
//! interval excludes 0 (else unavailable: a ratio whose denominator may be
//! 0 has no bounded interval), and for the monotone or piecewise-monotone
//! functions `abs round ceil floor trunc sqrt greatest least`. A `CASE`
//! whose conditions read an aggregate, `NULLIF` of aggregates and
//! comparisons have no interval.

use sandbox_model::ReleasedCell;
use sandbox_sql::CheckedQuery;
use sandbox_sql::query::{PostExpr, PostFunction, PostOp, PostStep};
use std::cmp::Ordering;

/// The significance level of every released interval.
const ALPHA: f64 = 0.05;

/// How to take a released aggregate's interval at another level: the value
/// is one discrete Laplace statistic whose noise scale, in grid steps, is
/// the cell's `scale / quantum`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relevel {
    /// The real value of one grid step (1 for counts).
    pub quantum: f64,
    /// Counts are released clamped at 0.
    pub nonnegative: bool,
}

/// A released row: its group's key values and its aggregate cells.
pub struct Row<'a> {
    pub keys: &'a [serde_json::Value],
    pub cells: Vec<ReleasedCell>,
}

/// The outcome of post-processing: the table's rows and notes on what was
/// done.
pub struct Processed {
    pub rows: Vec<Vec<ReleasedCell>>,
    pub notes: Vec<String>,
}

/// Applies the query's post-processing steps to the released rows (in the
/// order given, which the caller makes deterministic) and computes its
/// output columns. `relevel[j]` says how to take aggregate `j`'s interval
/// at another level, when that is possible.
pub fn apply(q: &CheckedQuery, relevel: &[Option<Relevel>], mut rows: Vec<Row<'_>>) -> Processed {
    for step in &q.post {
        match step {
            PostStep::Filter(predicate) => rows.retain(|r| eval(predicate, r) == Val::Bool(true)),
            PostStep::Sort(keys) => {
                // Each row's sort values once, then a stable sort.
                let mut decorated: Vec<(Vec<Val>, Row<'_>)> = rows
                    .into_iter()
                    .map(|r| (keys.iter().map(|k| eval(&k.0, &r)).collect(), r))
                    .collect();
                decorated.sort_by(|a, b| {
                    for (i, (_, asc, nulls_first)) in keys.iter().enumerate() {
                        let o = compare_for_sort(&a.0[i], &b.0[i], *asc, *nulls_first);
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    Ordering::Equal
                });
                rows = decorated.into_iter().map(|(_, r)| r).collect();
            }
            PostStep::Limit { skip, fetch } => {
                rows = rows.into_iter().skip(*skip).take(fetch.unwrap_or(usize::MAX)).collect();
            }
        }
    }
    let mut notes = Vec::new();
    if q.post.iter().any(|s| matches!(s, PostStep::Filter(_))) {
        notes.push("HAVING was applied to the released (noisy) values after release: post-processing, no extra ε; it does not change which groups DP chose".into());
    }
    let shown: Vec<usize> = q.outputs.iter().flat_map(|o| o.expr.aggregates()).collect();
    for (j, a) in q.aggregates.iter().enumerate() {
        if !shown.contains(&j) {
            notes.push(format!(
                "{} was released (with its share of ε) for HAVING or ORDER BY and is not shown",
                a.display
            ));
        }
    }
    let mut combined = false;
    let mut unavailable = Vec::new();
    for o in &q.outputs {
        if matches!(o.expr, PostExpr::Key(_) | PostExpr::Aggregate(_)) {
            continue;
        }
        let k = o.expr.aggregates().len();
        if k >= 2 {
            if o.expr
                .aggregates()
                .iter()
                .all(|j| relevel.get(*j).is_some_and(|r| r.is_some()))
            {
                combined = true;
            } else {
                unavailable.push(o.name.clone());
            }
        }
    }
    if q.outputs
        .iter()
        .any(|o| !matches!(o.expr, PostExpr::Key(_) | PostExpr::Aggregate(_)))
    {
        notes.push("computed outputs were evaluated on the released values after release (post-processing, no extra ε); their intervals are for the same expression of the exact statistics".into());
    }
    if combined {
        notes.push("an output that combines k released values has an interval from each value's interval at level 1 − 0.05/k (union bound), so it holds with probability ≥ 95%".into());
    }
    if !unavailable.is_empty() {
        notes.push(format!(
            "no interval for {}: it combines a mean, variance or rounded value with another released value, whose joint 95% interval the sandbox cannot derive soundly",
            unavailable.join(", ")
        ));
    }
    let out = rows
        .iter()
        .map(|r| q.outputs.iter().map(|o| output_cell(&o.expr, r, relevel)).collect())
        .collect();
    Processed { rows: out, notes }
}

fn output_cell(e: &PostExpr, row: &Row<'_>, relevel: &[Option<Relevel>]) -> ReleasedCell {
    match e {
        PostExpr::Key(i) => ReleasedCell::Key {
            value: row.keys.get(*i).cloned().unwrap_or(serde_json::Value::Null),
        },
        PostExpr::Aggregate(j) => row.cells.get(*j).cloned().unwrap_or(ReleasedCell::Withheld {
            rule: "internal".into(),
        }),
        _ => {
            let deps = e.aggregates();
            let value = match eval(e, row) {
                Val::Num(v) => Some(v),
                _ => None,
            };
            if value.is_none()
                && let Some(rule) = deps.iter().find_map(|j| match row.cells.get(*j) {
                    Some(ReleasedCell::Withheld { rule }) => Some(rule.clone()),
                    _ => None,
                })
            {
                return ReleasedCell::Withheld { rule };
            }
            let intervals = intervals(&deps, row, relevel);
            let ci95 = match (value, intervals) {
                (Some(_), Some(intervals)) => interval(e, row, &intervals)
                    .filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
                    .map(|(lo, hi)| [lo, hi]),
                _ => None,
            };
            ReleasedCell::Derived { value, ci95 }
        }
    }
}

/// Each aggregate's interval for an expression that reads `deps`, at a
/// level such that all hold together with probability ≥ 95%; `None` where
/// that cannot be done.
fn intervals(deps: &[usize], row: &Row<'_>, relevel: &[Option<Relevel>]) -> Option<Vec<Option<(f64, f64)>>> {
    let k = deps.len();
    let mut out = vec![None; row.cells.len()];
    for &j in deps {
        let cell = row.cells.get(j)?;
        out[j] = Some(match cell {
            ReleasedCell::Noisy { ci95, .. } if k == 1 => (ci95[0], ci95[1]),
            ReleasedCell::Noisy {
                value,
                mechanism,
                scale,
                ..
            } => {
                let r = relevel.get(j).copied().flatten()?;
                if r.quantum.is_nan() || r.quantum <= 0.0 {
                    return None;
                }
                // Discrete Laplace (exact) or discrete Gaussian (a bound);
                // any other mechanism has no interval to re-level.
                let w = sandbox_dp::noise::half_width_of(mechanism, scale / r.quantum, ALPHA / k as f64)? as f64
                    * r.quantum;
                let lo = value - w;
                (if r.nonnegative { lo.max(0.0) } else { lo }, value + w)
            }
            _ => return None,
        });
    }
    Some(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Num(f64),
    Text(String),
    Bool(bool),
}

fn num(v: f64) -> Val {
    if v.is_finite() { Val::Num(v) } else { Val::Null }
}

fn key_val(v: &serde_json::Value) -> Val {
    match v {
        serde_json::Value::Null => Val::Null,
        serde_json::Value::Bool(b) => Val::Bool(*b),
        serde_json::Value::Number(n) => n.as_f64().map_or(Val::Null, num),
        serde_json::Value::String(s) => Val::Text(s.clone()),
        other => Val::Text(other.to_string()),
    }
}

fn cell_val(c: Option<&ReleasedCell>) -> Val {
    match c {
        Some(ReleasedCell::Noisy { value, .. } | ReleasedCell::Rounded { value, .. }) => num(*value),
        Some(ReleasedCell::Derived { value: Some(v), .. }) => num(*v),
        Some(ReleasedCell::Key { value }) => key_val(value),
        _ => Val::Null,
    }
}

/// Compares two values of the same type (`None` across types or with NULL).
fn compare(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
        (Val::Text(x), Val::Text(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compare_for_sort(a: &Val, b: &Val, asc: bool, nulls_first: bool) -> Ordering {
    let rank = |v: &Val| match v {
        Val::Null => 0,
        Val::Bool(_) => 1,
        Val::Num(_) => 2,
        Val::Text(_) => 3,
    };
    match (a, b) {
        (Val::Null, Val::Null) => Ordering::Equal,
        (Val::Null, _) => {
            if nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (_, Val::Null) => {
            if nulls_first {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        _ => {
            let o = compare(a, b).unwrap_or_else(|| rank(a).cmp(&rank(b)));
            if asc { o } else { o.reverse() }
        }
    }
}

fn truth(v: &Val) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(*b),
        _ => None,
    }
}

fn round_to(x: f64, digits: f64, f: fn(f64) -> f64) -> f64 {
    let scale = 10f64.powi(digits as i32);
    f(x * scale) / scale
}

fn digits(args: &[PostExpr]) -> f64 {
    match args.get(1) {
        Some(PostExpr::Number(d)) => d.trunc(),
        _ => 0.0,
    }
}

/// The value of an expression on a released row (SQL semantics; NULL where
/// the engine would fail: division by zero, a non-finite result, a type
/// mismatch).
fn eval(e: &PostExpr, row: &Row<'_>) -> Val {
    let go = |x: &PostExpr| eval(x, row);
    match e {
        PostExpr::Key(i) => row.keys.get(*i).map_or(Val::Null, key_val),
        PostExpr::Aggregate(j) => cell_val(row.cells.get(*j)),
        PostExpr::Number(n) => num(*n),
        PostExpr::Text(s) => Val::Text(s.clone()),
        PostExpr::Bool(b) => Val::Bool(*b),
        PostExpr::Null => Val::Null,
        PostExpr::Negate(x) => match go(x) {
            Val::Num(v) => num(-v),
            _ => Val::Null,
        },
        PostExpr::Not(x) => match go(x) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Null,
        },
        PostExpr::IsNull(x) => Val::Bool(go(x) == Val::Null),
        PostExpr::Binary(l, op, r) => {
            let (a, b) = (go(l), go(r));
            match op {
                PostOp::And => match (truth(&a), truth(&b)) {
                    (Some(false), _) | (_, Some(false)) => Val::Bool(false),
                    (Some(true), Some(true)) => Val::Bool(true),
                    _ => Val::Null,
                },
                PostOp::Or => match (truth(&a), truth(&b)) {
                    (Some(true), _) | (_, Some(true)) => Val::Bool(true),
                    (Some(false), Some(false)) => Val::Bool(false),
                    _ => Val::Null,
                },
                PostOp::Add | PostOp::Subtract | PostOp::Multiply | PostOp::Divide => match (a, b) {
                    (Val::Num(x), Val::Num(y)) => match op {
                        PostOp::Add => num(x + y),
                        PostOp::Subtract => num(x - y),
                        PostOp::Multiply => num(x * y),
                        _ if y == 0.0 => Val::Null,
                        _ => num(x / y),
                    },
                    _ => Val::Null,
                },
                _ => match compare(&a, &b) {
                    None => Val::Null,
                    Some(o) => Val::Bool(match op {
                        PostOp::Eq => o == Ordering::Equal,
                        PostOp::NotEq => o != Ordering::Equal,
                        PostOp::Lt => o == Ordering::Less,
                        PostOp::LtEq => o != Ordering::Greater,
                        PostOp::Gt => o == Ordering::Greater,
                        _ => o != Ordering::Less,
                    }),
                },
            }
        }
        PostExpr::Function(f, args) => {
            let first = || args.first().map_or(Val::Null, go);
            let unary = |g: &dyn Fn(f64) -> f64| match first() {
                Val::Num(v) => num(g(v)),
                _ => Val::Null,
            };
            match f {
                PostFunction::Abs => unary(&f64::abs),
                PostFunction::Round => unary(&|v| round_to(v, digits(args), f64::round)),
                PostFunction::Trunc => unary(&|v| round_to(v, digits(args), f64::trunc)),
                PostFunction::Ceil => unary(&f64::ceil),
                PostFunction::Floor => unary(&f64::floor),
                PostFunction::Sqrt => match first() {
                    Val::Num(v) if v >= 0.0 => num(v.sqrt()),
                    _ => Val::Null,
                },
                PostFunction::Greatest | PostFunction::Least => {
                    // NULLs are skipped (as the engine does).
                    let want = if *f == PostFunction::Greatest {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    };
                    let mut best = Val::Null;
                    for v in args.iter().map(go).filter(|v| *v != Val::Null) {
                        best = match &best {
                            Val::Null => v,
                            b => match compare(&v, b) {
                                Some(o) if o == want => v,
                                Some(_) => best,
                                None => return Val::Null,
                            },
                        };
                    }
                    best
                }
                PostFunction::Coalesce => args.iter().map(go).find(|v| *v != Val::Null).unwrap_or(Val::Null),
                PostFunction::NullIf => {
                    let a = first();
                    let b = args.get(1).map_or(Val::Null, go);
                    if compare(&a, &b) == Some(Ordering::Equal) {
                        Val::Null
                    } else {
                        a
                    }
                }
            }
        }
        PostExpr::Case {
            operand,
            branches,
            otherwise,
        } => {
            let subject = operand.as_deref().map(go);
            for (w, t) in branches {
                let hit = match &subject {
                    Some(s) => compare(s, &go(w)) == Some(Ordering::Equal),
                    None => go(w) == Val::Bool(true),
                };
                if hit {
                    return go(t);
                }
            }
            otherwise.as_deref().map_or(Val::Null, go)
        }
        PostExpr::InList { expr, list, negated } => {
            let x = go(expr);
            if x == Val::Null {
                return Val::Null;
            }
            let mut saw_null = false;
            for v in list.iter().map(go) {
                match compare(&x, &v) {
                    Some(Ordering::Equal) => return Val::Bool(!negated),
                    None if v == Val::Null => saw_null = true,
                    _ => {}
                }
            }
            if saw_null { Val::Null } else { Val::Bool(*negated) }
        }
    }
}

/// An interval enclosing the expression of the exact statistics whenever
/// each aggregate's interval in `aggs` covers its exact value; `None` where
/// no such interval can be given.
fn interval(e: &PostExpr, row: &Row<'_>, aggs: &[Option<(f64, f64)>]) -> Option<(f64, f64)> {
    let go = |x: &PostExpr| interval(x, row, aggs);
    let hull = |xs: &[f64]| {
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    match e {
        PostExpr::Key(i) => match row.keys.get(*i).map(key_val) {
            Some(Val::Num(v)) => Some((v, v)),
            _ => None,
        },
        PostExpr::Aggregate(j) => aggs.get(*j).copied().flatten(),
        PostExpr::Number(n) => Some((*n, *n)),
        PostExpr::Negate(x) => go(x).map(|(lo, hi)| (-hi, -lo)),
        PostExpr::Binary(l, op, r) => {
            let ((a, b), (c, d)) = (go(l)?, go(r)?);
            match op {
                PostOp::Add => Some((a + c, b + d)),
                PostOp::Subtract => Some((a - d, b - c)),
                PostOp::Multiply => Some(hull(&[a * c, a * d, b * c, b * d])),
                PostOp::Divide if c > 0.0 || d < 0.0 => Some(hull(&[a / c, a / d, b / c, b / d])),
                _ => None,
            }
        }
        PostExpr::Function(f, args) => {
            let (lo, hi) = go(args.first()?)?;
            let mono = |g: &dyn Fn(f64) -> f64| Some((g(lo), g(hi)));
            match f {
                PostFunction::Abs if lo >= 0.0 => Some((lo, hi)),
                PostFunction::Abs if hi <= 0.0 => Some((-hi, -lo)),
                PostFunction::Abs => Some((0.0, (-lo).max(hi))),
                PostFunction::Round => mono(&|v| round_to(v, digits(args), f64::round)),
                PostFunction::Trunc => mono(&|v| round_to(v, digits(args), f64::trunc)),
                PostFunction::Ceil => mono(&f64::ceil),
                PostFunction::Floor => mono(&f64::floor),
                PostFunction::Sqrt if hi >= 0.0 => Some((lo.max(0.0).sqrt(), hi.sqrt())),
                PostFunction::Greatest | PostFunction::Least => {
                    let all: Vec<(f64, f64)> = args.iter().map(go).collect::<Option<_>>()?;
                    let pick = |xs: Vec<f64>| {
                        if *f == PostFunction::Greatest {
                            xs.into_iter().fold(f64::NEG_INFINITY, f64::max)
                        } else {
                            xs.into_iter().fold(f64::INFINITY, f64::min)
                        }
                    };
                    Some((
                        pick(all.iter().map(|x| x.0).collect()),
                        pick(all.iter().map(|x| x.1).collect()),
                    ))
                }
                // The first argument is chosen when its value is not NULL,
                // and its interval is only defined then.
                PostFunction::Coalesce if !matches!(eval(&args[0], row), Val::Null) => Some((lo, hi)),
                _ => None,
            }
        }
        // A branch chosen by conditions on keys only is the same branch for
        // the exact statistics.
        PostExpr::Case {
            operand,
            branches,
            otherwise,
        } => {
            let reads_aggregates = |x: &PostExpr| !x.aggregates().is_empty();
            if operand.as_deref().is_some_and(reads_aggregates) || branches.iter().any(|(w, _)| reads_aggregates(w)) {
                return None;
            }
            let subject = operand.as_deref().map(|o| eval(o, row));
            for (w, t) in branches {
                let hit = match &subject {
                    Some(s) => compare(s, &eval(w, row)) == Some(Ordering::Equal),
                    None => eval(w, row) == Val::Bool(true),
                };
                if hit {
                    return go(t);
                }
            }
            otherwise.as_deref().and_then(go)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(value: f64, scale: f64, ci: (f64, f64)) -> ReleasedCell {
        ReleasedCell::Noisy {
            value,
            mechanism: "discrete_laplace".into(),
            scale,
            ci95: [ci.0, ci.1],
        }
    }

    fn agg(j: usize) -> Box<PostExpr> {
        Box::new(PostExpr::Aggregate(j))
    }

    #[test]
    fn a_ratio_of_two_laplace_values_takes_each_at_97_5_percent() {
        let keys = [serde_json::Value::from("a")];
        // SUM with scale 10 (quantum 0.5), COUNT with scale 4.
        let row = Row {
            keys: &keys,
            cells: vec![noisy(1000.0, 10.0, (0.0, 0.0)), noisy(100.0, 4.0, (0.0, 0.0))],
        };
        let relevel = [
            Some(Relevel {
                quantum: 0.5,
                nonnegative: false,
            }),
            Some(Relevel {
                quantum: 1.0,
                nonnegative: true,
            }),
        ];
        let ratio = PostExpr::Binary(agg(0), PostOp::Divide, agg(1));
        let ReleasedCell::Derived {
            value: Some(v),
            ci95: Some(ci),
        } = output_cell(&ratio, &row, &relevel)
        else {
            panic!("a ratio with an interval");
        };
        assert_eq!(v, 10.0);
        let ws = sandbox_dp::noise::half_width(20.0, 0.025) as f64 * 0.5;
        let wc = sandbox_dp::noise::half_width(4.0, 0.025) as f64;
        assert_eq!(ci, [(1000.0 - ws) / (100.0 + wc), (1000.0 + ws) / (100.0 - wc)]);
        // One value alone keeps its own 95% interval.
        let scaled = PostExpr::Binary(Box::new(PostExpr::Number(100.0)), PostOp::Multiply, agg(1));
        let row = Row {
            keys: &keys,
            cells: vec![noisy(0.5, 0.1, (0.3, 0.7)), noisy(0.25, 0.1, (0.2, 0.3))],
        };
        assert_eq!(
            output_cell(&scaled, &row, &[None, None]),
            ReleasedCell::Derived {
                value: Some(25.0),
                ci95: Some([20.0, 30.0])
            }
        );
        // Two means: no sound joint interval from their 95% boxes.
        let difference = PostExpr::Binary(agg(0), PostOp::Subtract, agg(1));
        assert_eq!(
            output_cell(&difference, &row, &[None, None]),
            ReleasedCell::Derived {
                value: Some(0.25),
                ci95: None
            }
        );
    }

    #[test]
    fn a_divisor_interval_through_zero_has_no_interval_and_division_by_zero_is_null() {
        let keys = [serde_json::Value::from("a")];
        let relevel = [Some(Relevel {
            quantum: 1.0,
            nonnegative: true,
        }); 2];
        let ratio = PostExpr::Binary(agg(0), PostOp::Divide, agg(1));
        let row = Row {
            keys: &keys,
            cells: vec![noisy(10.0, 5.0, (0.0, 20.0)), noisy(2.0, 5.0, (0.0, 12.0))],
        };
        assert_eq!(
            output_cell(&ratio, &row, &relevel),
            ReleasedCell::Derived {
                value: Some(5.0),
                ci95: None
            }
        );
        let row = Row {
            keys: &keys,
            cells: vec![noisy(10.0, 5.0, (0.0, 20.0)), noisy(0.0, 5.0, (0.0, 12.0))],
        };
        assert_eq!(
            output_cell(&ratio, &row, &relevel),
            ReleasedCell::Derived {
                value: None,
                ci95: None
            }
        );
        let row = Row {
            keys: &keys,
            cells: vec![
                noisy(10.0, 5.0, (0.0, 20.0)),
                ReleasedCell::Withheld {
                    rule: "k-threshold".into(),
                },
            ],
        };
        assert_eq!(
            output_cell(&ratio, &row, &relevel),
            ReleasedCell::Withheld {
                rule: "k-threshold".into()
            }
        );
    }

    /// The union-bound interval of a ratio of two noisy counts covers the
    /// ratio of the exact counts in at least 95% of releases.
    #[test]
    fn ratio_intervals_cover_at_least_95_percent() {
        let (a, b) = (300i128, 1200i128);
        let (sa, sb) = (20.0, 20.0);
        let ma = sandbox_dp::noise::DiscreteLaplace::calibrated(20, 1.0).expect("mechanism");
        let mb = sandbox_dp::noise::DiscreteLaplace::calibrated(20, 1.0).expect("mechanism");
        let relevel = [Some(Relevel {
            quantum: 1.0,
            nonnegative: true,
        }); 2];
        let keys = [serde_json::Value::Null];
        let ratio = PostExpr::Binary(agg(0), PostOp::Divide, agg(1));
        let n = 3_000;
        let mut covered = 0;
        for _ in 0..n {
            let va = ma.privatize(a).expect("noise").max(0) as f64;
            let vb = mb.privatize(b).expect("noise").max(0) as f64;
            let row = Row {
                keys: &keys,
                cells: vec![noisy(va, sa, (0.0, 0.0)), noisy(vb, sb, (0.0, 0.0))],
            };
            if let ReleasedCell::Derived { ci95: Some(ci), .. } = output_cell(&ratio, &row, &relevel)
                && ci[0] <= 0.25
                && 0.25 <= ci[1]
            {
                covered += 1;
            }
        }
        // 6 standard errors of a binomial at p = 0.95 below 0.95.
        let floor = 0.95 - 6.0 * (0.95f64 * 0.05 / n as f64).sqrt();
        assert!(covered as f64 / n as f64 >= floor, "coverage {covered}/{n}");
    }

    #[test]
    fn three_valued_logic_and_sorting_follow_sql() {
        let keys = [serde_json::Value::from("b"), serde_json::Value::from(3)];
        let row = Row {
            keys: &keys,
            cells: vec![ReleasedCell::Withheld { rule: "k".into() }],
        };
        let gt = PostExpr::Binary(agg(0), PostOp::Gt, Box::new(PostExpr::Number(1.0)));
        assert_eq!(eval(&gt, &row), Val::Null, "a withheld value compares as NULL");
        let or = PostExpr::Binary(Box::new(gt.clone()), PostOp::Or, Box::new(PostExpr::Bool(true)));
        assert_eq!(eval(&or, &row), Val::Bool(true));
        let inlist = PostExpr::InList {
            expr: Box::new(PostExpr::Key(0)),
            list: vec![PostExpr::Text("a".into()), PostExpr::Null],
            negated: false,
        };
        assert_eq!(eval(&inlist, &row), Val::Null);
        assert_eq!(
            compare_for_sort(&Val::Null, &Val::Num(1.0), true, false),
            Ordering::Greater,
            "NULLS LAST"
        );
        assert_eq!(
            compare_for_sort(&Val::Num(2.0), &Val::Num(1.0), false, true),
            Ordering::Less
        );
    }
}
