//! The plan nodes above the aggregation — HAVING, the SELECT list,
//! ORDER BY, LIMIT, subquery aliases — as post-processing of the released
//! row.
//!
//! Each node's expressions are translated into [`PostExpr`]s over the
//! released row (group keys and aggregates), inlining the projections in
//! between, so the runtime evaluates them on noisy values after release and
//! nothing above the aggregation ever runs on exact data. Only expressions
//! with a meaning on released numbers are accepted: arithmetic,
//! comparisons, logic, `CASE`, `IN`, `BETWEEN`, numeric casts and a few
//! functions (`abs round ceil floor trunc sqrt greatest least coalesce
//! nullif`); anything else is refused by name.

use super::*;
use crate::query::{OutputColumn, PostExpr, PostFunction, PostOp, PostStep};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{Aggregate, Case};

/// The most nodes the inlined expressions of one query may have (inlining
/// repeats a column's expression at each use).
const MAX_POST_NODES: usize = 20_000;

/// The static type of a post-processing value, for the rule that computed
/// outputs are numbers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Other,
}

fn post_refusal(message: impl Into<String>) -> SqlError {
    refuse("post-aggregation-expression", message)
}

/// Translates the output chain (`chain`, top first) above `aggregate`.
pub(super) fn translate_chain(
    chain: &[&LogicalPlan],
    aggregate: &Aggregate,
    aggregates: &[AggregateRequest],
) -> Result<(Vec<OutputColumn>, Vec<PostStep>), SqlError> {
    let n_groups = aggregate.group_expr.len();
    let key_kinds: Vec<Kind> = aggregate
        .schema
        .fields()
        .iter()
        .take(n_groups)
        .map(|f| {
            if f.data_type().is_numeric() {
                Kind::Number
            } else {
                Kind::Other
            }
        })
        .collect();
    let translator = Translator { key_kinds };
    // The current node's columns as expressions over the released row.
    let mut columns: Vec<(String, PostExpr)> = aggregate
        .schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let e = if i < n_groups {
                PostExpr::Key(i)
            } else {
                PostExpr::Aggregate(i - n_groups)
            };
            (f.name().clone(), e)
        })
        .collect();
    let mut steps = Vec::new();
    let mut below: &DFSchema = aggregate.schema.as_ref();
    for node in chain.iter().rev() {
        match node {
            LogicalPlan::Projection(p) => {
                let mut next = Vec::with_capacity(p.expr.len());
                for e in &p.expr {
                    let name = match e {
                        Expr::Alias(Alias { name, .. }) => name.clone(),
                        Expr::Column(c) => c.name.clone(),
                        other => other.schema_name().to_string(),
                    };
                    next.push((name, translator.expr(e, below, &columns, 0)?));
                }
                columns = next;
                below = p.schema.as_ref();
            }
            LogicalPlan::Filter(f) => {
                steps.push(PostStep::Filter(translator.expr(&f.predicate, below, &columns, 0)?));
                below = f.input.schema().as_ref();
            }
            LogicalPlan::Sort(s) => {
                let mut keys = Vec::with_capacity(s.expr.len());
                for se in &s.expr {
                    keys.push((translator.expr(&se.expr, below, &columns, 0)?, se.asc, se.nulls_first));
                }
                steps.push(PostStep::Sort(keys));
                if let Some(fetch) = s.fetch {
                    steps.push(PostStep::Limit {
                        skip: 0,
                        fetch: Some(fetch),
                    });
                }
                below = s.input.schema().as_ref();
            }
            LogicalPlan::Limit(l) => {
                let literal = |e: Option<&Expr>, what: &str| -> Result<Option<usize>, SqlError> {
                    match e {
                        None => Ok(None),
                        Some(Expr::Literal(ScalarValue::Int64(Some(n)), _)) if *n >= 0 => Ok(Some(*n as usize)),
                        Some(_) => Err(refuse(
                            "limit-expression",
                            format!("{what} must be a non-negative integer literal"),
                        )),
                    }
                };
                let fetch = literal(l.fetch.as_deref(), "LIMIT")?;
                let skip = literal(l.skip.as_deref(), "OFFSET")?.unwrap_or(0);
                steps.push(PostStep::Limit { skip, fetch });
                below = l.input.schema().as_ref();
            }
            LogicalPlan::SubqueryAlias(s) => below = s.schema.as_ref(),
            _ => return Err(SqlError::Internal("unexpected node in the output chain".into())),
        }
    }
    let mut nodes = 0usize;
    let mut outputs = Vec::with_capacity(columns.len());
    for (name, expr) in columns {
        nodes += expr.size();
        if !matches!(expr, PostExpr::Key(_) | PostExpr::Aggregate(_)) && translator.kind(&expr) != Kind::Number {
            return Err(post_refusal(format!(
                "output `{name}` is not a number; computed outputs must be numbers (arithmetic on aggregates and numeric keys)"
            )));
        }
        let display = display(&expr, aggregate, aggregates);
        outputs.push(OutputColumn { name, expr, display });
    }
    for s in &steps {
        nodes += match s {
            PostStep::Filter(e) => e.size(),
            PostStep::Sort(keys) => keys.iter().map(|k| k.0.size()).sum(),
            PostStep::Limit { .. } => 0,
        };
    }
    if nodes > MAX_POST_NODES {
        return Err(refuse(
            "expression-too-large",
            "the expressions above the aggregation are too large once subqueries are inlined",
        ));
    }
    Ok((outputs, steps))
}

struct Translator {
    key_kinds: Vec<Kind>,
}

impl Translator {
    fn expr(
        &self,
        e: &Expr,
        schema: &DFSchema,
        columns: &[(String, PostExpr)],
        depth: usize,
    ) -> Result<PostExpr, SqlError> {
        if depth > MAX_EXPR_DEPTH {
            return Err(refuse("expression-too-large", "an expression nests too deeply"));
        }
        let d = depth + 1;
        let go = |x: &Expr| self.expr(x, schema, columns, d);
        let boxed = |x: &Expr| go(x).map(Box::new);
        Ok(match e {
            Expr::Alias(a) => go(&a.expr)?,
            Expr::Column(c) => {
                let i = schema
                    .maybe_index_of_column(c)
                    .ok_or_else(|| SqlError::Internal(format!("output column {c} not found")))?;
                columns
                    .get(i)
                    .map(|c| c.1.clone())
                    .ok_or_else(|| SqlError::Internal("output chain out of step with its schema".into()))?
            }
            Expr::Literal(v, _) => literal(v)?,
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let op = match op {
                    Operator::Plus => PostOp::Add,
                    Operator::Minus => PostOp::Subtract,
                    Operator::Multiply => PostOp::Multiply,
                    Operator::Divide => PostOp::Divide,
                    Operator::Eq => PostOp::Eq,
                    Operator::NotEq => PostOp::NotEq,
                    Operator::Lt => PostOp::Lt,
                    Operator::LtEq => PostOp::LtEq,
                    Operator::Gt => PostOp::Gt,
                    Operator::GtEq => PostOp::GtEq,
                    Operator::And => PostOp::And,
                    Operator::Or => PostOp::Or,
                    other => {
                        return Err(post_refusal(format!(
                            "the operator `{other}` is not available on released values"
                        )));
                    }
                };
                PostExpr::Binary(boxed(left)?, op, boxed(right)?)
            }
            Expr::Negative(x) => PostExpr::Negate(boxed(x)?),
            Expr::Not(x) => PostExpr::Not(boxed(x)?),
            Expr::IsNull(x) => PostExpr::IsNull(boxed(x)?),
            Expr::IsNotNull(x) => PostExpr::Not(Box::new(PostExpr::IsNull(boxed(x)?))),
            Expr::Between(b) => {
                let x = go(&b.expr)?;
                let within = PostExpr::Binary(
                    Box::new(PostExpr::Binary(Box::new(x.clone()), PostOp::GtEq, boxed(&b.low)?)),
                    PostOp::And,
                    Box::new(PostExpr::Binary(Box::new(x), PostOp::LtEq, boxed(&b.high)?)),
                );
                if b.negated {
                    PostExpr::Not(Box::new(within))
                } else {
                    within
                }
            }
            Expr::InList(l) => PostExpr::InList {
                expr: boxed(&l.expr)?,
                list: l.list.iter().map(go).collect::<Result<_, _>>()?,
                negated: l.negated,
            },
            Expr::Case(Case {
                expr,
                when_then_expr,
                else_expr,
            }) => PostExpr::Case {
                operand: expr.as_deref().map(boxed).transpose()?,
                branches: when_then_expr
                    .iter()
                    .map(|(w, t)| Ok((go(w)?, go(t)?)))
                    .collect::<Result<_, SqlError>>()?,
                otherwise: else_expr.as_deref().map(boxed).transpose()?,
            },
            Expr::Cast(c) => cast(go(&c.expr)?, c.field.data_type())?,
            Expr::TryCast(c) => cast(go(&c.expr)?, c.field.data_type())?,
            Expr::ScalarFunction(f) => {
                let name = f.func.name().to_ascii_lowercase();
                let function = match name.as_str() {
                    "abs" => PostFunction::Abs,
                    "round" => PostFunction::Round,
                    "ceil" => PostFunction::Ceil,
                    "floor" => PostFunction::Floor,
                    "trunc" => PostFunction::Trunc,
                    "sqrt" => PostFunction::Sqrt,
                    "greatest" => PostFunction::Greatest,
                    "least" => PostFunction::Least,
                    "coalesce" | "nvl" | "ifnull" => PostFunction::Coalesce,
                    "nullif" => PostFunction::NullIf,
                    _ => {
                        return Err(post_refusal(format!(
                            "function `{name}` is not available on released values (use abs, round, ceil, floor, trunc, sqrt, greatest, least, coalesce, nullif)"
                        )));
                    }
                };
                let args: Vec<PostExpr> = f.args.iter().map(go).collect::<Result<_, _>>()?;
                let arity_ok = match function {
                    PostFunction::Round | PostFunction::Trunc => matches!(args.len(), 1 | 2),
                    PostFunction::Greatest | PostFunction::Least | PostFunction::Coalesce => !args.is_empty(),
                    PostFunction::NullIf => args.len() == 2,
                    _ => args.len() == 1,
                };
                if !arity_ok {
                    return Err(post_refusal(format!("wrong number of arguments to `{name}`")));
                }
                if matches!(function, PostFunction::Round | PostFunction::Trunc)
                    && args.len() == 2
                    && !matches!(args[1], PostExpr::Number(_))
                {
                    return Err(post_refusal(format!("the digits of `{name}` must be a literal")));
                }
                PostExpr::Function(function, args)
            }
            Expr::AggregateFunction(_) => {
                return Err(SqlError::Internal("an aggregate above the aggregation".into()));
            }
            Expr::WindowFunction(_) => {
                return Err(refuse(
                    "window-function",
                    "window functions are not allowed; compute shares on the released result",
                ));
            }
            Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::ScalarSubquery(_)
            | Expr::SetComparison(_)
            | Expr::OuterReferenceColumn(..) => {
                return Err(refuse(
                    "subquery-expression",
                    "subqueries inside expressions are not allowed",
                ));
            }
            other => {
                return Err(post_refusal(format!(
                    "the expression kind `{}` is not available on released values",
                    other.variant_name()
                )));
            }
        })
    }

    fn kind(&self, e: &PostExpr) -> Kind {
        match e {
            PostExpr::Key(i) => self.key_kinds.get(*i).copied().unwrap_or(Kind::Other),
            PostExpr::Aggregate(_) | PostExpr::Number(_) | PostExpr::Null | PostExpr::Negate(_) => Kind::Number,
            PostExpr::Binary(_, PostOp::Add | PostOp::Subtract | PostOp::Multiply | PostOp::Divide, _) => Kind::Number,
            PostExpr::Function(PostFunction::Greatest | PostFunction::Least | PostFunction::Coalesce, args) => {
                if args.iter().all(|a| self.kind(a) == Kind::Number) {
                    Kind::Number
                } else {
                    Kind::Other
                }
            }
            PostExpr::Function(PostFunction::NullIf, args) => args.first().map_or(Kind::Other, |a| self.kind(a)),
            PostExpr::Function(..) => Kind::Number,
            PostExpr::Case {
                branches, otherwise, ..
            } => {
                let all = branches
                    .iter()
                    .map(|b| &b.1)
                    .chain(otherwise.as_deref())
                    .all(|t| self.kind(t) == Kind::Number);
                if all { Kind::Number } else { Kind::Other }
            }
            _ => Kind::Other,
        }
    }
}

fn literal(v: &ScalarValue) -> Result<PostExpr, SqlError> {
    if v.is_null() {
        return Ok(PostExpr::Null);
    }
    Ok(match v {
        ScalarValue::Boolean(Some(b)) => PostExpr::Bool(*b),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            PostExpr::Text(s.clone())
        }
        ScalarValue::Date32(Some(_)) | ScalarValue::Date64(Some(_)) => PostExpr::Text(v.to_string()),
        other if other.data_type().is_numeric() => {
            let f = other
                .cast_to(&DataType::Float64)
                .ok()
                .and_then(|c| match c {
                    ScalarValue::Float64(Some(f)) if f.is_finite() => Some(f),
                    _ => None,
                })
                .ok_or_else(|| post_refusal("a numeric literal above the aggregation is out of range"))?;
            PostExpr::Number(f)
        }
        other => {
            return Err(post_refusal(format!(
                "literals of type {} are not available on released values",
                other.data_type()
            )));
        }
    })
}

/// A cast of a released value: to a floating or decimal type, the value
/// itself; to an integer type, truncation toward zero (as the engine
/// does); to a string type, only of a group key that is passed through.
fn cast(x: PostExpr, to: &DataType) -> Result<PostExpr, SqlError> {
    if to.is_floating() || matches!(to, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        Ok(x)
    } else if to.is_integer() {
        Ok(PostExpr::Function(PostFunction::Trunc, vec![x]))
    } else if matches!(to, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) && matches!(x, PostExpr::Key(_)) {
        Ok(x)
    } else {
        Err(post_refusal(format!(
            "casts of released values to {to} are not available; cast to a numeric type"
        )))
    }
}

/// The human form of an output expression, with aggregates by their
/// display names and keys by their output names.
fn display(e: &PostExpr, aggregate: &Aggregate, aggregates: &[AggregateRequest]) -> String {
    let key = |i: usize| {
        aggregate
            .schema
            .fields()
            .get(i)
            .map(|f| f.name().clone())
            .unwrap_or_default()
    };
    let d = |x: &PostExpr| display(x, aggregate, aggregates);
    let paren = |x: &PostExpr| match x {
        PostExpr::Binary(..) => format!("({})", d(x)),
        _ => d(x),
    };
    match e {
        PostExpr::Key(i) => key(*i),
        PostExpr::Aggregate(j) => aggregates.get(*j).map(|a| a.display.clone()).unwrap_or_default(),
        PostExpr::Number(n) => format!("{n}"),
        PostExpr::Text(s) => format!("'{s}'"),
        PostExpr::Bool(b) => b.to_string(),
        PostExpr::Null => "NULL".into(),
        PostExpr::Negate(x) => format!("-{}", paren(x)),
        PostExpr::Not(x) => format!("NOT {}", paren(x)),
        PostExpr::IsNull(x) => format!("{} IS NULL", paren(x)),
        PostExpr::Binary(l, op, r) => {
            let op = match op {
                PostOp::Add => "+",
                PostOp::Subtract => "-",
                PostOp::Multiply => "*",
                PostOp::Divide => "/",
                PostOp::Eq => "=",
                PostOp::NotEq => "<>",
                PostOp::Lt => "<",
                PostOp::LtEq => "<=",
                PostOp::Gt => ">",
                PostOp::GtEq => ">=",
                PostOp::And => "AND",
                PostOp::Or => "OR",
            };
            format!("{} {op} {}", paren(l), paren(r))
        }
        PostExpr::Function(f, args) => {
            let name = format!("{f:?}").to_lowercase();
            let args: Vec<String> = args.iter().map(d).collect();
            format!("{name}({})", args.join(", "))
        }
        PostExpr::Case { .. } => "CASE … END".into(),
        PostExpr::InList { expr, list, negated } => {
            let list: Vec<String> = list.iter().map(d).collect();
            format!(
                "{} {}IN ({})",
                paren(expr),
                if *negated { "NOT " } else { "" },
                list.join(", ")
            )
        }
    }
}
