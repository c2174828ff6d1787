//! Crash safety of the governance store: `job_stream` (tests/bin) runs a
//! stream of jobs in its own process and is killed with SIGKILL at a random
//! moment, many times over, on fresh databases and on databases that earlier
//! kills left behind (so every start after a crash is exercised too),
//! sometimes with two workers writing at once. After every kill the store is
//! opened and must be consistent:
//!
//! * the ledger's hash chain verifies up to its stored head;
//! * per dataset, the budget's spent ε (and δ) is the sum of the charge
//!   rows, and never above the total;
//! * every `job_charged` entry has its job row and exactly its charge rows,
//!   and every charge row its `job_charged` entry (no charge without its job
//!   record, no job record without its charge);
//! * every `job_finished` entry follows its job's `job_charged` entry and
//!   matches the job's final status; a job still `running` (killed between
//!   charge and finish) has no `job_finished` entry;
//! * refused jobs have their `job_refused` entry and no charge;
//! * no job whose usage carries a result digest lacks its charge;
//! * `job_counts` agrees with the job rows, and SQLite's integrity check passes.
//!
//! The schedule (which database, how long before the kill) comes from a
//! seeded xorshift: `CRASH_SAFETY_SEED` and `CRASH_SAFETY_ITERATIONS`
//! override the defaults to explore further.

#![cfg(unix)]

use rusqlite::{Connection, OpenFlags};
use sandbox_governance::{AuditReport, Store};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_job_stream");
/// The grant `job_stream` charges.
const GRANT: &str = "crash-grant";
const SEED: u64 = 0x5EED_0FC4_A540_0001;
const ITERATIONS: usize = 40;
/// ε per dataset of a grant that lasts for the whole test, and of grants
/// that run out within one run or over a few (every fourth database, in turn).
const LARGE_BUDGET: f64 = 1e6;
const SMALL_BUDGETS: [f64; 2] = [1.0, 3.0];
const SLACK: f64 = 1e-9;

/// xorshift64*: the kill schedule, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One running `job_stream` process and the lines it printed.
struct Worker {
    child: Child,
    lines: Receiver<String>,
}

impl Worker {
    fn spawn(db: &Path, tag: &str, budget: f64) -> Worker {
        let mut child = Command::new(WORKER)
            .arg(db)
            .arg(tag)
            .arg(budget.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start job_stream");
        let stdout = child.stdout.take().expect("job_stream's stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker { child, lines }
    }

    /// Whether the worker has printed `ready` (the store is open and the
    /// grant exists); `None` while it is still starting.
    fn poll_ready(&mut self, context: &str) -> Option<bool> {
        match self.lines.try_recv() {
            Ok(line) => {
                assert_eq!(line, "ready", "{context}: job_stream's first line");
                Some(true)
            }
            // Ended before it was ready: reported by `kill`.
            Err(TryRecvError::Disconnected) => Some(false),
            Err(TryRecvError::Empty) => None,
        }
    }

    /// Kills the worker unless it already exited; true if it was killed,
    /// false if it had stopped on its own because the budget ran out.
    fn kill(mut self, context: &str) -> bool {
        self.child.kill().expect("kill job_stream");
        let status = self.child.wait().expect("wait for job_stream");
        // SIGKILL is 9 on every Unix.
        if status.signal() == Some(9) {
            return true;
        }
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut stderr).expect("job_stream's stderr");
        }
        // Everything it printed (the reader ends with the pipe, now closed).
        let printed: Vec<String> = self.lines.iter().collect();
        assert!(
            status.success() && printed.iter().any(|l| l.starts_with("exhausted")),
            "{context}: job_stream ended by itself with {status}: stdout {printed:?}, stderr {stderr}"
        );
        false
    }
}

/// What a check found in one database.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    jobs: usize,
    charged: usize,
    running: usize,
    refused: usize,
    entries: usize,
    /// Datasets without room for another job.
    spent: usize,
}

/// Checks every invariant of the store at `db`; returns what it holds and
/// every violation found.
fn check(db: &Path) -> (Seen, Vec<String>) {
    let mut bad = Vec::new();
    let store = Store::open(db).expect("open the store after the kill");

    // The chain.
    let entries = store.audit_entries().expect("ledger entries");
    match store.verify_audit().expect("verify the ledger") {
        AuditReport::Intact { entries: n, .. } if n as usize == entries.len() => {}
        AuditReport::Intact { entries: n, .. } => {
            bad.push(format!("verify counted {n} entries, the store holds {}", entries.len()))
        }
        AuditReport::Broken(b) => bad.push(format!("the ledger is broken at entry {}: {}", b.seq, b.reason)),
    }

    // The ledger's view of the jobs, in order.
    type Charges = BTreeMap<String, (f64, f64)>;
    let mut charged: HashMap<String, Charges> = HashMap::new();
    let mut finished: HashMap<String, Value> = HashMap::new();
    let mut refused: HashSet<String> = HashSet::new();
    for e in &entries {
        let job = e.payload["job"].as_str().unwrap_or_default().to_string();
        match e.kind.as_str() {
            "grant_created" | "grant_extended" => {}
            "job_charged" => {
                let charges: Charges = e.payload["charges"]
                    .as_array()
                    .map(|cs| {
                        cs.iter()
                            .map(|c| {
                                let dataset = c["dataset"].as_str().unwrap_or_default().to_string();
                                let eps = c["epsilon"].as_f64().unwrap_or(f64::NAN);
                                (dataset, (eps, c["delta"].as_f64().unwrap_or(f64::NAN)))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if charges.is_empty() {
                    bad.push(format!("entry {}: job {job} charged nothing", e.seq));
                }
                if refused.contains(&job) || charged.insert(job.clone(), charges).is_some() {
                    bad.push(format!("entry {}: job {job} charged twice or after its refusal", e.seq));
                }
            }
            "job_finished" => {
                if !charged.contains_key(&job) {
                    bad.push(format!(
                        "entry {}: job {job} finished without an earlier job_charged",
                        e.seq
                    ));
                }
                if finished.insert(job.clone(), e.payload.clone()).is_some() {
                    bad.push(format!("entry {}: job {job} finished twice", e.seq));
                }
            }
            "job_refused" => {
                if charged.contains_key(&job) || !refused.insert(job.clone()) {
                    bad.push(format!("entry {}: job {job} refused twice or after its charge", e.seq));
                }
            }
            other => bad.push(format!("entry {}: unexpected kind {other}", e.seq)),
        }
    }

    // The tables, read directly (the store stays open: its WAL and
    // shared-memory files stay in place for this read-only connection).
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open read-only");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    if integrity != "ok" {
        bad.push(format!("SQLite integrity check: {integrity}"));
    }
    let ledger_rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))
        .expect("count ledger rows");
    if ledger_rows as usize != entries.len() {
        bad.push(format!("{ledger_rows} ledger rows, {} entries read", entries.len()));
    }
    let mut charge_rows: HashMap<String, Charges> = HashMap::new();
    let mut row_count = 0;
    let mut stmt = conn
        .prepare("SELECT job_id, dataset, epsilon, delta FROM charges")
        .expect("charges");
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?))
        })
        .expect("read charges");
    for row in rows {
        // Fixed-point units: ε in 1e-9, δ in 1e-15 (sandbox_governance::amount).
        let (job, dataset, eps, delta): (String, String, i64, i64) = row.expect("charge row");
        let (eps, delta) = (
            sandbox_governance::Epsilon::from_units(eps).as_f64(),
            sandbox_governance::Delta::from_units(delta).as_f64(),
        );
        charge_rows.entry(job).or_default().insert(dataset, (eps, delta));
        row_count += 1;
    }
    let ledger_charges: usize = charged.values().map(BTreeMap::len).sum();
    if row_count != ledger_charges {
        bad.push(format!(
            "{row_count} charge rows, {ledger_charges} charges in job_charged entries"
        ));
    }
    let same = |a: &Charges, b: &Charges| {
        a.len() == b.len()
            && a.iter().zip(b).all(|((da, (ea, dla)), (db, (eb, dlb)))| {
                da == db && (ea - eb).abs() <= SLACK && (dla - dlb).abs() <= SLACK
            })
    };
    for (job, rows) in &charge_rows {
        match charged.get(job) {
            None => bad.push(format!("job {job} has charge rows but no job_charged entry")),
            Some(logged) if !same(rows, logged) => {
                bad.push(format!("job {job}: charge rows {rows:?}, job_charged entry {logged:?}"))
            }
            Some(_) => {}
        }
    }

    let mut jobs: HashMap<String, (String, Option<String>)> = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT id, grant_id, status, usage FROM jobs")
        .expect("jobs");
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .expect("read jobs");
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for row in rows {
        let (id, grant, status, usage) = row.expect("job row");
        if grant != GRANT {
            bad.push(format!("job {id} under unexpected grant {grant}"));
        }
        *by_status.entry(status.clone()).or_default() += 1;
        jobs.insert(id, (status, usage));
    }
    for (id, (status, usage)) in &jobs {
        let has_charges = charge_rows.contains_key(id);
        let logged_charge = charged.contains_key(id);
        match status.as_str() {
            "refused" => {
                if !refused.contains(id) || has_charges || logged_charge {
                    bad.push(format!(
                        "refused job {id}: job_refused entry {}, charge rows {has_charges}, job_charged {logged_charge}",
                        refused.contains(id)
                    ));
                }
            }
            "running" => {
                if !has_charges || !logged_charge || finished.contains_key(id) {
                    bad.push(format!(
                        "running job {id}: charge rows {has_charges}, job_charged {logged_charge}, finished {}",
                        finished.contains_key(id)
                    ));
                }
            }
            "released" | "failed" | "cancelled" => {
                let logged_status = finished.get(id).map(|p| p["status"].as_str().unwrap_or_default());
                if !has_charges || !logged_charge || logged_status != Some(status.as_str()) {
                    bad.push(format!(
                        "{status} job {id}: charge rows {has_charges}, job_charged {logged_charge}, job_finished status {logged_status:?}"
                    ));
                }
            }
            other => bad.push(format!("job {id} has unexpected status {other}")),
        }
        let usage: Option<Value> = usage.as_deref().map(|u| serde_json::from_str(u).expect("usage JSON"));
        if let Some(digest) = usage.as_ref().and_then(|u| u["result_digest"].as_str()) {
            let logged = finished.get(id).and_then(|p| p["usage"]["result_digest"].as_str());
            if !has_charges || status != "released" || logged != Some(digest) {
                bad.push(format!(
                    "job {id} released result {digest} (status {status}, charge rows {has_charges}, ledger digest {logged:?})"
                ));
            }
        }
    }
    for job in charged.keys().chain(finished.keys()).chain(refused.iter()) {
        if !jobs.contains_key(job) {
            bad.push(format!("the ledger records job {job} but there is no job row"));
        }
    }

    // Budgets against charges, through the store and directly.
    let budget = store.budget(GRANT).expect("budget");
    let sums: HashMap<String, f64> = store.charged(GRANT).expect("charged").into_iter().collect();
    for line in &budget {
        let sum = sums.get(&line.dataset).copied().unwrap_or(0.0);
        if (sum - line.epsilon_spent).abs() > SLACK {
            bad.push(format!(
                "{}: charges sum to ε {sum}, budget spent {}",
                line.dataset, line.epsilon_spent
            ));
        }
        if line.epsilon_spent > line.epsilon_total + SLACK {
            bad.push(format!(
                "{}: ε {} spent of {}",
                line.dataset, line.epsilon_spent, line.epsilon_total
            ));
        }
        let delta: f64 = charge_rows
            .values()
            .filter_map(|c| c.get(&line.dataset))
            .map(|c| c.1)
            .sum();
        if (delta - line.delta_spent).abs() > SLACK {
            bad.push(format!(
                "{}: charges sum to δ {delta}, budget spent {}",
                line.dataset, line.delta_spent
            ));
        }
    }
    for dataset in sums.keys() {
        if !budget.iter().any(|b| &b.dataset == dataset) {
            bad.push(format!("charges on {dataset}, which has no budget"));
        }
    }
    let counts: BTreeMap<String, u64> = store.job_counts(GRANT).expect("job counts").into_iter().collect();
    if counts != by_status {
        bad.push(format!("job_counts {counts:?}, job rows {by_status:?}"));
    }
    let charged_jobs: u64 = counts.iter().filter(|(s, _)| *s != "refused").map(|(_, n)| n).sum();
    if charged_jobs as usize != charged.len() {
        bad.push(format!(
            "{charged_jobs} charged jobs, {} job_charged entries",
            charged.len()
        ));
    }

    let seen = Seen {
        jobs: jobs.len(),
        charged: charged.len(),
        running: by_status.get("running").copied().unwrap_or(0) as usize,
        refused: refused.len(),
        entries: entries.len(),
        spent: budget.iter().filter(|b| b.epsilon_left() < 0.01).count(),
    };
    (seen, bad)
}

/// The database an iteration runs on: reused for a few iterations, then
/// replaced by a fresh one.
struct Db {
    path: PathBuf,
    budget: f64,
    runs_left: u64,
    seen: Seen,
}

#[test]
fn kill_9_during_a_stream_of_jobs_leaves_ledger_and_budgets_consistent() {
    let seed = env_or("CRASH_SAFETY_SEED", SEED);
    let iterations = env_or("CRASH_SAFETY_ITERATIONS", ITERATIONS);
    let mut rng = Rng(seed | 1);
    let tmp = tempfile::tempdir().expect("tmp");
    let started = Instant::now();

    let mut dbs: Vec<Db> = Vec::new();
    let (mut reopened, mut mid_stream, mut grew, mut at_start, mut exhausted) = (0, 0, 0, 0, 0);
    let (mut interrupted, mut entries_verified) = (0, 0);
    for i in 0..iterations {
        let fresh = dbs.last().is_none_or(|d| d.runs_left == 0);
        if fresh {
            let n = dbs.len() + 1;
            dbs.push(Db {
                path: tmp.path().join(format!("governance-{n}.db")),
                budget: if n.is_multiple_of(4) {
                    SMALL_BUDGETS[(n / 4 - 1) % 2]
                } else {
                    LARGE_BUDGET
                },
                runs_left: 1 + rng.below(6),
                seen: Seen::default(),
            });
        } else {
            reopened += 1;
        }
        let db = dbs.last_mut().expect("a database");
        db.runs_left -= 1;
        let context = format!(
            "iteration {i} (seed {seed:#x}, {}, {} iteration on it)",
            db.path.display(),
            if fresh { "first" } else { "a later" }
        );

        let n_workers = if rng.below(4) == 0 { 2 } else { 1 };
        let early = rng.below(8) == 0;
        let mut workers: Vec<Worker> = (0..n_workers)
            .map(|w| Worker::spawn(&db.path, &format!("i{i}w{w}"), db.budget))
            .collect();
        if early {
            // Somewhere in opening, migrating or creating the grant.
            std::thread::sleep(Duration::from_millis(rng.below(15)));
            at_start += 1;
        } else {
            // Until one worker has the store open and its grant. The other
            // one, if any, may still be waiting for the write lock (SQLite's
            // busy handler does not queue writers) and die there.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !workers.iter_mut().any(|w| w.poll_ready(&context).is_some()) {
                assert!(Instant::now() < deadline, "{context}: job_stream not ready after 30 s");
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(5 + rng.below(200)));
        }
        if rng.below(2) == 0 {
            workers.reverse();
        }
        let mut killed = 0;
        for w in workers {
            if w.kill(&context) {
                killed += 1;
            } else {
                // Its budget is used up: one more start on this database
                // at most, then a fresh one, so that most kills stay
                // mid-stream.
                exhausted += 1;
                db.runs_left = db.runs_left.min(1);
            }
            // A survivor goes on after its peer died, perhaps mid-commit.
            std::thread::sleep(Duration::from_millis(rng.below(20)));
        }

        let (seen, bad) = check(&db.path);
        assert!(
            bad.is_empty(),
            "{context}: the store is inconsistent after a kill:\n{}",
            bad.join("\n")
        );
        if !early && killed > 0 {
            mid_stream += 1;
            if seen.jobs > db.seen.jobs {
                grew += 1;
            }
        }
        interrupted += seen.running.saturating_sub(db.seen.running);
        entries_verified += seen.entries;
        db.seen = seen;
    }

    let total = |f: fn(&Seen) -> usize| dbs.iter().map(|d| f(&d.seen)).sum::<usize>();
    let (jobs, charged, refused, spent) = (
        total(|s| s.jobs),
        total(|s| s.charged),
        total(|s| s.refused),
        total(|s| s.spent),
    );
    println!(
        "crash safety: {iterations} kills in {:.1}s on {} databases ({reopened} reopened after a crash): \
         {mid_stream} mid-stream ({grew} after new jobs were recorded), {at_start} during start-up, {exhausted} \
         workers stopped by their budget; {jobs} jobs seen ({charged} charged, {interrupted} cut off between charge \
         and finish, {refused} refused), {spent} dataset budgets used up; {entries_verified} ledger entries verified",
        started.elapsed().as_secs_f64(),
        dbs.len(),
    );
    assert!(
        grew * 4 >= mid_stream * 3,
        "most kills must land in a stream of jobs: only {grew} of {mid_stream} runs recorded any"
    );
    assert!(interrupted > 0, "no kill landed between a charge and its finish");
}

/// The check itself: each of these is what a store writing a job's state
/// and its ledger entry in separate transactions could leave after a crash,
/// and each must be found.
#[test]
fn the_check_finds_a_half_written_job() {
    use sandbox_governance::{Grant, JobCharge};
    use sandbox_model::{DatasetId, JobOutcome, UsageRecord};

    let ds = |s: &str| -> DatasetId { s.parse().expect("dataset id") };
    let populate = |path: &Path| {
        let store = Store::open(path).expect("store");
        store
            .upsert_grant(
                &Grant::new(GRANT, "h", vec![(ds("gov.alpha"), 5.0), (ds("gov.beta"), 5.0)])
                    .with_delta_budget(ds("gov.beta"), 1e-3),
            )
            .expect("grant");
        for (job, finish) in [("released", true), ("running", false)] {
            let charges = vec![(ds("gov.alpha"), 0.5, 0.0), (ds("gov.beta"), 0.25, 1e-9)];
            store
                .reserve(&JobCharge::new(job, GRANT, "sql", "d", charges))
                .expect("reserve");
            if finish {
                let usage = UsageRecord {
                    job_id: job.into(),
                    grant_id: GRANT.into(),
                    result_digest: Some("abc".into()),
                    ..Default::default()
                };
                store.finish(job, &JobOutcome::Released, &usage).expect("finish");
            }
        }
        let refusal = JobOutcome::Refused { rule: "k".into() };
        store
            .record_refusal("refused", GRANT, "sql", "d", &refusal)
            .expect("refusal");
    };
    // The last entry (the `job_refused`) lost, with the head rewound: the
    // chain still verifies, the state does not match it.
    let lose_last_entry = "DELETE FROM ledger WHERE seq = (SELECT MAX(seq) FROM ledger);
        UPDATE ledger_head SET seq = (SELECT MAX(seq) FROM ledger),
          hash = (SELECT hash FROM ledger WHERE seq = (SELECT MAX(seq) FROM ledger));";
    let tmp = tempfile::tempdir().expect("tmp");
    let intact = tmp.path().join("intact.db");
    populate(&intact);
    let (seen, bad) = check(&intact);
    assert!(bad.is_empty(), "an untouched store is consistent: {bad:?}");
    assert_eq!((seen.jobs, seen.charged, seen.running, seen.refused), (3, 2, 1, 1));

    let cases = [
        (
            "a charge row lost",
            "DELETE FROM charges WHERE job_id = 'running' AND dataset = 'gov.beta'".to_string(),
        ),
        (
            "spent ε without a charge",
            "UPDATE budgets SET epsilon_spent = epsilon_spent + 500000000".into(),
        ),
        (
            "spent δ without a charge",
            "UPDATE budgets SET delta_spent = delta_spent + 1000000000".into(),
        ),
        (
            "a release without a charge",
            "INSERT INTO jobs (id, grant_id, kind, submission_digest, status, usage, created_at)
             VALUES ('ghost', 'crash-grant', 'sql', 'd', 'released', '{\"result_digest\":\"x\"}', 'now')"
                .into(),
        ),
        (
            "a finish without its entry",
            "UPDATE jobs SET status = 'failed' WHERE id = 'running'".into(),
        ),
        (
            "an entry without its finish",
            "UPDATE jobs SET status = 'running' WHERE id = 'released'".into(),
        ),
        ("a refusal without its entry", lose_last_entry.into()),
        (
            "a job row without its job_charged",
            "DELETE FROM ledger WHERE kind = 'job_charged'".into(),
        ),
        (
            "a charge row without its job_charged",
            "INSERT INTO charges (job_id, dataset, epsilon, delta) VALUES ('refused', 'gov.alpha', 0.0, 0.0)".into(),
        ),
    ];
    for (i, (what, sql)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("case-{i}.db"));
        std::fs::copy(&intact, &path).expect("copy the database");
        Connection::open(&path)
            .and_then(|c| c.execute_batch(sql))
            .expect("tamper");
        let (_, bad) = check(&path);
        assert!(!bad.is_empty(), "{what} went unnoticed");
    }
}
