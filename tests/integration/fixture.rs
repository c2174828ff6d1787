//! A data directory with the small synthetic dataset, generated once per
//! test run, and a grant with a budget large enough for every test.

use sandbox_datagen::{GenerateOptions, Scale};
use sandbox_governance::Grant;
use sandbox_runtime::{DataDir, Sandbox};
use std::path::PathBuf;
use std::sync::OnceLock;

pub const TEST_GRANT: &str = "test-unlimited";

static DATA: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();

/// The shared data directory (generated on first use).
pub fn data_root() -> PathBuf {
    DATA.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("data");
        let dir = DataDir::open(&root).expect("data dir");
        raise_policy_budgets(&dir);
        sandbox_datagen::generate(&GenerateOptions {
            seed: 42,
            scale: Scale::small(),
            out_dir: dir.tables_dir(),
            rows_per_file: 1_000_000,
            only: None,
        })
        .expect("generate");
        (tmp, root)
    })
    .1
    .clone()
}

/// Raises every DP policy's budgets to the largest the validation allows
/// (ε 10000, δ 0.09): the policy caps every grant's line, and the shared
/// grant and the servers' agreements run more jobs than the shipped
/// budgets hold. Budget tests use [`isolated_sandbox`], with the shipped
/// policies.
pub fn raise_policy_budgets(dir: &DataDir) {
    for entry in std::fs::read_dir(dir.policies_dir()).expect("policies").flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("policy");
        // Only the [dp] table has a δ budget; a [sample] table's budget is
        // the owner's own, raised alone.
        let mut section = String::new();
        // Idempotent: a δ budget this function wrote before is replaced.
        let raised: String = text
            .lines()
            .filter(|l| !l.starts_with("delta_budget = 0.09"))
            .map(|l| {
                if l.starts_with('[') {
                    section = l.trim().to_string();
                }
                if l.starts_with("epsilon_budget") && section == "[sample]" {
                    "epsilon_budget = 10000.0".to_string()
                } else if l.starts_with("epsilon_budget") {
                    "epsilon_budget = 10000.0\ndelta_budget = 0.09".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(entry.path(), raised + "\n").expect("write policy");
    }
}

/// A sandbox on the shared data with a grant of huge budgets.
pub fn sandbox() -> Sandbox {
    let sandbox = Sandbox::open(DataDir::open(data_root()).expect("data dir")).expect("sandbox");
    let budgets = sandbox
        .catalog()
        .iter()
        .filter(|d| d.open_class == sandbox_model::OpenClass::Conditional)
        .map(|d| (d.id.clone(), 1e9))
        .collect();
    sandbox
        .store()
        .upsert_grant(&Grant::new(TEST_GRANT, "tests", budgets))
        .expect("grant");
    sandbox
}

/// A sandbox on a fresh copy of the catalog and policies but the shared
/// data files, with its own database (for budget tests).
pub fn isolated_sandbox(tmp: &tempfile::TempDir) -> Sandbox {
    Sandbox::open(isolated_dir(tmp)).expect("sandbox")
}

/// [`isolated_sandbox`] with every policy's budgets raised
/// ([`raise_policy_budgets`]), for servers whose agreements run many jobs.
pub fn roomy_sandbox(tmp: &tempfile::TempDir) -> Sandbox {
    let dir = isolated_dir(tmp);
    raise_policy_budgets(&dir);
    Sandbox::open(dir).expect("sandbox")
}

fn isolated_dir(tmp: &tempfile::TempDir) -> DataDir {
    let root = tmp.path().join("iso");
    let dir = DataDir::open(&root).expect("data dir");
    std::fs::remove_dir_all(dir.tables_dir()).expect("rm tables");
    std::os::unix::fs::symlink(
        DataDir::open(data_root()).expect("shared").tables_dir(),
        dir.tables_dir(),
    )
    .expect("link");
    dir
}
