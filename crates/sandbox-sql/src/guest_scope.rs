//! Scoping job functions to privacy units.
//!
//! The user's SQL is planned against [`GuestUdf`], the job function with
//! its own arity. Before the plan runs, every such call `f(args…)` becomes
//! [`unit_scoped_udf`]`(f)(unit, args…)`, where `unit` is the row's privacy
//! unit: the coalesce of the unit columns (see [`crate::rewrite`]) present
//! in the input of the node that holds the call. The scoped form never
//! gives one call rows of two units (see [`crate::guest`]).
//!
//! Job functions are recognised by their implementation being a
//! [`GuestUdf`], never by name, and must be among the job's registered
//! functions. Output names are preserved (a rewritten expression keeps the
//! name of the original), so the plan's schemas do not change.

use crate::SqlError;
use crate::guest::{GuestUdf, RowFunction, unit_scoped_udf};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DataFusionError, ScalarValue};
use datafusion::functions::expr_fn::coalesce;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rewrites every call of a job function in `plan` (all nodes, subqueries
/// included) into its unit-scoped form, with the unit taken from the
/// `unit_columns` (matched by name; any reserved unit column counts too)
/// present in each node's input schemas: one column as is, several
/// coalesced, none a NULL (rows without a protected unit).
pub fn scope_guest_calls(
    plan: LogicalPlan,
    unit_columns: &[Column],
    functions: &BTreeMap<String, Arc<dyn RowFunction>>,
) -> Result<LogicalPlan, SqlError> {
    let internal = |e: DataFusionError| SqlError::Internal(e.strip_backtrace());
    plan.transform_up_with_subqueries(|node| {
        let unit = node_unit(&node, unit_columns);
        let preserver = NamePreserver::new(&node);
        let rewritten = node.map_expressions(|expr| {
            let saved = preserver.save(&expr);
            let t = scope_expr(expr, &unit, functions)?;
            Ok(if t.transformed {
                t.update_data(|e| saved.restore(e))
            } else {
                t
            })
        })?;
        if rewritten.transformed {
            rewritten.map_data(|p| p.recompute_schema())
        } else {
            Ok(rewritten)
        }
    })
    .map(|t| t.data)
    .map_err(internal)
}

/// Rewrites the job-function calls of one expression, with `unit` as the
/// privacy unit of its rows (for expressions evaluated above the row
/// source, such as aggregate arguments).
pub fn scope_guest_calls_in_expr(
    expr: Expr,
    unit: Expr,
    functions: &BTreeMap<String, Arc<dyn RowFunction>>,
) -> Result<Expr, SqlError> {
    scope_expr(expr, &unit, functions)
        .map(|t| t.data)
        .map_err(|e| SqlError::Internal(e.strip_backtrace()))
}

fn scope_expr(
    expr: Expr,
    unit: &Expr,
    functions: &BTreeMap<String, Arc<dyn RowFunction>>,
) -> datafusion::common::Result<Transformed<Expr>> {
    expr.transform_up(|e| {
        let Expr::ScalarFunction(call) = &e else {
            return Ok(Transformed::no(e));
        };
        let Some(guest) = call.func.inner().downcast_ref::<GuestUdf>() else {
            return Ok(Transformed::no(e));
        };
        let name = guest.function().name();
        let function = functions
            .get(name)
            .filter(|f| f.identity() == guest.function().identity())
            .ok_or_else(|| {
                DataFusionError::Internal(format!("job function `{name}` is not registered for this job"))
            })?;
        if call.args.len() != function.arity() {
            return Err(DataFusionError::Internal(format!(
                "job function `{name}` called with {} arguments, declared {}",
                call.args.len(),
                function.arity()
            )));
        }
        let mut args = Vec::with_capacity(call.args.len() + 1);
        args.push(unit.clone());
        args.extend(call.args.iter().cloned());
        Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(unit_scoped_udf(function.clone())),
            args,
        ))))
    })
}

/// The unit of a node's rows: the unit columns in its input schemas (for
/// a node without inputs, its own schema).
fn node_unit(node: &LogicalPlan, unit_columns: &[Column]) -> Expr {
    let schemas: Vec<&DFSchema> = match node.inputs() {
        inputs if inputs.is_empty() => vec![node.schema().as_ref()],
        inputs => inputs.into_iter().map(|p| p.schema().as_ref()).collect(),
    };
    // Exactly the unit columns the rewrite made (per-job random names, so a
    // name match is an identity match); never a prefix.
    let is_unit = |name: &str| unit_columns.iter().any(|c| c.name == name);
    let mut columns: Vec<Expr> = Vec::new();
    for schema in schemas {
        for c in schema.columns() {
            if is_unit(&c.name) && !columns.iter().any(|e| matches!(e, Expr::Column(x) if *x == c)) {
                columns.push(Expr::Column(c));
            }
        }
    }
    match columns.len() {
        0 => Expr::Literal(ScalarValue::Utf8(None), None),
        1 => columns.remove(0),
        _ => coalesce(columns.into_iter().map(cast_utf8).collect()),
    }
}

fn cast_utf8(e: Expr) -> Expr {
    Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(e), DataType::Utf8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Float64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{Field, Float64Type, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;
    use std::sync::Mutex;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Behaviour {
        /// Returns each row's argument.
        Echo,
        /// Returns the number of rows in the call.
        CallSize,
        /// Fails every call.
        Fail,
        /// Returns one value too many.
        WrongLength,
    }

    /// A fake job function; records each call's argument values.
    #[derive(Debug)]
    struct Fake {
        behaviour: Behaviour,
        calls: Mutex<Vec<Vec<f64>>>,
    }

    impl RowFunction for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn arity(&self) -> usize {
            1
        }
        fn bounds(&self) -> (f64, f64) {
            (0.0, 1000.0)
        }
        fn identity(&self) -> &str {
            "fake-module"
        }
        fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
            let rows: Vec<f64> = args
                .column(0)
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect();
            self.calls.lock().map_err(|_| "poisoned")?.push(rows.clone());
            match self.behaviour {
                Behaviour::Echo => Ok(rows),
                Behaviour::CallSize => Ok(vec![rows.len() as f64; rows.len()]),
                Behaviour::Fail => Err("trap".into()),
                Behaviour::WrongLength => Ok(vec![1.0; rows.len() + 1]),
            }
        }
    }

    /// Units a, b, c interleaved (x = 100·unit + row within unit), one
    /// public row with a NULL unit.
    fn table() -> RecordBatch {
        let units = vec![
            Some("a"),
            Some("b"),
            Some("c"),
            Some("a"),
            None,
            Some("c"),
            Some("b"),
            Some("a"),
            Some("c"),
        ];
        let x = vec![100.0, 200.0, 300.0, 101.0, 900.0, 301.0, 201.0, 102.0, 302.0];
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("__sandbox_unit_0", DataType::Utf8, true),
                Field::new("x", DataType::Float64, true),
            ])),
            vec![Arc::new(StringArray::from(units)), Arc::new(Float64Array::from(x))],
        )
        .expect("batch")
    }

    /// Plans `sql` against the planning form, scopes it, runs it on one
    /// partition (one batch) and returns the first column.
    fn run(behaviour: Behaviour, sql: &str) -> (Vec<Option<f64>>, Vec<Vec<f64>>) {
        let fake = Arc::new(Fake {
            behaviour,
            calls: Mutex::new(Vec::new()),
        });
        let function: Arc<dyn RowFunction> = fake.clone();
        let functions = BTreeMap::from([("fake".to_string(), function.clone())]);
        let ctx = SessionContext::new_with_config(datafusion::prelude::SessionConfig::new().with_target_partitions(1));
        let batch = table();
        let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("table");
        ctx.register_table("t", Arc::new(mem)).expect("register");
        ctx.register_udf(GuestUdf::new(function).into_udf());
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let out = rt.block_on(async {
            let plan = ctx.state().create_logical_plan(sql).await.expect("plan");
            let units = vec![Column::from_name("__sandbox_unit_0")];
            let scoped = scope_guest_calls(plan.clone(), &units, &functions).expect("scope");
            assert_eq!(plan.schema(), scoped.schema(), "names and types are preserved");
            assert!(
                format!("{scoped}").contains("fake(t.__sandbox_unit_0, t.x)"),
                "{scoped}"
            );
            ctx.execute_logical_plan(scoped)
                .await
                .expect("execute")
                .collect()
                .await
                .expect("collect")
        });
        let values = out
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Float64Type>().iter().collect::<Vec<_>>())
            .collect();
        let calls = fake.calls.lock().expect("lock").clone();
        (values, calls)
    }

    #[test]
    fn one_call_per_unit_with_only_that_units_rows() {
        let (values, mut calls) = run(Behaviour::Echo, "SELECT fake(x) AS y FROM t");
        assert_eq!(
            values,
            [100.0, 200.0, 300.0, 101.0, 900.0, 301.0, 201.0, 102.0, 302.0].map(Some)
        );
        calls.sort_by(|a, b| a[0].total_cmp(&b[0]));
        assert_eq!(
            calls,
            vec![
                vec![100.0, 101.0, 102.0],
                vec![200.0, 201.0],
                vec![300.0, 301.0, 302.0],
                vec![900.0]
            ]
        );
    }

    #[test]
    fn a_call_sees_only_its_units_rows() {
        let (values, calls) = run(Behaviour::CallSize, "SELECT fake(x) FROM t");
        assert_eq!(values, [3.0, 2.0, 3.0, 3.0, 1.0, 3.0, 2.0, 3.0, 3.0].map(Some));
        assert_eq!(calls.len(), 4);
    }

    #[test]
    fn calls_inside_aggregates_and_filters_are_scoped() {
        let (values, calls) = run(
            Behaviour::CallSize,
            "SELECT SUM(fake(x)) FROM t WHERE fake(x + 1) > 0 GROUP BY x > 150",
        );
        assert_eq!(calls.len(), 8, "4 units in the filter, 4 in the aggregate");
        let mut values: Vec<f64> = values.into_iter().flatten().collect();
        values.sort_by(f64::total_cmp);
        // x <= 150: unit a's three rows (3 each); x > 150: b 2+2, c 3+3+3, public 1.
        assert_eq!(values, vec![9.0, 14.0]);
    }

    #[test]
    fn failing_or_malformed_calls_never_fail_the_query() {
        let (values, _) = run(Behaviour::Fail, "SELECT fake(x) FROM t");
        assert_eq!(values, vec![Some(500.0); 9]);
        let (values, _) = run(Behaviour::WrongLength, "SELECT fake(x) FROM t");
        assert_eq!(values, vec![Some(500.0); 9]);
    }

    #[test]
    fn expressions_take_the_given_unit() {
        let function: Arc<dyn RowFunction> = Arc::new(Fake {
            behaviour: Behaviour::Echo,
            calls: Mutex::new(Vec::new()),
        });
        let functions = BTreeMap::from([("fake".to_string(), function.clone())]);
        let call = GuestUdf::new(function)
            .into_udf()
            .call(vec![datafusion::prelude::col("x")]);
        let scoped = scope_guest_calls_in_expr(call, datafusion::prelude::col("u"), &functions).expect("scope");
        assert_eq!(scoped.to_string(), "fake(u, x)");
        // Another function of the same name is not a job function.
        let empty = BTreeMap::new();
        let other: Arc<dyn RowFunction> = Arc::new(Fake {
            behaviour: Behaviour::Echo,
            calls: Mutex::new(Vec::new()),
        });
        let call = GuestUdf::new(other)
            .into_udf()
            .call(vec![datafusion::prelude::col("x")]);
        assert!(scope_guest_calls_in_expr(call, datafusion::prelude::col("u"), &empty).is_err());
    }
}
