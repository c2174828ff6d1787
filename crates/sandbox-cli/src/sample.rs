//! `sandbox sample`: DP sample datasets (样本数据). Anyone may download a
//! dataset's current sample (CSV and Parquet) with its fidelity report; its
//! owner (or the operator) makes a new one with `--generate`, spending the
//! policy's `[sample]` ε from the owner's sample budget (never an
//! agreement's), charged and recorded in the ledger before the sample is
//! computed. The mechanism is `sandbox_dp::synthetic`; reading the data and
//! writing the files is `sandbox_ingest::sample`.

use crate::commands::{CliError, fail, open_store};
use clap::Args;
use sandbox_governance::{GovernanceError, SampleCharge, Store};
use sandbox_ingest::{DataLayout, IngestError, SampleManifest, SampleOptions};
use sandbox_model::DatasetId;
use sandbox_runtime::DataDir;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub(crate) struct SampleArgs {
    /// The dataset, e.g. `gov.tax_payments`.
    pub dataset: String,
    /// Make a new sample (the dataset's owner or the operator): spends the
    /// policy's `[sample]` ε from the owner's sample budget.
    #[arg(long)]
    pub generate: bool,
    /// Directory to write `<dataset>.sample.csv` and `<dataset>.sample.parquet` to.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Print the sample's manifest and fidelity report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn refused(rule: &str, message: impl std::fmt::Display) -> CliError {
    CliError {
        code: 2,
        message: format!("{message} [rule: {rule}]"),
    }
}

fn ingest_error(e: IngestError) -> CliError {
    match e {
        IngestError::Spec(m) => CliError { code: 2, message: m },
        IngestError::Record(m) => CliError { code: 2, message: m },
        e => fail(e.to_string()),
    }
}

/// Makes a new sample of `id` as `account` (already checked to be its owner
/// or the operator): charges the owner's sample budget and records it,
/// makes the sample, records its files.
pub(crate) fn generate_as(
    root: &Path,
    store: &Store,
    account: &str,
    id: &DatasetId,
) -> Result<SampleManifest, CliError> {
    let sandbox = crate::commands::open(root, true)?;
    let entry = sandbox
        .catalog()
        .get(id)
        .cloned()
        .ok_or_else(|| fail(format!("{id} is not in the catalog")))?;
    let policies = sandbox.policies();
    let policy = policies
        .get(id)
        .ok_or_else(|| fail(format!("{id} has no output policy")))?;
    let sample = policy.sample.as_ref().ok_or_else(|| {
        refused(
            "no-sample-consent",
            format!("the policy of {id} has no [sample] table: its owner has not allowed a sample dataset"),
        )
    })?;
    let dir = sandbox.data_dir().clone();
    // The sandbox was opened to make sure the data is there; its store is
    // not needed while the sample is made.
    drop(sandbox);
    let layout = DataLayout::new(dir.root());
    let data_version = sandbox_ingest::current_manifest(&layout, id)
        .map_err(ingest_error)?
        .map(|m| m.version);
    let budget = sample.epsilon_budget;
    let manifest = sandbox_ingest::make_sample(
        &layout,
        &entry,
        policy,
        &dir.table_dir(id),
        data_version,
        &SampleOptions::default(),
        |cost| {
            let charge = SampleCharge {
                sample_id: cost.sample_id.clone(),
                dataset: id.to_string(),
                by: account.to_string(),
                epsilon_model: cost.epsilon_model,
                epsilon_fidelity: cost.epsilon_fidelity,
                delta: cost.delta,
                epsilon_budget: budget,
                data_version,
                policy_digest: policy.digest.clone(),
            };
            match store.charge_sample(&charge) {
                Ok(_) => Ok(()),
                Err(e @ GovernanceError::BudgetExhausted { .. }) => Err(format!("{e} [rule: sample-budget-exhausted]")),
                Err(e @ GovernanceError::DatasetSuspended { .. }) => Err(format!("{e} [rule: dataset-suspended]")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .map_err(ingest_error)?;
    let files: Vec<(String, String)> = manifest
        .files
        .iter()
        .map(|f| (f.name.clone(), f.sha256.clone()))
        .collect();
    store.record_sample_published(&manifest.sample_id, id.as_str(), account, manifest.rows, &files)?;
    Ok(manifest)
}

/// The dataset's policy in force, as the sandbox loads it.
fn policy_in_force(dir: &DataDir, id: &DatasetId) -> Result<Option<sandbox_policy::Policy>, CliError> {
    let catalog = sandbox_policy::load_catalog_dir(&dir.catalog_dir()).map_err(|e| fail(e.to_string()))?;
    let policies =
        sandbox_policy::PolicySet::load_dir(&dir.policies_dir(), &catalog).map_err(|e| fail(e.to_string()))?;
    Ok(policies.get(id).cloned())
}

/// Copies the current sample's files to `out` as
/// `<dataset>.sample.{csv,parquet}`: only a sample made under the sample
/// terms of the policy in force (one made before a rule was added is
/// refused, naming the dataset and what its owner must do).
fn download(dir: &DataDir, id: &DatasetId, out: &Path) -> Result<(SampleManifest, Vec<PathBuf>), CliError> {
    let policy = policy_in_force(dir, id)?;
    let (path, manifest) = match dir.current_sample(id, policy.as_ref()) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(fail(format!(
                "{id} has no sample yet; its owner makes one with `sandbox sample {id} --generate`"
            )));
        }
        Err(e) => match e.rule() {
            Some(rule) => return Err(refused(rule, e.refusal_message())),
            None => return Err(fail(e.to_string())),
        },
    };
    std::fs::create_dir_all(out).map_err(|e| fail(format!("cannot create {}: {e}", out.display())))?;
    let mut written = Vec::new();
    for (name, ext) in [
        (sandbox_ingest::sample::SAMPLE_CSV, "csv"),
        (sandbox_ingest::sample::SAMPLE_PARQUET, "parquet"),
    ] {
        let to = out.join(format!("{id}.sample.{ext}"));
        std::fs::copy(path.join(name), &to).map_err(|e| fail(format!("cannot write {}: {e}", to.display())))?;
        written.push(to);
    }
    Ok((manifest, written))
}

pub(crate) fn run(root: &Path, args: SampleArgs, token: Option<&str>) -> Result<(), CliError> {
    let id: DatasetId = args.dataset.parse().map_err(|e| fail(format!("{e}")))?;
    let dir = DataDir::open(root)?;
    if args.generate {
        let catalog = sandbox_policy::load_catalog_dir(&dir.catalog_dir()).map_err(|e| fail(e.to_string()))?;
        let entry = catalog
            .get(&id)
            .ok_or_else(|| fail(format!("{id} is not in the catalog")))?;
        let store = open_store(&dir)?;
        let account = crate::governance::account_of(&store, token)?;
        crate::dataset::require_owner(&store, &account, entry, true, "makes a sample of")?;
        generate_as(root, &store, &account, &id)?;
    }
    let (manifest, files) = download(&dir, &id, &args.out)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&manifest).map_err(|e| fail(e.to_string()))?
        );
    } else {
        print!("{}", manifest.render());
        for f in files {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}

/// The demo's sample step: the market regulator makes a sample of the
/// dataset it registered (once per data version) and shows its fidelity
/// report.
pub(crate) fn demo_sample(root: &Path, owner: &str) -> Result<(), CliError> {
    println!("\n═══ Sample dataset (样本数据): DP synthetic data anyone may download ═══");
    let dir = DataDir::open(root)?;
    let id: DatasetId = "gov.market_inspections".parse().map_err(|e| fail(format!("{e}")))?;
    let layout = DataLayout::new(dir.root());
    let version = sandbox_ingest::current_manifest(&layout, &id)
        .map_err(ingest_error)?
        .map(|m| m.version);
    // Made again when the data version or the sample terms of the policy
    // changed (a sample under other terms is not served).
    let policy = policy_in_force(&dir, &id)?;
    if let Some((_, m)) = sandbox_ingest::current_sample(&layout, &id).map_err(ingest_error)?
        && m.data_version == version
        && policy.as_ref().is_some_and(|p| m.made_under(p))
    {
        println!("(a sample of this data version and policy exists; shown, not made again)");
        print!("{}", m.render());
        return Ok(());
    }
    println!("▶ {owner}: sandbox sample {id} --generate");
    let store = open_store(&dir)?;
    let manifest = generate_as(root, &store, owner, &id)?;
    print!("{}", manifest.render());
    let budget = store.sample_budget(id.as_str())?;
    println!(
        "  sample budget of {id}: ε = {} spent (the owner's, recorded in the ledger as sample_charged)",
        budget.epsilon_spent
    );
    println!("  anyone: `sandbox sample {id}` or GET /v1/samples/{id}/sample.csv — no application needed");
    Ok(())
}
