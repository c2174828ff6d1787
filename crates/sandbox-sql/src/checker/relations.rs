//! The row source below the aggregation: scans, filters, projections and
//! joins (fusions and lookups).

use super::*;

impl Checker<'_> {
    pub(super) fn row_source(&mut self, plan: &LogicalPlan, depth: usize) -> Result<Vec<ColumnFact>, SqlError> {
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
                let mut unit = None;
                match class {
                    Some(OpenClass::Open) => {}
                    Some(OpenClass::Conditional) => {
                        let Some(column) = policy.privacy_unit.clone() else {
                            return Err(refuse(
                                "no-privacy-unit",
                                format!("{dataset} has no privacy unit in its policy and cannot be queried"),
                            ));
                        };
                        self.protected.insert(dataset.clone());
                        unit = Some((self.new_scan(&dataset), column));
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
                        let mut fact = ColumnFact::direct(SourceColumn {
                            dataset: dataset.clone(),
                            column: f.name().clone(),
                        });
                        if let Some((scan, column)) = &unit
                            && column == f.name()
                        {
                            fact.unit_scan = Some(*scan);
                        }
                        fact
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
                let first_left = self.scans.len();
                let left = self.row_source(&j.left, depth + 1)?;
                let first_right = self.scans.len();
                let right = self.row_source(&j.right, depth + 1)?;
                let end = self.scans.len();
                let both_protected = first_right > first_left && end > first_right;
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
                // Sources of every condition that is not a fusion on privacy
                // units: the null-supplying side of an outer join depends on
                // them.
                let mut condition_sources: BTreeSet<SourceColumn> = BTreeSet::new();
                let mut pair_facts = Vec::with_capacity(pairs.len());
                for (l, r) in &pairs {
                    let lf = self.expr_fact(l, j.left.schema(), &left, Place::Projection)?;
                    let rf = self.expr_fact(r, j.right.schema(), &right, Place::Projection)?;
                    pair_facts.push((lf, rf));
                }
                let is_unit_pair = |(lf, rf): &(ColumnFact, ColumnFact)| {
                    both_protected && lf.unit_scan.is_some() && rf.unit_scan.is_some()
                };
                // Two protected relations meet only on their privacy units:
                // any other path (through a lookup table, a subquery, a
                // non-unit key) would let one unit's rows reach another's.
                if both_protected && !pair_facts.iter().any(is_unit_pair) {
                    let names = |range: std::ops::Range<usize>| {
                        let set: BTreeSet<String> = self.scans[range].iter().map(|d| d.to_string()).collect();
                        join(set)
                    };
                    return Err(refuse(
                        "join-not-on-privacy-unit",
                        format!(
                            "{} and {} are joined other than on their privacy units; protected datasets may only be joined on an equality of their privacy-unit columns that both policies permit",
                            names(first_left..first_right),
                            names(first_right..end)
                        ),
                    ));
                }
                for pair in &pair_facts {
                    self.check_join_pair(&pair.0, &pair.1)?;
                    match (pair.0.unit_scan, pair.1.unit_scan) {
                        (Some(a), Some(b)) if is_unit_pair(pair) => self.unite(a, b),
                        _ => {
                            condition_sources.extend(pair.0.sources.iter().cloned());
                            condition_sources.extend(pair.1.sources.iter().cloned());
                        }
                    }
                }
                let mut facts = left;
                let n_left = facts.len();
                facts.extend(right);
                for conjunct in &rest {
                    let f = self.expr_fact(conjunct, &j.schema, &facts, Place::Filter)?;
                    condition_sources.extend(f.sources);
                }
                let nullable = match j.join_type {
                    JoinType::Left => n_left..facts.len(),
                    JoinType::Right => 0..n_left,
                    _ => 0..0,
                };
                for f in &mut facts[nullable] {
                    f.outer_nullable = true;
                    f.sources.extend(condition_sources.iter().cloned());
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

    pub(super) fn check_join_pair(&mut self, l: &ColumnFact, r: &ColumnFact) -> Result<(), SqlError> {
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
}

/// `l = r` with `l` a column of the left input and `r` of the right (or
/// the other way round), as a (left, right) pair.
pub(super) fn equi_pair(e: &Expr, left: &DFSchema, right: &DFSchema) -> Option<(Expr, Expr)> {
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

pub(super) fn dataset_of(table: &TableReference) -> Result<DatasetId, SqlError> {
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
