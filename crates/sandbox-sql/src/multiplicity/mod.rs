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
    let counted = count_per_column(session, dataset, columns, |scan, column| {
        match key_columns(column).as_slice() {
            // One column: the rows sharing each non-null value.
            [single] => scan
                .filter(col(*single).is_not_null())?
                .aggregate(vec![col(*single)], vec![count(lit(1i64)).alias("__n")]),
            // A key of several columns: the rows sharing each combination,
            // NULL a value like any other (GROUP BY groups NULLs together).
            parts => scan.aggregate(
                parts.iter().map(|c| col(*c)).collect::<Vec<_>>(),
                vec![count(lit(1i64)).alias("__n")],
            ),
        }?
        .aggregate(Vec::<Expr>::new(), vec![max(col("__n")).alias("__max")])
    })
    .await?;
    // No row (an empty table): no value shares a row.
    Ok(counted
        .into_iter()
        .map(|(c, most)| (c, most.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)))
        .collect())
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
    let counted = count_per_column(session, dataset, columns, |scan, column| {
        scan.filter(col(column).is_null())?
            .aggregate(Vec::<Expr>::new(), vec![count(lit(1i64)).alias("__n")])
    })
    .await?;
    counted
        .into_iter()
        .map(|(c, nulls)| {
            let nulls = nulls.ok_or_else(|| SqlError::Internal("no null count".into()))?;
            Ok((c, u64::try_from(nulls).unwrap_or(u64::MAX)))
        })
        .collect()
}

/// Runs, for each of `columns`, the one-value plan `plan(scan, column)`
/// builds over a scan of `dataset`'s table as this session binds it, and
/// reads its `Int64` value (`None`: no row or NULL).
async fn count_per_column(
    session: &JobSession,
    dataset: &DatasetId,
    columns: &[String],
    plan: impl Fn(LogicalPlanBuilder, &str) -> datafusion::error::Result<LogicalPlanBuilder>,
) -> Result<BTreeMap<String, Option<i64>>, SqlError> {
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
        let built = LogicalPlanBuilder::scan(
            TableReference::partial(dataset.namespace(), dataset.table()),
            provider_as_source(provider.clone()),
            None,
        )
        .and_then(|scan| plan(scan, column))
        .and_then(|b| b.build())
        .map_err(internal)?;
        let batches = crate::partials::execute(session, built).await?;
        let value = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| b.column(0).as_primitive_opt::<Int64Type>().cloned())
            .and_then(|a| (!a.is_null(0)).then(|| a.value(0)));
        out.insert(column.clone(), value);
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
mod tests;

#[cfg(test)]
mod red_team_keys;
