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
}

/// Where an output column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OutputSource {
    Group(usize),
    Aggregate(usize),
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
    /// Output columns in order: (name, source).
    pub outputs: Vec<(String, OutputSource)>,
    /// ORDER BY over keys and aggregates: (what, ascending).
    pub order_by: Vec<(OutputSource, bool)>,
    pub limit: Option<usize>,
    pub offset: usize,
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
