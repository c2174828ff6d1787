//! Job-supplied code through the pipeline, with native stand-ins for
//! WebAssembly modules: row functions inside SQL and analysis programs
//! released by sample and aggregate. (The WebAssembly host has its own
//! hostile-guest tests; these check what the sandbox does with outputs.)

use crate::fixture::{TEST_GRANT, sandbox};
use sandbox_model::ReleasedCell;
use sandbox_runtime::{AnalysisOptions, AnalysisProgram, SqlJobOptions, SqlJobResult};
use sandbox_sql::datafusion::arrow::array::{Array, Float64Array, RecordBatch};
use sandbox_sql::guest::RowFunction;
use std::sync::Arc;

#[derive(Debug)]
struct Scaled;

impl RowFunction for Scaled {
    fn name(&self) -> &str {
        "kwh_score"
    }
    fn arity(&self) -> usize {
        2
    }
    fn bounds(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn identity(&self) -> &str {
        "native-test"
    }
    fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        let a = args.column(0).as_any().downcast_ref::<Float64Array>().ok_or("type")?;
        Ok((0..a.len())
            .map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) / 100_000.0 })
            .collect())
    }
}

async fn run(sql: &str) -> Result<SqlJobResult, sandbox_runtime::RuntimeError> {
    sandbox()
        .run_sql_with_functions(TEST_GRANT, sql, &SqlJobOptions::default(), vec![Arc::new(Scaled)])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_functions_are_measures_with_declared_bounds() {
    let ok = run(
        "SELECT l.district, AVG(kwh_score(u.electricity_kwh, u.water_m3)) AS score
         FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code GROUP BY l.district",
    )
    .await
    .expect("accepted");
    let SqlJobResult::Released { table, .. } = ok else {
        panic!("release")
    };
    assert_eq!(table.rows.len(), 16);
    for row in &table.rows {
        let ReleasedCell::Noisy { value, .. } = row[1] else {
            panic!("noisy")
        };
        assert!((0.0..=1.0).contains(&value), "clamped to the declared bounds");
    }
    assert_eq!(table.columns[1].kind, "avg(wasm:kwh_score)");
    for (sql, rule) in [
        (
            "SELECT kwh_score(electricity_kwh, water_m3) FROM gov.utility_usage",
            "measure-in-output",
        ),
        (
            "SELECT kwh_score(electricity_kwh, water_m3), COUNT(*) FROM gov.utility_usage GROUP BY 1",
            "measure-in-group-by",
        ),
        (
            "SELECT month, SUM(kwh_score(electricity_kwh, water_m3) * 2) FROM gov.utility_usage GROUP BY month",
            "derived-measure",
        ),
        (
            "SELECT sex, AVG(kwh_score(cost, age)) FROM health.clinic_visits GROUP BY sex",
            "wasm-not-allowed",
        ),
    ] {
        let e = run(sql).await.expect_err(sql);
        assert_eq!(e.rule(), Some(rule), "{sql}: {e}");
    }
}

/// Mean of the first column, or a failure when `fail` is set.
struct MeanProgram {
    fail: bool,
}

impl AnalysisProgram for MeanProgram {
    fn name(&self) -> &str {
        "mean_defaulted"
    }
    fn outputs(&self) -> Vec<(String, f64, f64)> {
        vec![("default_rate".into(), 0.0, 1.0), ("mean_amount".into(), 0.0, 5000.0)]
    }
    fn digest(&self) -> String {
        "native-test".into()
    }
    /// The trial call on generated rows succeeds: the failure of `fail`
    /// stands for one that happens on real data only.
    fn trial_block(&self, _block: &RecordBatch) -> Result<Vec<f64>, String> {
        Ok(vec![0.5, 1.0])
    }
    fn run_block(&self, block: &RecordBatch) -> Result<Vec<f64>, String> {
        if self.fail {
            return Err("trap: unreachable".into());
        }
        let mean = |i: usize| {
            let c = block
                .column(i)
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("float64");
            c.values().iter().sum::<f64>() / c.len().max(1) as f64
        };
        Ok(vec![mean(0), mean(1)])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_jobs_release_a_noisy_block_average() {
    let s = sandbox();
    let sql = "SELECT defaulted, amount FROM bank.loans";
    let options = AnalysisOptions {
        blocks: 16,
        epsilon: Some(1.0),
    };
    let r = s
        .run_analysis(TEST_GRANT, Arc::new(MeanProgram { fail: false }), sql, &options)
        .await
        .expect("run");
    // Two outputs, then the noisy count of blocks that used the default.
    assert_eq!(r.table.rows.len(), 3);
    let ReleasedCell::Noisy { value, scale, .. } = r.table.rows[0][1] else {
        panic!("noisy")
    };
    assert!((0.0..=1.0).contains(&value));
    // scale = range · d / (k · 0.9 ε) = 1 · 2 / (16 · 0.9)
    assert!((scale - 2.0 / (16.0 * 0.9)).abs() < 1e-9, "{scale}");
    // A program that always fails releases noise around the midpoints: the
    // failure is not a signal about the data.
    let r = s
        .run_analysis(TEST_GRANT, Arc::new(MeanProgram { fail: true }), sql, &options)
        .await
        .expect("run");
    let ReleasedCell::Noisy { value, .. } = r.table.rows[1][1] else {
        panic!("noisy")
    };
    assert!((0.0..=5000.0).contains(&value));
    // Identifiers never reach a program.
    let e = s
        .run_analysis(
            TEST_GRANT,
            Arc::new(MeanProgram { fail: false }),
            "SELECT credit_code, amount FROM bank.loans",
            &options,
        )
        .await
        .expect_err("refused");
    assert_eq!(e.rule(), Some("identifier-in-output"));
    let e = s
        .run_analysis(
            TEST_GRANT,
            Arc::new(MeanProgram { fail: false }),
            sql,
            &AnalysisOptions {
                blocks: 1,
                epsilon: None,
            },
        )
        .await
        .expect_err("refused");
    assert_eq!(e.rule(), Some("blocks-out-of-range"));
}

/// Counts its calls and the rows it saw.
#[derive(Default)]
struct Counting {
    calls: std::sync::atomic::AtomicUsize,
    rows: std::sync::atomic::AtomicUsize,
}

impl AnalysisProgram for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn outputs(&self) -> Vec<(String, f64, f64)> {
        vec![("rows".into(), 0.0, 1000.0)]
    }
    fn digest(&self) -> String {
        "native-test".into()
    }
    /// Not counted: only calls on the job's blocks are.
    fn trial_block(&self, _block: &RecordBatch) -> Result<Vec<f64>, String> {
        Ok(vec![0.0])
    }
    fn run_block(&self, block: &RecordBatch) -> Result<Vec<f64>, String> {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        self.rows.fetch_add(block.num_rows(), Relaxed);
        Ok(vec![block.num_rows() as f64])
    }
}

/// A filter that selects nothing (one enterprise that is not there) is not
/// an existence oracle: the job runs and releases k default blocks, and the
/// program is never called on an empty block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_on_empty_input_releases_k_default_blocks() {
    let s = sandbox();
    let options = AnalysisOptions {
        blocks: 8,
        epsilon: Some(1.0),
    };
    let program = Arc::new(Counting::default());
    let r = s
        .run_analysis(
            TEST_GRANT,
            program.clone(),
            "SELECT amount FROM bank.loans WHERE amount < -1",
            &options,
        )
        .await
        .expect("released, not failed");
    assert_eq!(program.calls.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(r.table.rows.len(), 2, "the output and the count of defaults");
    let ReleasedCell::Noisy { value, scale, .. } = r.table.rows[0][1] else {
        panic!("noisy")
    };
    assert!((0.0..=1000.0).contains(&value));
    assert!((scale - 1000.0 / (8.0 * 0.9)).abs() < 1e-9, "{scale}");
    // With rows: every row reaches exactly one non-empty block.
    let program = Arc::new(Counting::default());
    s.run_analysis(TEST_GRANT, program.clone(), "SELECT amount FROM bank.loans", &options)
        .await
        .expect("released");
    let calls = program.calls.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=8).contains(&calls), "{calls}");
    assert!(program.rows.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

/// Counts the rows it evaluates on real data (in whole batches: its rows
/// are independent; the trial calls on generated data are not counted)
/// and fails on rows above 50 000 kWh, which take the default.
#[derive(Debug)]
struct CountedScore {
    name: &'static str,
    rows: std::sync::atomic::AtomicUsize,
}

impl CountedScore {
    fn named(name: &'static str) -> Arc<Self> {
        Arc::new(CountedScore {
            name,
            rows: std::sync::atomic::AtomicUsize::new(0),
        })
    }
    fn evaluated(&self) -> usize {
        self.rows.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl RowFunction for CountedScore {
    fn name(&self) -> &str {
        self.name
    }
    fn arity(&self) -> usize {
        2
    }
    fn bounds(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn identity(&self) -> &str {
        "native-test-counted"
    }
    fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        Ok(vec![0.5; args.num_rows()])
    }
    fn rows_are_independent(&self) -> bool {
        true
    }
    fn evaluate_rows(&self, args: &RecordBatch) -> Result<Vec<Option<f64>>, String> {
        let a = args.column(0).as_any().downcast_ref::<Float64Array>().ok_or("type")?;
        self.rows.fetch_add(a.len(), std::sync::atomic::Ordering::SeqCst);
        Ok((0..a.len())
            .map(|i| {
                let kwh = if a.is_null(i) { f64::NAN } else { a.value(i) };
                (kwh <= 50_000.0).then_some(kwh / 100_000.0)
            })
            .collect())
    }
}

/// The rows of `gov.utility_usage` in the test data.
async fn utility_rows() -> usize {
    let s = sandbox();
    let session = s.session_for_grant(TEST_GRANT).await.expect("session");
    let state = session.state();
    let plan = state
        .create_logical_plan("SELECT COUNT(*) FROM gov.utility_usage")
        .await
        .expect("plan");
    let physical = state.create_physical_plan(&plan).await.expect("physical plan");
    let batches = sandbox_sql::datafusion::physical_plan::collect(physical, state.task_ctx())
        .await
        .expect("count");
    let counts = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<sandbox_sql::datafusion::arrow::array::Int64Array>()
        .expect("a count");
    let rows = usize::try_from(counts.value(0)).expect("a row count");
    assert!(rows > 0);
    rows
}

/// Runs `sql` with `functions`, expecting a release that counts defaults.
async fn released_with_defaults(sql: &str, functions: Vec<Arc<dyn RowFunction>>) {
    let result = sandbox()
        .run_sql_with_functions(TEST_GRANT, sql, &SqlJobOptions::default(), functions)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let SqlJobResult::Released { table, .. } = result else {
        panic!("release")
    };
    assert!(
        table.notes.iter().any(|n| n.contains("function's default")),
        "the defaulted rows are counted: {:?}",
        table.notes
    );
}

/// The value of a row and the flag of its default come from one call:
/// a DP job that releases both evaluates each row once, wherever it
/// bounds contributions (it evaluated every row twice when the flag called
/// the function again, and on the per-unit path the count was a second
/// pass). Nested calls evaluate each function once a row; a call with
/// literal arguments runs per row, not while the plan is optimised (red
/// team of 2026-12-01: folded at planning, it also left no job function
/// for the distributed mode to refuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_is_evaluated_once_for_its_value_and_its_default_flag() {
    let rows = utility_rows().await;
    let per_month =
        "SELECT month, AVG(counted_score(electricity_kwh, water_m3)) AS score FROM gov.utility_usage GROUP BY month";
    // Where the runtime bounds (here: in the engine, without a per-unit
    // stage), then in the release step from per-unit partials.
    for forced_partials in [false, true] {
        let score = CountedScore::named("counted_score");
        sandbox_runtime::testing::force_unit_partials(forced_partials);
        released_with_defaults(per_month, vec![score.clone()]).await;
        sandbox_runtime::testing::force_unit_partials(false);
        assert_eq!(score.evaluated(), rows, "per-unit partials: {forced_partials}");
    }
    // Nested: each function once a row, for the value and both flags.
    let (outer, inner) = (CountedScore::named("counted_score"), CountedScore::named("inner_score"));
    released_with_defaults(
        "SELECT month, AVG(counted_score(inner_score(electricity_kwh, water_m3) * 100000, water_m3)) AS score \
         FROM gov.utility_usage GROUP BY month",
        vec![outer.clone(), inner.clone()],
    )
    .await;
    assert_eq!((outer.evaluated(), inner.evaluated()), (rows, rows));
    // Literal arguments: evaluated on the rows, never folded at planning.
    let constant = CountedScore::named("counted_score");
    released_with_defaults(
        "SELECT month, AVG(counted_score(60000.0, 1.0)) AS score FROM gov.utility_usage GROUP BY month",
        vec![constant.clone()],
    )
    .await;
    assert_eq!(constant.evaluated(), rows);
}

/// The engine's own functions (the grid, a job function's raw form) are
/// not in any session: an analyst's query cannot name them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_internal_functions_cannot_be_named() {
    for sql in [
        "SELECT month, SUM(__sandbox_grid(electricity_kwh)) AS v FROM gov.utility_usage GROUP BY month",
        "SELECT month, SUM(\"__sandbox_grid\"(electricity_kwh)) AS v FROM gov.utility_usage GROUP BY month",
        "SELECT month, AVG(__sandbox_raw_counted_score(electricity_kwh, water_m3)) AS v FROM gov.utility_usage GROUP BY month",
        "SELECT month, COUNT(*) AS v FROM gov.utility_usage WHERE __sandbox_raw_counted_score(electricity_kwh, water_m3) IS NULL GROUP BY month",
    ] {
        let score = CountedScore::named("counted_score");
        let e = sandbox()
            .run_sql_with_functions(TEST_GRANT, sql, &SqlJobOptions::default(), vec![score.clone()])
            .await
            .expect_err(sql);
        assert_eq!(score.evaluated(), 0, "{sql}: nothing ran");
        let message = e.to_string();
        assert!(
            message.contains("__sandbox"),
            "{sql}: the refusal names the function: {message}"
        );
    }
}

/// Red team (hoisting, 2026-12-01 b): shapes beyond the regression test's.
/// One call a row wherever the same call serves several aggregates (sum,
/// variance's squares, a quantile's 65 candidate measures), sits under a
/// CASE, or appears in a join; on both bounding paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_team_hoist_one_call_a_row_for_every_shape() {
    let rows = utility_rows().await;
    let shapes = [
        "SELECT month, SUM(counted_score(electricity_kwh, water_m3)) AS s, \
                AVG(counted_score(electricity_kwh, water_m3)) AS a, \
                VARIANCE(counted_score(electricity_kwh, water_m3)) AS v \
         FROM gov.utility_usage GROUP BY month",
        "SELECT month, MEDIAN(counted_score(electricity_kwh, water_m3)) AS m FROM gov.utility_usage GROUP BY month",
        "SELECT month, AVG(counted_score(electricity_kwh, water_m3)) + AVG(counted_score(electricity_kwh, water_m3)) AS s \
         FROM gov.utility_usage GROUP BY month",
    ];
    let mut failures = Vec::new();
    for sql in shapes {
        for forced_partials in [false, true] {
            let score = CountedScore::named("counted_score");
            sandbox_runtime::testing::force_unit_partials(forced_partials);
            let result = sandbox()
                .run_sql_with_functions(TEST_GRANT, sql, &SqlJobOptions::default(), vec![score.clone()])
                .await;
            sandbox_runtime::testing::force_unit_partials(false);
            match result {
                Err(e) => failures.push(format!("{sql} (partials {forced_partials}): error {e}")),
                Ok(_) if score.evaluated() != rows => failures.push(format!(
                    "{sql} (partials {forced_partials}): {} calls for {rows} rows",
                    score.evaluated()
                )),
                Ok(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Red team (hoisting): calls in the row source (a subquery's SELECT
/// list, a WHERE clause) next to hoisted ones, and a self-join whose sides
/// share every column name. Records the calls per row (no release may
/// fail; a row's call count is data-independent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_team_hoist_row_source_calls_and_self_join() {
    let rows = utility_rows().await;
    let shapes = [
        "SELECT month, AVG(s) AS a FROM (SELECT month, credit_code, counted_score(electricity_kwh, water_m3) AS s \
         FROM gov.utility_usage) t GROUP BY month",
        "SELECT l.district, AVG(counted_score(u.electricity_kwh, l.registered_capital)) AS s FROM gov.utility_usage u \
         JOIN gov.legal_entities l ON u.credit_code = l.credit_code GROUP BY l.district",
        "SELECT l.district, u.month, AVG(counted_score(counted_score(u.electricity_kwh, l.insured_employees), u.water_m3)) AS s \
         FROM gov.utility_usage u JOIN gov.legal_entities l USING (credit_code) GROUP BY l.district, u.month",
        "SELECT month, AVG(counted_score(electricity_kwh, water_m3)) AS s FROM gov.utility_usage \
         WHERE counted_score(electricity_kwh, water_m3) >= 0 GROUP BY month",
    ];
    let mut report = Vec::new();
    for sql in shapes {
        for forced_partials in [false, true] {
            let score = CountedScore::named("counted_score");
            sandbox_runtime::testing::force_unit_partials(forced_partials);
            let result = sandbox()
                .run_sql_with_functions(TEST_GRANT, sql, &SqlJobOptions::default(), vec![score.clone()])
                .await;
            sandbox_runtime::testing::force_unit_partials(false);
            report.push(format!(
                "{sql} (partials {forced_partials}): {} calls for {rows} rows: {}",
                score.evaluated(),
                match &result {
                    Ok(_) => "ok".to_string(),
                    Err(e) => format!("error {e}"),
                }
            ));
        }
    }
    eprintln!("{report:#?}");
    assert!(report.iter().all(|r| !r.contains("error Internal")), "{report:#?}");
}
