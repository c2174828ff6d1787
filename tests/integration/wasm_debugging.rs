//! WebAssembly jobs a developer can debug (the `mistakes` test guest, built
//! by `scripts/build-guests.sh`): every mistake that does not depend on the
//! data is refused before anything is charged, with a message naming the
//! cause; a failure that depends on the data is counted, with DP, in the
//! release, and the usage report says "released with defaults"; a trial
//! run on the public sample shows everything and spends nothing.

use crate::fixture::{TEST_GRANT, isolated_sandbox};
use sandbox_governance::{Grant, UsageReport};
use sandbox_model::ReleasedCell;
use sandbox_runtime::sandbox::DEFAULTS_ROW;
use sandbox_runtime::{AnalysisOptions, Sandbox, SqlJobOptions};
use std::path::PathBuf;

pub(crate) fn guest(name: &str) -> Option<Vec<u8>> {
    let Some(dir) = std::env::var_os("SANDBOX_WASM_GUESTS") else {
        eprintln!("SANDBOX_WASM_GUESTS is not set: run scripts/test.sh to build the guests and run these tests");
        return None;
    };
    let path = PathBuf::from(dir).join(name);
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// A sandbox of its own (its own ledger) with the test grant.
pub(crate) fn own_sandbox(tmp: &tempfile::TempDir) -> Sandbox {
    let s = isolated_sandbox(tmp);
    let budgets = s
        .catalog()
        .iter()
        .filter(|d| d.open_class == sandbox_model::OpenClass::Conditional)
        .map(|d| (d.id.clone(), 1e9))
        .collect();
    s.store()
        .upsert_grant(&Grant::new(TEST_GRANT, "tests", budgets))
        .expect("grant");
    s
}

fn spent(s: &Sandbox) -> Vec<(String, f64)> {
    s.budget(TEST_GRANT)
        .expect("budget")
        .into_iter()
        .map(|b| (b.dataset.to_string(), b.epsilon_spent))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_data_independent_mistake_is_refused_before_any_charge_naming_its_cause() {
    let Some(bytes) = guest("mistakes.wasm") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    let job = s.load_wasm(&bytes).expect("admitted");
    let before = spent(&s);
    let from = "FROM bank.loans b JOIN gov.utility_usage u ON b.credit_code = u.credit_code WHERE u.month = '2024-06'";
    let cases = [
        (
            format!("SELECT u.electricity_kwh AS kwh {from}"),
            "wasm-trial-call",
            vec!["the input has no column `value`", "columns (`kwh`)"],
        ),
        (
            format!("SELECT u.electricity_kwh AS value, u.gas_m3 AS mode_panic {from}"),
            "wasm-trial-call",
            vec!["deliberate panic in the analysis on 16 rows", "src/lib.rs"],
        ),
        (
            format!("SELECT u.electricity_kwh AS value, u.gas_m3 AS mode_clock {from}"),
            "wasm-trial-call",
            vec!["time not implemented", "a job has no clock"],
        ),
        (
            format!("SELECT u.electricity_kwh AS value, u.gas_m3 AS mode_three {from}"),
            "wasm-trial-call",
            vec!["returned 3 values but declares 2 outputs"],
        ),
        (
            format!("SELECT u.electricity_kwh AS value, u.gas_m3 AS mode_nan {from}"),
            "wasm-trial-output",
            vec!["output `mean` is NaN"],
        ),
    ];
    for (input, rule, needles) in cases {
        let program = job.analysis().expect("analysis");
        let e = s
            .run_analysis(TEST_GRANT, program, &input, &AnalysisOptions::default())
            .await
            .expect_err("refused");
        assert_eq!(e.rule(), Some(rule), "{input}: {e}");
        for needle in needles {
            assert!(e.to_string().contains(needle), "{input}: `{needle}` not in: {e}");
        }
    }
    for (function, needle) in [
        ("panics", "deliberate panic in `panics`"),
        ("clock", "a job has no clock"),
    ] {
        let sql = format!("SELECT AVG({function}(u.electricity_kwh)) AS v FROM gov.utility_usage u");
        let e = s
            .run_sql_with_functions(TEST_GRANT, &sql, &SqlJobOptions::default(), job.row_functions())
            .await
            .expect_err("refused");
        assert_eq!(e.rule(), Some("wasm-trial-call"), "{sql}: {e}");
        assert!(e.to_string().contains(needle), "{sql}: {e}");
        assert!(e.to_string().contains(&format!("`{function}`")), "{e}");
    }
    // A GROUP BY in the input is refused for what it is; an ORDER BY is fine.
    let grouped = format!("SELECT AVG(u.electricity_kwh) AS value {from} GROUP BY u.month");
    let e = s
        .run_analysis(
            TEST_GRANT,
            job.analysis().expect("analysis"),
            &grouped,
            &AnalysisOptions::default(),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.rule(), Some("aggregation-in-input"), "{e}");
    assert!(e.to_string().contains("remove its GROUP BY"), "{e}");
    let ordered = format!("SELECT u.electricity_kwh AS value {from} ORDER BY u.electricity_kwh");
    s.dry_run_analysis(
        TEST_GRANT,
        job.analysis().expect("analysis").as_ref(),
        &ordered,
        &AnalysisOptions::default(),
    )
    .await
    .expect("an ORDER BY in the input is accepted");
    // A job function without its module: no "did you mean" a built-in.
    let e = s
        .run_sql(
            TEST_GRANT,
            "SELECT AVG(debt_ratio(u.electricity_kwh)) AS v FROM gov.utility_usage u",
            &SqlJobOptions::default(),
        )
        .await
        .expect_err("unknown function");
    let text = e.to_string();
    assert!(
        text.contains("`debt_ratio` is not a SQL function") && text.contains("--wasm"),
        "{text}"
    );
    assert!(!text.contains("Did you mean"), "{text}");
    assert_eq!(spent(&s), before, "nothing was charged");
}

/// A failure that depends on the data (a block fails when one of its rows
/// has `fail >= 1000`): the job is released, with the noisy count of blocks
/// that used the default, and the usage report counts it as released with
/// defaults. Here every row fails, so the count is about k.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dependent_failures_are_counted_with_dp_and_reported() {
    let Some(bytes) = guest("mistakes.wasm") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    let job = s.load_wasm(&bytes).expect("admitted");
    let input = "SELECT u.electricity_kwh AS value, CASE WHEN u.electricity_kwh >= 0 THEN 1000.0 ELSE 0.0 END AS fail
                 FROM bank.loans b JOIN gov.utility_usage u ON b.credit_code = u.credit_code WHERE u.month = '2024-06'";
    let blocks = 512;
    let options = AnalysisOptions {
        blocks,
        epsilon: Some(1.0),
    };
    let released = s
        .run_analysis(TEST_GRANT, job.analysis().expect("analysis"), input, &options)
        .await
        .expect("released: a data-dependent failure never fails the job");
    let last = released.table.rows.last().expect("rows");
    assert_eq!(
        last[0],
        ReleasedCell::Key {
            value: DEFAULTS_ROW.into()
        }
    );
    let ReleasedCell::Noisy { value, scale, .. } = last[1] else {
        panic!("a noisy count: {last:?}")
    };
    // ε 1: 0.1 for the count, scale 10; 512 blocks all default, and the
    // count is clamped to [0, 512]. The band below 512 is 21 scales: the
    // discrete Laplace passes it with probability e^-21 / (1 + e^-0.1) ≈
    // 4·10⁻¹⁰ per run (at 10 scales, 100, it was 2.4·10⁻⁵: flaky). A
    // count that ignored the defaults would release about 0.
    assert!((scale - 10.0).abs() < 1e-6, "{scale}");
    assert!(value > 512.0 - 21.0 * scale && value <= 512.0, "{value}");
    assert!(
        released.table.notes.iter().any(|n| n.contains("10 % for")),
        "{:?}",
        released.table.notes
    );

    let entries = s.store().audit_entries().expect("ledger");
    let report = UsageReport::from_entries(&entries, TEST_GRANT, None, None).expect("report");
    assert_eq!(report.jobs.released_with_defaults, 1, "{:?}", report.jobs);
    let markdown = report.to_markdown();
    assert!(markdown.contains("released with defaults"), "{markdown}");
}

/// A SQL job whose function fails on some rows (`fails_above(x)` panics
/// when x >= 1000): released, with a noisy count of the rows that took the
/// default from 10 % of ε (the dry run shows that share), listed by the
/// usage report as released with defaults; a query without a job function
/// spends all its ε on the release and counts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_function_failing_on_rows_is_counted_with_dp_and_reported() {
    use sandbox_runtime::SqlJobResult;
    let Some(bytes) = guest("mistakes.wasm") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    let job = s.load_wasm(&bytes).expect("admitted");
    // Three months (about 4 000 rows here; the count is a second pass over
    // them, within the job's one deadline): far above the count's noise.
    let sql = "SELECT district, AVG(fails_above(u.electricity_kwh + 1000)) AS v \
               FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code \
               WHERE u.month IN ('2024-04', '2024-05', '2024-06') GROUP BY district";
    let options = SqlJobOptions {
        epsilon: Some(1.0),
        ..Default::default()
    };
    let dry = SqlJobOptions {
        dry_run: true,
        ..options.clone()
    };
    let Ok(SqlJobResult::DryRun(report)) = s
        .run_sql_with_functions(TEST_GRANT, sql, &dry, job.row_functions())
        .await
    else {
        panic!("a dry run")
    };
    assert_eq!(report.epsilon, 1.0);
    let share = report
        .split
        .iter()
        .find(|(label, _)| label == sandbox_runtime::sandbox::DEFAULTS_PART)
        .map(|(_, e)| *e);
    assert!(share.is_some_and(|e| (e - 0.1).abs() < 1e-12), "{:?}", report.split);
    let parts: f64 = report.split.iter().map(|(_, e)| e).sum();
    assert!((parts - 1.0).abs() < 1e-9, "the split adds up to ε: {:?}", report.split);

    let Ok(SqlJobResult::Released { table, .. }) = s
        .run_sql_with_functions(TEST_GRANT, sql, &options, job.row_functions())
        .await
    else {
        panic!("released: a function failing on rows never fails the job")
    };
    assert_eq!(table.epsilon_spent, 1.0);
    let note = table
        .notes
        .iter()
        .find(|n| n.starts_with(sandbox_runtime::sandbox::DEFAULTS_PART))
        .unwrap_or_else(|| panic!("a note with the count: {:?}", table.notes));
    // Every row fails (x + 1000 >= 1000): 6 000 rows (one per enterprise a
    // month, each unit's 3 rows under its cap of 24), where the noise has
    // scale min(G·R, L) / 0.1ε = 240: below 2 000 only on noise of -4 000,
    // 16.7 scales, with probability e^-16.7 / 2 ≈ 3·10⁻⁸ per run.
    let about: f64 = note
        .split("about ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{note}"));
    assert!(about > 2_000.0, "{note}");
    let entries = s.store().audit_entries().expect("ledger");
    let report = UsageReport::from_entries(&entries, TEST_GRANT, None, None).expect("report");
    assert_eq!(report.jobs.released_with_defaults, 1, "{:?}", report.jobs);

    // No job function: no count, the whole ε on the release.
    let Ok(SqlJobResult::Released { table, .. }) = s
        .run_sql(
            TEST_GRANT,
            "SELECT month, AVG(electricity_kwh) AS v FROM gov.utility_usage WHERE month = '2024-06' GROUP BY month",
            &options,
        )
        .await
    else {
        panic!("released")
    };
    assert!(
        !table
            .notes
            .iter()
            .any(|n| n.starts_with(sandbox_runtime::sandbox::DEFAULTS_PART)),
        "{:?}",
        table.notes
    );
}

/// Makes the current sample of `dataset` in `s`'s data directory (as
/// `sandbox sample --generate` does, without the owner's charge).
pub(crate) fn make_sample(s: &Sandbox, dataset: &str) -> sandbox_ingest::SampleManifest {
    let dir = s.data_dir();
    let id: sandbox_model::DatasetId = dataset.parse().expect("id");
    let entry = s.catalog().get(&id).expect("entry").clone();
    let policies = s.policies();
    let policy = policies.get(&id).expect("policy");
    sandbox_ingest::make_sample(
        &sandbox_ingest::DataLayout::new(dir.root()),
        &entry,
        policy,
        &dir.table_dir(&id),
        None,
        &sandbox_ingest::SampleOptions::default(),
        |_| Ok(()),
    )
    .expect("sample")
}

/// A trial run reads the public sample, shows each block's outputs or the
/// guest's own panic message, and charges nothing; the dry run shows the
/// noise per output and the ε split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_run_on_the_sample_shows_everything_and_spends_nothing() {
    let Some(bytes) = guest("mistakes.wasm") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    let job = s.load_wasm(&bytes).expect("admitted");
    let input = "SELECT electricity_kwh AS value, gas_m3 AS mode_panic FROM gov.utility_usage";
    let options = AnalysisOptions {
        blocks: 8,
        epsilon: None,
    };
    let e = s
        .trial_analysis(TEST_GRANT, job.analysis().expect("analysis"), input, &options)
        .await
        .expect_err("no sample yet");
    assert_eq!(e.rule(), Some("trial-needs-sample"), "{e}");
    assert!(e.to_string().contains("gov.utility_usage"), "{e}");

    make_sample(&s, "gov.utility_usage");
    let before = spent(&s);
    let entries_before = s.store().audit_entries().expect("ledger").len();
    let panicking = s
        .trial_analysis(TEST_GRANT, job.analysis().expect("analysis"), input, &options)
        .await
        .expect("trial");
    assert_eq!(panicking.blocks.len(), 8);
    assert!(
        panicking.samples[0].starts_with("gov.utility_usage@"),
        "{:?}",
        panicking.samples
    );
    let non_empty: Vec<_> = panicking.blocks.iter().filter(|b| b.rows > 0).collect();
    assert!(!non_empty.is_empty());
    for b in &non_empty {
        let reason = b.default_reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains(&format!("deliberate panic in the analysis on {} rows", b.rows)),
            "{reason}"
        );
    }
    assert_eq!(panicking.defaults, 8);

    // The sample has nulls (NaN for the guest) where the data may too: the
    // trial shows a NaN mean as a default, so the job coalesces.
    let working =
        "SELECT COALESCE(electricity_kwh, 0) AS value, CASE WHEN electricity_kwh < 0 THEN 1000.0 ELSE 0.0 END AS fail
                   FROM gov.utility_usage";
    let trial = s
        .trial_analysis(TEST_GRANT, job.analysis().expect("analysis"), working, &options)
        .await
        .expect("trial");
    for b in trial.blocks.iter().filter(|b| b.rows > 0) {
        let outputs = b.outputs.as_ref().expect("outputs");
        assert_eq!(
            outputs[1], b.rows as f64,
            "the raw second output is the block's row count"
        );
        assert!(b.default_reason.is_none(), "{:?}", b.default_reason);
    }
    assert_eq!(spent(&s), before, "a trial charges nothing");
    assert_eq!(s.store().audit_entries().expect("ledger").len(), entries_before);

    let dry = s
        .dry_run_analysis(
            TEST_GRANT,
            job.analysis().expect("analysis").as_ref(),
            working,
            &options,
        )
        .await
        .expect("dry run");
    assert!((dry.epsilon_outputs + dry.epsilon_default_count - dry.epsilon).abs() < 1e-12);
    assert!((dry.epsilon_default_count - 0.1 * dry.epsilon).abs() < 1e-12);
    // (upper − lower) · d / (k · 0.9 ε)
    let expected = 10_000.0 * 2.0 / (8.0 * 0.9 * dry.epsilon);
    assert!((dry.outputs[0].scale - expected).abs() < 1e-6 * expected, "{dry:?}");
    assert_eq!(spent(&s), before, "a dry run charges nothing");
}

/// `sql --trial`: the query as written on the public sample, with every
/// call of the job's function logged — how many rows fell back to the
/// default and the guest's own message for the first of them — after the
/// same checks as a real job, charging nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_trial_shows_the_result_and_each_failed_call_and_spends_nothing() {
    let Some(bytes) = guest("mistakes.wasm") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = own_sandbox(&tmp);
    let job = s.load_wasm(&bytes).expect("admitted");
    let sql = "SELECT month, COUNT(*) AS n, AVG(fails_above(electricity_kwh)) AS v \
               FROM gov.utility_usage GROUP BY month ORDER BY month";
    let e = s
        .trial_sql(TEST_GRANT, sql, job.row_functions())
        .await
        .expect_err("no sample yet");
    assert_eq!(e.rule(), Some("trial-needs-sample"), "{e}");

    make_sample(&s, "gov.utility_usage");
    let before = spent(&s);
    let entries_before = s.store().audit_entries().expect("ledger").len();
    let report = s.trial_sql(TEST_GRANT, sql, job.row_functions()).await.expect("trial");
    assert_eq!(report.columns, ["month", "n", "v"]);
    assert!(!report.rows.is_empty());
    assert_eq!(report.rows.len(), report.total_rows);
    assert!(
        report.samples[0].starts_with("gov.utility_usage@"),
        "{:?}",
        report.samples
    );
    let rows_read: u64 = report.rows.iter().map(|r| r[1].parse::<u64>().expect("count")).sum();
    let f = &report.functions[0];
    assert_eq!(f.name, "fails_above");
    assert_eq!(f.calls, rows_read, "one call per row");
    // The failures are exactly the sample's rows with electricity_kwh >= 1000.
    let count = |sql: &'static str| {
        let s = &s;
        let functions = job.row_functions();
        async move {
            let r = s.trial_sql(TEST_GRANT, sql, functions).await.expect("count");
            r.rows[0][0].parse::<u64>().expect("count")
        }
    };
    let failing = count("SELECT COUNT(*) FROM gov.utility_usage WHERE electricity_kwh >= 1000").await;
    let negative = count("SELECT COUNT(*) FROM gov.utility_usage WHERE electricity_kwh < 0").await;
    assert!(failing > 0, "the sample has rows that make the function fail");
    assert_eq!(f.failed, failing);
    assert_eq!(f.clamped, negative);
    assert_eq!(
        f.failures.len() as u64,
        failing.min(sandbox_runtime::sandbox::MAX_SHOWN_FAILURES as u64)
    );
    for call in &f.failures {
        let x = call.arguments[0].expect("argument");
        assert!(x >= 1000.0, "{call:?}");
        assert!(
            call.message.contains(&format!("x = {x} is at least 1000")),
            "{}",
            call.message
        );
    }
    // The same checks as a real job: an identifier stays refused.
    let e = s
        .trial_sql(
            TEST_GRANT,
            "SELECT credit_code, COUNT(*) FROM gov.utility_usage GROUP BY credit_code",
            Vec::new(),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.rule(), Some("identifier-in-group-by"), "{e}");
    assert!(
        !e.to_string().contains("no sample"),
        "a refusal is the query's own: {e}"
    );
    assert_eq!(spent(&s), before, "a trial charges nothing");
    assert_eq!(s.store().audit_entries().expect("ledger").len(), entries_before);
}
