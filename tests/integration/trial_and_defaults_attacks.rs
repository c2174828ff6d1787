//! Red-team attacks on the SQL trial runs (`Sandbox::trial_sql`) and on the
//! DP count of rows that took a job function's default (red team of
//! 2026-11-30, third attack), kept as regression tests: `held_…` checks a
//! defence that held, `fixed_…` a hole that was found and closed.

use crate::fixture::TEST_GRANT;
use crate::wasm_debugging::{guest, make_sample, own_sandbox};
use sandbox_runtime::{Sandbox, SqlJobOptions, SqlJobResult};

/// The exact number of rows of the real table (what a trial must never show).
async fn real_rows(s: &Sandbox, dataset: &str) -> u64 {
    use sandbox_sql::datafusion::prelude::{ParquetReadOptions, SessionContext};
    let id: sandbox_model::DatasetId = dataset.parse().expect("id");
    let dir = s.data_dir().table_dir(&id);
    let ctx = SessionContext::new();
    let df = ctx
        .read_parquet(format!("{}/", dir.display()), ParquetReadOptions::default())
        .await
        .expect("read real table");
    df.count().await.expect("count") as u64
}

fn note_count(table: &sandbox_model::ReleasedTable) -> Option<f64> {
    table
        .notes
        .iter()
        .find(|n| n.starts_with(sandbox_runtime::sandbox::DEFAULTS_PART))
        .and_then(|n| n.split("about ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// HELD: a job function's output can only be aggregated as it is, so the
/// calls the DP count re-evaluates (an aggregate's argument) are exactly
/// the calls the release makes on every row of the row source: no `CASE`
/// or `COALESCE` can keep a call from running in the job while the count
/// pass evaluates it. (A nested call `f(g(x) * 2000)` is accepted: both
/// calls are flagged, each evaluated as the job evaluates it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_no_call_is_counted_that_the_job_does_not_make() {
    let Some(bytes) = guest("mistakes.wasm") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    make_sample(&s, "gov.utility_usage");
    let job = s.load_wasm(&bytes).expect("admitted");
    for sql in [
        "SELECT month, SUM(CASE WHEN electricity_kwh < 1000 THEN fails_above(electricity_kwh) ELSE 0 END) AS v \
         FROM gov.utility_usage GROUP BY month",
        "SELECT month, SUM(COALESCE(fails_above(electricity_kwh), 0)) AS v FROM gov.utility_usage GROUP BY month",
        "SELECT fails_above(electricity_kwh) AS k, COUNT(*) AS n FROM gov.utility_usage GROUP BY fails_above(electricity_kwh)",
    ] {
        let e = s
            .trial_sql(TEST_GRANT, sql, job.row_functions())
            .await
            .expect_err("refused");
        eprintln!("refused `{sql}`: [{:?}] {e}", e.rule());
        assert!(e.is_refusal(), "{e}");
    }
}

/// HELD: the internal flag function cannot be called by an analyst (not
/// registered; `__sandbox…` names are refused), neither in a job nor a trial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_the_internal_failure_flag_is_not_callable() {
    let Some(bytes) = guest("mistakes.wasm") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    make_sample(&s, "gov.utility_usage");
    let job = s.load_wasm(&bytes).expect("admitted");
    for sql in [
        "SELECT month, SUM(__sandbox_failed(electricity_kwh)) AS v FROM gov.utility_usage GROUP BY month",
        "SELECT month, SUM(\"__sandbox_failed\"(electricity_kwh)) AS v FROM gov.utility_usage GROUP BY month",
    ] {
        let options = SqlJobOptions {
            epsilon: Some(1.0),
            ..Default::default()
        };
        let e = s
            .run_sql_with_functions(TEST_GRANT, sql, &options, job.row_functions())
            .await
            .expect_err("the flag is not a function of the job");
        eprintln!("job: {e}");
        let e = s
            .trial_sql(TEST_GRANT, sql, job.row_functions())
            .await
            .expect_err("nor of a trial");
        eprintln!("trial: {e}");
    }
}

/// HELD: a trial cannot reach the real table or any file: URL tables,
/// table functions, DDL, COPY, EXPLAIN, information_schema, a dataset
/// without a sample (the real table is never bound in its place), an open
/// dataset without a sample, the catalog-qualified name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_a_trial_reaches_no_file_and_no_real_table() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    make_sample(&s, "gov.utility_usage");
    let real = s.data_dir().table_dir(&"gov.tax_payments".parse().expect("id"));
    let file = std::fs::read_dir(&real)
        .expect("real dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .expect("a real file");
    let f = file.display();
    let d = real.display();
    let attempts = vec![
        format!("SELECT COUNT(*) FROM '{f}'"),
        format!("SELECT COUNT(*) FROM \"{f}\""),
        format!("SELECT COUNT(*) FROM read_parquet('{f}')"),
        format!("SELECT COUNT(*) FROM parquet_scan('{f}')"),
        format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{d}'"),
        format!("COPY (SELECT 1) TO '{}/leak.csv'", tmp.path().display()),
        "EXPLAIN ANALYZE SELECT COUNT(*) FROM gov.utility_usage".to_string(),
        "SELECT COUNT(*) FROM information_schema.tables".to_string(),
        "SELECT COUNT(*) FROM gov.tax_payments".to_string(),
        "SELECT COUNT(*) FROM sandbox.gov.tax_payments".to_string(),
        "SELECT COUNT(*) FROM gov.districts".to_string(),
        "SELECT COUNT(*) FROM gov.utility_usage u JOIN gov.tax_payments t ON u.credit_code = t.credit_code".to_string(),
        "SELECT COUNT(*) FROM (SELECT * FROM gov.utility_usage) u WHERE EXISTS (SELECT 1 FROM gov.tax_payments)"
            .to_string(),
        "SELECT COUNT(*) FROM generate_series(1, 10)".to_string(),
        "SET datafusion.catalog.information_schema = true".to_string(),
    ];
    for sql in &attempts {
        let r = s.trial_sql(TEST_GRANT, sql, Vec::new()).await;
        match r {
            Ok(report) => panic!("a trial ran `{sql}`: {report:?}"),
            Err(e) => eprintln!("refused `{sql}`: [{:?}] {e}", e.rule()),
        }
    }
    // The legitimate sample: its row count, not the real table's.
    let report = s
        .trial_sql(TEST_GRANT, "SELECT COUNT(*) AS n FROM gov.utility_usage", Vec::new())
        .await
        .expect("trial on the sample");
    let n: u64 = report.rows[0][0].parse().expect("n");
    let real_n = real_rows(&s, "gov.utility_usage").await;
    eprintln!("sample rows {n}, real rows {real_n}");
    assert_ne!(n, real_n);
}

/// HELD: files in a sample directory that are symlinks or hidden are not
/// read by a trial (a symlink to a real file, a hidden copy of one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_symlinked_and_hidden_files_in_a_sample_are_not_read() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    let manifest = make_sample(&s, "gov.utility_usage");
    let id: sandbox_model::DatasetId = "gov.utility_usage".parse().expect("id");
    let sample = s.data_dir().current_sample_dir(&id).expect("sample dir");
    let real = s.data_dir().table_dir(&id);
    let real_file = std::fs::read_dir(&real)
        .expect("real dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .expect("a real file");
    std::os::unix::fs::symlink(&real_file, sample.join("zz-link.parquet")).expect("symlink");
    std::fs::copy(&real_file, sample.join(".hidden.parquet")).expect("copy");
    let report = s
        .trial_sql(TEST_GRANT, "SELECT COUNT(*) AS n FROM gov.utility_usage", Vec::new())
        .await
        .expect("trial");
    let n: u64 = report.rows[0][0].parse().expect("n");
    assert_eq!(n, manifest.rows, "only the sample's own regular files are read");
}

/// FINDING (low, defence in depth): the only thing that keeps a trial on
/// public data is the layout of the data directory. A sample directory
/// that is a symlink (here to the real table's directory) is followed
/// (`current_sample_dir` checks `is_dir()`, which follows links; nothing
/// checks that the files read are the sample manifest's published files),
/// and the trial then runs the analyst's SQL as written on the real data
/// and prints the exact result. Needs write access to the data directory
/// (an operator mistake, a restore, a sync tool), but then every analyst
/// gets raw data without DP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_a_symlinked_sample_directory_never_sends_a_trial_to_the_real_table() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    make_sample(&s, "gov.utility_usage");
    let id: sandbox_model::DatasetId = "gov.utility_usage".parse().expect("id");
    let base = s.data_dir().samples_dir().join("gov").join("utility_usage");
    std::os::unix::fs::symlink(s.data_dir().table_dir(&id), base.join("s-link")).expect("symlink");
    std::fs::write(base.join("CURRENT"), "s-link\n").expect("current");
    let e = s
        .trial_sql(TEST_GRANT, "SELECT COUNT(*) AS n FROM gov.utility_usage", Vec::new())
        .await
        .expect_err("a linked sample is no sample");
    assert_eq!(e.rule(), Some("trial-needs-sample"), "{e}");
    // A link higher up (the dataset's directory under samples/) neither.
    std::fs::write(base.join("CURRENT"), "s000001\n").expect("current");
    let moved = base.with_file_name("utility_usage_real");
    std::fs::rename(&base, &moved).expect("move");
    std::os::unix::fs::symlink(&moved, &base).expect("symlink");
    assert!(s.data_dir().current_sample_dir(&id).is_none());
}

/// FINDING (low, docs): docs/api.md says a trial that also gives `epsilon`
/// is refused with 400 "for both kinds"; an analysis trial with `epsilon`
/// passes validation (only `dry_run` is checked for analyses).
#[test]
fn fixed_a_trial_with_epsilon_is_refused_for_both_kinds() {
    use sandbox_server::job::JobRequest;
    let request: JobRequest = serde_json::from_value(serde_json::json!({
        "kind": "analysis", "agreement": "a", "input_sql": "SELECT 1",
        "wasm_module": base64_module(), "epsilon": 0.5, "trial": true
    }))
    .expect("request");
    assert!(request.validate().is_err(), "an analysis trial with ε is refused");
    let sql: JobRequest = serde_json::from_value(serde_json::json!({
        "kind": "sql", "agreement": "a", "sql": "SELECT 1", "epsilon": 0.5, "trial": true
    }))
    .expect("request");
    assert!(sql.validate().is_err(), "a SQL trial with ε is refused");
}

fn base64_module() -> String {
    use base64::Engine;
    // The smallest valid module.
    base64::engine::general_purpose::STANDARD.encode(wat::parse_str("(module)").expect("wat"))
}

/// HELD: the job's charge, the released table's `epsilon_spent`, and the
/// dry run's ε are the same ε; the split's parts add up to it; the count
/// of defaults is present exactly when the query calls a job function in
/// an aggregate (WHERE-only calls: no count, whole ε on the release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_charge_equals_epsilon_spent_with_and_without_the_count() {
    let Some(bytes) = guest("mistakes.wasm") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    let job = s.load_wasm(&bytes).expect("admitted");
    let spent = |s: &Sandbox| -> f64 {
        s.budget(TEST_GRANT)
            .expect("budget")
            .into_iter()
            .map(|b| b.epsilon_spent)
            .sum()
    };
    for (sql, counted) in [
        (
            "SELECT month, AVG(fails_above(electricity_kwh)) AS v FROM gov.utility_usage WHERE month = '2024-06' GROUP BY month",
            true,
        ),
        (
            "SELECT month, COUNT(*) AS n FROM gov.utility_usage WHERE month = '2024-06' AND fails_above(electricity_kwh) > 0.5 GROUP BY month",
            false,
        ),
        // "both" mode with the dominance rule (the release bounds per unit
        // outside the engine; the count still in it).
        (
            "SELECT t.year, SUM(fails_above(t.tax_paid)) AS v FROM gov.tax_payments t GROUP BY t.year",
            true,
        ),
    ] {
        let options = SqlJobOptions {
            epsilon: Some(0.7),
            ..Default::default()
        };
        let dry = SqlJobOptions {
            dry_run: true,
            ..options.clone()
        };
        let report = match s
            .run_sql_with_functions(TEST_GRANT, sql, &dry, job.row_functions())
            .await
        {
            Ok(SqlJobResult::DryRun(report)) => report,
            other => {
                eprintln!("not a dry run of {sql}: {other:?}");
                assert!(sql.contains("tax_payments"), "{other:?}");
                continue;
            }
        };
        let parts: f64 = report.split.iter().map(|(_, e)| e).sum();
        assert!((parts - 0.7).abs() < 1e-9, "{sql}: {:?}", report.split);
        assert!((report.epsilon - 0.7).abs() < 1e-12);
        let before = spent(&s);
        let r = s
            .run_sql_with_functions(TEST_GRANT, sql, &options, job.row_functions())
            .await;
        let Ok(SqlJobResult::Released { table, .. }) = r else {
            panic!("released: {sql}: {r:?}")
        };
        let charged = spent(&s) - before;
        assert!(
            (table.epsilon_spent - 0.7).abs() < 1e-9,
            "{sql}: {}",
            table.epsilon_spent
        );
        // One charge per protected dataset read (one here).
        assert!((charged - 0.7).abs() < 1e-6, "{sql}: charged {charged}");
        assert_eq!(note_count(&table).is_some(), counted, "{sql}: {:?}", table.notes);
    }
}

/// HELD: with `target_ci` the ε chosen is the release's need divided by
/// 0.9 (so the release still gets what the target needs); the dry run's ε,
/// the job's charge and its `epsilon_spent` agree, and the count's share is
/// 10 % of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_target_ci_epsilon_includes_the_count_share() {
    let Some(bytes) = guest("mistakes.wasm") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    let job = s.load_wasm(&bytes).expect("admitted");
    let with_udf = "SELECT month, AVG(fails_above(electricity_kwh)) AS v FROM gov.utility_usage \
                    WHERE month = '2024-06' GROUP BY month";
    let without = "SELECT month, AVG(CLAMP(electricity_kwh / 1000, 0, 1)) AS v FROM gov.utility_usage \
                   WHERE month = '2024-06' GROUP BY month";
    let target = SqlJobOptions {
        target_ci: Some(0.3),
        target_rows: Some(1000),
        ..Default::default()
    };
    let dry = SqlJobOptions {
        dry_run: true,
        ..target.clone()
    };
    let dry_run = |sql: &'static str| {
        let s = &s;
        let functions = job.row_functions();
        let dry = dry.clone();
        async move {
            match s.run_sql_with_functions(TEST_GRANT, sql, &dry, functions).await {
                Ok(SqlJobResult::DryRun(r)) => Some(r),
                other => {
                    eprintln!("{sql}: {other:?}");
                    None
                }
            }
        }
    };
    let (Some(a), Some(b)) = (dry_run(with_udf).await, dry_run(without).await) else {
        eprintln!("a target this tight is over the cap here; nothing to compare");
        return;
    };
    eprintln!("target ε with the count {}, without {}", a.epsilon, b.epsilon);
    let share = a
        .split
        .iter()
        .find(|(l, _)| l == sandbox_runtime::sandbox::DEFAULTS_PART)
        .map(|(_, e)| *e)
        .expect("the count's share");
    assert!((share - 0.1 * a.epsilon).abs() < 1e-9, "{:?}", a.split);
    let before: f64 = s.budget(TEST_GRANT).expect("b").iter().map(|l| l.epsilon_spent).sum();
    let Ok(SqlJobResult::Released { table, .. }) = s
        .run_sql_with_functions(TEST_GRANT, with_udf, &target, job.row_functions())
        .await
    else {
        panic!("released")
    };
    let after: f64 = s.budget(TEST_GRANT).expect("b").iter().map(|l| l.epsilon_spent).sum();
    assert!(
        (table.epsilon_spent - a.epsilon).abs() < 1e-9,
        "{} vs {}",
        table.epsilon_spent,
        a.epsilon
    );
    assert!((after - before - a.epsilon).abs() < 1e-6, "charged {}", after - before);
}

/// FINDING (low, UX): a `target_ci` whose need ε_t is under the cap but
/// ε_t / 0.9 is over it is refused with `epsilon-over-cap` naming an ε the
/// analyst never gave ("ε = 1.05 exceeds the per-query cap"), where the
/// same target without a job function runs; the forecast's own
/// `target-ci-over-cap` check does not include the count's share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_a_target_just_under_the_cap_is_refused_as_a_target_naming_the_count_share() {
    let Some(bytes) = guest("mistakes.wasm") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    let job = s.load_wasm(&bytes).expect("admitted");
    let with_udf = "SELECT month, AVG(fails_above(electricity_kwh)) AS v FROM gov.utility_usage \
                    WHERE month = '2024-06' GROUP BY month";
    let without = "SELECT month, AVG(CLAMP(electricity_kwh / 1000, 0, 1)) AS v FROM gov.utility_usage \
                   WHERE month = '2024-06' GROUP BY month";
    // ε_t ≈ 0.95 under the cap of 1 (measured: 0.768 at ±0.3, 1.076 at ±0.197); ε_t / 0.9 ≈ 1.05 over it.
    let dry = SqlJobOptions {
        dry_run: true,
        target_ci: Some(0.229),
        target_rows: Some(1000),
        ..Default::default()
    };
    let a = s
        .run_sql_with_functions(TEST_GRANT, with_udf, &dry, job.row_functions())
        .await;
    let b = s.run_sql_with_functions(TEST_GRANT, without, &dry, Vec::new()).await;
    eprintln!("with a function: {a:?}\nwithout: {:?}", b.as_ref().map(|_| "a dry run"));
    assert!(b.is_ok(), "{b:?}");
    let e = a.expect_err("refused");
    assert_eq!(e.rule(), Some("target-ci-over-cap"), "{e}");
    assert!(e.to_string().contains("function's default"), "{e}");
}

/// FIXED (attack4, F3): a trial read the current sample whatever the policy
/// now says: a sample made before the owner added a desensitization rule
/// showed months the rule hides. A trial now refuses such a sample, naming
/// the dataset and telling its owner to make a new one; a sample made under
/// the rule is used, and shows only coarsened values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_a_trial_never_reads_a_sample_made_under_other_rules() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    make_sample(&s, "gov.utility_usage");
    let sql = "SELECT month, COUNT(*) AS n FROM gov.utility_usage GROUP BY month";
    let before = s.trial_sql(TEST_GRANT, sql, Vec::new()).await.expect("trial");
    assert!(before.rows.len() > 1, "{:?}", before.rows);

    let path = s.data_dir().policies_dir().join("gov.utility_usage.toml");
    let text = std::fs::read_to_string(&path).expect("policy");
    std::fs::write(
        &path,
        format!("{text}\n[desensitize]\nmonth = {{ truncate_chars = 4 }}\n"),
    )
    .expect("add a rule");
    assert!(s.refresh().expect("refresh"));
    let e = s
        .trial_sql(TEST_GRANT, sql, Vec::new())
        .await
        .expect_err("a sample made under other rules");
    assert_eq!(e.rule(), Some("sample-stale"), "{e}");
    let message = e.to_string();
    assert!(
        message.contains("gov.utility_usage") && message.contains("sandbox sample gov.utility_usage --generate"),
        "{message}"
    );
    assert!(s.current_sample(&"gov.utility_usage".parse().expect("id")).is_err());

    make_sample(&s, "gov.utility_usage");
    let after = s.trial_sql(TEST_GRANT, sql, Vec::new()).await.expect("trial");
    let months: Vec<String> = after.rows.iter().map(|r| r[0].to_string()).collect();
    assert!(
        !months.is_empty() && months.iter().all(|m| m.trim_matches('"').len() <= 4),
        "{months:?}"
    );
}
