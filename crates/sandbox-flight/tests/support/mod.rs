//! A small sandbox for the Flight SQL tests and the demo server: synthetic
//! tax and utility data, an operator, two data owners, two applicants, and
//! one approved agreement (tax and utility data) held by the first
//! applicant. Shared by `tests/flight_sql.rs` and
//! `examples/flight_demo_server.rs`.

#![allow(dead_code)]

use sandbox_datagen::{GenerateOptions, Scale};
use sandbox_governance::{ApplicationBody, Decision, Role};
use sandbox_runtime::{DataDir, Sandbox};
use std::error::Error;
use std::path::Path;

pub type BoxError = Box<dyn Error + Send + Sync>;

/// The agreement the applicant `bank` holds.
pub const AGREEMENT: &str = "agreement-flight";
/// Accepted: a DP-only dataset, 24 public months, noisy averages.
pub const UTILITY_SQL: &str = "SELECT month, AVG(electricity_kwh) AS avg_kwh FROM gov.utility_usage GROUP BY month";
/// Accepted: DP plus rounding to whole 万元, three public years.
pub const TAX_SQL: &str = "SELECT t.year, AVG(t.tax_paid) FROM gov.tax_payments t GROUP BY t.year";
/// Refused: a raw identifier, no aggregate.
pub const RAW_SQL: &str = "SELECT credit_code FROM gov.utility_usage";

/// Tokens of the accounts (at least 32 characters each).
#[derive(Debug, Clone)]
pub struct Tokens {
    pub operator: String,
    /// `bank`: holds [`AGREEMENT`].
    pub applicant: String,
    /// `insurer`: an applicant with no agreement.
    pub other_applicant: String,
    /// `tax-bureau`, owner of `gov.tax_payments`.
    pub owner: String,
}

/// Generates the tax and utility tables (small scale) under `root`.
pub fn generate(root: &Path) -> Result<DataDir, BoxError> {
    let dir = DataDir::open(root)?;
    sandbox_datagen::generate(&GenerateOptions {
        seed: 7,
        scale: Scale::small(),
        out_dir: dir.tables_dir(),
        rows_per_file: GenerateOptions::DEFAULT_ROWS_PER_FILE,
        only: Some(vec!["gov.tax_payments".into(), "gov.utility_usage".into()]),
    })?;
    Ok(dir)
}

/// A data directory at `root` whose tables are a link to `tables` (shared
/// generated data), with its own catalog, policies and database.
pub fn linked(root: &Path, tables: &Path) -> Result<DataDir, BoxError> {
    let dir = DataDir::open(root)?;
    std::fs::remove_dir_all(dir.tables_dir())?;
    std::os::unix::fs::symlink(tables, dir.tables_dir())?;
    Ok(dir)
}

fn random_token() -> Result<String, BoxError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    Ok(hex::encode(bytes))
}

/// Creates the accounts and the approved agreement; ε per dataset and the
/// call quota are generous so tests and timing runs never run out.
pub fn populate(sandbox: &Sandbox) -> Result<Tokens, BoxError> {
    let tokens = Tokens {
        operator: random_token()?,
        applicant: random_token()?,
        other_applicant: random_token()?,
        owner: random_token()?,
    };
    let store = sandbox.store();
    store.create_account("ops", &Role::Operator, &tokens.operator, "ops")?;
    store.create_account("bank", &Role::Applicant, &tokens.applicant, "ops")?;
    store.create_account("insurer", &Role::Applicant, &tokens.other_applicant, "ops")?;
    let tax = Role::DataOwner {
        provider: "shanghai-tax".into(),
    };
    store.create_account("tax-bureau", &tax, &tokens.owner, "ops")?;
    let grid = Role::DataOwner {
        provider: "shanghai-utilities".into(),
    };
    store.create_account("grid", &grid, &random_token()?, "ops")?;
    let body = ApplicationBody {
        datasets: vec!["gov.tax_payments".parse()?, "gov.utility_usage".parse()?],
        columns: vec![
            "gov.tax_payments.year".into(),
            "gov.tax_payments.tax_paid".into(),
            "gov.tax_payments.credit_code".into(),
            "gov.utility_usage.*".into(),
        ],
        job_kinds: vec!["sql".into()],
        scenario: "SME credit scoring from tax and energy use; only aggregates leave the sandbox".into(),
        materials: vec![
            "营业执照 (business licence)".into(),
            "数据安全承诺书 (data security pledge)".into(),
        ],
    };
    let application = AGREEMENT.trim_start_matches("agreement-");
    sandbox.apply("bank", application, &body)?;
    let approve = Decision::Approve {
        epsilon: 10.0, // the policies' epsilon_budget: an approval cannot grant more
        expires_at: "2999-01-01T00:00:00Z".into(),
        call_quota: 10_000,
    };
    sandbox.decide("tax-bureau", application, &approve)?;
    sandbox.decide("grid", application, &approve)?;
    Ok(tokens)
}
