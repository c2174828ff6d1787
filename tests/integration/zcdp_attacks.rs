//! Red-team tests of zCDP accounting (attack6). Each test asserts the
//! behaviour the docs promise; a failing test is a finding.

use crate::fixture::isolated_sandbox;
use sandbox_governance::Role;
use sandbox_model::ReleasedCell;
use sandbox_runtime::sandbox::DEMO_GRANT;
use sandbox_runtime::{Sandbox, SqlJobOptions, SqlJobResult};

const ENTITIES: &str = "gov.legal_entities";
const SQL: &str = "SELECT district, COUNT(*) AS n FROM gov.legal_entities GROUP BY district";

fn owner(s: &Sandbox) {
    s.store()
        .create_account("ops", &Role::Operator, "operator-token-0123456789abcdef0123", "ops")
        .expect("ops");
    s.store()
        .create_account(
            "market",
            &Role::DataOwner {
                provider: "shanghai-market-regulation".into(),
            },
            "market-token-0123456789abcdef0123456789",
            "ops",
        )
        .expect("owner");
}

fn line(s: &Sandbox) -> sandbox_runtime::sandbox::BudgetLine {
    s.budget(DEMO_GRANT)
        .expect("budget")
        .into_iter()
        .find(|b| b.dataset == ENTITIES)
        .expect("line")
}

async fn mechanisms(s: &Sandbox) -> Vec<String> {
    let options = SqlJobOptions {
        epsilon: Some(0.5),
        ..Default::default()
    };
    match s.run_sql(DEMO_GRANT, SQL, &options).await.expect("job") {
        SqlJobResult::Released { table, .. } => table
            .rows
            .iter()
            .flatten()
            .filter_map(|c| match c {
                ReleasedCell::Noisy { mechanism, .. } => Some(mechanism.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("release expected, got {other:?}"),
    }
}

/// docs/privacy.md: "Until a line spends, it follows the dataset's
/// policy". An owner installs `accounting = "zcdp"` with
/// `Sandbox::set_policy` (the `PUT /v1/policies/{dataset}` path) on a
/// dataset whose demo line has spent nothing: the new policy is in force
/// for the next job (`replace_policies`), but `set_policy_of` re-registers
/// the dataset with the *old* policy's `zcdp_delta` (it refreshes only the
/// digest and the ε/δ budgets), so `zcdp_policies` is not written and the
/// line stays pure until some later `refresh()` or reopening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_policy_to_zcdp_switches_an_unspent_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = isolated_sandbox(&tmp);
    owner(&s);
    assert_eq!(line(&s).accounting, "pure");
    let path = s.data_dir().policies_dir().join(format!("{ENTITIES}.toml"));
    let text = std::fs::read_to_string(&path).expect("policy");
    let zcdp = text.replacen("\n[dp]\n", "\n[dp]\naccounting = \"zcdp\"\nzcdp_delta = 1e-6\n", 1);
    s.set_policy("market", &format!("{ENTITIES}.toml"), &zcdp)
        .expect("policy set");
    assert_eq!(
        line(&s).accounting,
        "zcdp",
        "the zCDP policy is in force, the line has spent nothing, but it is still accounted as pure"
    );
    assert!(mechanisms(&s).await.iter().all(|m| m == "discrete_gaussian"));
}

/// The reverse switch: a dataset opened under `accounting = "zcdp"`; its
/// owner installs a pure policy (smaller δ budget) with `set_policy`. The
/// line has spent nothing, so it must follow the pure policy: Laplace noise
/// and ε's adding up. Instead `zcdp_policies` keeps the old δ_c, the line
/// stays zCDP and its first job either composes under zCDP against the
/// owner's policy, or is refused because the stale δ_c (5e-5, half the old
/// δ budget) exceeds the new δ budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_policy_back_to_pure_switches_an_unspent_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let s = isolated_sandbox(&tmp);
        let path = s.data_dir().policies_dir().join(format!("{ENTITIES}.toml"));
        let text = std::fs::read_to_string(&path).expect("policy");
        std::fs::write(&path, text.replacen("\n[dp]\n", "\n[dp]\naccounting = \"zcdp\"\n", 1)).expect("write");
    }
    let s = isolated_sandbox(&tmp);
    owner(&s);
    assert_eq!(line(&s).accounting, "zcdp");
    let path = s.data_dir().policies_dir().join(format!("{ENTITIES}.toml"));
    let text = std::fs::read_to_string(&path).expect("policy");
    let pure = text.replacen("accounting = \"zcdp\"\n", "", 1).replacen(
        "epsilon_budget = 10.0",
        "epsilon_budget = 10.0\ndelta_budget = 1e-5",
        1,
    );
    assert!(!pure.contains("accounting"), "{pure}");
    s.set_policy("market", &format!("{ENTITIES}.toml"), &pure)
        .expect("policy set");
    assert_eq!(
        line(&s).accounting,
        "pure",
        "the pure policy is in force and the line has spent nothing, yet it is still accounted under zCDP"
    );
    assert!(mechanisms(&s).await.iter().all(|m| m == "discrete_laplace"));
}

/// What the first job does in that state: the pure policy (δ budget 1e-5)
/// is in force but the stale zCDP line charges δ_c = 5e-5 (half the *old*
/// δ budget) with its first charge: refused as `delta-budget-exhausted` on
/// a line that has spent nothing (or, with room for δ_c, released with
/// discrete Gaussian noise although the owner's policy is pure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_set_policy_back_to_pure_the_first_job_runs_pure() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let s = isolated_sandbox(&tmp);
        let path = s.data_dir().policies_dir().join(format!("{ENTITIES}.toml"));
        let text = std::fs::read_to_string(&path).expect("policy");
        std::fs::write(&path, text.replacen("\n[dp]\n", "\n[dp]\naccounting = \"zcdp\"\n", 1)).expect("write");
    }
    let s = isolated_sandbox(&tmp);
    owner(&s);
    let path = s.data_dir().policies_dir().join(format!("{ENTITIES}.toml"));
    let text = std::fs::read_to_string(&path).expect("policy");
    let pure = text.replacen("accounting = \"zcdp\"\n", "", 1).replacen(
        "epsilon_budget = 10.0",
        "epsilon_budget = 10.0\ndelta_budget = 1e-5",
        1,
    );
    s.set_policy("market", &format!("{ENTITIES}.toml"), &pure)
        .expect("policy set");
    let options = SqlJobOptions {
        epsilon: Some(0.5),
        ..Default::default()
    };
    match s.run_sql(DEMO_GRANT, SQL, &options).await {
        Ok(SqlJobResult::Released { table, .. }) => {
            let gaussian = table
                .rows
                .iter()
                .flatten()
                .any(|c| matches!(c, ReleasedCell::Noisy { mechanism, .. } if mechanism == "discrete_gaussian"));
            assert!(!gaussian, "Gaussian noise under a pure policy; line {:?}", line(&s));
        }
        Ok(other) => panic!("release expected, got {other:?}"),
        Err(e) => panic!(
            "the first job on an unspent line under the new pure policy is refused: {e}; line {:?}",
            line(&s)
        ),
    }
}

/// The composition a job is calibrated for (`Sandbox::composition`,
/// sandbox.rs, read from the ledger before the charge) and the accounting
/// its charge lands on (`Store::reserve`, read again inside the write
/// transaction) are two reads. An unspent line follows the live
/// `zcdp_policies` row, which every `refresh()` (the server runs one
/// before each HTTP request) rewrites from the policy files. A second
/// sandbox on the same data directory flips the owner's policy between
/// zcdp and pure and refreshes in a loop while jobs run on fresh grants:
/// a job calibrated under zCDP (discrete Gaussian cells) whose charge
/// landed on a line left **pure** is a release whose privacy loss the
/// ledger records as pure ε-DP, which a Gaussian mechanism is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gaussian_release_is_never_charged_to_a_pure_line() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().expect("tmp");
    let (zcdp, pure, path) = {
        let s = isolated_sandbox(&tmp);
        let path = s.data_dir().policies_dir().join(format!("{ENTITIES}.toml"));
        let pure = std::fs::read_to_string(&path).expect("policy");
        let zcdp = pure.replacen("\n[dp]\n", "\n[dp]\naccounting = \"zcdp\"\n", 1);
        std::fs::write(&path, &zcdp).expect("write");
        (zcdp, pure, path)
    };
    let s = isolated_sandbox(&tmp);
    let other = Sandbox::open(sandbox_runtime::DataDir::open(tmp.path().join("iso")).expect("dir")).expect("second");
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for text in [&pure, &zcdp] {
                    std::fs::write(&path, text).expect("flip");
                    let _ = other.refresh();
                    flips += 1;
                }
            }
            flips
        })
    };
    let dataset: sandbox_model::DatasetId = ENTITIES.parse().expect("id");
    let options = SqlJobOptions {
        epsilon: Some(0.5),
        ..Default::default()
    };
    let (mut gaussian_jobs, mut laplace_jobs, mut violations) = (0, 0, Vec::new());
    for i in 0..60 {
        let grant = format!("race-{i}");
        s.store()
            .upsert_grant(&sandbox_governance::Grant::new(
                &grant,
                "tests",
                vec![(dataset.clone(), 10.0)],
            ))
            .expect("grant");
        let Ok(SqlJobResult::Released { table, .. }) = s.run_sql(&grant, SQL, &options).await else {
            continue;
        };
        let gaussian = table
            .rows
            .iter()
            .flatten()
            .any(|c| matches!(c, ReleasedCell::Noisy { mechanism, .. } if mechanism == "discrete_gaussian"));
        let l = s
            .budget(&grant)
            .expect("budget")
            .into_iter()
            .find(|b| b.dataset == ENTITIES)
            .expect("line");
        if gaussian {
            gaussian_jobs += 1;
        } else {
            laplace_jobs += 1;
        }
        if gaussian && l.accounting == "pure" {
            violations.push(format!(
                "{grant}: discrete Gaussian release charged to a pure line (ε spent {}, δ spent {})",
                l.epsilon_spent, l.delta_spent
            ));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let flips = flipper.join().expect("flipper");
    eprintln!("{gaussian_jobs} Gaussian, {laplace_jobs} Laplace releases, {flips} policy flips");
    assert!(violations.is_empty(), "{violations:#?}");
}

/// A zCDP policy (`epsilon_per_query = 1`, `epsilon_budget = 1`,
/// `accounting = "zcdp"`, default `zcdp_delta` = δ budget / 2 = 5e-5)
/// under which not one query at its own per-query cap could run (ρ = 1/2
/// converts to ε ≈ 4.3 > 1) is refused: installed by its owner
/// (`policy-zcdp-budget`, naming the fields), and as a file when the
/// sandbox loads its policies. (Found by attack6, which saw every job
/// refused as `budget-exhausted` "spent 0 of 1".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zcdp_policy_that_cannot_hold_one_query_at_its_cap_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = isolated_sandbox(&tmp);
    owner(&s);
    let path = s.data_dir().policies_dir().join(format!("{ENTITIES}.toml"));
    let text = std::fs::read_to_string(&path).expect("policy");
    let tight = text
        .replacen("\n[dp]\n", "\n[dp]\naccounting = \"zcdp\"\n", 1)
        .replacen("epsilon_budget = 10.0", "epsilon_budget = 1.0", 1);
    let e = s
        .set_policy("market", &format!("{ENTITIES}.toml"), &tight)
        .expect_err("refused when installed");
    assert_eq!(e.rule(), Some("policy-zcdp-budget"), "{e}");
    assert!(e.to_string().contains("epsilon_budget = 1"), "{e}");
    // The same file written by hand: the sandbox does not load it.
    std::fs::write(&path, &tight).expect("write");
    drop(s);
    let e = sandbox_runtime::Sandbox::open(sandbox_runtime::DataDir::open(tmp.path().join("iso")).expect("dir"))
        .expect_err("refused when loaded");
    assert!(e.to_string().contains("zcdp_delta"), "{e}");
    // With room for one query it loads, and the first query at the cap runs.
    std::fs::write(&path, tight.replacen("epsilon_budget = 1.0", "epsilon_budget = 5.0", 1)).expect("write");
    let s = isolated_sandbox(&tmp);
    assert_eq!(line(&s).accounting, "zcdp");
    match s.run_sql(DEMO_GRANT, SQL, &SqlJobOptions::default()).await {
        Ok(SqlJobResult::Released { .. }) => {}
        other => panic!("the first query at the policy's own cap on a fresh line: {other:?}"),
    }
}
