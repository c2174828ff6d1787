//! A query that passed the checker: what the runtime needs to compute its
//! partial statistics and to release it.

use crate::lineage::SourceColumn;
use datafusion::logical_expr::{Expr, LogicalPlan};
use sandbox_model::DatasetId;
use sandbox_policy::{AggregateKind, PublicKey};
use serde::Serialize;
use std::collections::BTreeSet;

/// A GROUP BY key.
#[derive(Debug, Clone)]
pub struct GroupKey {
    /// The output name.
    pub name: String,
    /// The expression over the row source.
    pub expr: Expr,
    /// The source column when the key is a column.
    pub source: Option<SourceColumn>,
    /// The policy's public key set, when the key is a dimension that has one.
    pub public_keys: Option<Vec<PublicKey>>,
}

/// An aggregate function the sandbox can release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFn {
    /// `COUNT(*)`
    CountRows,
    /// `COUNT(column)`: non-null values.
    CountValues,
    /// `COUNT(DISTINCT privacy_unit)`
    CountUnits,
    Sum,
    Avg,
    Variance,
    Stddev,
    /// `MEDIAN`, `PERCENTILE_CONT`, `APPROX_PERCENTILE_CONT`, `MIN`, `MAX`:
    /// a DP quantile ([`AggregateRequest::quantile`] holds α).
    Quantile,
}

impl AggregateFn {
    /// The policy's name for it.
    pub fn policy_kind(self) -> AggregateKind {
        match self {
            AggregateFn::CountRows | AggregateFn::CountValues => AggregateKind::Count,
            AggregateFn::CountUnits => AggregateKind::CountDistinct,
            AggregateFn::Sum => AggregateKind::Sum,
            AggregateFn::Avg => AggregateKind::Avg,
            AggregateFn::Variance => AggregateKind::Variance,
            AggregateFn::Stddev => AggregateKind::Stddev,
            AggregateFn::Quantile => AggregateKind::Quantile,
        }
    }
}

/// One aggregate of the query.
#[derive(Debug, Clone)]
pub struct AggregateRequest {
    pub function: AggregateFn,
    /// The output name.
    pub name: String,
    /// Human form, e.g. `avg(gov.utility_usage.electricity_kwh)`.
    pub display: String,
    /// The argument over the row source (none for `COUNT(*)` and
    /// `COUNT(DISTINCT unit)`).
    pub argument: Option<Expr>,
    /// The measure's public bounds (SUM, AVG, VARIANCE, STDDEV).
    pub bounds: Option<(f64, f64)>,
    /// The dataset whose measure is aggregated (none for counts and for
    /// job-supplied functions); its policy's rounding base applies.
    pub measure_dataset: Option<DatasetId>,
    /// Which bounds clamp the values and where they come from (the policy,
    /// derived by interval arithmetic, an analyst's CLAMP), for the
    /// release notes.
    pub bounds_note: Option<String>,
    /// α of a quantile (0 for MIN, 0.5 for MEDIAN, 1 for MAX).
    pub quantile: Option<f64>,
    /// `CLAMP_AUTO(x, q)`: the quantile q at which the runtime estimates
    /// the upper bound by DP bound estimation before the release.
    pub auto_bound: Option<f64>,
}

/// An expression over one released row: its group keys and its released
/// aggregates, evaluated after release (post-processing, no ε). Built by
/// the checker from the plan nodes above the aggregation (HAVING, the
/// SELECT list, ORDER BY), with every projection in between inlined, so it
/// refers to the released row directly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum PostExpr {
    /// Group key `i`.
    Key(usize),
    /// Released aggregate `j` (of [`CheckedQuery::aggregates`]).
    Aggregate(usize),
    Number(f64),
    Text(String),
    Bool(bool),
    Null,
    Negate(Box<PostExpr>),
    Not(Box<PostExpr>),
    IsNull(Box<PostExpr>),
    Binary(Box<PostExpr>, PostOp, Box<PostExpr>),
    Function(PostFunction, Vec<PostExpr>),
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`.
    Case {
        operand: Option<Box<PostExpr>>,
        branches: Vec<(PostExpr, PostExpr)>,
        otherwise: Option<Box<PostExpr>>,
    },
    InList {
        expr: Box<PostExpr>,
        list: Vec<PostExpr>,
        negated: bool,
    },
}

/// Binary operators on released values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PostOp {
    Add,
    Subtract,
    Multiply,
    Divide,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
}

/// Scalar functions on released values (each with a sound interval
/// extension, see `sandbox_runtime::postprocess`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PostFunction {
    Abs,
    /// `round(x)` or `round(x, digits)` with a literal number of digits.
    Round,
    Ceil,
    Floor,
    /// Truncation toward zero; also `CAST(x AS <integer type>)`.
    Trunc,
    Sqrt,
    Greatest,
    Least,
    Coalesce,
    NullIf,
}

impl PostExpr {
    /// The released aggregates the expression reads, in order, without
    /// repeats.
    pub fn aggregates(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.visit(&mut |e| {
            if let PostExpr::Aggregate(j) = e
                && !out.contains(j)
            {
                out.push(*j);
            }
        });
        out
    }

    /// Nodes of the expression tree.
    pub fn size(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |_| n += 1);
        n
    }

    fn visit(&self, f: &mut dyn FnMut(&PostExpr)) {
        f(self);
        match self {
            PostExpr::Negate(x) | PostExpr::Not(x) | PostExpr::IsNull(x) => x.visit(f),
            PostExpr::Binary(l, _, r) => {
                l.visit(f);
                r.visit(f);
            }
            PostExpr::Function(_, args) => args.iter().for_each(|a| a.visit(f)),
            PostExpr::Case {
                operand,
                branches,
                otherwise,
            } => {
                if let Some(o) = operand {
                    o.visit(f);
                }
                for (w, t) in branches {
                    w.visit(f);
                    t.visit(f);
                }
                if let Some(o) = otherwise {
                    o.visit(f);
                }
            }
            PostExpr::InList { expr, list, .. } => {
                expr.visit(f);
                list.iter().for_each(|a| a.visit(f));
            }
            _ => {}
        }
    }
}

/// One step applied to the released rows, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum PostStep {
    /// Keeps the rows where the predicate is true (HAVING, or a WHERE over
    /// an aggregating subquery).
    Filter(PostExpr),
    /// Sorts the rows (stable): (key, ascending, nulls first).
    Sort(Vec<(PostExpr, bool, bool)>),
    /// `OFFSET skip` then at most `fetch` rows.
    Limit { skip: usize, fetch: Option<usize> },
}

/// One output column of the released table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputColumn {
    pub name: String,
    /// `Key(i)` or `Aggregate(j)` for a column passed through; any other
    /// expression is computed from the released row.
    pub expr: PostExpr,
    /// Human form of a computed column, e.g.
    /// `sum(gov.legal_entities.registered_capital) / count(*)`.
    pub display: String,
}

/// Columns and functions the job used, for its usage record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageFacts {
    pub read: BTreeSet<String>,
    pub filtered: BTreeSet<String>,
    pub grouped: BTreeSet<String>,
    pub aggregated: BTreeSet<String>,
    pub functions: BTreeSet<String>,
}

/// A checked query.
#[derive(Debug, Clone)]
pub struct CheckedQuery {
    /// The input of the aggregation, rewritten to carry privacy-unit
    /// columns (see [`crate::rewrite`]).
    pub row_source: LogicalPlan,
    /// The privacy-unit columns of `row_source` (one per protected scan).
    pub unit_columns: Vec<datafusion::common::Column>,
    pub group_keys: Vec<GroupKey>,
    pub aggregates: Vec<AggregateRequest>,
    /// Output columns in order.
    pub outputs: Vec<OutputColumn>,
    /// HAVING, ORDER BY, LIMIT and OFFSET, applied in order to the
    /// released rows (post-processing of noisy values).
    pub post: Vec<PostStep>,
    /// Every dataset the query reads.
    pub datasets: BTreeSet<DatasetId>,
    /// Datasets with a privacy unit (conditionally open).
    pub protected: BTreeSet<DatasetId>,
    pub usage: UsageFacts,
}

/// A checked row-level query (the input of an analysis job).
#[derive(Debug, Clone)]
pub struct CheckedRows {
    /// The query's plan, rewritten to carry privacy-unit columns.
    pub row_source: LogicalPlan,
    pub unit_columns: Vec<datafusion::common::Column>,
    /// The columns the job sees, in order.
    pub columns: Vec<String>,
    pub datasets: BTreeSet<DatasetId>,
    pub protected: BTreeSet<DatasetId>,
    pub usage: UsageFacts,
}
