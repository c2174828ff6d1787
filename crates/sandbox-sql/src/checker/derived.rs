//! Derived measures: expressions inside SUM, AVG, VARIANCE and STDDEV,
//! with bounds derived by interval arithmetic from the policies' bounds.
//!
//! Every measure column read as a value is clamped in the plan to its
//! policy's bounds (`CLAMP(CAST(x AS DOUBLE), lower, upper)`), so the
//! interval derived here holds for every row the engine computes; the
//! aggregated value is clamped once more to the derived interval on its way
//! to the integer grid (`partials::plan_measures`), which is what the
//! sensitivity rests on. Evaluation is total (see `crate::total`): a
//! division by zero, an overflow to infinity or a NaN gives NULL or a value
//! clamped to the bounds, never an error, and a NULL is a missing value.
//!
//! Conditions (`CASE WHEN <condition>`, `NULLIF`'s second argument, what a
//! comparison cast to 0/1 compares) read raw values, as `WHERE` does; only
//! values need bounds. What cannot be bounded — a divisor whose interval
//! contains 0, a function without an interval rule, a column that is not a
//! measure — is refused with `derived-measure-unbounded` or
//! `not-a-measure`, unless the analyst bounds it with `CLAMP(e, lower,
//! upper)` (see `crate::clamp`). An analyst's CLAMP is intersected with
//! the derived bounds: the policies' bounds remain the outer limit; a CLAMP
//! wholly outside them is refused (`clamp-outside-bounds`).

use super::*;
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Case, ExprSchemable, cast as cast_expr};

/// What the analysis of a value gives.
#[derive(Debug, Clone)]
enum Range {
    /// Always NULL (contributes nothing).
    Null,
    Bounded(f64, f64),
    /// No finite bounds; the reason, for the refusal.
    Unbounded(String),
}

#[derive(Debug, Clone)]
struct Node {
    expr: Expr,
    range: Range,
    display: String,
    /// A literal (or an expression of literals only).
    constant: bool,
}

/// A derived measure, ready for the aggregate.
pub(super) struct Derived {
    /// The argument with every measure leaf clamped to its bounds.
    pub expr: Expr,
    pub bounds: (f64, f64),
    pub display: String,
    /// The measure columns read as values.
    pub leaves: BTreeSet<SourceColumn>,
    /// Products or quotients of two measures (could compute squares).
    pub nonlinear: bool,
    /// The analyst's CLAMPs, as written: (lower, upper).
    pub clamps: Vec<(f64, f64)>,
    /// The bounds before the outermost CLAMP (the policies' outer limit),
    /// when the argument is a CLAMP of a bounded expression.
    pub outer: Option<(f64, f64)>,
}

fn unbounded(reason: impl Into<String>) -> Range {
    Range::Unbounded(reason.into())
}

fn hull(xs: &[f64]) -> (f64, f64) {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn bounded(lo: f64, hi: f64, what: &str) -> Range {
    if lo.is_finite() && hi.is_finite() && lo <= hi {
        Range::Bounded(lo, hi)
    } else {
        unbounded(format!("the bounds of {what} overflow"))
    }
}

fn fmt_bound(x: f64) -> String {
    format!("{x}")
}

/// A numeric literal, possibly negated or cast.
fn literal_number(e: &Expr) -> Option<f64> {
    match strip_alias(e) {
        Expr::Literal(v, _) if !v.is_null() && v.data_type().is_numeric() => match v.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(f))) if f.is_finite() => Some(f),
            _ => None,
        },
        Expr::Negative(x) => literal_number(x).map(|v| -v),
        Expr::Cast(c) => literal_number(&c.expr),
        Expr::TryCast(c) => literal_number(&c.expr),
        _ => None,
    }
}

struct Walk<'s> {
    schema: &'s DFSchema,
    facts: &'s [ColumnFact],
    leaves: BTreeSet<SourceColumn>,
    nonlinear: bool,
    clamps: Vec<(f64, f64)>,
}

impl Checker<'_> {
    /// Analyses an aggregate's argument that is not a bare measure column.
    pub(super) fn derived_measure(
        &mut self,
        arg: &Expr,
        schema: &DFSchema,
        facts: &[ColumnFact],
    ) -> Result<Derived, SqlError> {
        let mut w = Walk {
            schema,
            facts,
            leaves: BTreeSet::new(),
            nonlinear: false,
            clamps: Vec::new(),
        };
        let node = self.value(&mut w, arg, 0)?;
        let outer = match strip_alias(arg) {
            Expr::ScalarFunction(f) if f.func.name() == crate::clamp::NAME => f
                .args
                .first()
                .and_then(|inner| {
                    let mut probe = Walk {
                        schema,
                        facts,
                        leaves: BTreeSet::new(),
                        nonlinear: false,
                        clamps: Vec::new(),
                    };
                    self.value(&mut probe, inner, 0).ok()
                })
                .and_then(|n| match n.range {
                    Range::Bounded(lo, hi) => Some((lo, hi)),
                    _ => None,
                }),
            _ => None,
        };
        let (mut lo, mut hi) = match node.range {
            Range::Bounded(lo, hi) => (lo, hi),
            Range::Null => {
                return Err(refuse(
                    "derived-measure-unbounded",
                    format!("{} is always NULL", node.display),
                ));
            }
            Range::Unbounded(reason) => {
                return Err(refuse(
                    "derived-measure-unbounded",
                    format!(
                        "{} cannot be bounded: {reason}; bound it with CLAMP({}, lower, upper)",
                        node.display, node.display
                    ),
                ));
            }
        };
        // A constant still needs an interval with lower < upper for its grid.
        if hi - lo < 1e-9 * lo.abs().max(hi.abs()).max(1.0) {
            lo -= 0.5;
            hi += 0.5;
        }
        Ok(Derived {
            expr: node.expr,
            bounds: (lo, hi),
            display: node.display,
            leaves: w.leaves,
            nonlinear: w.nonlinear,
            clamps: w.clamps,
            outer,
        })
    }

    fn value(&mut self, w: &mut Walk<'_>, e: &Expr, depth: usize) -> Result<Node, SqlError> {
        if depth > MAX_EXPR_DEPTH {
            return Err(refuse("expression-too-large", "an expression nests too deeply"));
        }
        let d = depth + 1;
        Ok(match e {
            Expr::Alias(a) => self.value(w, &a.expr, d)?,
            Expr::Column(c) => {
                let fact = w
                    .schema
                    .maybe_index_of_column(c)
                    .and_then(|i| w.facts.get(i))
                    .ok_or_else(|| SqlError::Internal(format!("column {c} not found in its input")))?;
                if fact.guest.is_some() || fact.guest_derived {
                    return Err(refuse(
                        "derived-measure",
                        "the output of a WebAssembly function must be aggregated as it is, not inside an expression",
                    ));
                }
                let Some(src) = fact.direct.clone() else {
                    return Err(refuse(
                        "derived-measure",
                        format!(
                            "`{}` is computed in a subquery, where it has no bounds; write the expression inside the aggregate",
                            c.name
                        ),
                    ));
                };
                let cp = self.roles_of(&src)?;
                if cp.roles.is_restricted() {
                    return Err(refuse(
                        "identifier-in-aggregate",
                        format!("{src} is an identifier and cannot be aggregated"),
                    ));
                }
                if !cp.has(ColumnRole::Measure) {
                    return Err(refuse(
                        "not-a-measure",
                        format!(
                            "{src} is not a measure; inside an aggregate only measures (with public bounds) are values, other columns may appear in conditions"
                        ),
                    ));
                }
                let Some((lo, hi)) = cp.bounds else {
                    return Err(refuse(
                        "measure-without-bounds",
                        format!("{src} has no public bounds in its policy"),
                    ));
                };
                w.leaves.insert(src.clone());
                Node {
                    expr: crate::clamp::call(cast_expr(e.clone(), DataType::Float64), lo, hi),
                    range: Range::Bounded(lo, hi),
                    display: src.to_string(),
                    constant: false,
                }
            }
            Expr::Literal(v, _) => {
                if v.is_null() {
                    Node {
                        expr: e.clone(),
                        range: Range::Null,
                        display: "NULL".into(),
                        constant: true,
                    }
                } else {
                    let Some(x) = literal_number(e) else {
                        return Err(refuse(
                            "derived-measure",
                            "only numbers can be values inside SUM, AVG, VARIANCE and STDDEV",
                        ));
                    };
                    Node {
                        expr: e.clone(),
                        range: Range::Bounded(x, x),
                        display: fmt_bound(x),
                        constant: true,
                    }
                }
            }
            Expr::Negative(x) => {
                let n = self.value(w, x, d)?;
                Node {
                    expr: Expr::Negative(Box::new(n.expr)),
                    range: match n.range {
                        Range::Bounded(lo, hi) => Range::Bounded(-hi, -lo),
                        other => other,
                    },
                    display: format!("-{}", n.display),
                    constant: n.constant,
                }
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if !matches!(
                    op,
                    Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo
                ) {
                    return Err(refuse(
                        "derived-measure",
                        format!(
                            "`{op}` gives a truth value; cast a condition to a number (CAST(x > 100 AS INT)) or use CASE WHEN … THEN 1 ELSE 0 END"
                        ),
                    ));
                }
                let (l, r) = (self.value(w, left, d)?, self.value(w, right, d)?);
                let display = format!("({} {op} {})", l.display, r.display);
                let range = match (&l.range, &r.range) {
                    (Range::Unbounded(why), _) | (_, Range::Unbounded(why)) => Range::Unbounded(why.clone()),
                    (Range::Null, _) | (_, Range::Null) => Range::Null,
                    (Range::Bounded(a, b), Range::Bounded(c, dd)) => {
                        let (a, b, c, dd) = (*a, *b, *c, *dd);
                        let both_vary = !l.constant && !r.constant;
                        match op {
                            Operator::Plus => bounded(a + c, b + dd, &display),
                            Operator::Minus => bounded(a - dd, b - c, &display),
                            Operator::Multiply => {
                                w.nonlinear |= both_vary;
                                let (lo, hi) = hull(&[a * c, a * dd, b * c, b * dd]);
                                bounded(lo, hi, &display)
                            }
                            Operator::Divide => {
                                w.nonlinear |= !r.constant;
                                if c == 0.0 && dd == 0.0 {
                                    // Division by zero is NULL (total semantics).
                                    Range::Null
                                } else if c > 0.0 || dd < 0.0 {
                                    let (lo, hi) = hull(&[a / c, a / dd, b / c, b / dd]);
                                    bounded(lo, hi, &display)
                                } else {
                                    unbounded(format!(
                                        "the divisor {} lies in [{}, {}], which contains 0",
                                        r.display,
                                        fmt_bound(c),
                                        fmt_bound(dd)
                                    ))
                                }
                            }
                            _ => {
                                // x % y: |result| < max |y| and ≤ |x|, with the sign of x.
                                w.nonlinear |= !r.constant;
                                let m = c.abs().max(dd.abs());
                                bounded(a.min(0.0).max(-m), b.max(0.0).min(m), &display)
                            }
                        }
                    }
                };
                Node {
                    expr: Expr::BinaryExpr(BinaryExpr::new(Box::new(l.expr), *op, Box::new(r.expr))),
                    range,
                    display,
                    constant: l.constant && r.constant,
                }
            }
            Expr::Case(Case {
                expr: operand,
                when_then_expr,
                else_expr,
            }) => {
                let mut branches = Vec::with_capacity(when_then_expr.len());
                let mut ranges = Vec::new();
                for (when, then) in when_then_expr {
                    let t = self.value(w, then, d)?;
                    ranges.push(t.range.clone());
                    branches.push((when.clone(), Box::new(t.expr)));
                }
                let otherwise = match else_expr {
                    Some(x) => {
                        let n = self.value(w, x, d)?;
                        ranges.push(n.range.clone());
                        Some(Box::new(n.expr))
                    }
                    None => None,
                };
                Node {
                    expr: Expr::Case(Case::new(operand.clone(), branches, otherwise)),
                    range: union(&ranges),
                    display: "CASE … END".into(),
                    constant: false,
                }
            }
            Expr::Cast(c) => self.cast(w, e, &c.expr, c.field.data_type(), d)?,
            Expr::TryCast(c) => self.cast(w, e, &c.expr, c.field.data_type(), d)?,
            Expr::ScalarFunction(f) => self.function(w, f, d)?,
            other => {
                return Err(refuse(
                    "derived-measure",
                    format!(
                        "the expression kind `{}` cannot be a value inside SUM, AVG, VARIANCE or STDDEV",
                        other.variant_name()
                    ),
                ));
            }
        })
    }

    /// `CAST(x AS <numeric>)`: a condition cast to 0/1, or a value whose
    /// bounds carry over (widened to whole numbers for integer types).
    fn cast(
        &mut self,
        w: &mut Walk<'_>,
        whole: &Expr,
        inner: &Expr,
        to: &DataType,
        d: usize,
    ) -> Result<Node, SqlError> {
        if !to.is_numeric() {
            return Err(refuse(
                "derived-measure",
                format!("a cast to {to} cannot be a value inside SUM, AVG, VARIANCE or STDDEV"),
            ));
        }
        let inner_type = inner
            .get_type(w.schema)
            .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
        if inner_type == DataType::Boolean {
            return Ok(Node {
                expr: whole.clone(),
                range: Range::Bounded(0.0, 1.0),
                display: format!("CAST({} AS {to})", inner.schema_name()),
                constant: false,
            });
        }
        let n = self.value(w, inner, d)?;
        let range = match n.range {
            Range::Bounded(lo, hi) if to.is_integer() => Range::Bounded(lo.floor(), hi.ceil()),
            other => other,
        };
        let expr = match whole {
            Expr::TryCast(c) => Expr::TryCast(datafusion::logical_expr::TryCast::new_from_field(
                Box::new(n.expr),
                c.field.clone(),
            )),
            Expr::Cast(c) => Expr::Cast(datafusion::logical_expr::Cast::new_from_field(
                Box::new(n.expr),
                c.field.clone(),
            )),
            _ => return Err(SqlError::Internal("cast expected".into())),
        };
        Ok(Node {
            expr,
            range,
            display: n.display,
            constant: n.constant,
        })
    }

    fn function(&mut self, w: &mut Walk<'_>, f: &ScalarFunction, d: usize) -> Result<Node, SqlError> {
        let name = f.func.name().to_ascii_lowercase();
        if self.guests.contains_key(f.func.name()) {
            return Err(refuse(
                "derived-measure",
                "the output of a WebAssembly function must be aggregated as it is, not inside an expression",
            ));
        }
        let rebuilt = |args: Vec<Expr>| Expr::ScalarFunction(ScalarFunction::new_udf(f.func.clone(), args));
        if name == crate::clamp::NAME {
            let [x, lo, hi] = f.args.as_slice() else {
                return Err(refuse(
                    "clamp-bounds",
                    "CLAMP takes three arguments: CLAMP(x, lower, upper)",
                ));
            };
            let (Some(lo), Some(hi)) = (literal_number(lo), literal_number(hi)) else {
                return Err(refuse(
                    "clamp-bounds",
                    "the bounds of CLAMP(x, lower, upper) must be numeric literals",
                ));
            };
            if lo >= hi {
                return Err(refuse(
                    "clamp-bounds",
                    format!("CLAMP needs lower < upper (got {lo} and {hi})"),
                ));
            }
            let n = self.value(w, x, d)?;
            w.clamps.push((lo, hi));
            let display = format!("clamp({}, {}, {})", n.display, fmt_bound(lo), fmt_bound(hi));
            let (a, b) = match n.range {
                Range::Null => (lo, hi),
                Range::Unbounded(_) => (lo, hi),
                Range::Bounded(a, b) => {
                    let (a2, b2) = (a.max(lo), b.min(hi));
                    if a2 >= b2 {
                        return Err(refuse(
                            "clamp-outside-bounds",
                            format!(
                                "CLAMP({}, {lo}, {hi}) leaves no interval inside the bounds [{}, {}] the policies give {}; the owners' bounds are the outer limit",
                                n.display,
                                fmt_bound(a),
                                fmt_bound(b),
                                n.display
                            ),
                        ));
                    }
                    (a2, b2)
                }
            };
            let range = if matches!(n.range, Range::Null) {
                Range::Null
            } else {
                Range::Bounded(a, b)
            };
            return Ok(Node {
                expr: crate::clamp::call(n.expr, a, b),
                range,
                display,
                constant: false,
            });
        }
        let values = |s: &mut Self, w: &mut Walk<'_>, args: &[Expr]| -> Result<Vec<Node>, SqlError> {
            args.iter().map(|a| s.value(w, a, d)).collect()
        };
        let one_range = |n: &Node, g: &dyn Fn(f64, f64) -> (f64, f64)| match &n.range {
            Range::Bounded(lo, hi) => {
                let (a, b) = g(*lo, *hi);
                bounded(a, b, &n.display)
            }
            other => other.clone(),
        };
        let display = |args: &[Node]| {
            format!(
                "{name}({})",
                args.iter().map(|a| a.display.as_str()).collect::<Vec<_>>().join(", ")
            )
        };
        match name.as_str() {
            "abs" | "ceil" | "floor" | "sqrt" | "signum" => {
                let [x] = f.args.as_slice() else {
                    return Err(refuse("derived-measure", format!("{name} takes one argument")));
                };
                let n = self.value(w, x, d)?;
                if name == "sqrt" {
                    w.nonlinear |= !n.constant;
                }
                let range = one_range(&n, &|lo, hi| match name.as_str() {
                    "abs" if lo >= 0.0 => (lo, hi),
                    "abs" if hi <= 0.0 => (-hi, -lo),
                    "abs" => (0.0, (-lo).max(hi)),
                    "ceil" => (lo.ceil(), hi.ceil()),
                    "floor" => (lo.floor(), hi.floor()),
                    "sqrt" => (lo.max(0.0).sqrt(), hi.max(0.0).sqrt()),
                    _ => (-1.0, 1.0),
                });
                let display = display(std::slice::from_ref(&n));
                Ok(Node {
                    expr: rebuilt(vec![n.expr]),
                    range,
                    display,
                    constant: n.constant,
                })
            }
            "round" | "trunc" => {
                let (x, digits) = match f.args.as_slice() {
                    [x] => (x, 0.0),
                    [x, digits] => match literal_number(digits) {
                        Some(v) => (x, v.trunc()),
                        None => {
                            return Err(refuse(
                                "derived-measure",
                                format!("the digits of {name} must be a literal"),
                            ));
                        }
                    },
                    _ => return Err(refuse("derived-measure", format!("{name} takes one or two arguments"))),
                };
                let n = self.value(w, x, d)?;
                // Rounding to `digits` moves a value by less than one step.
                let step = 10f64.powf(-digits);
                let range = one_range(&n, &|lo, hi| ((lo / step).floor() * step, (hi / step).ceil() * step));
                let mut args = vec![n.expr];
                args.extend(f.args.iter().skip(1).cloned());
                Ok(Node {
                    expr: rebuilt(args),
                    range,
                    display: format!("{name}({})", n.display),
                    constant: n.constant,
                })
            }
            "greatest" | "least" | "coalesce" | "nvl" | "ifnull" => {
                if f.args.is_empty() {
                    return Err(refuse("derived-measure", format!("{name} needs arguments")));
                }
                let args = values(self, w, &f.args)?;
                let ranges: Vec<Range> = args.iter().map(|a| a.range.clone()).collect();
                let range = match name.as_str() {
                    // The engine skips NULL arguments, so the result is one
                    // of the arguments: the union of their intervals, made
                    // tighter on the side a never-NULL literal guarantees.
                    "greatest" | "least" => match union(&ranges) {
                        Range::Bounded(lo, hi) => {
                            let literals: Vec<f64> = args
                                .iter()
                                .filter(|a| a.constant)
                                .filter_map(|a| match a.range {
                                    Range::Bounded(x, _) => Some(x),
                                    _ => None,
                                })
                                .collect();
                            if name == "greatest" {
                                let floor = literals.iter().copied().fold(lo, f64::max);
                                Range::Bounded(floor.min(hi), hi)
                            } else {
                                let ceiling = literals.iter().copied().fold(hi, f64::min);
                                Range::Bounded(lo, ceiling.max(lo))
                            }
                        }
                        other => other,
                    },
                    _ => union(&ranges),
                };
                let display = display(&args);
                Ok(Node {
                    expr: rebuilt(args.into_iter().map(|a| a.expr).collect()),
                    range,
                    display,
                    constant: false,
                })
            }
            "nullif" => {
                let [x, y] = f.args.as_slice() else {
                    return Err(refuse("derived-measure", "nullif takes two arguments"));
                };
                let n = self.value(w, x, d)?;
                Ok(Node {
                    expr: rebuilt(vec![n.expr, y.clone()]),
                    range: n.range,
                    display: format!("nullif({}, …)", n.display),
                    constant: false,
                })
            }
            _ => {
                // Any other function: the value cannot be bounded, but a
                // CLAMP around it can still bound it. Its arguments are
                // still values: each measure in them is clamped to its
                // policy's bounds (and recorded), any other column is
                // refused as it is outside a function, and a function of a
                // measure counts as nonlinear (it could square it), so
                // that `CLAMP(power(x, 1), …)` cannot widen the owner's
                // bounds and `CLAMP(power(x, 2), …)` cannot compute a sum
                // of squares the policy does not allow. Literal arguments
                // (a format, an exponent) stay as written.
                let mut args = Vec::with_capacity(f.args.len());
                for a in &f.args {
                    if matches!(strip_alias(a), Expr::Literal(..)) {
                        args.push(a.clone());
                        continue;
                    }
                    let n = self.value(w, a, d)?;
                    w.nonlinear |= !n.constant;
                    // The clamped measure is a Float64; keep the argument's
                    // own type so the function's signature still holds.
                    let original = a
                        .get_type(w.schema)
                        .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
                    args.push(cast_expr(n.expr, original));
                }
                Ok(Node {
                    expr: rebuilt(args),
                    range: unbounded(format!("the function `{name}` has no derived bounds")),
                    display: format!("{name}(…)"),
                    constant: false,
                })
            }
        }
    }
}

/// The union of branch intervals (NULL branches add nothing).
fn union(ranges: &[Range]) -> Range {
    let mut out: Option<(f64, f64)> = None;
    for r in ranges {
        match r {
            Range::Unbounded(why) => return Range::Unbounded(why.clone()),
            Range::Null => {}
            Range::Bounded(lo, hi) => {
                out = Some(match out {
                    None => (*lo, *hi),
                    Some((a, b)) => (a.min(*lo), b.max(*hi)),
                })
            }
        }
    }
    out.map_or(Range::Null, |(lo, hi)| Range::Bounded(lo, hi))
}
