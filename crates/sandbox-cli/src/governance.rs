//! Governance verbs: accounts, applications, decisions, agreements,
//! revocation and suspension, each acting as the account whose API token is
//! given (`--token` or `$SANDBOX_TOKEN`), and the governance part of the demo.

use crate::commands::{CliError, fail, open, open_store};
use crate::{AccountCommand, ApplyArgs, DecideArgs, GovernanceCommand};
use sandbox_governance::{ApplicationBody, Decision, GovernanceError, Role, Store, UsageReport};
use sandbox_model::DatasetId;
use sandbox_runtime::{DataDir, RuntimeError, Sandbox, SqlJobOptions, SqlJobResult};
use std::path::Path;

impl From<GovernanceError> for CliError {
    fn from(e: GovernanceError) -> Self {
        RuntimeError::from(e).into()
    }
}

/// A fresh API token: 32 random bytes from the operating system, hex.
fn new_token() -> Result<String, CliError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| fail(format!("no randomness for a token: {e}")))?;
    Ok(format!("sbx_{}", hex::encode(bytes)))
}

/// The account the token belongs to.
fn caller(store: &Store, token: Option<&str>) -> Result<(String, Role), CliError> {
    let token = token.ok_or_else(|| CliError {
        code: 2,
        message: "this needs an account: pass --token or set SANDBOX_TOKEN".into(),
    })?;
    store.authenticate(token).map_err(|e| CliError {
        code: 2,
        message: e.to_string(),
    })
}

/// The account id of the token (for verbs that act as someone).
pub fn account_of(store: &Store, token: Option<&str>) -> Result<String, CliError> {
    Ok(caller(store, token)?.0)
}

/// A job under an agreement runs only for the agreement's holder.
pub fn authorize_job(sandbox: &Sandbox, grant: &str, token: Option<&str>) -> Result<(), CliError> {
    let Some(agreement) = sandbox.store().agreement(grant)? else {
        return Ok(());
    };
    let (account, _) = caller(sandbox.store(), token)?;
    if account != agreement.holder {
        return Err(CliError {
            code: 2,
            message: format!("agreement `{grant}` is not yours [rule: agreement-holder]"),
        });
    }
    Ok(())
}

/// The role, and for an applicant bringing its own data its enterprise
/// provider.
fn role_arg(role: &str, provider: Option<String>) -> Result<(Role, Option<String>), CliError> {
    match (role, provider) {
        ("operator", None) => Ok((Role::Operator, None)),
        ("applicant", provider) => Ok((Role::Applicant, provider)),
        ("owner", Some(provider)) => Ok((Role::DataOwner { provider }, None)),
        ("owner", None) => Err(fail("a data owner needs --provider (the provider id in the catalog)")),
        (_, Some(_)) => Err(fail("--provider goes with --role owner or applicant only")),
        (other, None) => Err(fail(format!("unknown role `{other}`: operator, applicant or owner"))),
    }
}

pub fn run(root: &Path, command: GovernanceCommand, token: Option<&str>) -> Result<(), CliError> {
    match command {
        GovernanceCommand::Account(AccountCommand::Create { id, role, provider }) => {
            let store = open_store(&DataDir::open(root)?)?;
            let (role, enterprise_provider) = role_arg(&role, provider)?;
            let dir = DataDir::open(root)?;
            let catalog = sandbox_policy::load_catalog_dir(&dir.catalog_dir()).map_err(|e| fail(e.to_string()))?;
            if let Role::DataOwner { provider } = &role
                && !catalog.iter().any(|d| d.provider.id == *provider)
            {
                return Err(fail(format!(
                    "no provider `{provider}` in the catalog; a data owner manages a catalog provider"
                )));
            }
            if let Some(provider) = &enterprise_provider
                && catalog.iter().any(|d| d.provider.id == *provider)
            {
                return Err(fail(format!(
                    "provider `{provider}` is in the catalog already; an applicant's enterprise provider is its own"
                )));
            }
            // The first account is the operator and needs no token; every
            // later one is created by an operator.
            let by = if store.account_count()? == 0 {
                if role != Role::Operator {
                    return Err(fail("the first account must be the operator (--role operator)"));
                }
                id.clone()
            } else {
                let (by, by_role) = caller(&store, token)?;
                if by_role != Role::Operator {
                    return Err(CliError {
                        code: 2,
                        message: "only the operator creates accounts".into(),
                    });
                }
                by
            };
            let token = new_token()?;
            match &enterprise_provider {
                Some(provider) => store.create_enterprise_applicant(&id, &token, provider, &by)?,
                None => store.create_account(&id, &role, &token, &by)?,
            }
            println!("account `{id}` created; its API token (shown once, stored only as a hash):\n{token}");
            Ok(())
        }
        GovernanceCommand::Account(AccountCommand::Whoami) => {
            let store = open_store(&DataDir::open(root)?)?;
            let (id, role) = caller(&store, token)?;
            println!("{id} ({role:?})");
            Ok(())
        }
        GovernanceCommand::Apply(args) => apply(root, args, token),
        GovernanceCommand::Decide(args) => decide(root, args, token),
        GovernanceCommand::Agreement { id, json } => {
            let store = open_store(&DataDir::open(root)?)?;
            let agreement = store
                .agreement(&id)?
                .ok_or_else(|| fail(format!("no agreement `{id}`")))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&agreement).map_err(|e| fail(e.to_string()))?
                );
            } else {
                println!(
                    "{} — holder {}, {} ({}), expires {}, calls {}/{}\n  scenario: {}\n  datasets: {}\n  columns: {}\n  job kinds: {}",
                    agreement.id,
                    agreement.holder,
                    agreement.status,
                    agreement.status_reason.unwrap_or_default(),
                    agreement.expires_at,
                    agreement.calls_used,
                    agreement.call_quota,
                    agreement.terms.scenario,
                    agreement
                        .terms
                        .datasets
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    agreement.terms.columns.join(", "),
                    agreement.terms.job_kinds.join(", ")
                );
            }
            Ok(())
        }
        GovernanceCommand::Revoke { agreement, reason } => {
            let sandbox = open(root, false)?;
            let (account, _) = caller(sandbox.store(), token)?;
            let cancelled = sandbox.revoke_agreement(&account, &agreement, &reason)?;
            println!("agreement `{agreement}` revoked; {cancelled} running job(s) cancelled");
            Ok(())
        }
        GovernanceCommand::Suspend { dataset, reason } => {
            let sandbox = open(root, false)?;
            let (account, _) = caller(sandbox.store(), token)?;
            let dataset: DatasetId = dataset.parse().map_err(|e| fail(format!("{e}")))?;
            let cancelled = sandbox.suspend_dataset(&account, &dataset, &reason)?;
            println!("{dataset} suspended; {cancelled} running job(s) cancelled");
            Ok(())
        }
        GovernanceCommand::Resume { dataset, note } => {
            let sandbox = open(root, false)?;
            let (account, _) = caller(sandbox.store(), token)?;
            let id: DatasetId = dataset.parse().map_err(|e| fail(format!("{e}")))?;
            sandbox.resume_dataset(&account, &id, &note)?;
            println!("{dataset} resumed");
            Ok(())
        }
    }
}

fn apply(root: &Path, args: ApplyArgs, token: Option<&str>) -> Result<(), CliError> {
    let sandbox = open(root, false)?;
    let (account, _) = caller(sandbox.store(), token)?;
    let datasets = args
        .dataset
        .iter()
        .map(|d| d.parse::<DatasetId>().map_err(|e| fail(format!("{e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let body = ApplicationBody {
        datasets,
        columns: args.column,
        job_kinds: args.kind,
        scenario: args.scenario,
        materials: args.material,
    };
    let revision = sandbox.apply(&account, &args.id, &body)?;
    println!("application `{}` submitted (revision {revision})", args.id);
    Ok(())
}

fn decide(root: &Path, args: DecideArgs, token: Option<&str>) -> Result<(), CliError> {
    let sandbox = open(root, false)?;
    let (account, _) = caller(sandbox.store(), token)?;
    let decision = match (args.reject, args.approve) {
        (Some(reason), false) => Decision::Reject { reason },
        (None, true) => Decision::Approve {
            epsilon: args.epsilon.ok_or_else(|| fail("--approve needs --epsilon"))?,
            expires_at: args
                .expires
                .ok_or_else(|| fail("--approve needs --expires (RFC 3339, UTC)"))?,
            call_quota: args.quota.ok_or_else(|| fail("--approve needs --quota"))?,
        },
        _ => {
            return Err(fail(
                "give --approve (with --epsilon, --expires, --quota) or --reject REASON",
            ));
        }
    };
    sandbox.decide(&account, &args.application, &decision)?;
    match sandbox.store().agreement(&format!("agreement-{}", args.application))? {
        Some(a) => println!("decision recorded; agreement `{}` is in force", a.id),
        None => println!("decision recorded"),
    }
    Ok(())
}

/// Creates an account unless it exists (the demo may run again on the same
/// data directory).
pub(crate) fn ensure_account(store: &Store, id: &str, role: &Role) -> Result<(), CliError> {
    if store.role(id)?.is_some() {
        return Ok(());
    }
    store.create_account(id, role, &new_token()?, "platform-ops")?;
    Ok(())
}

const BANK_JOBS: &[(&str, &str)] = &[
    (
        "monthly electricity use of tax-paying enterprises (fused on 统一社会信用代码)",
        "SELECT u.month, AVG(u.electricity_kwh) AS avg_kwh FROM gov.utility_usage u
         JOIN gov.tax_payments t ON u.credit_code = t.credit_code
         WHERE t.year = 2024 GROUP BY u.month",
    ),
    (
        "tax paid per year",
        "SELECT t.year, AVG(t.tax_paid) AS avg_tax FROM gov.tax_payments t GROUP BY t.year",
    ),
];

/// The demo's governance walk: a bank applies for tax and utility data, is
/// rejected, revises, is approved by both owners, runs jobs (one refused
/// for a column outside its agreement) and prints its usage report.
pub async fn demo_governance(sandbox: &Sandbox) -> Result<(), CliError> {
    let store = sandbox.store();
    ensure_account(store, "platform-ops", &Role::Operator)?;
    ensure_account(store, "inclusive-bank", &Role::Applicant)?;
    ensure_account(
        store,
        "tax-bureau",
        &Role::DataOwner {
            provider: "shanghai-tax".into(),
        },
    )?;
    ensure_account(
        store,
        "power-grid",
        &Role::DataOwner {
            provider: "shanghai-utilities".into(),
        },
    )?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let app = format!("sme-credit-{stamp}");
    let datasets: Vec<DatasetId> = ["gov.tax_payments", "gov.utility_usage"]
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect();
    let columns = [
        "gov.tax_payments.credit_code",
        "gov.tax_payments.year",
        "gov.tax_payments.tax_paid",
        "gov.utility_usage.credit_code",
        "gov.utility_usage.month",
        "gov.utility_usage.electricity_kwh",
    ];
    let body = |scenario: &str| ApplicationBody {
        datasets: datasets.clone(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        job_kinds: vec!["sql".into()],
        scenario: scenario.into(),
        materials: vec![
            "营业执照 business licence".into(),
            "数据安全承诺书 data security pledge".into(),
        ],
    };
    println!("\n═══ Governance: applying for conditionally open data (有条件开放) ═══");
    println!("▶ inclusive-bank applies for gov.tax_payments + gov.utility_usage (application `{app}`)");
    sandbox.apply("inclusive-bank", &app, &body("credit scoring"))?;
    let reason = "describe how the scores are used and that no record leaves the sandbox";
    sandbox.decide("tax-bureau", &app, &Decision::Reject { reason: reason.into() })?;
    println!("▶ tax-bureau rejects: \"{reason}\"");
    sandbox.apply(
        "inclusive-bank",
        &app,
        &body("inclusive-finance credit scoring of SME borrowers; only noisy aggregates leave the sandbox"),
    )?;
    println!("▶ inclusive-bank revises the scenario and resubmits (revision 2)");
    let approve = |epsilon: f64| Decision::Approve {
        epsilon,
        expires_at: "2027-12-31T00:00:00Z".into(),
        call_quota: 20,
    };
    sandbox.decide("tax-bureau", &app, &approve(3.0))?;
    println!("▶ tax-bureau approves its dataset (ε = 3)");
    sandbox.decide("power-grid", &app, &approve(3.0))?;
    let grant = format!("agreement-{app}");
    println!("▶ power-grid approves its dataset (ε = 3): agreement `{grant}` in force until 2027-12-31, 20 calls");
    for (what, sql) in BANK_JOBS {
        println!("\n▶ inclusive-bank: {what}");
        match sandbox.run_sql(&grant, sql, &SqlJobOptions::default()).await? {
            SqlJobResult::Released { table, .. } => print!("{}", crate::render::table(&table)),
            SqlJobResult::DryRun(r) => print!("{}", crate::render::dry_run(&r)),
        }
    }
    let outside = "SELECT t.year, AVG(t.vat) FROM gov.tax_payments t GROUP BY t.year";
    println!("\n▶ inclusive-bank asks for a column its agreement does not cover:\n  {outside}");
    match sandbox.run_sql(&grant, outside, &SqlJobOptions::default()).await {
        Err(e) if e.is_refusal() => println!("  {e}"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err(fail("the demo's out-of-agreement query was not refused")),
    }
    let entries = store.audit_entries()?;
    let report = UsageReport::from_entries(&entries, &grant, None, None)?;
    println!("\n═══ The bank's usage report (数据利用报告), generated from the audit ledger ═══\n");
    print!("{}", report.to_markdown());
    Ok(())
}
