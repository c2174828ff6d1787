//! The policy gate on DataFusion's logical plan.
//!
//! The checker walks the plan the SQL planner built (whatever entry point
//! built it) and fails closed: only the plan nodes and expressions listed
//! here are accepted, each under the rules of the data owners' policies.
//! The accepted shape is
//!
//! ```text
//! [Projection | Sort | Limit | SubqueryAlias]*      output: keys and aggregates only
//!   Aggregate                                       keys on dimensions, aggregates of measures
//!     row source: TableScan | SubqueryAlias | Filter | Projection | Join
//! ```
//!
//! Refusals name the rule and the column, never a value.

use crate::lineage::{ColumnFact, GuestOutput, SourceColumn};
use crate::query::{AggregateFn, AggregateRequest, CheckedRows, GroupKey, OutputSource, UsageFacts};
use crate::rewrite::add_unit_columns;
use crate::{CheckedQuery, SqlError};
use datafusion::common::{DFSchema, ScalarValue, TableReference};
use datafusion::logical_expr::expr::{AggregateFunction, Alias};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, JoinType, LogicalPlan, Operator};
use sandbox_model::{ColumnRole, DatasetId, OpenClass};
use sandbox_policy::Policy;
use std::collections::{BTreeMap, BTreeSet};

/// What the checker needs to know about datasets.
pub trait PolicyLookup: Sync {
    fn policy(&self, dataset: &DatasetId) -> Option<&Policy>;
    fn open_class(&self, dataset: &DatasetId) -> Option<OpenClass>;
}

/// Scalar functions a query may use. Anything else is refused by name.
pub const ALLOWED_SCALAR_FUNCTIONS: &[&str] = &[
    // arithmetic and math
    "abs",
    "ceil",
    "floor",
    "round",
    "trunc",
    "ln",
    "log",
    "log10",
    "log2",
    "exp",
    "sqrt",
    "power",
    "pow",
    "signum",
    // conditionals
    "coalesce",
    "nullif",
    "nvl",
    "ifnull",
    "greatest",
    "least",
    // strings
    "lower",
    "upper",
    "substr",
    "substring",
    "left",
    "right",
    "length",
    "char_length",
    "character_length",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "concat",
    "starts_with",
    "ends_with",
    "strpos",
    "replace",
    // dates
    "date_part",
    "date_trunc",
    "extract",
    "to_date",
    "make_date",
];

const MAX_EXPR_DEPTH: usize = 256;

/// Where an expression sits, for the rules that depend on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Filter,
    Projection,
    GroupBy,
}

pub struct Checker<'a> {
    policies: &'a dyn PolicyLookup,
    guests: &'a BTreeMap<String, (f64, f64)>,
    usage: UsageFacts,
    datasets: BTreeSet<DatasetId>,
    protected: BTreeSet<DatasetId>,
    uses_guests: bool,
}

fn refuse(rule: &'static str, message: impl Into<String>) -> SqlError {
    SqlError::refused(rule, message)
}

impl<'a> Checker<'a> {
    /// `guests` are the job's row functions (name → output bounds).
    pub fn new(policies: &'a dyn PolicyLookup, guests: &'a BTreeMap<String, (f64, f64)>) -> Self {
        Checker {
            policies,
            guests,
            usage: UsageFacts::default(),
            datasets: BTreeSet::new(),
            protected: BTreeSet::new(),
            uses_guests: false,
        }
    }

    fn policy(&self, dataset: &DatasetId) -> Result<&'a Policy, SqlError> {
        self.policies.policy(dataset).ok_or_else(|| {
            refuse(
                "dataset-not-granted",
                format!("dataset {dataset} is not covered by this job's grant"),
            )
        })
    }

    fn roles_of(&self, c: &SourceColumn) -> Result<&'a sandbox_policy::ColumnPolicy, SqlError> {
        self.policy(&c.dataset)?
            .column(&c.column)
            .ok_or_else(|| refuse("unknown-column", format!("{c} has no role in its policy")))
    }

    /// Checks a whole plan and returns the checked query.
    pub fn check(mut self, plan: &LogicalPlan) -> Result<CheckedQuery, SqlError> {
        // Walk down the output chain to the aggregation.
        let mut chain: Vec<&LogicalPlan> = Vec::new();
        let mut node = plan;
        let aggregate = loop {
            match node {
                LogicalPlan::Aggregate(a) => break a,
                LogicalPlan::Projection(p) => {
                    chain.push(node);
                    node = &p.input;
                }
                LogicalPlan::Sort(s) => {
                    chain.push(node);
                    node = &s.input;
                }
                LogicalPlan::Limit(l) => {
                    chain.push(node);
                    node = &l.input;
                }
                LogicalPlan::SubqueryAlias(s) => {
                    chain.push(node);
                    node = &s.input;
                }
                LogicalPlan::Filter(f) if matches!(f.input.as_ref(), LogicalPlan::Aggregate(_)) => {
                    return Err(refuse(
                        "having",
                        "HAVING filters on exact aggregates and is not allowed; filter the released result instead",
                    ));
                }
                LogicalPlan::Distinct(_) => {
                    return Err(refuse(
                        "distinct",
                        "SELECT DISTINCT returns raw rows; use GROUP BY with aggregates",
                    ));
                }
                _ => return Err(self.no_aggregation(plan)),
            }
        };
        if aggregate.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
            return Err(refuse(
                "grouping-sets",
                "GROUPING SETS, ROLLUP and CUBE are not supported; run one query per grouping",
            ));
        }
        let input_facts = self.row_source(&aggregate.input, 0)?;
        let input_schema = aggregate.input.schema();
        if self.protected.is_empty() {
            return Err(refuse(
                "open-data-only",
                "the query reads only unconditionally open datasets; download them from the open-data portal, or join them with the conditional data you analyse",
            ));
        }

        let mut group_keys = Vec::new();
        for (i, e) in aggregate.group_expr.iter().enumerate() {
            let fact = self.expr_fact(e, input_schema, &input_facts, Place::GroupBy)?;
            let mut public_keys = None;
            if let Some(src) = &fact.direct {
                let cp = self.roles_of(src)?;
                public_keys = cp.public_keys.clone();
            }
            for s in &fact.sources {
                self.usage.grouped.insert(s.to_string());
            }
            let name = aggregate
                .schema
                .fields()
                .get(i)
                .map(|f| f.name().clone())
                .unwrap_or_else(|| e.schema_name().to_string());
            group_keys.push(GroupKey {
                name,
                expr: e.clone(),
                source: fact.direct.clone(),
                public_keys,
            });
        }
        let mut aggregates = Vec::new();
        for (j, e) in aggregate.aggr_expr.iter().enumerate() {
            let name = aggregate
                .schema
                .fields()
                .get(group_keys.len() + j)
                .map(|f| f.name().clone())
                .unwrap_or_else(|| e.schema_name().to_string());
            aggregates.push(self.aggregate(e, name, input_schema, &input_facts)?);
        }
        if aggregates.is_empty() {
            return Err(refuse(
                "aggregation-required",
                "the query groups rows but releases no aggregate; add COUNT(*) or another aggregate",
            ));
        }
        for a in &aggregates {
            let kind = a.function.policy_kind();
            for ds in &self.protected {
                let p = self.policy(ds)?;
                if !p.release.aggregates.contains(&kind) {
                    return Err(refuse(
                        "aggregate-not-allowed-by-policy",
                        format!(
                            "the policy of {ds} does not allow {kind} (allowed: {})",
                            join(&p.release.aggregates)
                        ),
                    ));
                }
            }
        }

        if self.uses_guests {
            for ds in &self.protected {
                if !self.policy(ds)?.jobs.wasm {
                    return Err(refuse(
                        "wasm-not-allowed",
                        format!("the policy of {ds} does not accept WebAssembly functions"),
                    ));
                }
            }
        }

        // Map outputs through the chain above the aggregation.
        let n_groups = group_keys.len();
        let mut outputs: Vec<(String, OutputSource)> = aggregate
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let src = if i < n_groups {
                    OutputSource::Group(i)
                } else {
                    OutputSource::Aggregate(i - n_groups)
                };
                (f.name().clone(), src)
            })
            .collect();
        let mut order_by = Vec::new();
        let mut limit = None;
        let mut offset = 0;
        let mut below_schema: &DFSchema = aggregate.schema.as_ref();
        for node in chain.iter().rev() {
            match node {
                LogicalPlan::Projection(p) => {
                    let mut next = Vec::new();
                    for e in &p.expr {
                        let inner = strip_alias(e);
                        let Expr::Column(c) = inner else {
                            return Err(refuse(
                                "post-aggregation-expression",
                                format!(
                                    "output `{}` computes on aggregates; select group keys and aggregates as they are and compute on the released result",
                                    e.schema_name()
                                ),
                            ));
                        };
                        let idx = below_schema
                            .maybe_index_of_column(c)
                            .ok_or_else(|| SqlError::Internal(format!("output column {c} not found")))?;
                        let name = match e {
                            Expr::Alias(Alias { name, .. }) => name.clone(),
                            _ => c.name.clone(),
                        };
                        next.push((name, outputs[idx].1));
                    }
                    outputs = next;
                    below_schema = p.schema.as_ref();
                }
                LogicalPlan::Sort(s) => {
                    if limit.is_some() {
                        return Err(refuse(
                            "order-after-limit",
                            "ORDER BY above a LIMIT is not supported; use one ORDER BY … LIMIT",
                        ));
                    }
                    order_by.clear();
                    for se in &s.expr {
                        let Expr::Column(c) = strip_alias(&se.expr) else {
                            return Err(refuse("order-by-expression", "ORDER BY must name output columns"));
                        };
                        let idx = below_schema
                            .maybe_index_of_column(c)
                            .ok_or_else(|| refuse("order-by-expression", "ORDER BY must name output columns"))?;
                        let source = outputs
                            .get(idx)
                            .map(|o| o.1)
                            .ok_or_else(|| SqlError::Internal("sort column out of range".into()))?;
                        order_by.push((source, se.asc));
                    }
                    if s.fetch.is_some() {
                        limit = s.fetch;
                    }
                    below_schema = s.input.schema().as_ref();
                }
                LogicalPlan::Limit(l) => {
                    let fetch = match l.fetch.as_deref() {
                        None => None,
                        Some(Expr::Literal(ScalarValue::Int64(Some(n)), _)) if *n >= 0 => Some(*n as usize),
                        Some(_) => {
                            return Err(refuse(
                                "limit-expression",
                                "LIMIT must be a non-negative integer literal",
                            ));
                        }
                    };
                    let skip = match l.skip.as_deref() {
                        None => 0,
                        Some(Expr::Literal(ScalarValue::Int64(Some(n)), _)) if *n >= 0 => *n as usize,
                        Some(_) => {
                            return Err(refuse(
                                "limit-expression",
                                "OFFSET must be a non-negative integer literal",
                            ));
                        }
                    };
                    limit = match (limit, fetch) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    offset += skip;
                    below_schema = l.input.schema().as_ref();
                }
                LogicalPlan::SubqueryAlias(s) => below_schema = s.schema.as_ref(),
                _ => return Err(SqlError::Internal("unexpected node in the output chain".into())),
            }
        }
        let (unit_columns, row_source) = add_unit_columns(aggregate.input.as_ref(), self.policies, &self.protected)?;
        Ok(CheckedQuery {
            row_source,
            unit_columns,
            group_keys,
            aggregates,
            outputs,
            order_by,
            limit,
            offset,
            datasets: self.datasets,
            protected: self.protected,
            usage: self.usage,
        })
    }

    /// Checks a row-level query that feeds an analysis job (sample and
    /// aggregate): no aggregation, only raw-row steps the row source allows,
    /// and output columns that are measures, dimensions or public columns.
    /// The rows never leave the sandbox; they go to the job's blocks.
    pub fn check_rows(mut self, plan: &LogicalPlan) -> Result<CheckedRows, SqlError> {
        let facts = self.row_source(plan, 0)?;
        if self.protected.is_empty() {
            return Err(refuse(
                "open-data-only",
                "the input reads only unconditionally open datasets",
            ));
        }
        let mut columns = Vec::new();
        for (f, field) in facts.iter().zip(plan.schema().fields()) {
            for s in &f.sources {
                let cp = self.roles_of(s)?;
                if cp.roles.is_restricted() {
                    return Err(refuse(
                        "identifier-in-output",
                        format!("{s} is an identifier and cannot be given to an analysis job"),
                    ));
                }
            }
            columns.push(field.name().clone());
        }
        for ds in &self.protected {
            if !self.policy(ds)?.jobs.wasm {
                return Err(refuse(
                    "wasm-not-allowed",
                    format!("the policy of {ds} does not accept WebAssembly jobs"),
                ));
            }
        }
        let (unit_columns, row_source) = add_unit_columns(plan, self.policies, &self.protected)?;
        Ok(CheckedRows {
            row_source,
            unit_columns,
            columns,
            datasets: self.datasets,
            protected: self.protected,
            usage: self.usage,
        })
    }

    /// A better refusal for a query without aggregation.
    fn no_aggregation(&mut self, plan: &LogicalPlan) -> SqlError {
        match self.row_source(plan, 0) {
            Err(e) => e,
            Ok(facts) => {
                if facts.iter().any(|f| f.guest.is_some()) {
                    return refuse(
                        "measure-in-output",
                        "the output of a WebAssembly function is a measure and may only appear inside an aggregate",
                    );
                }
                for f in &facts {
                    for s in &f.sources {
                        if let Ok(cp) = self.roles_of(s) {
                            if cp.roles.is_restricted() {
                                return refuse(
                                    "identifier-in-output",
                                    format!("{s} is an identifier and cannot appear in the output"),
                                );
                            }
                            if cp.has(ColumnRole::Measure) {
                                return refuse(
                                    "measure-in-output",
                                    format!("{s} is a measure and may only appear inside an aggregate"),
                                );
                            }
                        }
                    }
                }
                refuse(
                    "aggregation-required",
                    "the result must be an aggregation: every output column must be a GROUP BY key or an aggregate",
                )
            }
        }
    }

    fn row_source(&mut self, plan: &LogicalPlan, depth: usize) -> Result<Vec<ColumnFact>, SqlError> {
        if depth > MAX_EXPR_DEPTH {
            return Err(refuse("nesting-too-deep", "the query nests too deeply"));
        }
        match plan {
            LogicalPlan::TableScan(scan) => {
                let dataset = dataset_of(&scan.table_name)?;
                let policy = self.policy(&dataset)?;
                if !policy.jobs.sql {
                    return Err(refuse(
                        "sql-not-allowed",
                        format!("the policy of {dataset} does not accept SQL jobs"),
                    ));
                }
                if !scan.filters.is_empty() || scan.fetch.is_some() {
                    return Err(SqlError::Internal("unexpected pushed-down scan".into()));
                }
                let class = self.policies.open_class(&dataset);
                match class {
                    Some(OpenClass::Open) => {}
                    Some(OpenClass::Conditional) => {
                        if policy.privacy_unit.is_none() {
                            return Err(refuse(
                                "no-privacy-unit",
                                format!("{dataset} has no privacy unit in its policy and cannot be queried"),
                            ));
                        }
                        self.protected.insert(dataset.clone());
                    }
                    _ => {
                        return Err(refuse(
                            "dataset-closed",
                            format!("dataset {dataset} is not open for use"),
                        ));
                    }
                }
                self.datasets.insert(dataset.clone());
                Ok(scan
                    .projected_schema
                    .fields()
                    .iter()
                    .map(|f| {
                        ColumnFact::direct(SourceColumn {
                            dataset: dataset.clone(),
                            column: f.name().clone(),
                        })
                    })
                    .collect())
            }
            LogicalPlan::SubqueryAlias(a) => self.row_source(&a.input, depth + 1),
            LogicalPlan::Filter(f) => {
                let facts = self.row_source(&f.input, depth + 1)?;
                self.expr_fact(&f.predicate, f.input.schema(), &facts, Place::Filter)?;
                Ok(facts)
            }
            LogicalPlan::Projection(p) => {
                let facts = self.row_source(&p.input, depth + 1)?;
                p.expr
                    .iter()
                    .map(|e| self.expr_fact(e, p.input.schema(), &facts, Place::Projection))
                    .collect()
            }
            LogicalPlan::Join(j) => {
                match j.join_type {
                    JoinType::Inner | JoinType::Left | JoinType::Right => {}
                    other => {
                        return Err(refuse(
                            "join-type",
                            format!(
                                "{other} joins are not allowed; use INNER, LEFT or RIGHT JOIN … ON a permitted key"
                            ),
                        ));
                    }
                }
                let left = self.row_source(&j.left, depth + 1)?;
                let right = self.row_source(&j.right, depth + 1)?;
                // The SQL planner leaves `ON a = b` in the join filter (the
                // optimizer extracts equi-keys later), so take the equalities
                // between a left and a right column as the join keys here.
                let mut pairs: Vec<(Expr, Expr)> = j.on.clone();
                let mut rest: Vec<Expr> = Vec::new();
                if let Some(filter) = &j.filter {
                    for conjunct in split_conjunction(filter) {
                        match equi_pair(conjunct, j.left.schema(), j.right.schema()) {
                            Some(pair) => pairs.push(pair),
                            None => rest.push(conjunct.clone()),
                        }
                    }
                }
                if pairs.is_empty() {
                    return Err(refuse(
                        "cross-join",
                        "joins need an equality on a permitted fusion key (JOIN … ON a.key = b.key); cross joins and comma joins are not allowed",
                    ));
                }
                for (l, r) in &pairs {
                    let lf = self.expr_fact(l, j.left.schema(), &left, Place::Projection)?;
                    let rf = self.expr_fact(r, j.right.schema(), &right, Place::Projection)?;
                    self.check_join_pair(&lf, &rf)?;
                }
                let mut facts = left;
                facts.extend(right);
                for conjunct in &rest {
                    self.expr_fact(conjunct, &j.schema, &facts, Place::Filter)?;
                }
                Ok(facts)
            }
            LogicalPlan::Aggregate(_) => Err(refuse(
                "nested-aggregation",
                "aggregating inside a subquery is not allowed: its exact results would feed the outer query",
            )),
            LogicalPlan::Window(_) => Err(refuse(
                "window-function",
                "window functions emit one value per row and are not allowed",
            )),
            LogicalPlan::Union(_) => Err(refuse(
                "union",
                "UNION of raw rows is not allowed; run separate queries",
            )),
            LogicalPlan::Sort(_) => Err(refuse(
                "order-by-raw-rows",
                "ORDER BY over raw rows is not allowed; order the aggregated output",
            )),
            LogicalPlan::Limit(_) => Err(refuse(
                "limit-raw-rows",
                "LIMIT over raw rows is not allowed; limit the aggregated output",
            )),
            LogicalPlan::Distinct(_) => Err(refuse("distinct", "SELECT DISTINCT over raw rows is not allowed")),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Err(refuse(
                "literal-rows",
                "literal rows (VALUES, SELECT without FROM) are not allowed as a data source",
            )),
            LogicalPlan::RecursiveQuery(_) => Err(refuse("recursive-cte", "recursive CTEs are not allowed")),
            LogicalPlan::Unnest(_) => Err(refuse("unnest", "UNNEST is not allowed")),
            LogicalPlan::Subquery(_) => Err(refuse(
                "subquery-expression",
                "subqueries in expressions are not allowed",
            )),
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => {
                Err(refuse("statement-not-allowed", "EXPLAIN is not allowed"))
            }
            LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Copy(_) | LogicalPlan::Statement(_) => {
                Err(refuse("statement-not-allowed", "a job is one read-only SELECT query"))
            }
            LogicalPlan::DescribeTable(_) => Err(refuse("statement-not-allowed", "DESCRIBE is not allowed")),
            other => Err(refuse(
                "plan-node-not-allowed",
                format!("the plan step `{}` is not allowed in sandbox queries", other.display()),
            )),
        }
    }

    fn check_join_pair(&mut self, l: &ColumnFact, r: &ColumnFact) -> Result<(), SqlError> {
        let (Some(a), Some(b)) = (&l.direct, &r.direct) else {
            return Err(refuse(
                "join-on-expression",
                "join conditions must compare columns directly (a.key = b.key)",
            ));
        };
        let (pa, pb) = (self.policy(&a.dataset)?, self.policy(&b.dataset)?);
        let open_a = self.policies.open_class(&a.dataset) == Some(OpenClass::Open);
        let open_b = self.policies.open_class(&b.dataset) == Some(OpenClass::Open);
        let (ra, rb) = (self.roles_of(a)?, self.roles_of(b)?);
        self.usage.read.insert(a.to_string());
        self.usage.read.insert(b.to_string());
        if open_a || open_b {
            // A public lookup table joins freely on public columns, but never
            // on an identifier: that would single entities out.
            for (c, roles) in [(a, ra), (b, rb)] {
                if roles.roles.is_restricted() || roles.has(ColumnRole::Sensitive) || roles.has(ColumnRole::Measure) {
                    return Err(refuse(
                        "unpermitted-join",
                        format!(
                            "{c} cannot be joined with a lookup table; lookups join on dimension or public columns"
                        ),
                    ));
                }
            }
            return Ok(());
        }
        if !ra.has(ColumnRole::JoinKey) {
            return Err(refuse("unpermitted-join", format!("{a} is not a join key")));
        }
        if !rb.has(ColumnRole::JoinKey) {
            return Err(refuse("unpermitted-join", format!("{b} is not a join key")));
        }
        if !(pa.permits_fusion(&b.dataset, &a.column, &b.column) && pb.permits_fusion(&a.dataset, &b.column, &a.column))
        {
            return Err(refuse(
                "unpermitted-join",
                format!(
                    "fusing {} with {} on {} = {} is not permitted by both policies",
                    a.dataset, b.dataset, a, b
                ),
            ));
        }
        let unit_a = pa.privacy_unit.as_deref() == Some(a.column.as_str());
        let unit_b = pb.privacy_unit.as_deref() == Some(b.column.as_str());
        if !(unit_a && unit_b && pa.unit_entity == pb.unit_entity) {
            return Err(refuse(
                "join-not-on-privacy-unit",
                format!("protected datasets must be joined on their common privacy unit; {a} = {b} is not"),
            ));
        }
        Ok(())
    }

    fn aggregate(
        &mut self,
        e: &Expr,
        name: String,
        schema: &DFSchema,
        facts: &[ColumnFact],
    ) -> Result<AggregateRequest, SqlError> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = strip_alias(e) else {
            return Err(SqlError::Internal("aggregate expression expected".into()));
        };
        let fname = func.name().to_ascii_lowercase();
        self.usage.functions.insert(fname.clone());
        if params.filter.is_some() {
            return Err(refuse(
                "aggregate-filter",
                "FILTER (WHERE …) on aggregates is not supported; use WHERE",
            ));
        }
        if !params.order_by.is_empty() {
            return Err(refuse(
                "aggregate-order",
                "ORDER BY inside an aggregate is not supported",
            ));
        }
        let function = match fname.as_str() {
            "count" => {
                if params.args.len() != 1 {
                    return Err(refuse("aggregate-not-allowed", "COUNT takes one argument or *"));
                }
                let arg = strip_alias(&params.args[0]);
                if matches!(arg, Expr::Literal(..)) {
                    if params.distinct {
                        return Err(refuse("count-distinct", "COUNT(DISTINCT literal) is not meaningful"));
                    }
                    AggregateFn::CountRows
                } else {
                    let fact = self.expr_fact(arg, schema, facts, Place::Projection)?;
                    if params.distinct {
                        let unit = fact.direct.as_ref().and_then(|d| {
                            self.policies.policy(&d.dataset).and_then(|p| {
                                (p.privacy_unit.as_deref() == Some(d.column.as_str())).then_some(d.clone())
                            })
                        });
                        match unit {
                            Some(u) => {
                                self.usage.aggregated.insert(u.to_string());
                                AggregateFn::CountUnits
                            }
                            None => {
                                return Err(refuse(
                                    "count-distinct",
                                    "COUNT(DISTINCT …) is only allowed on the privacy unit column",
                                ));
                            }
                        }
                    } else {
                        for s in &fact.sources {
                            self.usage.aggregated.insert(s.to_string());
                        }
                        AggregateFn::CountValues
                    }
                }
            }
            "sum" => AggregateFn::Sum,
            "avg" | "mean" => AggregateFn::Avg,
            "var" | "var_samp" | "var_pop" | "variance" | "var_population" | "var_sample" => AggregateFn::Variance,
            "stddev" | "stddev_samp" | "stddev_pop" | "std" => AggregateFn::Stddev,
            "min" | "max" | "first_value" | "last_value" | "nth_value" | "array_agg" | "string_agg" | "median" => {
                return Err(refuse(
                    "aggregate-not-allowed",
                    format!("{} is not allowed: it releases individual values", fname.to_uppercase()),
                ));
            }
            other => {
                return Err(refuse(
                    "aggregate-not-allowed",
                    format!(
                        "aggregate {} is not supported (use COUNT, SUM, AVG, VARIANCE or STDDEV)",
                        other.to_uppercase()
                    ),
                ));
            }
        };
        let display_arg;
        let mut argument = None;
        let mut bounds = None;
        let mut measure_dataset = None;
        match function {
            AggregateFn::CountRows => display_arg = "*".to_string(),
            AggregateFn::CountUnits => {
                display_arg = format!("DISTINCT {}", params.args[0].schema_name());
                argument = Some(params.args[0].clone());
            }
            AggregateFn::CountValues => {
                display_arg = params.args[0].schema_name().to_string();
                argument = Some(params.args[0].clone());
            }
            _ => {
                if params.distinct {
                    return Err(refuse(
                        "aggregate-distinct",
                        "DISTINCT inside SUM/AVG/VARIANCE/STDDEV is not supported",
                    ));
                }
                let [arg] = params.args.as_slice() else {
                    return Err(refuse(
                        "aggregate-not-allowed",
                        format!("{} takes one argument", fname.to_uppercase()),
                    ));
                };
                if let Some(g) = self.guest_output(arg, schema, facts) {
                    self.expr_fact(arg, schema, facts, Place::Projection)?;
                    return Ok(AggregateRequest {
                        function,
                        name,
                        display: format!("{fname}(wasm:{})", g.function),
                        argument: Some(arg.clone()),
                        bounds: Some(g.bounds),
                        measure_dataset: None,
                    });
                }
                let measure = measure_source(arg, schema, facts);
                if let Some(src) = &measure
                    && self.roles_of(src)?.roles.is_restricted()
                {
                    return Err(refuse(
                        "identifier-in-aggregate",
                        format!("{src} is an identifier and cannot be aggregated"),
                    ));
                }
                let fact = self.expr_fact(arg, schema, facts, Place::Projection)?;
                let Some(src) = measure else {
                    let names: Vec<String> = fact.sources.iter().map(|s| s.to_string()).collect();
                    return Err(refuse(
                        "derived-measure",
                        format!(
                            "{}({}) aggregates an expression, which has no public bounds; aggregate a measure column itself",
                            fname.to_uppercase(),
                            names.join(", ")
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
                        format!("{src} is not a measure; only measures with public bounds can be summed or averaged"),
                    ));
                }
                bounds = cp.bounds;
                if bounds.is_none() {
                    return Err(refuse(
                        "measure-without-bounds",
                        format!("{src} has no public bounds in its policy"),
                    ));
                }
                self.usage.aggregated.insert(src.to_string());
                display_arg = src.to_string();
                argument = Some(arg.clone());
                measure_dataset = Some(src.dataset.clone());
            }
        }
        Ok(AggregateRequest {
            function,
            name,
            display: format!("{fname}({display_arg})"),
            argument,
            bounds,
            measure_dataset,
        })
    }

    /// Computes an expression's lineage and applies the rules of its place.
    fn expr_fact(
        &mut self,
        e: &Expr,
        schema: &DFSchema,
        facts: &[ColumnFact],
        place: Place,
    ) -> Result<ColumnFact, SqlError> {
        let mut sources = BTreeSet::new();
        self.walk(e, schema, facts, &mut sources, 0)?;
        let direct = match strip_alias(e) {
            Expr::Column(c) => schema
                .maybe_index_of_column(c)
                .and_then(|i| facts.get(i))
                .and_then(|f| f.direct.clone()),
            _ => None,
        };
        let guest = self.guest_output(e, schema, facts);
        if guest.is_some() && place == Place::GroupBy {
            return Err(refuse(
                "measure-in-group-by",
                "the output of a WebAssembly function is a measure and may only appear inside an aggregate",
            ));
        }
        for s in &sources {
            self.usage.read.insert(s.to_string());
            let cp = self.roles_of(s)?;
            if cp.has(ColumnRole::Sensitive) {
                return Err(refuse(
                    "sensitive-column",
                    format!("{s} is sensitive and cannot be used by jobs"),
                ));
            }
            match place {
                Place::Filter => {
                    self.usage.filtered.insert(s.to_string());
                    if cp.roles.is_restricted() {
                        return Err(refuse(
                            "identifier-in-filter",
                            format!("{s} is an identifier and cannot be compared with a literal or used in a filter"),
                        ));
                    }
                }
                Place::GroupBy => {
                    if cp.roles.is_restricted() {
                        return Err(refuse(
                            "identifier-in-group-by",
                            format!("{s} is an identifier and cannot appear in GROUP BY"),
                        ));
                    }
                    if cp.has(ColumnRole::Measure) {
                        return Err(refuse(
                            "measure-in-group-by",
                            format!("{s} is a measure and may only appear inside an aggregate, not in GROUP BY"),
                        ));
                    }
                }
                Place::Projection => {
                    if direct.is_none() && cp.roles.is_restricted() {
                        return Err(refuse(
                            "identifier-transformed",
                            format!(
                                "{s} is an identifier; it may only be passed through, joined on or counted distinct"
                            ),
                        ));
                    }
                }
            }
        }
        let mut fact = match direct {
            Some(d) => ColumnFact::direct(d),
            None => ColumnFact::derived(sources),
        };
        fact.guest = guest;
        Ok(fact)
    }

    /// The row-function output an expression *is* (a call, possibly cast
    /// or aliased, or a column carrying one), if any.
    fn guest_output(&self, e: &Expr, schema: &DFSchema, facts: &[ColumnFact]) -> Option<GuestOutput> {
        let mut e = strip_alias(e);
        loop {
            match e {
                Expr::Cast(c) => e = strip_alias(&c.expr),
                Expr::TryCast(c) => e = strip_alias(&c.expr),
                Expr::Column(c) => {
                    return schema
                        .maybe_index_of_column(c)
                        .and_then(|i| facts.get(i))
                        .and_then(|f| f.guest.clone());
                }
                Expr::ScalarFunction(f) => {
                    return self.guests.get(f.func.name()).map(|b| GuestOutput {
                        function: f.func.name().to_string(),
                        bounds: *b,
                    });
                }
                _ => return None,
            }
        }
    }

    fn walk(
        &mut self,
        e: &Expr,
        schema: &DFSchema,
        facts: &[ColumnFact],
        acc: &mut BTreeSet<SourceColumn>,
        depth: usize,
    ) -> Result<(), SqlError> {
        if depth > MAX_EXPR_DEPTH {
            return Err(refuse("expression-too-large", "an expression nests too deeply"));
        }
        let d = depth + 1;
        match e {
            Expr::Column(c) => {
                let i = schema
                    .maybe_index_of_column(c)
                    .ok_or_else(|| SqlError::Internal(format!("column {c} not found in its input")))?;
                let f = facts
                    .get(i)
                    .ok_or_else(|| SqlError::Internal("lineage out of step with schema".into()))?;
                acc.extend(f.sources.iter().cloned());
            }
            Expr::Literal(..) => {}
            Expr::Alias(a) => self.walk(&a.expr, schema, facts, acc, d)?,
            Expr::BinaryExpr(b) => {
                self.walk(&b.left, schema, facts, acc, d)?;
                self.walk(&b.right, schema, facts, acc, d)?;
            }
            Expr::Not(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsTrue(x)
            | Expr::IsFalse(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotTrue(x)
            | Expr::IsNotFalse(x)
            | Expr::IsNotUnknown(x)
            | Expr::Negative(x) => self.walk(x, schema, facts, acc, d)?,
            Expr::Like(l) | Expr::SimilarTo(l) => {
                self.walk(&l.expr, schema, facts, acc, d)?;
                self.walk(&l.pattern, schema, facts, acc, d)?;
            }
            Expr::Between(b) => {
                self.walk(&b.expr, schema, facts, acc, d)?;
                self.walk(&b.low, schema, facts, acc, d)?;
                self.walk(&b.high, schema, facts, acc, d)?;
            }
            Expr::Case(c) => {
                if let Some(x) = &c.expr {
                    self.walk(x, schema, facts, acc, d)?;
                }
                for (w, t) in &c.when_then_expr {
                    self.walk(w, schema, facts, acc, d)?;
                    self.walk(t, schema, facts, acc, d)?;
                }
                if let Some(x) = &c.else_expr {
                    self.walk(x, schema, facts, acc, d)?;
                }
            }
            Expr::Cast(c) => self.walk(&c.expr, schema, facts, acc, d)?,
            Expr::TryCast(c) => self.walk(&c.expr, schema, facts, acc, d)?,
            Expr::ScalarFunction(f) => {
                let name = f.func.name().to_ascii_lowercase();
                if self.guests.contains_key(f.func.name()) {
                    self.usage.functions.insert(format!("wasm:{}", f.func.name()));
                    self.uses_guests = true;
                    for a in &f.args {
                        self.walk(a, schema, facts, acc, d)?;
                    }
                    return Ok(());
                }
                if !ALLOWED_SCALAR_FUNCTIONS.contains(&name.as_str()) {
                    return Err(refuse(
                        "function-not-allowed",
                        format!("function `{name}` is not available in sandbox SQL"),
                    ));
                }
                self.usage.functions.insert(name);
                for a in &f.args {
                    self.walk(a, schema, facts, acc, d)?;
                }
            }
            Expr::InList(l) => {
                self.walk(&l.expr, schema, facts, acc, d)?;
                for x in &l.list {
                    self.walk(x, schema, facts, acc, d)?;
                }
            }
            Expr::AggregateFunction(_) => {
                return Err(refuse(
                    "aggregate-position",
                    "aggregates may only appear in the SELECT list of the aggregating query",
                ));
            }
            Expr::WindowFunction(_) => {
                return Err(refuse(
                    "window-function",
                    "window functions emit one value per row and are not allowed",
                ));
            }
            Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::ScalarSubquery(_)
            | Expr::SetComparison(_)
            | Expr::OuterReferenceColumn(..) => {
                return Err(refuse(
                    "subquery-expression",
                    "subqueries inside expressions are not allowed; use a JOIN on a permitted key",
                ));
            }
            Expr::Placeholder(_) => return Err(refuse("placeholder", "query parameters ($1) are not supported")),
            Expr::ScalarVariable(..) => return Err(refuse("variable", "session variables are not available")),
            Expr::GroupingSet(_) => {
                return Err(refuse(
                    "grouping-sets",
                    "GROUPING SETS, ROLLUP and CUBE are not supported",
                ));
            }
            Expr::Unnest(_) => return Err(refuse("unnest", "UNNEST is not allowed")),
            other => {
                return Err(refuse(
                    "expression-not-allowed",
                    format!(
                        "the expression kind `{}` is not allowed in sandbox SQL",
                        other.variant_name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The measure column an aggregate argument names: the column itself,
/// possibly cast (a cast of a bounded numeric column keeps its bounds).
fn measure_source(arg: &Expr, schema: &DFSchema, facts: &[ColumnFact]) -> Option<SourceColumn> {
    let mut e = strip_alias(arg);
    loop {
        match e {
            Expr::Cast(c) => e = strip_alias(&c.expr),
            Expr::TryCast(c) => e = strip_alias(&c.expr),
            Expr::Column(c) => {
                return schema
                    .maybe_index_of_column(c)
                    .and_then(|i| facts.get(i))
                    .and_then(|f| f.direct.clone());
            }
            _ => return None,
        }
    }
}

/// `l = r` with `l` a column of the left input and `r` of the right (or
/// the other way round), as a (left, right) pair.
fn equi_pair(e: &Expr, left: &DFSchema, right: &DFSchema) -> Option<(Expr, Expr)> {
    let Expr::BinaryExpr(BinaryExpr {
        left: a,
        op: Operator::Eq,
        right: b,
    }) = e
    else {
        return None;
    };
    let (Expr::Column(ca), Expr::Column(cb)) = (strip_alias(a), strip_alias(b)) else {
        return None;
    };
    if left.has_column(ca) && right.has_column(cb) {
        Some((a.as_ref().clone(), b.as_ref().clone()))
    } else if left.has_column(cb) && right.has_column(ca) {
        Some((b.as_ref().clone(), a.as_ref().clone()))
    } else {
        None
    }
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        other => other,
    }
}

fn dataset_of(table: &TableReference) -> Result<DatasetId, SqlError> {
    let (schema, name) = match table {
        TableReference::Partial { schema, table } => (schema.as_ref(), table.as_ref()),
        TableReference::Full { schema, table, .. } => (schema.as_ref(), table.as_ref()),
        TableReference::Bare { table } => {
            return Err(refuse(
                "unqualified-table",
                format!("name tables with their namespace, e.g. gov.{table}"),
            ));
        }
    };
    format!("{schema}.{name}").parse().map_err(|_| {
        refuse(
            "dataset-not-granted",
            format!("{schema}.{name} is not a dataset of this job"),
        )
    })
}

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}
