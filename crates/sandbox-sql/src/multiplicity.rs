//! Upper bounds on how many rows of a checked row source one privacy unit
//! can have, derived from the plan and the verified `max_rows_per_value`
//! bounds of the tables it scans.
//!
//! When no unit can have more rows than the policy keeps per group (R), in
//! total (L), or groups than it keeps (G, unless the public key set is no
//! larger), contribution bounding is the identity and the per-unit stage
//! can be skipped ([`crate::contribution`]). The bound is derived from
//! public facts only (the plan, and the catalog's declarations, which the
//! runtime verified against the files), so choosing the plan from it
//! reveals nothing about the data.
//!
//! Rules, for the rows sharing one non-null value `v` of a column `c`
//! (`m(c)`):
//!
//! * a scan: the verified declaration for `c`, if any;
//! * `Filter`, `Sort`, `Limit`, `Repartition`: the input's (fewer rows);
//! * `Projection`, `SubqueryAlias`: carried through plain column references;
//! * inner equi-join on pairs `(l_i, r_i)`: a left row meets at most
//!   `min_i m(r_i)` right rows, so `m'(c) = m(c) · min_i m(r_i)` for a left
//!   column (and symmetrically), and `l_i`, `r_i` are equal in every
//!   output row; pairs come from the join keys and from `a = b` conjuncts
//!   of the join filter, and the rest of a filter only removes rows;
//! * left semi and anti joins: the left input's (and right for right ones);
//! * anything else (aggregations, unions, outer joins, windows, unnest,
//!   extension nodes): unknown.
//!
//! Groups: a column of a scan with a unique declared column `k` (bound 1)
//! is a function of `k`, and stays one through filters, projections and
//! joins (each output row carries its input row's values). When `k` holds
//! the unit in every row and every GROUP BY key is such a column, a unit
//! reaches one group ("district is a function of the enterprise");
//! otherwise its groups are bounded by its rows.
//!
//! The unit of a row is the first non-null unit column. When every unit
//! column holds the same value as every other in every row (joined on
//! them, or one column projected under several names), a unit's rows are
//! those where any one of them equals it: the smallest bound holds. Otherwise a unit's rows are covered by the rows where some unit
//! column equals it: the sum of their bounds.

use crate::{JobSession, SqlError};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Column, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::functions_aggregate::expr_fn::{count, max};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, Operator, col, lit};
use sandbox_model::DatasetId;
use std::collections::{BTreeMap, HashMap};

/// The most rows sharing one non-null value of each of `columns` in
/// `dataset`'s table as this session scans it: its pinned files, each value
/// cast to the catalog's type (so `100000` in one file and `"100000"` in
/// another are one value, as they are to a join). A column with no
/// non-null value gives 0. An entry of `columns` may be a key of several
/// columns joined by `+` ([`key_columns`]): the most rows sharing one
/// combination of their values, NULL counted as a value.
///
/// Errors: [`SqlError::Storage`] when the dataset is not in the session,
/// [`SqlError::Execution`] and the job limits' errors from the count.
pub async fn count_max_rows_per_value(
    session: &JobSession,
    dataset: &DatasetId,
    columns: &[String],
) -> Result<BTreeMap<String, u64>, SqlError> {
    let internal = |e: datafusion::error::DataFusionError| SqlError::Internal(e.strip_backtrace());
    let missing = || SqlError::Storage(dataset.to_string());
    let provider = session
        .state()
        .catalog_list()
        .catalog(crate::session::CATALOG)
        .and_then(|c| c.schema(dataset.namespace()))
        .ok_or_else(missing)?
        .table(dataset.table())
        .await
        .map_err(internal)?
        .ok_or_else(missing)?;
    let mut out = BTreeMap::new();
    for column in columns {
        let plan = LogicalPlanBuilder::scan(
            TableReference::partial(dataset.namespace(), dataset.table()),
            provider_as_source(provider.clone()),
            None,
        )
        .and_then(|b| match key_columns(column).as_slice() {
            // One column: the rows sharing each non-null value.
            [single] => b
                .filter(col(*single).is_not_null())?
                .aggregate(vec![col(*single)], vec![count(lit(1i64)).alias("__n")]),
            // A key of several columns: the rows sharing each combination,
            // NULL a value like any other (GROUP BY groups NULLs together).
            parts => b.aggregate(
                parts.iter().map(|c| col(*c)).collect::<Vec<_>>(),
                vec![count(lit(1i64)).alias("__n")],
            ),
        })
        .and_then(|b| b.aggregate(Vec::<Expr>::new(), vec![max(col("__n")).alias("__max")]))
        .and_then(|b| b.build())
        .map_err(internal)?;
        let batches = crate::partials::execute(session, plan).await?;
        let most = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| b.column(0).as_primitive_opt::<Int64Type>().cloned())
            .and_then(|a| (!a.is_null(0)).then(|| a.value(0)))
            .unwrap_or(0);
        out.insert(column.clone(), u64::try_from(most).unwrap_or(0));
    }
    Ok(out)
}

/// How many rows hold NULL in each of `columns` (single columns) of
/// `dataset`'s table as this session scans it (its pinned files, values
/// cast to the catalog's type and desensitized as the job reads them).
/// A column counted 0 cannot give a row without a value, so a filter
/// dropping such rows is a no-op the planner may leave out.
///
/// Errors: as [`count_max_rows_per_value`].
pub async fn count_nulls(
    session: &JobSession,
    dataset: &DatasetId,
    columns: &[String],
) -> Result<BTreeMap<String, u64>, SqlError> {
    let internal = |e: datafusion::error::DataFusionError| SqlError::Internal(e.strip_backtrace());
    let missing = || SqlError::Storage(dataset.to_string());
    let provider = session
        .state()
        .catalog_list()
        .catalog(crate::session::CATALOG)
        .and_then(|c| c.schema(dataset.namespace()))
        .ok_or_else(missing)?
        .table(dataset.table())
        .await
        .map_err(internal)?
        .ok_or_else(missing)?;
    let mut out = BTreeMap::new();
    for column in columns {
        let plan = LogicalPlanBuilder::scan(
            TableReference::partial(dataset.namespace(), dataset.table()),
            provider_as_source(provider.clone()),
            None,
        )
        .and_then(|b| b.filter(col(column.as_str()).is_null()))
        .and_then(|b| b.aggregate(Vec::<Expr>::new(), vec![count(lit(1i64)).alias("__n")]))
        .and_then(|b| b.build())
        .map_err(internal)?;
        let batches = crate::partials::execute(session, plan).await?;
        let nulls = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| b.column(0).as_primitive_opt::<Int64Type>().cloned())
            .and_then(|a| (!a.is_null(0)).then(|| a.value(0)))
            .ok_or_else(|| SqlError::Internal("no null count".into()))?;
        out.insert(column.clone(), u64::try_from(nulls).unwrap_or(u64::MAX));
    }
    Ok(out)
}

/// The columns of a `max_rows_per_value` key: one column, or several
/// joined by `+` (field names cannot contain `+`).
pub fn key_columns(key: &str) -> Vec<&str> {
    key.split('+').collect()
}

/// Public bounds on one privacy unit's contributions to a row source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitBounds {
    /// The most rows of the source one unit can have.
    pub rows: Option<u64>,
    /// The most distinct groups of the query one unit can reach.
    pub groups: Option<u64>,
    /// The most rows one unit can have in one group: from a declared key
    /// of several columns each of which holds the unit or a GROUP BY key
    /// (`"credit_code+month" = 1` and `GROUP BY month`: one row).
    pub rows_per_group: Option<u64>,
    /// Every row has a unit: a unit column holds no NULL in the scanned
    /// files and keeps that through the plan.
    pub unit_never_null: bool,
}

/// Bounds on a unit's rows in `source` and on the groups it reaches under
/// `group_keys` (expressions over `source`); `None` where the plan or the
/// catalog gives none.
pub fn unit_bounds(
    source: &LogicalPlan,
    unit_columns: &[Column],
    group_keys: &[Expr],
    session: &JobSession,
) -> UnitBounds {
    let Some(facts) = (!unit_columns.is_empty()).then(|| derive(source, session)).flatten() else {
        return UnitBounds::default();
    };
    let classes: Vec<Option<usize>> = unit_columns.iter().map(|c| facts.class_of(c)).collect();
    let unit_class = classes[0].filter(|first| classes.iter().all(|c| *c == Some(*first)));
    let bounds = unit_columns.iter().map(|c| facts.bound(c));
    let rows = if unit_class.is_some() {
        bounds.flatten().min()
    } else {
        bounds.into_iter().try_fold(0u64, |acc, b| acc.checked_add(b?))
    };
    let functions_of_unit = unit_class.is_some_and(|u| {
        group_keys.iter().all(|k| match k.clone().unalias() {
            Expr::Column(c) => facts.determinant_of(&c) == Some(u),
            _ => false,
        })
    });
    let groups = if functions_of_unit { Some(1) } else { rows };
    // Rows of one unit in one group agree on the unit's class and on every
    // plain-column key's class, so they share one value of any declared
    // key made of such columns.
    let rows_per_group = unit_class.and_then(|u| {
        let key_classes: Vec<usize> = group_keys
            .iter()
            .filter_map(|k| match k.clone().unalias() {
                Expr::Column(c) => facts.class_of(&c),
                _ => None,
            })
            .collect();
        facts
            .keys
            .iter()
            .filter(|(columns, _)| {
                columns
                    .iter()
                    .all(|c| facts.class_of(c).is_some_and(|k| k == u || key_classes.contains(&k)))
            })
            .map(|(_, bound)| *bound)
            .min()
    });
    let unit_never_null = unit_columns.iter().any(|c| facts.non_null.contains(c));
    UnitBounds {
        rows,
        groups,
        rows_per_group,
        unit_never_null,
    }
}

/// What is known of one plan node's output columns.
#[derive(Debug, Default, Clone)]
struct Facts {
    /// Column → the most rows sharing one non-null value.
    bounds: HashMap<Column, u64>,
    /// Column → its class of columns known to hold the same value in
    /// every row (both null, or equal: from inner equi-joins and from
    /// projections of one column under several names).
    classes: HashMap<Column, usize>,
    /// Column → a class whose value determines it (a unique column of the
    /// column's scan, and the columns equal to it).
    determinants: HashMap<Column, usize>,
    /// Keys of several columns → the most rows sharing one combination of
    /// their values (NULL a value).
    keys: Vec<(Vec<Column>, u64)>,
    /// Columns that hold no NULL in any row.
    non_null: std::collections::HashSet<Column>,
}

impl Facts {
    fn bound(&self, c: &Column) -> Option<u64> {
        self.bounds.get(c).copied()
    }

    fn class_of(&self, c: &Column) -> Option<usize> {
        self.classes.get(c).copied()
    }

    fn determinant_of(&self, c: &Column) -> Option<usize> {
        self.determinants.get(c).copied()
    }

    fn next_class(&self) -> usize {
        self.classes
            .values()
            .chain(self.determinants.values())
            .max()
            .map_or(0, |m| m + 1)
    }

    /// Merges the classes of `a` and `b` (both present).
    fn join_classes(&mut self, a: &Column, b: &Column) {
        let (Some(x), Some(y)) = (self.class_of(a), self.class_of(b)) else {
            return;
        };
        if x == y {
            return;
        }
        for class in self.classes.values_mut().chain(self.determinants.values_mut()) {
            if *class == y {
                *class = x;
            }
        }
    }

    /// The facts under the output's names: output column `i` is
    /// `mapping[i]` of the input, when it is a plain column.
    fn renamed(&self, mapping: &[(Column, Option<Column>)]) -> Facts {
        let mut out = Facts::default();
        for (output, input) in mapping {
            let Some(input) = input else { continue };
            if let Some(b) = self.bound(input) {
                out.bounds.insert(output.clone(), b);
            }
            if let Some(class) = self.class_of(input) {
                out.classes.insert(output.clone(), class);
            }
            if let Some(d) = self.determinant_of(input) {
                out.determinants.insert(output.clone(), d);
            }
            if self.non_null.contains(input) {
                out.non_null.insert(output.clone());
            }
        }
        // A key survives when each of its columns is still output.
        for (columns, bound) in &self.keys {
            let renamed: Option<Vec<Column>> = columns
                .iter()
                .map(|c| {
                    mapping
                        .iter()
                        .find(|(_, input)| input.as_ref() == Some(c))
                        .map(|(output, _)| output.clone())
                })
                .collect();
            if let Some(renamed) = renamed {
                out.keys.push((renamed, *bound));
            }
        }
        out
    }

    /// Every class id moved up by `offset` (to put two inputs side by side).
    fn shifted(mut self, offset: usize) -> Facts {
        self.classes.values_mut().for_each(|c| *c += offset);
        self.determinants.values_mut().for_each(|c| *c += offset);
        self
    }

    /// Every bound multiplied by `factor`; `None` when it overflows.
    fn scaled(mut self, factor: u64) -> Option<Facts> {
        for b in self.bounds.values_mut() {
            *b = b.checked_mul(factor)?;
        }
        for (_, b) in &mut self.keys {
            *b = b.checked_mul(factor)?;
        }
        Some(self)
    }
}

fn dataset_of(table: &TableReference) -> Option<DatasetId> {
    match table {
        TableReference::Partial { schema, table } => format!("{schema}.{table}").parse().ok(),
        TableReference::Full { catalog, schema, table } if catalog.as_ref() == crate::session::CATALOG => {
            format!("{schema}.{table}").parse().ok()
        }
        _ => None,
    }
}

/// Whether `a = b` between columns of these types holds exactly when the
/// two values are the same value: the same type, or two string types
/// (compared byte for byte), never floating point (`-0.0 = 0.0`, NaN).
/// Between other types the engine compares after an implicit cast (text
/// to a number: `'1'` and `'01'` both equal 1, and a text that is no number
/// equals nothing), so a join on them does not make two columns one class
/// and a declared bound on one side says nothing about the other's
/// matches (red team 2026-12-01).
fn equality_is_identity(a: &DataType, b: &DataType) -> bool {
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    (a == b && !a.is_floating()) || (text(a) && text(b))
}

fn derive(plan: &LogicalPlan, session: &JobSession) -> Option<Facts> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            // Every column its own class; a unique declared column
            // determines the scan's every column.
            let mut facts = Facts::default();
            let dataset = dataset_of(&scan.table_name);
            let declared = dataset.as_ref().and_then(|d| session.max_rows_per_value(d));
            let null_free = dataset.as_ref().and_then(|d| session.null_free_columns(d));
            let mut unique = None;
            for (i, (qualifier, field)) in scan.projected_schema.iter().enumerate() {
                let column = Column::new(qualifier.cloned(), field.name().to_string());
                let bound = declared.and_then(|d| d.get(field.name())).copied();
                if bound == Some(1) && unique.is_none() {
                    unique = Some(i);
                }
                if let Some(b) = bound {
                    facts.bounds.insert(column.clone(), b);
                }
                if null_free.is_some_and(|n| n.contains(field.name())) {
                    facts.non_null.insert(column.clone());
                }
                facts.classes.insert(column, i);
            }
            if let Some(k) = unique {
                let columns: Vec<Column> = facts.classes.keys().cloned().collect();
                facts.determinants.extend(columns.into_iter().map(|c| (c, k)));
            }
            for (key, &bound) in declared.into_iter().flatten() {
                let parts = key_columns(key);
                if parts.len() < 2 {
                    continue;
                }
                let columns: Option<Vec<Column>> = parts
                    .iter()
                    .map(|part| {
                        scan.projected_schema
                            .iter()
                            .find(|(_, f)| f.name() == part)
                            .map(|(q, f)| Column::new(q.cloned(), f.name().to_string()))
                    })
                    .collect();
                if let Some(columns) = columns {
                    facts.keys.push((columns, bound));
                }
            }
            Some(facts)
        }
        LogicalPlan::Filter(f) => derive(&f.input, session),
        LogicalPlan::Sort(s) => derive(&s.input, session),
        LogicalPlan::Limit(l) => derive(&l.input, session),
        LogicalPlan::Repartition(r) => derive(&r.input, session),
        LogicalPlan::SubqueryAlias(a) => {
            let facts = derive(&a.input, session)?;
            let mapping: Vec<(Column, Option<Column>)> = a
                .schema
                .columns()
                .into_iter()
                .zip(a.input.schema().columns())
                .map(|(out, input)| (out, Some(input)))
                .collect();
            Some(facts.renamed(&mapping))
        }
        LogicalPlan::Projection(p) => {
            let facts = derive(&p.input, session)?;
            let mapping: Vec<(Column, Option<Column>)> = p
                .schema
                .columns()
                .into_iter()
                .zip(&p.expr)
                .map(|(out, e)| match e.clone().unalias() {
                    Expr::Column(c) => (out, Some(c)),
                    _ => (out, None),
                })
                .collect();
            Some(facts.renamed(&mapping))
        }
        LogicalPlan::Join(j) => {
            let left = derive(&j.left, session)?;
            let right = derive(&j.right, session)?;
            match j.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti => Some(left),
                JoinType::RightSemi | JoinType::RightAnti => Some(right),
                JoinType::Inner => {
                    // Equalities of a left and a right column, from the
                    // join keys and from the join filter's conjuncts (the
                    // unoptimised plan keeps `ON a = b` as a filter).
                    let mut pairs = Vec::new();
                    let mut equal = |a: Expr, b: Expr| {
                        if let (Expr::Column(a), Expr::Column(b)) = (a.unalias(), b.unalias()) {
                            let (l, r) = if j.left.schema().has_column(&a) && j.right.schema().has_column(&b) {
                                (a, b)
                            } else if j.left.schema().has_column(&b) && j.right.schema().has_column(&a) {
                                (b, a)
                            } else {
                                return;
                            };
                            let types = (
                                j.left
                                    .schema()
                                    .qualified_field_from_column(&l)
                                    .map(|(_, f)| f.data_type().clone()),
                                j.right
                                    .schema()
                                    .qualified_field_from_column(&r)
                                    .map(|(_, f)| f.data_type().clone()),
                            );
                            if let (Ok(lt), Ok(rt)) = types
                                && equality_is_identity(&lt, &rt)
                            {
                                pairs.push((l, r));
                            }
                        }
                    };
                    for (l, r) in &j.on {
                        equal(l.clone(), r.clone());
                    }
                    if let Some(filter) = &j.filter {
                        for conjunct in split_conjunction(filter) {
                            if let Expr::BinaryExpr(BinaryExpr {
                                left,
                                op: Operator::Eq,
                                right,
                            }) = conjunct
                            {
                                equal(left.as_ref().clone(), right.as_ref().clone());
                            }
                        }
                    }
                    // A left row meets at most this many right rows.
                    let per_left = pairs.iter().filter_map(|(_, r)| right.bound(r)).min();
                    let per_right = pairs.iter().filter_map(|(l, _)| left.bound(l)).min();
                    let right = right.shifted(left.next_class());
                    let mut out = Facts::default();
                    for (side, factor) in [(&left, per_left), (&right, per_right)] {
                        if let Some(scaled) = factor.and_then(|k| side.clone().scaled(k)) {
                            out.bounds.extend(scaled.bounds);
                            out.keys.extend(scaled.keys);
                        }
                        out.classes.extend(side.classes.iter().map(|(c, k)| (c.clone(), *k)));
                        // An inner join's rows are rows of both inputs.
                        out.non_null.extend(side.non_null.iter().cloned());
                        out.determinants
                            .extend(side.determinants.iter().map(|(c, k)| (c.clone(), *k)));
                    }
                    for (l, r) in &pairs {
                        out.join_classes(l, r);
                    }
                    Some(out)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineLimits;
    use crate::session::TableBinding;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn binding(dir: &std::path::Path, id: &str, columns: &[&str], declared: &[(&str, u64)]) -> TableBinding {
        let path = dir.join(id);
        std::fs::create_dir_all(&path).expect("dir");
        TableBinding {
            dataset: id.parse().expect("id"),
            location: format!("{}/", path.display()),
            files: Vec::new(),
            schema: Arc::new(Schema::new(
                columns
                    .iter()
                    .map(|c| Field::new(*c, DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            )),
            declared_max_rows_per_value: declared
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect::<BTreeMap<_, _>>(),
            desensitize: BTreeMap::new(),
        }
    }

    /// A session over `bindings` that takes every declaration as verified
    /// (the derivation is under test here, not the verification).
    fn trusting(bindings: &[TableBinding]) -> JobSession {
        let mut session = JobSession::new(bindings, EngineLimits::default()).expect("session");
        for b in bindings {
            session.set_verified_max_rows_per_value(&b.dataset, b.declared_max_rows_per_value.clone());
        }
        session
    }

    /// The bound for the plan of `sql`, whose output columns `units` are
    /// the unit columns.
    fn bound(sql: &str, units: &[&str]) -> Option<u64> {
        let dir = tempfile::tempdir().expect("dir");
        let session = trusting(&[
            binding(
                dir.path(),
                "gov.usage",
                &["credit_code", "month"],
                &[("credit_code", 24)],
            ),
            binding(
                dir.path(),
                "gov.entities",
                &["credit_code", "district"],
                &[("credit_code", 1)],
            ),
            binding(
                dir.path(),
                "bank.loans",
                &["loan_id", "credit_code"],
                &[("credit_code", 3), ("loan_id", 1)],
            ),
            binding(dir.path(), "gov.districts", &["district", "name"], &[("district", 1)]),
            binding(dir.path(), "gov.plain", &["credit_code"], &[]),
        ]);
        let plan = session.plan(sql).expect("plan");
        let columns: Vec<Column> = units.iter().map(|u| Column::from_name(*u)).collect();
        unit_bounds(&plan, &columns, &[], &session).rows
    }

    /// The groups bound for the plan of `sql` grouped by its output
    /// columns `keys`.
    fn groups(sql: &str, units: &[&str], keys: &[&str]) -> Option<u64> {
        let dir = tempfile::tempdir().expect("dir");
        let session = trusting(&[
            binding(
                dir.path(),
                "gov.usage",
                &["credit_code", "month"],
                &[("credit_code", 24)],
            ),
            binding(
                dir.path(),
                "gov.entities",
                &["credit_code", "district"],
                &[("credit_code", 1)],
            ),
            binding(
                dir.path(),
                "bank.loans",
                &["loan_id", "credit_code"],
                &[("credit_code", 3)],
            ),
        ]);
        let plan = session.plan(sql).expect("plan");
        let columns: Vec<Column> = units.iter().map(|u| Column::from_name(*u)).collect();
        let keys: Vec<Expr> = keys.iter().map(|k| Expr::Column(Column::from_name(*k))).collect();
        unit_bounds(&plan, &columns, &keys, &session).groups
    }

    #[test]
    fn a_key_that_is_a_function_of_the_unit_gives_one_group() {
        let joined = "SELECT b.credit_code AS u1, e.credit_code AS u2, e.district AS d, b.loan_id AS l \
                      FROM bank.loans b JOIN gov.entities e ON b.credit_code = e.credit_code";
        // district comes from the row of the unit's unique credit code.
        assert_eq!(groups(joined, &["u1", "u2"], &["d"]), Some(1));
        // loan_id does not: bounded by the unit's rows.
        assert_eq!(groups(joined, &["u1", "u2"], &["d", "l"]), Some(3));
        // Not joined on the unit: no function of it; bounded by its rows.
        let apart = "SELECT b.credit_code AS u, e.district AS d FROM bank.loans b \
                     JOIN gov.entities e ON b.loan_id = e.credit_code";
        assert_eq!(groups(apart, &["u"], &["d"]), Some(3));
        // A table without a unique column: month is no function of the unit.
        let usage = "SELECT credit_code AS u, month AS m FROM gov.usage";
        assert_eq!(groups(usage, &["u"], &["m"]), Some(24));
    }

    #[test]
    fn a_scan_filter_and_projection_keep_the_declared_bound() {
        assert_eq!(
            bound("SELECT credit_code AS u FROM gov.usage WHERE month > '2023-06'", &["u"]),
            Some(24)
        );
        assert_eq!(bound("SELECT credit_code AS u FROM gov.plain", &["u"]), None);
    }

    #[test]
    fn an_equi_join_multiplies_by_the_matches_a_row_can_meet() {
        // Joined on the unit: both unit columns are one value.
        let on_unit = "SELECT b.credit_code AS u1, e.credit_code AS u2 FROM bank.loans b \
                       JOIN gov.entities e ON b.credit_code = e.credit_code";
        assert_eq!(bound(on_unit, &["u1", "u2"]), Some(3));
        let usage = "SELECT u.credit_code AS u1, e.credit_code AS u2 FROM gov.usage u \
                     JOIN gov.entities e ON u.credit_code = e.credit_code WHERE e.district = 'x'";
        assert_eq!(bound(usage, &["u1", "u2"]), Some(24));
        // A lookup on a unique key keeps the left side's bound.
        let lookup = "SELECT e.credit_code AS u FROM gov.entities e JOIN gov.districts d ON e.district = d.district";
        assert_eq!(bound(lookup, &["u"]), Some(1));
        // Unit columns not joined to each other: a unit's rows are covered
        // by the rows where either equals it.
        let apart = "SELECT b.credit_code AS u1, e.credit_code AS u2 FROM bank.loans b \
                     JOIN gov.entities e ON b.loan_id = e.credit_code";
        assert_eq!(bound(apart, &["u1", "u2"]), Some(3 + 1));
    }

    #[test]
    fn unknown_shapes_give_no_bound() {
        // The right key has no declaration: a left row may meet any number.
        let undeclared =
            "SELECT b.credit_code AS u FROM bank.loans b JOIN gov.plain p ON b.credit_code = p.credit_code";
        assert_eq!(bound(undeclared, &["u"]), None);
        // A join on a non-equality.
        let theta = "SELECT b.credit_code AS u FROM bank.loans b JOIN gov.entities e ON b.credit_code < e.credit_code";
        assert_eq!(bound(theta, &["u"]), None);
        // Outer joins, aggregations and unions are not followed.
        let outer =
            "SELECT b.credit_code AS u FROM bank.loans b LEFT JOIN gov.entities e ON b.credit_code = e.credit_code";
        assert_eq!(bound(outer, &["u"]), None);
        let grouped =
            "SELECT credit_code AS u FROM (SELECT credit_code, COUNT(*) AS n FROM gov.usage GROUP BY credit_code)";
        assert_eq!(bound(grouped, &["u"]), None);
        let union = "SELECT credit_code AS u FROM gov.usage UNION ALL SELECT credit_code FROM gov.usage";
        assert_eq!(bound(union, &["u"]), None);
        // A self-join on the unit squares the bound.
        let selfjoin = "SELECT a.credit_code AS u FROM bank.loans a JOIN bank.loans b ON a.credit_code = b.credit_code";
        assert_eq!(bound(selfjoin, &["u"]), Some(9));
    }

    fn write_parquet(path: &std::path::Path, column: datafusion::arrow::array::ArrayRef) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "credit_code",
            column.data_type().clone(),
            true,
        )]));
        let batch = datafusion::arrow::array::RecordBatch::try_new(schema.clone(), vec![column]).expect("batch");
        let file = std::fs::File::create(path).expect("file");
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
    }

    #[tokio::test]
    async fn values_are_counted_as_the_scan_sees_them_on_the_pinned_files() {
        use datafusion::arrow::array::{Int64Array, StringArray};
        let dir = tempfile::tempdir().expect("dir");
        // One enterprise as an integer in one file and as text in another:
        // one value once cast to the catalog's text type, as a join sees it.
        let a = dir.path().join("a.parquet");
        let b = dir.path().join("b.parquet");
        write_parquet(&a, Arc::new(Int64Array::from(vec![Some(100000), Some(7), None])));
        write_parquet(&b, Arc::new(StringArray::from(vec![Some("100000"), None])));
        // A file outside the pinned list is neither counted nor scanned.
        let hidden = dir.path().join("x=1");
        std::fs::create_dir_all(&hidden).expect("dir");
        write_parquet(
            &hidden.join("c.parquet"),
            Arc::new(StringArray::from(vec!["100000"; 5])),
        );
        let mut table = binding(dir.path(), "gov.usage", &["credit_code"], &[("credit_code", 1)]);
        table.location = format!("{}/", dir.path().display());
        table.files = vec![a.display().to_string(), b.display().to_string()];
        let session = JobSession::new(&[table], EngineLimits::default()).expect("session");
        let dataset: DatasetId = "gov.usage".parse().expect("id");
        let counted = count_max_rows_per_value(&session, &dataset, &["credit_code".to_string()])
            .await
            .expect("counted");
        assert_eq!(counted.get("credit_code"), Some(&2));
        // The job's scan reads the same two files: three non-null codes.
        let plan = session
            .plan("SELECT COUNT(credit_code) AS n FROM gov.usage")
            .expect("plan");
        let batches = crate::partials::execute(&session, plan).await.expect("run");
        let n = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(n, 3);
    }

    /// The bound on one unit's rows in one group for the plan of `sql`
    /// grouped by its output columns `keys`, with one row per enterprise
    /// and month declared on the usage table.
    fn rows_per_group(sql: &str, units: &[&str], keys: &[&str]) -> Option<u64> {
        let dir = tempfile::tempdir().expect("dir");
        let session = trusting(&[
            binding(
                dir.path(),
                "gov.usage",
                &["credit_code", "month", "kwh"],
                &[("credit_code", 24), ("credit_code+month", 1)],
            ),
            binding(
                dir.path(),
                "bank.loans",
                &["loan_id", "credit_code"],
                &[("credit_code", 3), ("loan_id", 1)],
            ),
        ]);
        let plan = session.plan(sql).expect("plan");
        let columns: Vec<Column> = units.iter().map(|u| Column::from_name(*u)).collect();
        let keys: Vec<Expr> = keys.iter().map(|k| Expr::Column(Column::from_name(*k))).collect();
        unit_bounds(&plan, &columns, &keys, &session).rows_per_group
    }

    #[test]
    fn a_unit_column_without_nulls_in_the_files_gives_every_row_a_unit() {
        let dir = tempfile::tempdir().expect("dir");
        let mut session = trusting(&[
            binding(
                dir.path(),
                "gov.usage",
                &["credit_code", "month"],
                &[("credit_code", 24)],
            ),
            binding(
                dir.path(),
                "gov.entities",
                &["credit_code", "district"],
                &[("credit_code", 1)],
            ),
        ]);
        session.set_null_free_columns(&"gov.usage".parse().expect("id"), ["credit_code".to_string()].into());
        let never_null = |sql: &str, units: &[&str]| {
            let plan = session.plan(sql).expect("plan");
            let columns: Vec<Column> = units.iter().map(|u| Column::from_name(*u)).collect();
            unit_bounds(&plan, &columns, &[], &session).unit_never_null
        };
        assert!(never_null(
            "SELECT credit_code AS u, month FROM gov.usage WHERE month > '2023'",
            &["u"]
        ));
        let inner = "SELECT g.credit_code AS u, e.credit_code AS v FROM gov.usage g \
                     JOIN gov.entities e ON g.credit_code = e.credit_code";
        assert!(never_null(inner, &["v", "u"]));
        // The entities' column was not counted: it may hold NULLs.
        assert!(!never_null("SELECT credit_code AS u FROM gov.entities", &["u"]));
        // An outer join can give a row without the other side's values.
        let outer =
            "SELECT g.credit_code AS u FROM gov.entities e LEFT JOIN gov.usage g ON g.credit_code = e.credit_code";
        assert!(!never_null(outer, &["u"]));
        // A computed unit is not the column.
        assert!(!never_null(
            "SELECT CASE WHEN month > '2023' THEN credit_code END AS u FROM gov.usage",
            &["u"]
        ));
    }

    #[tokio::test]
    async fn nulls_are_counted_as_the_scan_sees_them() {
        use datafusion::arrow::array::StringArray;
        let dir = tempfile::tempdir().expect("dir");
        let a = dir.path().join("a.parquet");
        write_parquet(&a, Arc::new(StringArray::from(vec![Some("x"), None, None, Some("y")])));
        let mut table = binding(dir.path(), "gov.usage", &["credit_code"], &[("credit_code", 2)]);
        table.location = format!("{}/", dir.path().display());
        table.files = vec![a.display().to_string()];
        let session = JobSession::new(&[table], EngineLimits::default()).expect("session");
        let dataset: DatasetId = "gov.usage".parse().expect("id");
        let nulls = count_nulls(&session, &dataset, &["credit_code".to_string()])
            .await
            .expect("counted");
        assert_eq!(nulls.get("credit_code"), Some(&2));
    }

    #[test]
    fn a_declared_key_of_the_unit_and_the_group_keys_bounds_a_units_rows_per_group() {
        let usage = "SELECT credit_code AS u, month AS m, kwh AS k FROM gov.usage";
        assert_eq!(rows_per_group(usage, &["u"], &["m"]), Some(1));
        // Renamed through an alias and a filter: still one.
        let aliased = "SELECT x.credit_code AS u, x.month AS m FROM gov.usage x WHERE x.kwh > '0'";
        assert_eq!(rows_per_group(aliased, &["u"], &["m"]), Some(1));
        // Grouped by something else than the key's other column: no bound.
        assert_eq!(rows_per_group(usage, &["u"], &["k"]), None);
        assert_eq!(rows_per_group(usage, &["u"], &[]), None);
        // The unit is not the key's first column's value: no bound.
        assert_eq!(rows_per_group(usage, &["k"], &["m"]), None);
        // A key computed from the month is not the month: no bound.
        let computed = "SELECT credit_code AS u, substr(month, 1, 4) AS m FROM gov.usage";
        assert_eq!(rows_per_group(computed, &["u"], &["m"]), None);
        // A join that gives each usage row up to 3 loans multiplies it.
        let joined = "SELECT g.credit_code AS u, g.month AS m, l.loan_id AS l \
                      FROM gov.usage g JOIN bank.loans l ON g.credit_code = l.credit_code";
        assert_eq!(rows_per_group(joined, &["u"], &["m"]), Some(3));
    }

    #[tokio::test]
    async fn a_key_of_several_columns_counts_combinations_with_null_as_a_value() {
        use datafusion::arrow::array::{RecordBatch, StringArray};
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("credit_code", DataType::Utf8, true),
            Field::new("month", DataType::Utf8, true),
        ]));
        let codes = StringArray::from(vec![Some("a"), Some("a"), Some("a"), Some("b"), Some("b"), None]);
        let months = StringArray::from(vec![Some("01"), Some("02"), Some("02"), None, None, Some("01")]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(codes), Arc::new(months)]).expect("batch");
        let file = std::fs::File::create(&path).expect("file");
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        let mut table = binding(dir.path(), "gov.usage", &["credit_code", "month"], &[]);
        table.location = format!("{}/", dir.path().display());
        table.files = vec![path.display().to_string()];
        let session = JobSession::new(&[table], EngineLimits::default()).expect("session");
        let dataset: DatasetId = "gov.usage".parse().expect("id");
        let counted = count_max_rows_per_value(
            &session,
            &dataset,
            &["credit_code+month".to_string(), "credit_code".to_string()],
        )
        .await
        .expect("counted");
        // (a, 02) twice, (b, NULL) twice: NULL is a value of the key.
        assert_eq!(counted.get("credit_code+month"), Some(&2));
        assert_eq!(counted.get("credit_code"), Some(&3));
    }
}

/// Red team 2026-12-01 (keys of several columns): for each shape, the
/// declarations are verified on real files by the runtime's own count,
/// and the bound `unit_bounds` derives for one unit's rows in one group
/// (and in all) must hold on the rows the engine actually produces.
#[cfg(test)]
mod red_team_keys {
    use super::*;
    use crate::EngineLimits;
    use crate::session::TableBinding;
    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    /// One table of `columns` (name, values) written to a Parquet file,
    /// with its declarations.
    fn table(
        dir: &std::path::Path,
        id: &str,
        columns: Vec<(&str, ArrayRef)>,
        declared: &[(&str, u64)],
    ) -> TableBinding {
        let path = dir.join(id);
        std::fs::create_dir_all(&path).expect("dir");
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect()).expect("batch");
        let file_path = path.join("part-0.parquet");
        let file = std::fs::File::create(&file_path).expect("file");
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        TableBinding {
            dataset: id.parse().expect("id"),
            location: format!("{}/", path.display()),
            files: vec![file_path.display().to_string()],
            schema,
            declared_max_rows_per_value: declared.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            desensitize: BTreeMap::new(),
        }
    }

    fn strings(v: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    /// A session over `tables` with exactly the declarations that hold on
    /// their files installed, as the runtime's verify step does.
    async fn verified_session(tables: &[TableBinding]) -> JobSession {
        let mut session = JobSession::new(tables, EngineLimits::default()).expect("session");
        for t in tables {
            let keys: Vec<String> = t.declared_max_rows_per_value.keys().cloned().collect();
            let counted = count_max_rows_per_value(&session, &t.dataset, &keys)
                .await
                .expect("count");
            let holds: BTreeMap<String, u64> = t
                .declared_max_rows_per_value
                .iter()
                .filter(|(k, b)| counted.get(*k).is_some_and(|c| c <= *b))
                .map(|(k, b)| (k.clone(), *b))
                .collect();
            session.set_verified_max_rows_per_value(&t.dataset, holds);
        }
        session
    }

    /// The most rows one unit (output column `u`, non-null) has in one
    /// group of `keys`, and in all, on the rows of `plan`.
    async fn actual(session: &JobSession, plan: &LogicalPlan, keys: &[&str]) -> (u64, u64) {
        let one = |b: &[RecordBatch]| -> u64 {
            b.iter()
                .find(|b| b.num_rows() > 0)
                .map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
                .map_or(0, |v| u64::try_from(v).unwrap_or(0))
        };
        let mut by = vec![col("u")];
        by.extend(keys.iter().map(|k| col(*k)));
        let per_group = LogicalPlanBuilder::from(plan.clone())
            .filter(col("u").is_not_null())
            .and_then(|b| b.aggregate(by, vec![count(lit(1i64)).alias("__n")]))
            .and_then(|b| b.aggregate(Vec::<Expr>::new(), vec![max(col("__n"))]))
            .and_then(|b| b.build())
            .expect("plan");
        let per_unit = LogicalPlanBuilder::from(plan.clone())
            .filter(col("u").is_not_null())
            .and_then(|b| b.aggregate(vec![col("u")], vec![count(lit(1i64)).alias("__n")]))
            .and_then(|b| b.aggregate(Vec::<Expr>::new(), vec![max(col("__n"))]))
            .and_then(|b| b.build())
            .expect("plan");
        let g = crate::partials::execute(session, per_group).await.expect("run");
        let r = crate::partials::execute(session, per_unit).await.expect("run");
        (one(&g), one(&r))
    }

    /// Fails when a unit has more rows in one group, or in all, than the
    /// derived bounds allow; returns the derived bounds.
    async fn assert_bounds_hold(session: &JobSession, sql: &str, keys: &[&str]) -> UnitBounds {
        let plan = session.plan(sql).expect("plan");
        let group_keys: Vec<Expr> = keys.iter().map(|k| Expr::Column(Column::from_name(*k))).collect();
        let bounds = unit_bounds(&plan, &[Column::from_name("u")], &group_keys, session);
        let (in_group, in_all) = actual(session, &plan, keys).await;
        if let Some(r) = bounds.rows_per_group {
            assert!(
                in_group <= r,
                "{sql}: a unit has {in_group} rows in one group where rows_per_group = {r}"
            );
        }
        if let Some(r) = bounds.rows {
            assert!(in_all <= r, "{sql}: a unit has {in_all} rows where rows = {r}");
        }
        bounds
    }

    /// The usage table: one row per enterprise and month, declared and
    /// true (months "1" and "01" are two values of a text column).
    fn usage(dir: &std::path::Path) -> TableBinding {
        table(
            dir,
            "gov.usage",
            vec![
                (
                    "credit_code",
                    strings(&[Some("A"), Some("A"), Some("A"), Some("B"), Some("B")]),
                ),
                (
                    "month",
                    strings(&[Some("1"), Some("01"), Some("2"), Some("1"), Some("2")]),
                ),
                ("kwh", strings(&[Some("5"), Some("5"), Some("5"), Some("5"), Some("5")])),
            ],
            &[("credit_code", 24), ("credit_code+month", 1)],
        )
    }

    /// A lookup joined on an implicit cast: `month` (text) = `month_no`
    /// (an integer, one row per value). DataFusion coerces the text side
    /// to the integer, so "1" and "01" (two values of the declared key)
    /// meet the same lookup row and fall into one group of `month_no`,
    /// although the join's classes take `month` and `month_no` as equal.
    #[tokio::test]
    async fn a_join_on_an_implicit_cast_does_not_make_a_group_key_equal_to_the_key_column() {
        let dir = tempfile::tempdir().expect("dir");
        let calendar = table(
            dir.path(),
            "gov.calendar",
            vec![
                ("month_no", Arc::new(Int64Array::from(vec![1i64, 2])) as ArrayRef),
                ("label", strings(&[Some("jan"), Some("feb")])),
            ],
            &[("month_no", 1)],
        );
        let session = verified_session(&[usage(dir.path()), calendar]).await;
        assert_eq!(
            session
                .max_rows_per_value(&"gov.usage".parse().expect("id"))
                .and_then(|m| m.get("credit_code+month")),
            Some(&1),
            "the declaration holds on the files"
        );
        assert_bounds_hold(
            &session,
            "SELECT g.credit_code AS u, g.month AS gm, c.month_no AS m FROM gov.usage g JOIN gov.calendar c ON g.month = c.month_no",
            &["m"],
        )
        .await;
    }

    /// The same cast the other way round breaks the row bound itself: a
    /// text lookup column declared unique holds "1" and "01", which both
    /// equal the integer 1 after the coercion, so a usage row meets two
    /// lookup rows where the derivation multiplies by one.
    #[tokio::test]
    async fn a_join_on_an_implicit_cast_does_not_keep_a_unique_columns_bound() {
        let dir = tempfile::tempdir().expect("dir");
        let usage = table(
            dir.path(),
            "gov.usage",
            vec![
                ("credit_code", strings(&[Some("A"), Some("A"), Some("B")])),
                ("month_no", Arc::new(Int64Array::from(vec![1i64, 2, 1])) as ArrayRef),
            ],
            &[("credit_code", 2), ("credit_code+month_no", 1)],
        );
        let codes = table(
            dir.path(),
            "gov.codes",
            vec![
                ("code", strings(&[Some("1"), Some("01"), Some("2")])),
                ("label", strings(&[Some("x"), Some("y"), Some("z")])),
            ],
            &[("code", 1)],
        );
        let session = verified_session(&[usage, codes]).await;
        assert_bounds_hold(
            &session,
            "SELECT g.credit_code AS u, g.month_no AS m, c.label AS l FROM gov.usage g JOIN gov.codes c ON g.month_no = c.code",
            &["m"],
        )
        .await;
    }

    /// Shapes the derivation must get right without casts: the key's own
    /// columns, renames, filters, a self-join on the unit, a join on the
    /// unit with a table of several rows per unit, group keys computed
    /// from the month, and NULL months.
    #[tokio::test]
    async fn declared_keys_bound_the_rows_the_engine_produces() {
        let dir = tempfile::tempdir().expect("dir");
        let loans = table(
            dir.path(),
            "bank.loans",
            vec![
                ("credit_code", strings(&[Some("A"), Some("A"), Some("B")])),
                ("loan_id", strings(&[Some("l1"), Some("l2"), Some("l3")])),
            ],
            &[("credit_code", 3), ("loan_id", 1)],
        );
        let session = verified_session(&[usage(dir.path()), loans]).await;
        let cases: &[(&str, &[&str], Option<u64>)] = &[
            ("SELECT credit_code AS u, month AS m FROM gov.usage", &["m"], Some(1)),
            (
                "SELECT t.c AS u, t.mm AS m FROM (SELECT credit_code AS c, month AS mm FROM gov.usage WHERE kwh > '0') t",
                &["m"],
                Some(1),
            ),
            (
                "SELECT credit_code AS u, substr(month, 2) AS m FROM gov.usage",
                &["m"],
                None,
            ),
            (
                "SELECT credit_code AS u, CAST(month AS BIGINT) AS m FROM gov.usage",
                &["m"],
                None,
            ),
            ("SELECT credit_code AS u, kwh AS m FROM gov.usage", &["m"], None),
            (
                "SELECT a.credit_code AS u, a.month AS m, b.month AS m2 FROM gov.usage a \
                 JOIN gov.usage b ON a.credit_code = b.credit_code",
                &["m"],
                Some(24),
            ),
            (
                "SELECT a.credit_code AS u, b.month AS m FROM gov.usage a \
                 JOIN gov.usage b ON a.credit_code = b.credit_code",
                &["m"],
                // b's key does not reach the output whole: no bound.
                None,
            ),
            (
                "SELECT g.credit_code AS u, g.month AS m FROM gov.usage g \
                 JOIN bank.loans l ON g.credit_code = l.credit_code",
                &["m"],
                Some(3),
            ),
            (
                "SELECT l.credit_code AS u, g.month AS m, l.loan_id AS id FROM gov.usage g \
                 JOIN bank.loans l ON g.credit_code = l.credit_code",
                &["m", "id"],
                // g.credit_code is not output: the key does not survive.
                None,
            ),
            (
                "SELECT l.credit_code AS u, g.credit_code AS c, g.month AS m, l.loan_id AS id FROM gov.usage g \
                 JOIN bank.loans l ON g.credit_code = l.credit_code",
                &["m", "id"],
                Some(3),
            ),
        ];
        for (sql, keys, expected) in cases {
            let b = assert_bounds_hold(&session, sql, keys).await;
            assert_eq!(b.rows_per_group, *expected, "{sql}");
        }

        // NULL months: two rows of A with no month break the declaration,
        // which is then not installed (no bound per group).
        let dir = tempfile::tempdir().expect("dir");
        let nulls = table(
            dir.path(),
            "gov.usage",
            vec![
                ("credit_code", strings(&[Some("A"), Some("A"), Some("B")])),
                ("month", strings(&[None, None, Some("1")])),
                ("kwh", strings(&[Some("5"), Some("5"), Some("5")])),
            ],
            &[("credit_code", 24), ("credit_code+month", 1)],
        );
        let session = verified_session(&[nulls]).await;
        let installed = session.max_rows_per_value(&"gov.usage".parse().expect("id")).cloned();
        assert_eq!(installed, Some(BTreeMap::from([("credit_code".to_string(), 24)])));
        let b = assert_bounds_hold(&session, "SELECT credit_code AS u, month AS m FROM gov.usage", &["m"]).await;
        assert_eq!(b.rows_per_group, None);
    }
}
