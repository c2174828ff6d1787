//! Answers worth having: post-processing of released values, expressions
//! inside aggregates, the analyst's CLAMP, forecasts and target intervals.

use crate::fixture::{TEST_GRANT, sandbox};
use sandbox_model::{ReleasedCell, ReleasedTable};
use sandbox_runtime::{DryRunReport, SqlJobOptions, SqlJobResult};

fn released(r: SqlJobResult) -> ReleasedTable {
    match r {
        SqlJobResult::Released { table, .. } => table,
        other => panic!("expected a release, got {other:?}"),
    }
}

fn dry(r: SqlJobResult) -> DryRunReport {
    match r {
        SqlJobResult::DryRun(d) => d,
        other => panic!("expected a dry run, got {other:?}"),
    }
}

fn noisy(c: &ReleasedCell) -> (f64, [f64; 2]) {
    match c {
        ReleasedCell::Noisy { value, ci95, .. } => (*value, *ci95),
        other => panic!("noisy cell expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn having_ratios_and_order_run_on_released_values() {
    let s = sandbox();
    let sql = "SELECT district, SUM(registered_capital) / COUNT(*) AS mean_capital, COUNT(*) AS n
               FROM gov.legal_entities GROUP BY district HAVING COUNT(*) > 10 ORDER BY mean_capital DESC LIMIT 3";
    let t = released(
        s.run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
            .await
            .expect("run"),
    );
    assert_eq!(t.rows.len(), 3, "LIMIT 3 of 16 districts");
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["district", "mean_capital", "n"]);
    assert!(t.columns[1].kind.contains('/'), "{:?}", t.columns[1]);
    let mut previous = f64::INFINITY;
    for row in &t.rows {
        let ReleasedCell::Derived {
            value: Some(v),
            ci95: Some(ci),
        } = &row[1]
        else {
            panic!("a ratio of a sum and a count has a value and an interval: {:?}", row[1]);
        };
        assert!(ci[0] <= *v && *v <= ci[1], "{v} in {ci:?}");
        assert!(*v <= previous, "sorted by the released ratio, descending");
        previous = *v;
        assert!(noisy(&row[2]).0 > 10.0, "HAVING on the released count");
    }
    assert!(t.notes.iter().any(|n| n.contains("HAVING")), "{:?}", t.notes);
    assert!(t.notes.iter().any(|n| n.contains("union bound")), "{:?}", t.notes);
    // HAVING that no group passes: an empty table, the same ε spent.
    let none = released(
        s.run_sql(
            TEST_GRANT,
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities GROUP BY district HAVING COUNT(*) > 1000000",
            &SqlJobOptions::default(),
        )
        .await
        .expect("run"),
    );
    assert!(none.rows.is_empty());
    assert_eq!(none.epsilon_spent, t.epsilon_spent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_clamp_narrows_the_interval_within_the_owners_bounds() {
    let s = sandbox();
    let run = |sql: &'static str| {
        let s = &s;
        async move {
            released(
                s.run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
                    .await
                    .expect("run"),
            )
        }
    };
    let wide = run("SELECT district, AVG(registered_capital) AS c FROM gov.legal_entities GROUP BY district").await;
    let narrow =
        run("SELECT district, AVG(CLAMP(registered_capital, 0, 2000)) AS c FROM gov.legal_entities GROUP BY district")
            .await;
    // The upper half-width: the lower end of the wide interval is cut off at
    // the owner's bound 0 (the means are a few hundred), so the full width
    // would compare a clipped interval with an unclipped one and the ratio
    // would swing with the noise. Measured over 15 runs: 44–61 (≈ 50, the
    // ratio of the ranges), so 20 is far outside the spread.
    let width = |t: &ReleasedTable| {
        let mut w: Vec<f64> = t
            .rows
            .iter()
            .map(|r| {
                let (v, ci) = noisy(&r[1]);
                ci[1] - v
            })
            .collect();
        w.sort_by(f64::total_cmp);
        w[w.len() / 2]
    };
    assert!(
        width(&narrow) * 20.0 < width(&wide),
        "median upper half-width {} with CLAMP(0, 2000), {} with the policy's [0, 100000]",
        width(&narrow),
        width(&wide)
    );
    for r in &narrow.rows {
        let (v, ci) = noisy(&r[1]);
        assert!((0.0..=2000.0).contains(&v) && ci[0] >= 0.0 && ci[1] <= 2000.0);
    }
    assert!(
        narrow
            .notes
            .iter()
            .any(|n| n.contains("the analyst's CLAMP within the bounds [0, 100000]")),
        "{:?}",
        narrow.notes
    );
    // A CLAMP wider than the owner's bounds is intersected with them.
    let wider = run(
        "SELECT district, AVG(CLAMP(registered_capital, -5, 200000)) AS c FROM gov.legal_entities GROUP BY district",
    )
    .await;
    assert!(
        wider.notes.iter().any(|n| n.contains("values clamped to [0, 100000]")),
        "{:?}",
        wider.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_measures_stay_within_their_derived_bounds() {
    let s = sandbox();
    let t = released(
        s.run_sql(
            TEST_GRANT,
            "SELECT industry, AVG(CASE WHEN insured_employees > 100 THEN 1 ELSE 0 END) AS large,
                    AVG(CLAMP(registered_capital / (insured_employees - insured_employees), 0, 10)) AS never
             FROM gov.legal_entities GROUP BY industry",
            &SqlJobOptions::default(),
        )
        .await
        .expect("run"),
    );
    assert_eq!(t.rows.len(), 20);
    for r in &t.rows {
        let (v, ci) = noisy(&r[1]);
        assert!((0.0..=1.0).contains(&v) && ci[0] >= 0.0 && ci[1] <= 1.0, "{v} {ci:?}");
        // Division by zero on every row: no value, so a mean of nothing
        // (the midpoint of the bounds, with the full interval), no failure.
        let (_, ci) = noisy(&r[2]);
        assert!(ci[0] >= 0.0 && ci[1] <= 10.0);
    }
    assert!(
        t.notes.iter().any(|n| n.contains("derived by interval arithmetic")),
        "{:?}",
        t.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_forecasts_intervals_and_finds_the_epsilon_of_a_target() {
    let s = sandbox();
    let sql = "SELECT district, SUM(CLAMP(registered_capital, 0, 2000)) AS s, COUNT(*) AS n FROM gov.legal_entities GROUP BY district";
    let options = |target_ci: Option<f64>, epsilon: Option<f64>| SqlJobOptions {
        epsilon,
        dry_run: true,
        target_ci,
        target_rows: None,
    };
    let at_cap = dry(s.run_sql(TEST_GRANT, sql, &options(None, None)).await.expect("dry run"));
    assert_eq!(at_cap.intervals.len(), 2);
    let sum_width = at_cap.intervals[0].half_width.expect("a sum is forecast");
    assert_eq!(at_cap.intervals[0].bounds, Some([0.0, 2000.0]));
    // Twice the half-width at the cap needs about half the ε.
    let target = 2.0 * sum_width;
    let r = dry(s
        .run_sql(TEST_GRANT, sql, &options(Some(target), None))
        .await
        .expect("target"));
    assert!(
        r.epsilon < at_cap.epsilon * 0.55 && r.epsilon > at_cap.epsilon * 0.45,
        "{}",
        r.epsilon
    );
    let widest = |d: &DryRunReport| d.intervals.iter().filter_map(|i| i.half_width).fold(0.0, f64::max);
    assert!(widest(&r) <= target, "the target holds at the ε found");
    let slightly_less = dry(s
        .run_sql(TEST_GRANT, sql, &options(None, Some(r.epsilon * 0.99)))
        .await
        .expect("dry run"));
    assert!(widest(&slightly_less) > target, "and it is the smallest such ε");
    // A target the cap cannot reach is refused, and so is one with ε.
    let e = s
        .run_sql(TEST_GRANT, sql, &options(Some(sum_width / 10.0), None))
        .await
        .expect_err("over the cap");
    assert_eq!(e.rule(), Some("target-ci-over-cap"), "{e}");
    let e = s
        .run_sql(TEST_GRANT, sql, &options(Some(target), Some(0.5)))
        .await
        .expect_err("both");
    assert_eq!(e.rule(), Some("target-ci-with-epsilon"));
    // Means need the rows per group.
    let mean = "SELECT district, AVG(registered_capital) AS c FROM gov.legal_entities GROUP BY district";
    let e = s
        .run_sql(TEST_GRANT, mean, &options(Some(100.0), None))
        .await
        .expect_err("rows needed");
    assert_eq!(e.rule(), Some("target-ci-needs-rows"));
    let with_rows = SqlJobOptions {
        target_rows: Some(1000),
        ..options(None, None)
    };
    let d = dry(s.run_sql(TEST_GRANT, mean, &with_rows).await.expect("dry run"));
    let (w, k) = (
        d.intervals[0].half_width.expect("at 1000 rows"),
        d.intervals[0].per_row.expect("per row"),
    );
    assert!(w >= k / 1000.0 && w < k / 900.0, "{w} vs {k}/1000");
}

/// The issue's utility measurement: median relative error over groups and
/// runs of four queries on the demo data (20 000 enterprises, seed 42) at
/// the policies' own ε, with the owners' bounds only and with bounds a
/// domain expert would choose. Prints a table; asserts nothing about the
/// figures. `SANDBOX_ACCURACY_RUNS` sets the runs (default 20).
///
/// ```text
/// cargo test --workspace --test integration accuracy_figures -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run with --ignored --nocapture"]
async fn accuracy_figures() {
    use sandbox_sql::datafusion::arrow::array::AsArray;
    use sandbox_sql::datafusion::arrow::compute::cast;
    use sandbox_sql::datafusion::arrow::datatypes::{DataType, Float64Type};
    use std::collections::BTreeMap;
    let runs: usize = std::env::var("SANDBOX_ACCURACY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = sandbox_runtime::DataDir::open(tmp.path().join("data")).expect("data dir");
    crate::fixture::raise_policy_budgets(&dir);
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
        .upsert_grant(&sandbox_governance::Grant::new("accuracy", "tests", budgets))
        .expect("grant");
    let plain = sandbox_sql::datafusion::prelude::SessionContext::new_with_state(
        s.session_for_grant("accuracy").await.expect("session").state().clone(),
    );
    // (query, exact SQL, owners' bounds only, [(expert bounds in words, SQL)])
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Vec<(&'static str, &'static str)>,
    );
    let cases: [Case; 4] = [
        (
            "AVG(registered_capital) by district",
            "SELECT district, AVG(registered_capital) FROM gov.legal_entities GROUP BY district",
            "SELECT district, AVG(registered_capital) FROM gov.legal_entities GROUP BY district",
            vec![
                (
                    "[0, 2000] 万元",
                    "SELECT district, AVG(CLAMP(registered_capital, 0, 2000)) FROM gov.legal_entities GROUP BY district",
                ),
                (
                    "[0, 20000] 万元",
                    "SELECT district, AVG(CLAMP(registered_capital, 0, 20000)) FROM gov.legal_entities GROUP BY district",
                ),
            ],
        ),
        (
            "SUM(insured_employees) by industry",
            "SELECT industry, SUM(insured_employees) FROM gov.legal_entities GROUP BY industry",
            "SELECT industry, SUM(insured_employees) FROM gov.legal_entities GROUP BY industry",
            vec![(
                "[0, 500] staff",
                "SELECT industry, SUM(CLAMP(insured_employees, 0, 500)) FROM gov.legal_entities GROUP BY industry",
            )],
        ),
        (
            "AVG(insured_employees) by industry",
            "SELECT industry, AVG(insured_employees) FROM gov.legal_entities GROUP BY industry",
            "SELECT industry, AVG(insured_employees) FROM gov.legal_entities GROUP BY industry",
            vec![(
                "[0, 500] staff",
                "SELECT industry, AVG(CLAMP(insured_employees, 0, 500)) FROM gov.legal_entities GROUP BY industry",
            )],
        ),
        (
            "AVG(electricity_kwh) by month",
            "SELECT month, AVG(electricity_kwh) FROM gov.utility_usage GROUP BY month",
            "SELECT month, AVG(electricity_kwh) FROM gov.utility_usage GROUP BY month",
            vec![
                (
                    "[0, 50000] kWh",
                    "SELECT month, AVG(CLAMP(electricity_kwh, 0, 50000)) FROM gov.utility_usage GROUP BY month",
                ),
                (
                    "[0, 200000] kWh",
                    "SELECT month, AVG(CLAMP(electricity_kwh, 0, 200000)) FROM gov.utility_usage GROUP BY month",
                ),
            ],
        ),
    ];
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
    };
    println!(
        "median relative error over groups and {runs} runs, at the policies' ε (demo data, 20 000 enterprises, seed 42)"
    );
    println!("| query | bounds | median relative error | vs the owners' bounds |\n|---|---|---|---|");
    for (label, exact_sql, without, expert) in cases {
        let batches = plain
            .sql(exact_sql)
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
        let mut variants = vec![("owners' bounds only", without)];
        variants.extend(expert);
        let mut baseline = f64::NAN;
        for (words, sql) in variants {
            let mut errors = Vec::new();
            for _ in 0..runs {
                let t = released(
                    s.run_sql("accuracy", sql, &SqlJobOptions::default())
                        .await
                        .expect("run"),
                );
                for row in &t.rows {
                    let key = match &row[0] {
                        ReleasedCell::Key { value } => value.as_str().map(str::to_string).unwrap_or(value.to_string()),
                        other => panic!("key expected: {other:?}"),
                    };
                    let (v, _) = noisy(&row[1]);
                    if let Some(x) = exact.get(&key).filter(|x| **x != 0.0) {
                        errors.push((v - x).abs() / x.abs());
                    }
                }
            }
            let error = median(errors);
            if baseline.is_nan() {
                baseline = error;
            }
            println!(
                "| {label} | {words} | {:.2} % | {:.1}× |",
                100.0 * error,
                baseline / error
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantiles_and_estimated_bounds_are_released_with_their_accounting() {
    let s = sandbox();
    let run = |sql: &'static str| {
        let s = &s;
        async move {
            released(
                s.run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
                    .await
                    .expect("run"),
            )
        }
    };
    let t = run(
        "SELECT industry, MEDIAN(CLAMP(insured_employees, 0, 640)) AS m, MAX(insured_employees) AS top
         FROM gov.legal_entities GROUP BY industry",
    )
    .await;
    assert_eq!(t.rows.len(), 20);
    for r in &t.rows {
        let ReleasedCell::Noisy {
            value, mechanism, ci95, ..
        } = &r[1]
        else {
            panic!("a quantile is a noisy cell: {:?}", r[1]);
        };
        assert_eq!(mechanism, "permute_and_flip");
        // On the grid of 65 candidates over [0, 640]: multiples of 10.
        assert!(
            (0.0..=640.0).contains(value) && (value / 10.0).fract() == 0.0,
            "{value}"
        );
        assert_eq!(*ci95, [0.0, 640.0]);
    }
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("permute-and-flip") && n.contains("rank error")),
        "{:?}",
        t.notes
    );
    // CLAMP_AUTO: the bound chosen is reported, with how far it may miss.
    let auto =
        run("SELECT industry, AVG(CLAMP_AUTO(insured_employees)) AS a FROM gov.legal_entities GROUP BY industry").await;
    let owners = run("SELECT industry, AVG(insured_employees) AS a FROM gov.legal_entities GROUP BY industry").await;
    assert!(
        auto.notes.iter().any(|n| n.contains("is a DP estimate")
            && n.contains("0.99 quantile")
            && n.contains("may land anywhere up to 5000")),
        "{:?}",
        auto.notes
    );
    assert_eq!(
        auto.epsilon_spent, owners.epsilon_spent,
        "the estimation is inside the query's ε"
    );
    // The interval is narrower than with the owners' bounds [0, 5000]. Not
    // at the default q = 0.99: on these 2 000 rows its estimate (ε = 0.1,
    // selection scale 19.8 rows of rank) cannot tell the 0.99 quantile from
    // any candidate above the largest value, which misses it by only 20
    // rows, so it lands near 5000 in a few runs in a hundred (the note
    // above says so). At q = 0.8 a candidate above the largest value misses
    // by 400 rows at scale 16, so permute-and-flip picks one of the two
    // candidates that would not narrow the interval (≥ 4200 on the grid)
    // with probability at most 2·e⁻²⁵ ≈ 3·10⁻¹¹ per run.
    let auto =
        run("SELECT industry, AVG(CLAMP_AUTO(insured_employees, 0.8)) AS a FROM gov.legal_entities GROUP BY industry")
            .await;
    // The upper half-width: the lower end of the wide interval is cut off at
    // the owner's bound 0 (the means are a few hundred), so the full width
    // would compare a clipped interval with an unclipped one and the ratio
    // would swing with the noise.
    let width = |t: &ReleasedTable| {
        let mut w: Vec<f64> = t
            .rows
            .iter()
            .map(|r| {
                let (v, ci) = noisy(&r[1]);
                ci[1] - v
            })
            .collect();
        w.sort_by(f64::total_cmp);
        w[w.len() / 2]
    };
    assert!(
        width(&auto) < width(&owners),
        "median width {} with CLAMP_AUTO(x, 0.8), {} with the owners' bounds",
        width(&auto),
        width(&owners)
    );
}
