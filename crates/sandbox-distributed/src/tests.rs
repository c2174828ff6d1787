use crate::BallistaRunner;
use crate::codec::SandboxCodec;
use datafusion::arrow::array::{Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::config::ConfigOptions;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::col;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::prelude::SessionContext;
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use sandbox_sql::guest::{GuestUdf, RowFunction};
use sandbox_sql::runner::PlanRunner;
use std::sync::Arc;

/// `SELECT f(x) FROM (one batch)` as a physical plan.
fn plan_calling(udf: ScalarUDF) -> Arc<dyn ExecutionPlan> {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Float64Array::from(vec![1.0, 2.0]))]).expect("batch");
    let input = MemorySourceConfig::try_new_exec(&[vec![batch]], schema.clone(), None).expect("input");
    let x = col("x", &schema).expect("column");
    let name = udf.name().to_string();
    let call = ScalarFunctionExpr::new(
        &name,
        Arc::new(udf),
        vec![x],
        Arc::new(Field::new(&name, DataType::Float64, true)),
        Arc::new(ConfigOptions::default()),
    );
    Arc::new(ProjectionExec::try_new(vec![(Arc::new(call) as _, name)], input).expect("projection"))
}

#[derive(Debug)]
struct Guest;

impl RowFunction for Guest {
    fn name(&self) -> &str {
        "my_score"
    }
    fn arity(&self) -> usize {
        1
    }
    fn bounds(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn identity(&self) -> &str {
        "sha256:test"
    }
    fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        Ok(vec![0.5; args.num_rows()])
    }
}

#[test]
fn a_plan_with_a_webassembly_function_is_refused_by_rule_at_admission() {
    let runner = BallistaRunner::new("127.0.0.1:50050").expect("address");
    let plan = plan_calling(GuestUdf::new(Arc::new(Guest)).into_udf());
    let refusal = runner.admit(&plan).expect_err("refused");
    assert_eq!(refusal.rule(), Some("distributed-row-function"), "{refusal}");
    assert!(refusal.to_string().contains("my_score"));
}

#[test]
fn a_sandbox_function_crosses_the_codec_with_its_parameters() {
    let runner = BallistaRunner::new("df://127.0.0.1:50050").expect("address");
    let clamp = sandbox_sql::clamp::udf().as_ref().clone();
    let plan = plan_calling(clamp);
    runner.admit(&plan).expect("admitted");
    let codec = SandboxCodec::default();
    let node = PhysicalPlanNode::try_from_physical_plan(plan.clone(), &codec).expect("encode");
    let ctx = SessionContext::new();
    let back = node.try_into_physical_plan(&ctx.task_ctx(), &codec).expect("decode");
    let shown = |p: &Arc<dyn ExecutionPlan>| {
        datafusion::physical_plan::displayable(p.as_ref())
            .indent(true)
            .to_string()
    };
    assert_eq!(shown(&plan), shown(&back));
}

#[test]
fn scheduler_addresses_are_checked() {
    for bad in ["", "localhost", "host:port", ":50050", "127.0.0.1:99999"] {
        assert!(BallistaRunner::new(bad).is_err(), "{bad:?} accepted");
    }
    let runner = BallistaRunner::new("127.0.0.1:50050").expect("address");
    assert_eq!(runner.scheduler_url(), "http://127.0.0.1:50050");
    // Nothing listens on port 1: a clear error, quickly.
    let closed = BallistaRunner::new("127.0.0.1:1").expect("address");
    let error = closed
        .check_reachable(std::time::Duration::from_secs(2))
        .expect_err("unreachable");
    assert!(
        error
            .to_string()
            .contains("cannot reach the Ballista scheduler at 127.0.0.1:1"),
        "{error}"
    );
}
