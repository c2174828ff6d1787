//! The distributed mode against the embedded one: with a Ballista
//! scheduler and two executors on loopback (`cluster_node` processes built
//! from the crates), every query of the neighbouring-database corpus has
//! the same outcome as in the embedded engine and, in the test-only
//! noise-off mode, the same bounded statistics (the same per-group
//! partials, unit counts, calibration). The neighbouring-database check
//! runs in distributed mode too, on every query the stride picks.
//!
//! Its own test binary: noise off is a process-wide switch.

mod cluster;
#[path = "../neighbouring/corpus.rs"]
mod corpus;
#[allow(dead_code)]
#[path = "../integration/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "../neighbouring/neighbours.rs"]
mod neighbours;
#[path = "../neighbouring/outcome.rs"]
mod outcome;

use cluster::Cluster;
use neighbours::World;
use outcome::{Outcome, compare, run};
use sandbox_distributed::BallistaRunner;
use sandbox_runtime::Sandbox;
use std::sync::Arc;
use std::time::Instant;

/// Neighbours are checked in distributed mode on one corpus query in this
/// many (each is a few cluster jobs per neighbour; the embedded suite
/// checks every query).
const NEIGHBOUR_STRIDE: usize = 4;

/// Groups in key order: partitions deliver observed groups in any order.
fn sorted(o: Outcome) -> Outcome {
    match o {
        Outcome::Released(mut t) => {
            t.groups
                .sort_by_key(|g| serde_json::to_string(&g.key).unwrap_or_default());
            Outcome::Released(t)
        }
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_releases_what_the_embedded_engine_releases() {
    sandbox_runtime::testing::set_noise_off(true);
    let world = World::build();
    let mut corpus = corpus::all(&world);
    // For development only: `SANDBOX_DISTRIBUTED_ONLY=<text>` runs the
    // corpus queries containing <text> (the test command runs all).
    let only = std::env::var("SANDBOX_DISTRIBUTED_ONLY").ok();
    if let Some(text) = &only {
        corpus.retain(|(_, sql)| sql.contains(text.as_str()));
    }
    let cluster = Cluster::start(2);
    let runner = Arc::new(BallistaRunner::new(&cluster.scheduler).expect("scheduler address"));
    let embedded = world.sandbox(None);
    let distributed = world.sandbox(None).with_runner(runner.clone());
    assert_eq!(distributed.execution_mode(), "ballista");
    let neighbours: Vec<(&neighbours::Neighbour, Sandbox)> = world
        .neighbours
        .iter()
        .map(|n| (n, world.sandbox(Some(n)).with_runner(runner.clone())))
        .collect();

    let (mut failures, mut released, mut neighbour_runs) = (Vec::new(), 0usize, 0usize);
    let mut local_outcomes = Vec::with_capacity(corpus.len());
    let (mut local_time, mut remote_time) = (0f64, 0f64);
    for (i, (origin, sql)) in corpus.iter().enumerate() {
        let t = Instant::now();
        let local = sorted(run(&embedded, sql).await);
        local_time += t.elapsed().as_secs_f64();
        local_outcomes.push(local.clone());
        let t = Instant::now();
        let remote = sorted(run(&distributed, sql).await);
        remote_time += t.elapsed().as_secs_f64();
        if local != remote {
            failures.push(format!(
                "[{origin}] embedded: {}, distributed: {}{}\n    {}",
                local.kind(),
                remote.kind(),
                if local.kind() == remote.kind() {
                    " (statistics differ)"
                } else {
                    ""
                },
                sql.trim()
            ));
            continue;
        }
        let Outcome::Released(on_d) = &remote else { continue };
        released += 1;
        if i % NEIGHBOUR_STRIDE != 0 {
            continue;
        }
        if !on_d.estimated.is_empty() {
            sandbox_runtime::testing::pin_estimates(Some(on_d.estimated.clone()));
        }
        for (neighbour, sandbox) in &neighbours {
            if !neighbour.touches(sql) {
                continue;
            }
            neighbour_runs += 1;
            let verdict = match run(sandbox, sql).await {
                Outcome::Released(on_n) => compare(on_d, &on_n),
                other => Err(format!("released on D, {} without the unit", other.kind())),
            };
            if let Err(why) = verdict {
                failures.push(format!(
                    "[{origin}] distributed, without {}: {why}\n    {}",
                    neighbour.label,
                    sql.trim()
                ));
            }
        }
        sandbox_runtime::testing::pin_estimates(None);
    }
    eprintln!(
        "distributed mode: {} queries ({released} released), embedded {local_time:.1} s, distributed {remote_time:.1} s; \
         {neighbour_runs} neighbour runs on the cluster; {} differences",
        corpus.len(),
        failures.len()
    );
    assert!(
        only.is_some() || released >= 180,
        "only {released} corpus queries released on the cluster"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    drop(neighbours);
    tables_published_to_s3_are_read_alike_by_the_coordinator_and_the_cluster(&world, &corpus, &local_outcomes, &runner)
        .await;
    an_executor_lost_mid_job_is_retried_or_fails_the_job_and_the_charge_stays(cluster, &embedded, &distributed).await;
}

/// Corpus queries checked on tables published to S3, one in this many
/// (each runs twice: embedded and on the cluster, reading the bucket).
const S3_STRIDE: usize = 5;

/// With the tables published to an S3-compatible store (moto's server,
/// which the test command starts: `scripts/s3.sh`), the coordinator alone
/// and the cluster's executors, each reading the bucket with its own AWS_*
/// settings, release exactly what the embedded engine releases from the
/// data directory (noise off). An object changed in the bucket after it
/// was published is never read: jobs on its dataset are refused until it
/// is published again.
async fn tables_published_to_s3_are_read_alike_by_the_coordinator_and_the_cluster(
    world: &World,
    corpus: &[(String, String)],
    local_outcomes: &[Outcome],
    runner: &Arc<BallistaRunner>,
) {
    let Some(base) = std::env::var("SANDBOX_TEST_S3_TABLES").ok().filter(|s| !s.is_empty()) else {
        assert_ne!(
            std::env::var("SANDBOX_REQUIRE_S3").as_deref(),
            Ok("1"),
            "SANDBOX_REQUIRE_S3=1 but SANDBOX_TEST_S3_TABLES is not set (scripts/s3.sh)"
        );
        eprintln!("S3: skipped (no SANDBOX_TEST_S3_TABLES; scripts/test.sh starts a server)");
        return;
    };
    let run_prefix = format!(
        "{}/run-{}-{}",
        base.trim_end_matches('/'),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let tables = sandbox_runtime::PublishedTables::open(&run_prefix).expect("tables");
    tables
        .check_reachable(std::time::Duration::from_secs(10))
        .expect("the bucket is reachable");
    // A bucket that does not exist fails the start-up check, naming it.
    let missing = sandbox_runtime::PublishedTables::open("s3://no-such-bucket-here/x").expect("parses");
    let e = missing
        .check_reachable(std::time::Duration::from_secs(10))
        .expect_err("no such bucket");
    assert!(e.to_string().contains("s3://no-such-bucket-here/x/"), "{e}");
    assert!(!e.to_string().contains("test"), "no credential in the message: {e}");
    let on_s3 = world.sandbox(None).with_published_tables(tables.clone());
    let published = on_s3.publish_all(false).await.expect("published to S3");
    assert!(published.len() >= 5, "published {published:?}");
    let cluster_on_s3 = world
        .sandbox(None)
        .with_runner(runner.clone())
        .with_published_tables(tables.clone());

    let started = Instant::now();
    let (mut checked, mut differences) = (0usize, Vec::new());
    for (i, ((origin, sql), local)) in corpus.iter().zip(local_outcomes).enumerate() {
        if i % S3_STRIDE != 0 {
            continue;
        }
        checked += 1;
        for (mode, sandbox) in [("embedded, S3", &on_s3), ("cluster, S3", &cluster_on_s3)] {
            let outcome = sorted(run(sandbox, sql).await);
            if &outcome != local {
                differences.push(format!(
                    "[{origin}] data directory: {}, {mode}: {}
    {}",
                    local.kind(),
                    outcome.kind(),
                    sql.trim()
                ));
            }
        }
    }
    eprintln!(
        "S3: {checked} corpus queries in both modes from {run_prefix} in {:.1} s; {} differences",
        started.elapsed().as_secs_f64(),
        differences.len()
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));

    // An object overwritten in the bucket after publication (same key and
    // size, other bytes): its dataset is not read, by either mode, until published again.
    let sql = "SELECT district, COUNT(*) AS n FROM gov.legal_entities GROUP BY district";
    let before = sorted(run(&on_s3, sql).await);
    assert!(matches!(before, Outcome::Released(_)), "{}", before.kind());
    let dataset: sandbox_model::DatasetId = "gov.legal_entities".parse().expect("id");
    let version = on_s3.data_dir().current_version(&dataset);
    assert_eq!(version, None, "generated data");
    let record = tables
        .publication(&dataset, None)
        .await
        .expect("read")
        .expect("published");
    let part = record
        .files
        .iter()
        .find(|f| f.name.ends_with(".parquet"))
        .expect("a part");
    let url = url::Url::parse(&format!("{}gov/legal_entities/{}", tables.root(), part.name)).expect("url");
    let store = sandbox_sql::storage::table_stores().store_for(&url).expect("store");
    let key = object_store::path::Path::from_url_path(url.path()).expect("key");
    let original = object_store::ObjectStoreExt::get(store.as_ref(), &key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    // Same size, one byte changed (a rewrite with the same bytes is the
    // same object: S3's ETag of a single-part upload is its MD5).
    let mut changed = original.to_vec();
    let middle = changed.len() / 2;
    changed[middle] ^= 1;
    object_store::ObjectStoreExt::put(store.as_ref(), &key, changed.into())
        .await
        .expect("overwrite");
    for sandbox in [&on_s3, &cluster_on_s3] {
        let outcome = run(sandbox, sql).await;
        assert!(
            !matches!(outcome, Outcome::Released(_)),
            "a table changed after publication is not read: {}",
            outcome.kind()
        );
    }
    on_s3
        .publish(&dataset)
        .await
        .expect("published again")
        .expect("has data");
    assert_eq!(
        sorted(run(&cluster_on_s3, sql).await),
        before,
        "read again once published"
    );
}

/// SIGKILL one of the two executors while jobs run on the cluster. Each
/// job either completes (Ballista reschedules the lost tasks on the other
/// executor) with exactly the embedded release, or fails with the
/// data-independent failure message; either way its charge stays and the
/// store records it. The cluster then goes on with one executor.
async fn an_executor_lost_mid_job_is_retried_or_fails_the_job_and_the_charge_stays(
    mut cluster: Cluster,
    embedded: &Sandbox,
    distributed: &Sandbox,
) {
    const SQL: &str = "SELECT e.industry, AVG(u.electricity_kwh) AS kwh, COUNT(*) AS n \
                       FROM gov.utility_usage u JOIN gov.legal_entities e ON u.credit_code = e.credit_code \
                       GROUP BY e.industry";
    let expected = sorted(run(embedded, SQL).await);
    assert!(matches!(expected, Outcome::Released(_)), "{}", expected.kind());
    let spent = |s: &Sandbox| -> f64 {
        s.budget(neighbours::GRANT)
            .expect("budget")
            .iter()
            .filter(|l| l.dataset == "gov.utility_usage")
            .map(|l| l.epsilon_spent)
            .sum()
    };
    let jobs = |s: &Sandbox| -> u64 {
        s.store()
            .job_counts(neighbours::GRANT)
            .expect("job counts")
            .iter()
            .map(|(_, n)| n)
            .sum()
    };
    let (spent_before, jobs_before) = (spent(distributed), jobs(distributed));
    // Jobs back to back until the executor has died during one of them.
    let mut victim = cluster.executors.remove(0);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(600));
        victim.kill().expect("SIGKILL the executor");
        let killed_at = Instant::now();
        victim.wait().expect("reap the executor");
        killed_at
    });
    let (mut outcomes, mut spans) = (Vec::new(), Vec::new());
    while !killer.is_finished() || outcomes.len() < 2 {
        let start = Instant::now();
        outcomes.push(sorted(run(distributed, SQL).await));
        spans.push((start, Instant::now()));
        assert!(outcomes.len() < 200, "the executor was never killed");
    }
    let killed_at = killer.join().expect("killer thread");
    assert!(
        spans
            .iter()
            .any(|(start, end)| *start <= killed_at && killed_at <= *end),
        "the executor died between jobs, not during one"
    );
    for outcome in &outcomes {
        match outcome {
            Outcome::Released(_) => assert_eq!(
                outcome, &expected,
                "a completed job releases what the embedded engine does"
            ),
            Outcome::Failed(message) => assert!(
                message.contains("details withheld"),
                "a failure on the cluster shows the data-independent message, not {message}"
            ),
            Outcome::Refused(rule) => panic!("refused by {rule} after losing an executor"),
        }
    }
    let ran = outcomes.len() as u64;
    assert_eq!(jobs(distributed), jobs_before + ran, "every job is recorded");
    let spent_by_all = spent(distributed) - spent_before;
    // After the loss the remaining executor runs jobs alone.
    let before_one = spent(distributed);
    let after = sorted(run(distributed, SQL).await);
    assert_eq!(
        after, expected,
        "the cluster with one executor releases what the embedded engine does"
    );
    let one = spent(distributed) - before_one;
    assert!(one > 0.0, "a job is charged");
    assert!(
        (spent_by_all - ran as f64 * one).abs() < 1e-6,
        "the {ran} jobs around the loss spent {spent_by_all}, not {ran} × {one}: a failed job's charge stays"
    );
    eprintln!(
        "executor killed mid-job: {}",
        outcomes.iter().map(Outcome::kind).collect::<Vec<_>>().join(", ")
    );
}

#[test]
fn webassembly_is_refused_in_distributed_mode_before_anything_runs() {
    let world_dir = tempfile::tempdir().expect("dir");
    let dir = sandbox_runtime::DataDir::open(world_dir.path()).expect("data dir");
    let runner = Arc::new(BallistaRunner::new("127.0.0.1:1").expect("address"));
    let sandbox = Sandbox::open(dir).expect("sandbox").with_runner(runner);
    // Refused by rule before the module is read (any bytes) and before any
    // cluster is contacted (none listens on port 1).
    let Err(refusal) = sandbox.load_wasm(b"\0asm\x01\0\0\0") else {
        panic!("a module was admitted in distributed mode");
    };
    assert_eq!(refusal.rule(), Some("distributed-wasm"), "{refusal}");
    assert!(refusal.to_string().contains("embedded mode"));
}

/// Files under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 })
            .sum()
    })
}

/// A job whose deadline passes while it waits on the cluster (no executor
/// yet) is reported as past its deadline and cancelled on the cluster: an
/// executor that joins afterwards runs none of it (red team 2026-12-01:
/// it used to run the abandoned job to the end on the raw data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_is_cancelled_on_the_cluster() {
    let world_dir = tempfile::tempdir().expect("dir");
    let dir = sandbox_runtime::DataDir::open(world_dir.path()).expect("data dir");
    sandbox_datagen::generate(&sandbox_datagen::GenerateOptions {
        seed: 42,
        scale: sandbox_datagen::Scale::small(),
        out_dir: dir.tables_dir(),
        rows_per_file: 100_000,
        only: Some(vec!["gov.legal_entities".into()]),
    })
    .expect("data");
    let mut cluster = Cluster::start(0);
    let runner = Arc::new(BallistaRunner::new(&cluster.scheduler).expect("address"));
    let limits = sandbox_sql::EngineLimits {
        deadline: std::time::Duration::from_secs(3),
        ..Default::default()
    };
    let sandbox = Sandbox::open(dir)
        .expect("sandbox")
        .with_limits(limits)
        .with_runner(runner);
    let outcome = sandbox
        .run_sql(
            "demo",
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities GROUP BY district",
            &sandbox_runtime::SqlJobOptions::default(),
        )
        .await;
    let error = outcome.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("deadline"), "expected the deadline, got {error:?}");
    // Give the cancellation a moment, then let an executor join.
    std::thread::sleep(std::time::Duration::from_millis(500));
    cluster.add_executor();
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(
        files_under(&cluster.work_dir(0)),
        0,
        "the executor that joined ran the abandoned job"
    );
}
