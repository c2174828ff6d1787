//! The policy gate on DataFusion's logical plan.
//!
//! The checker walks the plan the SQL planner built (whatever entry point
//! built it) and fails closed: only the plan nodes and expressions listed
//! here are accepted, each under the rules of the data owners' policies.
//! The accepted shape is
//!
//! ```text
//! [Projection | Filter | Sort | Limit | SubqueryAlias]*   post-processing of released values
//!   Aggregate                                       keys on dimensions, aggregates of measures
//!     row source: TableScan | SubqueryAlias | Filter | Projection | Join
//! ```
//!
//! Refusals name the rule and the column, never a value.

mod aggregates;
mod derived;
mod expressions;
mod post;
mod relations;

use expressions::strip_alias;

use crate::lineage::{ColumnFact, GuestOutput, SourceColumn};
use crate::query::{AggregateFn, AggregateRequest, CheckedRows, GroupKey, UsageFacts};
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
    // the analyst's clamping bounds (see `crate::clamp`)
    "clamp",
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
    /// Protected scans in the order the checker meets them (a dataset read
    /// twice is two scans), and the union-find parent of each: scans joined
    /// on permitted equalities of their privacy-unit columns share a class.
    scans: Vec<DatasetId>,
    unit_parent: Vec<usize>,
    /// Set while walking an expression that reads a job function's output.
    saw_guest: bool,
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
            scans: Vec::new(),
            unit_parent: Vec::new(),
            saw_guest: false,
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
        refuse_reserved_names(plan)?;
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
                // HAVING, or a WHERE over an aggregating subquery: applied
                // to the released values (see `post`).
                LogicalPlan::Filter(f) => {
                    chain.push(node);
                    node = &f.input;
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
        self.require_one_unit_class()?;
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
                // The released key set: coarsened under a desensitization
                // rule, as the column is beneath the plan.
                public_keys = cp.released_public_keys();
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

        // The chain above the aggregation, as post-processing of the
        // released rows.
        let (outputs, post) = post::translate_chain(&chain, aggregate, &aggregates)?;
        let (unit_columns, row_source) = add_unit_columns(aggregate.input.as_ref(), self.policies, &self.protected)?;
        Ok(CheckedQuery {
            row_source,
            unit_columns,
            group_keys,
            aggregates,
            outputs,
            post,
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
        refuse_reserved_names(plan)?;
        // A top-level ORDER BY changes nothing (blocks come in a canonical
        // order of their own), so it is accepted and dropped.
        let mut plan = plan;
        while let LogicalPlan::Sort(sort) = plan
            && sort.fetch.is_none()
        {
            plan = sort.input.as_ref();
        }
        refuse_aggregated_input(plan)?;
        let facts = self.row_source(plan, 0)?;
        self.require_one_unit_class()?;
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
            let policy = self.policy(ds)?;
            if !policy.jobs.wasm {
                return Err(refuse(
                    "wasm-not-allowed",
                    format!("the policy of {ds} does not accept WebAssembly jobs"),
                ));
            }
            // A program computes any statistic of its block: it may read a
            // dataset only if its owner allows every aggregate and leaves
            // release to differential privacy alone (threshold rules cannot
            // be applied to a program's output).
            if policy.release.mode.uses_threshold() {
                return Err(refuse(
                    "analysis-threshold-rules",
                    format!(
                        "the policy of {ds} applies threshold rules (k, dominance, rounding), which an analysis program's output cannot follow; use SQL"
                    ),
                ));
            }
            self.require_program_aggregates(ds, PROGRAM_AGGREGATES, "an analysis program")?;
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
}

/// Aggregates a program can emulate: a sum of any row function reproduces
/// sums, means and (through squares) variances; a block program computes
/// any statistic at all.
pub(crate) const ROW_FUNCTION_AGGREGATES: &[sandbox_policy::AggregateKind] = &[
    sandbox_policy::AggregateKind::Sum,
    sandbox_policy::AggregateKind::Avg,
    sandbox_policy::AggregateKind::Variance,
    sandbox_policy::AggregateKind::Stddev,
];
const PROGRAM_AGGREGATES: &[sandbox_policy::AggregateKind] = &[
    sandbox_policy::AggregateKind::Count,
    sandbox_policy::AggregateKind::Sum,
    sandbox_policy::AggregateKind::Avg,
    sandbox_policy::AggregateKind::Variance,
    sandbox_policy::AggregateKind::Stddev,
];

impl Checker<'_> {
    /// Refuses a job function or program over `dataset` unless its policy
    /// allows every aggregate in `needed` (what the code could emulate).
    pub(super) fn require_program_aggregates(
        &self,
        dataset: &DatasetId,
        needed: &[sandbox_policy::AggregateKind],
        what: &str,
    ) -> Result<(), SqlError> {
        let policy = self.policy(dataset)?;
        if !policy.jobs.wasm {
            return Err(refuse(
                "wasm-not-allowed",
                format!("the policy of {dataset} does not accept WebAssembly jobs"),
            ));
        }
        let missing: Vec<String> = needed
            .iter()
            .filter(|k| !policy.release.aggregates.contains(k))
            .map(|k| k.to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(refuse(
            "aggregate-not-allowed-by-policy",
            format!(
                "{what} over {dataset} could compute {} (e.g. a sum of squares), which its policy does not allow",
                missing.join(", ")
            ),
        ))
    }

    /// Numbers a protected scan.
    pub(super) fn new_scan(&mut self, dataset: &DatasetId) -> usize {
        let id = self.scans.len();
        self.scans.push(dataset.clone());
        self.unit_parent.push(id);
        id
    }

    pub(super) fn unit_class(&mut self, mut scan: usize) -> usize {
        while self.unit_parent[scan] != scan {
            let grandparent = self.unit_parent[self.unit_parent[scan]];
            self.unit_parent[scan] = grandparent;
            scan = grandparent;
        }
        scan
    }

    pub(super) fn unite(&mut self, a: usize, b: usize) {
        let (a, b) = (self.unit_class(a), self.unit_class(b));
        self.unit_parent[b] = a;
    }

    /// Every protected scan must belong to one privacy-unit class: each row
    /// of the row source then belongs to exactly one unit.
    fn require_one_unit_class(&mut self) -> Result<(), SqlError> {
        let classes: BTreeSet<usize> = (0..self.scans.len()).map(|s| self.unit_class(s)).collect();
        if classes.len() > 1 {
            return Err(SqlError::Internal(
                "protected scans left in separate privacy-unit classes".into(),
            ));
        }
        Ok(())
    }
}

/// Names starting with `__sandbox` (in any case) are the sandbox's own;
/// checked on every schema of the planned plan, where DataFusion has already
/// normalised unquoted identifiers.
fn refuse_reserved_names(plan: &LogicalPlan) -> Result<(), SqlError> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut found = None;
    let visited = plan.apply_with_subqueries(|node| {
        let reserved = |name: &str| name.to_ascii_lowercase().starts_with("__sandbox");
        for (qualifier, field) in node.schema().iter() {
            if reserved(field.name()) || qualifier.is_some_and(|q| reserved(q.table())) {
                found = Some(field.name().clone());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if let Err(e) = visited {
        return Err(SqlError::Internal(e.strip_backtrace()));
    }
    match found {
        Some(_) => Err(refuse(
            "reserved-name",
            "names starting with `__sandbox` (in any case) are reserved for the sandbox",
        )),
        None => Ok(()),
    }
}

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// The input of an analysis is row-level: a GROUP BY, an aggregate
/// function or DISTINCT at its top (under projections and filters) gets a
/// rule worded for what the user wrote, not "aggregating inside a subquery".
fn refuse_aggregated_input(plan: &LogicalPlan) -> Result<(), SqlError> {
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Projection(p) => node = p.input.as_ref(),
            LogicalPlan::Filter(f) => node = f.input.as_ref(),
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => {
                return Err(refuse(
                    "aggregation-in-input",
                    "the input query of an analysis selects rows, one per row of the data: remove its GROUP BY, \
                     DISTINCT or aggregate functions. The analysis program aggregates each block itself, and the \
                     sandbox releases only the noisy average of its outputs",
                ));
            }
            _ => return Ok(()),
        }
    }
}
