//! A stream of jobs against the governance store, for the kill -9 test
//! (`integration/crash_safety.rs`): the test starts this program as a
//! separate process and kills it at a random moment.
//!
//! `job_stream <database> <tag> <epsilon-per-dataset>` opens the store,
//! creates (or reuses) the grant [`GRANT`] over three datasets with the given
//! ε budget each, prints `ready`, then loops: now and then a job refused
//! before charging, otherwise a job charging ε on one or two datasets,
//! finished as released (with a result digest), failed or cancelled. Job ids
//! are `<tag>-<pid>-<n>`, unique across runs when the tag is. When a job no
//! longer fits the budget it is recorded as refused; once no dataset has
//! room for the smallest charge the program prints `exhausted` and exits 0.

use sandbox_governance::{GovernanceError, Grant, JobCharge, Store};
use sandbox_model::{DatasetId, JobOutcome, UsageRecord};
use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

/// The grant every worker charges.
const GRANT: &str = "crash-grant";
const HOLDER: &str = "crash-holder";
const DATASETS: [&str; 3] = ["gov.alpha", "gov.beta", "gov.gamma"];
/// Charges are multiples of this, between 1 and 5 of them.
const EPSILON_STEP: f64 = 0.01;

/// xorshift64*: deterministic enough, no dependency.
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

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: job_stream <database> <tag> <epsilon-per-dataset>";
    let db = PathBuf::from(args.next().ok_or(usage)?);
    let tag = args.next().ok_or(usage)?;
    let budget: f64 = args.next().ok_or(usage)?.parse()?;
    let pid = std::process::id();
    let datasets: Vec<DatasetId> = DATASETS.iter().map(|d| d.parse()).collect::<Result<_, _>>()?;

    let store = Store::open(&db)?;
    let grant = datasets.iter().fold(
        Grant::new(GRANT, HOLDER, datasets.iter().map(|d| (d.clone(), budget)).collect()),
        |g, d| g.with_delta_budget(d.clone(), 0.01),
    );
    store.upsert_grant(&grant)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;

    let seed = tag
        .bytes()
        .fold(u64::from(pid) | 1, |h, b| h.rotate_left(7) ^ u64::from(b));
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for n in 0u64.. {
        let job_id = format!("{tag}-{pid}-{n}");
        let digest = format!("{:016x}", rng.next());
        if rng.below(8) == 0 {
            let rule = JobOutcome::Refused {
                rule: "identifier-in-group-by".into(),
            };
            store.record_refusal(&job_id, GRANT, "sql", &digest, &rule)?;
            continue;
        }
        // One or two distinct datasets.
        let first = rng.below(3) as usize;
        let mut used = vec![datasets[first].clone()];
        if rng.below(2) == 0 {
            used.push(datasets[(first + 1 + rng.below(2) as usize) % 3].clone());
        }
        let epsilon = EPSILON_STEP * (1 + rng.below(5)) as f64;
        let delta = if rng.below(4) == 0 { 1e-9 } else { 0.0 };
        let charge = JobCharge::new(
            &job_id,
            GRANT,
            "sql",
            &digest,
            used.iter().map(|d| (d.clone(), epsilon, delta)).collect(),
        );
        match store.reserve(&charge) {
            Ok(()) => {}
            Err(GovernanceError::BudgetExhausted { .. }) => {
                let rule = JobOutcome::Refused {
                    rule: "budget-exhausted".into(),
                };
                store.record_refusal(&job_id, GRANT, "sql", &digest, &rule)?;
                let room = store.budget(GRANT)?.iter().any(|b| b.epsilon_left() >= EPSILON_STEP);
                if !room {
                    writeln!(out, "exhausted after {n} jobs")?;
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let outcome = match rng.below(10) {
            0 => JobOutcome::Failed {
                message: "out of memory".into(),
            },
            1 => JobOutcome::Cancelled,
            _ => JobOutcome::Released,
        };
        let result_digest =
            (outcome == JobOutcome::Released).then(|| format!("{:016x}{:016x}", rng.next(), rng.next()));
        let usage = UsageRecord {
            job_id: job_id.clone(),
            grant_id: GRANT.into(),
            datasets: used.clone(),
            columns_read: used.iter().map(|d| format!("{d}.value")).collect(),
            columns_aggregated: used.iter().map(|d| format!("{d}.value")).collect(),
            functions: vec!["avg".into()],
            epsilon: epsilon * used.len() as f64,
            delta: delta * used.len() as f64,
            groups_released: if result_digest.is_some() { 1 + rng.below(12) } else { 0 },
            submission_digest: digest,
            result_digest,
            ..Default::default()
        };
        store.finish(&job_id, &outcome, &usage)?;
    }
    Ok(())
}
