//! The product's side of the peer utility benchmark
//! (`scripts/utility-bench.sh`): generates the demo data (20 000
//! enterprises, seed 42) into `$SANDBOX_UTILITY_OUT/data`, runs the fixed
//! workload `$SANDBOX_UTILITY_RUNS` times (default 40) with noise on, and
//! writes `$SANDBOX_UTILITY_OUT/product.json`: per query and variant the
//! exact per-group values (plain DataFusion on the same files), the ε and δ
//! spent, the contribution bounds and clamp bounds used, and the product's
//! median relative error over groups and runs. The script's Python half
//! runs the peers at the same ε, δ and bounds and prints the table.

use crate::fixture::raise_policy_budgets;
use sandbox_model::ReleasedCell;
use sandbox_runtime::{SqlJobOptions, SqlJobResult};
use std::collections::BTreeMap;

/// (query, variant, SQL for the product, exact SQL, dataset, measure, clamp bounds).
struct Case {
    query: &'static str,
    variant: &'static str,
    sql: &'static str,
    exact: &'static str,
    table: &'static str,
    key: &'static str,
    measure: Option<&'static str>,
    aggregate: &'static str,
    bounds: Option<(f64, f64)>,
}

fn workload() -> Vec<Case> {
    let c = |query, variant, sql, exact, table, key, measure, aggregate, bounds| Case {
        query,
        variant,
        sql,
        exact,
        table,
        key,
        measure,
        aggregate,
        bounds,
    };
    vec![
        c(
            "COUNT(*) by district (enterprises)",
            "owners' bounds",
            "SELECT district, COUNT(*) FROM gov.legal_entities GROUP BY district",
            "SELECT district, CAST(COUNT(*) AS DOUBLE) FROM gov.legal_entities GROUP BY district",
            "gov/legal_entities",
            "district",
            None,
            "count",
            None,
        ),
        c(
            "AVG(registered_capital) by district",
            "owners' bounds [0, 100000]",
            "SELECT district, AVG(registered_capital) FROM gov.legal_entities GROUP BY district",
            "SELECT district, AVG(registered_capital) FROM gov.legal_entities GROUP BY district",
            "gov/legal_entities",
            "district",
            Some("registered_capital"),
            "avg",
            Some((0.0, 100000.0)),
        ),
        c(
            "AVG(registered_capital) by district",
            "expert CLAMP [0, 20000]",
            "SELECT district, AVG(CLAMP(registered_capital, 0, 20000)) FROM gov.legal_entities GROUP BY district",
            "SELECT district, AVG(registered_capital) FROM gov.legal_entities GROUP BY district",
            "gov/legal_entities",
            "district",
            Some("registered_capital"),
            "avg",
            Some((0.0, 20000.0)),
        ),
        c(
            "AVG(registered_capital) by district",
            "CLAMP_AUTO (q 0.99)",
            "SELECT district, AVG(CLAMP_AUTO(registered_capital)) FROM gov.legal_entities GROUP BY district",
            "SELECT district, AVG(registered_capital) FROM gov.legal_entities GROUP BY district",
            "gov/legal_entities",
            "district",
            Some("registered_capital"),
            "avg",
            None,
        ),
        c(
            "SUM(insured_employees) by industry",
            "owners' bounds [0, 5000]",
            "SELECT industry, SUM(insured_employees) FROM gov.legal_entities GROUP BY industry",
            "SELECT industry, CAST(SUM(insured_employees) AS DOUBLE) FROM gov.legal_entities GROUP BY industry",
            "gov/legal_entities",
            "industry",
            Some("insured_employees"),
            "sum",
            Some((0.0, 5000.0)),
        ),
        c(
            "SUM(insured_employees) by industry",
            "expert CLAMP [0, 500]",
            "SELECT industry, SUM(CLAMP(insured_employees, 0, 500)) FROM gov.legal_entities GROUP BY industry",
            "SELECT industry, CAST(SUM(insured_employees) AS DOUBLE) FROM gov.legal_entities GROUP BY industry",
            "gov/legal_entities",
            "industry",
            Some("insured_employees"),
            "sum",
            Some((0.0, 500.0)),
        ),
        c(
            "SUM(insured_employees) by industry",
            "CLAMP_AUTO (q 0.99)",
            "SELECT industry, SUM(CLAMP_AUTO(insured_employees)) FROM gov.legal_entities GROUP BY industry",
            "SELECT industry, CAST(SUM(insured_employees) AS DOUBLE) FROM gov.legal_entities GROUP BY industry",
            "gov/legal_entities",
            "industry",
            Some("insured_employees"),
            "sum",
            None,
        ),
        c(
            "AVG(insured_employees) by industry",
            "owners' bounds [0, 5000]",
            "SELECT industry, AVG(insured_employees) FROM gov.legal_entities GROUP BY industry",
            "SELECT industry, AVG(insured_employees) FROM gov.legal_entities GROUP BY industry",
            "gov/legal_entities",
            "industry",
            Some("insured_employees"),
            "avg",
            Some((0.0, 5000.0)),
        ),
        c(
            "AVG(insured_employees) by industry",
            "expert CLAMP [0, 500]",
            "SELECT industry, AVG(CLAMP(insured_employees, 0, 500)) FROM gov.legal_entities GROUP BY industry",
            "SELECT industry, AVG(insured_employees) FROM gov.legal_entities GROUP BY industry",
            "gov/legal_entities",
            "industry",
            Some("insured_employees"),
            "avg",
            Some((0.0, 500.0)),
        ),
        c(
            "AVG(insured_employees) by industry",
            "CLAMP_AUTO (q 0.99)",
            "SELECT industry, AVG(CLAMP_AUTO(insured_employees)) FROM gov.legal_entities GROUP BY industry",
            "SELECT industry, AVG(insured_employees) FROM gov.legal_entities GROUP BY industry",
            "gov/legal_entities",
            "industry",
            Some("insured_employees"),
            "avg",
            None,
        ),
        c(
            "AVG(electricity_kwh) by month",
            "owners' bounds [0, 500000]",
            "SELECT month, AVG(electricity_kwh) FROM gov.utility_usage GROUP BY month",
            "SELECT month, AVG(electricity_kwh) FROM gov.utility_usage GROUP BY month",
            "gov/utility_usage",
            "month",
            Some("electricity_kwh"),
            "avg",
            Some((0.0, 500000.0)),
        ),
        c(
            "AVG(electricity_kwh) by month",
            "expert CLAMP [0, 50000]",
            "SELECT month, AVG(CLAMP(electricity_kwh, 0, 50000)) FROM gov.utility_usage GROUP BY month",
            "SELECT month, AVG(electricity_kwh) FROM gov.utility_usage GROUP BY month",
            "gov/utility_usage",
            "month",
            Some("electricity_kwh"),
            "avg",
            Some((0.0, 50000.0)),
        ),
        c(
            "AVG(electricity_kwh) by month",
            "CLAMP_AUTO (q 0.95)",
            "SELECT month, AVG(CLAMP_AUTO(electricity_kwh, 0.95)) FROM gov.utility_usage GROUP BY month",
            "SELECT month, AVG(electricity_kwh) FROM gov.utility_usage GROUP BY month",
            "gov/utility_usage",
            "month",
            Some("electricity_kwh"),
            "avg",
            None,
        ),
        c(
            "COUNT(*) clinic visits by district",
            "owners' bounds",
            "SELECT district, COUNT(*) FROM health.clinic_visits GROUP BY district",
            "SELECT district, CAST(COUNT(*) AS DOUBLE) FROM health.clinic_visits GROUP BY district",
            "health/clinic_visits",
            "district",
            None,
            "count",
            None,
        ),
        c(
            "AVG(cost) clinic visits by district",
            "owners' bounds [0, 20000]",
            "SELECT district, AVG(cost) FROM health.clinic_visits GROUP BY district",
            "SELECT district, AVG(cost) FROM health.clinic_visits GROUP BY district",
            "health/clinic_visits",
            "district",
            Some("cost"),
            "avg",
            Some((0.0, 20000.0)),
        ),
        c(
            "AVG(cost) clinic visits by district",
            "expert CLAMP [0, 2000]",
            "SELECT district, AVG(CLAMP(cost, 0, 2000)) FROM health.clinic_visits GROUP BY district",
            "SELECT district, AVG(cost) FROM health.clinic_visits GROUP BY district",
            "health/clinic_visits",
            "district",
            Some("cost"),
            "avg",
            Some((0.0, 2000.0)),
        ),
        c(
            "AVG(cost) clinic visits by district",
            "CLAMP_AUTO (q 0.99)",
            "SELECT district, AVG(CLAMP_AUTO(cost)) FROM health.clinic_visits GROUP BY district",
            "SELECT district, AVG(cost) FROM health.clinic_visits GROUP BY district",
            "health/clinic_visits",
            "district",
            Some("cost"),
            "avg",
            None,
        ),
        c(
            "MEDIAN(registered_capital) by district",
            "owners' bounds [0, 100000]",
            "SELECT district, MEDIAN(registered_capital) FROM gov.legal_entities GROUP BY district",
            "SELECT district, MEDIAN(registered_capital) FROM gov.legal_entities GROUP BY district",
            "gov/legal_entities",
            "district",
            Some("registered_capital"),
            "median",
            Some((0.0, 100000.0)),
        ),
        c(
            "MEDIAN(registered_capital) by district",
            "expert CLAMP [0, 20000]",
            "SELECT district, MEDIAN(CLAMP(registered_capital, 0, 20000)) FROM gov.legal_entities GROUP BY district",
            "SELECT district, MEDIAN(registered_capital) FROM gov.legal_entities GROUP BY district",
            "gov/legal_entities",
            "district",
            Some("registered_capital"),
            "median",
            Some((0.0, 20000.0)),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the product's half of scripts/utility-bench.sh"]
async fn utility_benchmark_product() {
    use sandbox_sql::datafusion::arrow::array::AsArray;
    use sandbox_sql::datafusion::arrow::compute::cast;
    use sandbox_sql::datafusion::arrow::datatypes::{DataType, Float64Type};
    let Ok(out) = std::env::var("SANDBOX_UTILITY_OUT") else {
        eprintln!("set SANDBOX_UTILITY_OUT (scripts/utility-bench.sh does)");
        return;
    };
    let out = std::path::PathBuf::from(out);
    let runs: usize = std::env::var("SANDBOX_UTILITY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let data = out.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let dir = sandbox_runtime::DataDir::open(&data).expect("data dir");
    raise_policy_budgets(&dir);
    sandbox_datagen::generate(&sandbox_datagen::GenerateOptions {
        seed: 42,
        scale: sandbox_datagen::Scale::with_entities(20_000),
        out_dir: dir.tables_dir(),
        rows_per_file: 1_000_000,
        only: None,
    })
    .expect("generate");
    let s = sandbox_runtime::Sandbox::open(dir).expect("sandbox");
    let budgets = s
        .catalog()
        .iter()
        .filter(|d| d.open_class == sandbox_model::OpenClass::Conditional)
        .map(|d| (d.id.clone(), 1e9))
        .collect();
    s.store()
        .upsert_grant(&sandbox_governance::Grant::new("utility", "bench", budgets))
        .expect("grant");
    let plain = sandbox_sql::datafusion::prelude::SessionContext::new_with_state(
        s.session_for_grant("utility").await.expect("session").state().clone(),
    );
    let policies = s.policies();
    let mut cases = Vec::new();
    for case in workload() {
        let batches = plain
            .sql(case.exact)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("exact");
        let mut exact = BTreeMap::new();
        for b in &batches {
            let k = cast(b.column(0), &DataType::Utf8).expect("key");
            let v = cast(b.column(1), &DataType::Float64).expect("value");
            let (k, v) = (k.as_string::<i32>(), v.as_primitive::<Float64Type>());
            for i in 0..b.num_rows() {
                exact.insert(k.value(i).to_string(), v.value(i));
            }
        }
        let mut errors = Vec::new();
        let (mut epsilon, mut delta, mut notes) = (0.0, 0.0, Vec::new());
        let started = std::time::Instant::now();
        for _ in 0..runs {
            let t = match s
                .run_sql("utility", case.sql, &SqlJobOptions::default())
                .await
                .expect("run")
            {
                SqlJobResult::Released { table, .. } => table,
                other => panic!("expected a release, got {other:?}"),
            };
            (epsilon, delta) = (t.epsilon_spent, t.delta_spent);
            notes = t.notes.clone();
            for row in &t.rows {
                let key = match &row[0] {
                    ReleasedCell::Key { value } => value.as_str().map(str::to_string).unwrap_or(value.to_string()),
                    other => panic!("key expected: {other:?}"),
                };
                let ReleasedCell::Noisy { value, .. } = &row[1] else {
                    panic!("noisy cell expected: {:?}", row[1]);
                };
                if let Some(x) = exact.get(&key).filter(|x| **x != 0.0) {
                    errors.push((value - x).abs() / x.abs());
                }
            }
        }
        errors.sort_by(f64::total_cmp);
        let median = errors.get(errors.len() / 2).copied().unwrap_or(f64::NAN);
        let policy = policies
            .iter()
            .find(|p| p.dataset.to_string() == case.table.replace('/', "."))
            .expect("policy");
        let dp = policy.dp.as_ref().expect("a DP policy");
        println!(
            "{:<42} {:<28} {:>8.2} %  (ε {epsilon}, {:.1} s)",
            case.query,
            case.variant,
            100.0 * median,
            started.elapsed().as_secs_f64()
        );
        cases.push(serde_json::json!({
            "query": case.query,
            "variant": case.variant,
            "table": case.table,
            "key": case.key,
            "measure": case.measure,
            "aggregate": case.aggregate,
            "bounds": case.bounds,
            "epsilon": epsilon,
            "delta": delta,
            "policy_delta": dp.delta,
            "max_groups_per_unit": dp.max_groups_per_unit,
            "max_rows_per_group": dp.max_rows_per_group,
            "max_rows_per_unit": dp.max_rows_per_unit,
            "unit": policy.privacy_unit,
            "exact": exact,
            "product_error": median,
            "runs": runs,
            "notes": notes,
        }));
    }
    std::fs::write(
        out.join("product.json"),
        serde_json::to_vec_pretty(&serde_json::json!({ "runs": runs, "cases": cases })).expect("json"),
    )
    .expect("write product.json");
}
