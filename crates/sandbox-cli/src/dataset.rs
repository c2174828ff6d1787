//! `sandbox dataset`: data owners register files as new versions of their
//! datasets, see a version's quality report, and withdraw datasets. The
//! reading, checking, pseudonymizing and atomic switching are
//! `sandbox-ingest`'s; this module checks who acts and records each
//! version and withdrawal in the audit ledger.

use crate::commands::{CliError, fail, open_store};
use clap::{Args, Subcommand};
use sandbox_governance::{Role, Store};
use sandbox_ingest::{
    DataLayout, FileFormat, IngestError, IngestOptions, PseudonymKey, Registration, TextEncoding, ValueCheck,
    VersionManifest,
};
use sandbox_model::{Dataset, DatasetId, ProviderKind};
use sandbox_runtime::DataDir;
use sandbox_runtime::registrant::{Registrant, version_record};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub(crate) enum DatasetCommand {
    /// Register a file (CSV, Parquet or .xlsx) as a new version of one of your
    /// datasets (data owners): validated against its catalog entry and policy,
    /// checked, pseudonymized, and made current for jobs that start afterwards.
    Register(Box<RegisterArgs>),
    /// Show a registered dataset's current version and its quality report.
    Show {
        dataset: String,
        #[arg(long)]
        json: bool,
    },
    /// Publish datasets where jobs read them (`--tables`): one dataset's
    /// current version, or every dataset with data not yet published in its
    /// current version (data owners for their own; the operator for all).
    Publish {
        /// The dataset (default: every dataset).
        dataset: Option<String>,
        /// Publish again even where the current version is published.
        #[arg(long)]
        again: bool,
    },
    /// Withdraw one of your datasets (its owner, or the operator): it is
    /// suspended, its data removed, and the withdrawal recorded in the ledger.
    Withdraw {
        dataset: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Args, Debug)]
pub(crate) struct RegisterArgs {
    /// The data file: .csv, .parquet or .xlsx.
    pub file: PathBuf,
    /// The catalog entry (开放清单 fields), TOML or JSON.
    #[arg(long)]
    pub entry: PathBuf,
    /// The output policy with the column roles (TOML); required for a new
    /// dataset, else the installed one is kept.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// csv, parquet or xlsx (default: from the file's extension).
    #[arg(long)]
    pub format: Option<String>,
    /// CSV text encoding: utf-8, gb18030 or gbk.
    #[arg(long, default_value = "utf-8")]
    pub encoding: String,
    /// CSV delimiter: one character, or `tab`.
    #[arg(long, default_value = ",")]
    pub delimiter: String,
    /// The CSV has no header line (columns in the entry's order); for .xlsx,
    /// the sheet has no header row.
    #[arg(long)]
    pub no_header: bool,
    /// The longest CSV line (or quoted field spanning lines) read, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_line_bytes: usize,
    /// The .xlsx worksheet (default: the first).
    #[arg(long)]
    pub sheet: Option<String>,
    /// A key column (repeat for a composite key); duplicates are counted.
    #[arg(long)]
    pub key: Vec<String>,
    /// A value check, `column=credit_code` or `column=district` (columns
    /// named credit_code and district get theirs by default).
    #[arg(long)]
    pub check: Vec<String>,
    /// Refuse when more rows than this cannot be read (they are left out otherwise).
    #[arg(long, default_value_t = 0)]
    pub max_rejected_rows: u64,
    /// Refuse when more rows than this repeat a key.
    #[arg(long, default_value_t = 0)]
    pub max_duplicate_keys: u64,
    /// Refuse when more credit codes than this are invalid (default: report only).
    #[arg(long)]
    pub max_invalid_codes: Option<u64>,
    /// Refuse when more district names than this are unknown (default: report only).
    #[arg(long)]
    pub max_unknown_districts: Option<u64>,
    /// Refuse when more measure values than this are outside the policy's bounds.
    #[arg(long)]
    pub max_out_of_bounds: Option<u64>,
    /// Refuse when any column has a larger share of nulls (0 to 1).
    #[arg(long)]
    pub max_null_fraction: Option<f64>,
    /// The pseudonymization secret (outside the data directory; created on
    /// first use). Default: ~/.config/data-sandbox/pseudonym.key.
    #[arg(long, env = "SANDBOX_PSEUDONYM_KEY")]
    pub pseudonym_key: Option<PathBuf>,
    /// Read and check the file and print its quality report, registering
    /// nothing (the staged files are removed; nothing reaches the catalog or
    /// the ledger).
    #[arg(long)]
    pub check_only: bool,
    /// Print the version's manifest as JSON.
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
    let code = match e {
        IngestError::Io { .. } | IngestError::Parquet(_) | IngestError::Record(_) => 1,
        _ => 2,
    };
    CliError {
        code,
        message: e.to_string(),
    }
}

impl RegisterArgs {
    pub(crate) fn options(&self) -> Result<IngestOptions, CliError> {
        let spec = |e: IngestError| fail(e.to_string());
        let delimiter = match self.delimiter.as_str() {
            "tab" | "\\t" | "\t" => b'\t',
            d if d.len() == 1 => d.as_bytes()[0],
            d => return Err(fail(format!("--delimiter `{d}`: give one ASCII character, or `tab`"))),
        };
        let mut options = IngestOptions {
            format: self
                .format
                .as_deref()
                .map(FileFormat::parse)
                .transpose()
                .map_err(spec)?,
            sheet: self.sheet.clone(),
            key: self.key.clone(),
            ..Default::default()
        };
        options.csv.encoding = TextEncoding::parse(&self.encoding).map_err(spec)?;
        options.csv.delimiter = delimiter;
        options.csv.header = !self.no_header;
        options.csv.max_line_bytes = self.max_line_bytes.max(1);
        for c in &self.check {
            let (column, kind) = c
                .split_once('=')
                .ok_or_else(|| fail(format!("--check `{c}`: expected column=credit_code or column=district")))?;
            options
                .checks
                .insert(column.to_string(), ValueCheck::parse(kind).map_err(spec)?);
        }
        let t = &mut options.thresholds;
        t.max_rejected_rows = Some(self.max_rejected_rows);
        t.max_duplicate_keys = Some(self.max_duplicate_keys);
        t.max_invalid_codes = self.max_invalid_codes;
        t.max_unknown_districts = self.max_unknown_districts;
        t.max_out_of_bounds = self.max_out_of_bounds;
        if let Some(f) = self.max_null_fraction
            && !(0.0..=1.0).contains(&f)
        {
            return Err(fail("--max-null-fraction is a share between 0 and 1"));
        }
        t.max_null_fraction = self.max_null_fraction;
        Ok(options)
    }
}

/// The pseudonymization key: `--pseudonym-key`, else the default path.
pub(crate) fn pseudonym_key(explicit: Option<&Path>, dir: &DataDir) -> Result<PseudonymKey, CliError> {
    let path = explicit
        .map(Path::to_path_buf)
        .or_else(PseudonymKey::default_path)
        .ok_or_else(|| {
            fail("no place for the pseudonymization secret: set $SANDBOX_PSEUDONYM_KEY or --pseudonym-key")
        })?;
    PseudonymKey::load_or_create(&path, dir.root()).map_err(ingest_error)
}

/// The dataset id a catalog entry file declares.
pub(crate) fn entry_id(text: &str, path: &Path) -> Result<String, CliError> {
    Ok(parse_entry(text, path)?.id.to_string())
}

fn parse_entry(text: &str, path: &Path) -> Result<Dataset, CliError> {
    let parsed = if text.trim_start().starts_with('{') {
        serde_json::from_str::<Dataset>(text).map_err(|e| e.to_string())
    } else {
        toml::from_str::<Dataset>(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| fail(format!("{}: not a catalog entry: {e}", path.display())))
}

/// A catalog entry or policy file the caller gives: a regular file of at
/// most [`sandbox_policy::files::MAX_POLICY_BYTES`].
fn read(path: &Path) -> Result<String, CliError> {
    crate::commands::read_text(path, sandbox_policy::files::MAX_POLICY_BYTES)
}

/// Refuses unless `account` owns the dataset `entry` describes (a data
/// owner of its provider, or the applicant whose enterprise provider it is,
/// for an `enterprise` dataset only), or, when `operator_too`, is the
/// operator.
pub(crate) fn require_owner(
    store: &Store,
    account: &str,
    entry: &Dataset,
    operator_too: bool,
    what: &str,
) -> Result<(), CliError> {
    let provider = entry.provider.id.as_str();
    let owns = match store.role(account)? {
        Some(Role::Operator) => operator_too,
        Some(Role::DataOwner { provider: p }) => p == provider,
        Some(Role::Applicant) => {
            entry.provider.kind == ProviderKind::Enterprise
                && store.enterprise_provider_of(account)?.as_deref() == Some(provider)
        }
        None => false,
    };
    if owns {
        return Ok(());
    }
    Err(refused(
        "not-owner",
        format!("only an owner account of provider `{provider}` {what} {}", entry.id),
    ))
}

/// Registers a file as `account` and records it; returns the manifest.
#[allow(clippy::too_many_arguments)]
pub(crate) fn register_as(
    dir: &DataDir,
    store: &Store,
    account: &str,
    key: &PseudonymKey,
    file: &Path,
    entry: &str,
    policy: Option<&str>,
    options: IngestOptions,
    registrant: &Registrant,
) -> Result<VersionManifest, CliError> {
    let layout = DataLayout::new(dir.root());
    let registration = Registration {
        file,
        entry,
        policy,
        owner: account,
        options,
    };
    let staged = match sandbox_ingest::stage(&layout, key, &registration) {
        Ok(s) => s,
        Err(IngestError::Quality { reasons, report }) => {
            // The owner sees what is wrong before the refusal.
            print!("{}", report.render());
            return Err(ingest_error(IngestError::Quality { reasons, report }));
        }
        Err(e) => return Err(ingest_error(e)),
    };
    // The store's refusal (the provider is no longer the applicant's),
    // kept to answer with its rule.
    let mut refusal = None;
    let committed = staged.commit(|m| {
        registrant.record(store, &version_record(m)).map_err(|e| {
            let text = e.to_string();
            refusal = Some(e);
            text
        })
    });
    if let Some(e) = refusal {
        return Err(e.into());
    }
    committed.map_err(ingest_error)
}

/// Stages the file and drops the staged version: the quality report
/// without a registration (the staging directory is removed).
fn check_only(
    dir: &DataDir,
    account: &str,
    key: &PseudonymKey,
    file: &Path,
    entry: &str,
    policy: Option<&str>,
    options: IngestOptions,
) -> Result<sandbox_ingest::QualityReport, CliError> {
    let registration = Registration {
        file,
        entry,
        policy,
        owner: account,
        options,
    };
    match sandbox_ingest::stage(&DataLayout::new(dir.root()), key, &registration) {
        Ok(staged) => Ok(staged.manifest().quality.clone()),
        Err(IngestError::Quality { reasons, report }) => {
            print!("{}", report.render());
            Err(ingest_error(IngestError::Quality { reasons, report }))
        }
        Err(e) => Err(ingest_error(e)),
    }
}

pub(crate) async fn run(root: &Path, command: DatasetCommand, token: Option<&str>) -> Result<(), CliError> {
    let dir = DataDir::open(root)?;
    match command {
        DatasetCommand::Register(args) => {
            let entry = read(&args.entry)?;
            // A file that is not an entry at all is named with its path.
            parse_entry(&entry, &args.entry)?;
            let policy = args.policy.as_deref().map(read).transpose()?;
            let options = args.options()?;
            let store = open_store(&dir)?;
            let account = crate::governance::account_of(&store, token)?;
            // Who may register it, decided on the validated entry and
            // policy before a row is read.
            let subject = sandbox_ingest::registration_subject(&DataLayout::new(dir.root()), &entry, policy.as_deref())
                .map_err(ingest_error)?;
            let installed = sandbox_policy::load_catalog_dir(&dir.catalog_dir()).map_err(|e| fail(e.to_string()))?;
            let registrant = sandbox_runtime::registrant::registrant(
                &store,
                &installed,
                &account,
                &subject.dataset,
                &subject.fusion_partners,
            )?;
            let key = pseudonym_key(args.pseudonym_key.as_deref(), &dir)?;
            if args.check_only {
                let report = check_only(&dir, &account, &key, &args.file, &entry, policy.as_deref(), options)?;
                print!("{}", report.render());
                println!("(checked only: nothing was registered)");
                return Ok(());
            }
            let manifest = register_as(
                &dir,
                &store,
                &account,
                &key,
                &args.file,
                &entry,
                policy.as_deref(),
                options,
                &registrant,
            )?;
            drop(store);
            // Opening the sandbox checks that everything loads together and
            // records the new entry and policy digests.
            let sandbox = crate::commands::open(root, false)?;
            let published = sandbox.publish(&subject.dataset.id).await.map_err(|e| {
                fail(format!(
                    "{} {} is registered, but not published where jobs read it: {e}; \
                     jobs cannot read it until `sandbox dataset publish {}` succeeds",
                    subject.dataset.id, manifest.version, subject.dataset.id
                ))
            })?;
            // The catalog's row bounds, checked on the new files now rather
            // than by the first job that reads them.
            let row_bounds = sandbox.verify_declared_row_bounds(&subject.dataset.id).await;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&manifest).map_err(|e| fail(e.to_string()))?
                );
            } else {
                print!("{}", manifest_text(&manifest));
                if let (Some(record), Some(tables)) = (&published, sandbox.published_tables()) {
                    println!("  published: {} files to {}", record.files.len(), tables.root());
                }
            }
            // On stderr, so that `--json` output stays one document.
            eprint!("{}", row_bounds_text(&subject.dataset.id, &row_bounds));
            Ok(())
        }
        DatasetCommand::Publish { dataset, again } => {
            let sandbox = crate::commands::open(root, false)?;
            let Some(tables) = sandbox.published_tables().cloned() else {
                return Err(fail(
                    "jobs read the data directory itself: give --tables s3://bucket/prefix (or SANDBOX_TABLES) to publish",
                ));
            };
            let store = open_store(&dir)?;
            let account = crate::governance::account_of(&store, token)?;
            let catalog = sandbox.catalog();
            let ids: Vec<DatasetId> = match &dataset {
                Some(d) => vec![d.parse().map_err(|e| fail(format!("{e}")))?],
                None => catalog.iter().map(|e| e.id.clone()).collect(),
            };
            let mut published = Vec::new();
            for id in &ids {
                let entry = catalog
                    .get(id)
                    .ok_or_else(|| fail(format!("{id} is not in the catalog")))?;
                let permitted = require_owner(&store, &account, entry, true, "publishes");
                if dataset.is_some() {
                    permitted?;
                } else if permitted.is_err() {
                    continue;
                }
                if dataset.is_none() && !again && sandbox.is_published(id).await? {
                    continue;
                }
                match sandbox.publish(id).await? {
                    Some(_) => {
                        // Jobs key the row-bound check by the published
                        // objects: check them now, not in the first job.
                        let row_bounds = sandbox.verify_declared_row_bounds(id).await;
                        eprint!("{}", row_bounds_text(id, &row_bounds));
                        published.push(id.clone())
                    }
                    None if dataset.is_some() => return Err(fail(format!("{id} has no data to publish"))),
                    None => {}
                }
            }
            for id in &published {
                println!("published {id} to {}", tables.root());
            }
            if published.is_empty() {
                println!(
                    "nothing to publish: every dataset with data is published in its current version (--again to publish anew)"
                );
            }
            Ok(())
        }
        DatasetCommand::Show { dataset, json } => {
            let id: DatasetId = dataset.parse().map_err(|e| fail(format!("{e}")))?;
            let manifest = sandbox_ingest::current_manifest(&DataLayout::new(dir.root()), &id)
                .map_err(ingest_error)?
                .ok_or_else(|| {
                    fail(format!(
                        "{id} has no registered version (generated or withdrawn data has none)"
                    ))
                })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&manifest).map_err(|e| fail(e.to_string()))?
                );
            } else {
                print!("{}", manifest_text(&manifest));
            }
            Ok(())
        }
        DatasetCommand::Withdraw { dataset, reason } => {
            let id: DatasetId = dataset.parse().map_err(|e| fail(format!("{e}")))?;
            let catalog = sandbox_policy::load_catalog_dir(&dir.catalog_dir()).map_err(|e| fail(e.to_string()))?;
            let entry = catalog
                .get(&id)
                .ok_or_else(|| fail(format!("{id} is not in the catalog")))?;
            let store = open_store(&dir)?;
            let account = crate::governance::account_of(&store, token)?;
            require_owner(&store, &account, entry, true, "registers or withdraws")?;
            if reason.trim().is_empty() {
                return Err(fail("a withdrawal must give its reason (--reason)"));
            }
            let layout = DataLayout::new(dir.root());
            if sandbox_ingest::current_manifest(&layout, &id)
                .map_err(ingest_error)?
                .is_none()
            {
                // Withdrawn here before, but a published copy may be left
                // (its removal failed): this finishes it. (Generated data,
                // which has files but no version, is not withdrawn.)
                let sandbox = crate::commands::open(root, false)?;
                let removed = if dir.has_table(&id) {
                    0
                } else {
                    sandbox.withdraw_published(&id).await?
                };
                if removed > 0 {
                    println!("{id}: the published copy left by its withdrawal is removed ({removed} objects)");
                    return Ok(());
                }
                return Err(fail(format!(
                    "{id} has no registered data to withdraw (generated data is not registered; \
                     `sandbox suspend` closes a dataset on a complaint)"
                )));
            }
            let withdrawn = sandbox_ingest::withdraw(&layout, &id, |m| {
                let record = m.map(version_record);
                store
                    .record_dataset_withdrawal(id.as_str(), &account, &reason, record.as_ref())
                    .map_err(|e| e.to_string())
            })
            .map_err(ingest_error)?;
            // Nothing stays where jobs read it. The withdrawal is already
            // recorded and the dataset suspended, so no job reads it either way.
            let sandbox = crate::commands::open(root, false)?;
            sandbox.withdraw_published(&id).await.map_err(|e| {
                fail(format!(
                    "{id} is withdrawn and suspended, but its published copy could not be removed: {e}; \
                     run the withdrawal again to finish"
                ))
            })?;
            match withdrawn {
                Some(m) => println!(
                    "{id} withdrawn: version {} ({} rows, data {}) removed; the dataset stays suspended; recorded in the ledger",
                    m.version,
                    m.rows,
                    short(&m.data_sha256)
                ),
                None => println!(
                    "{id} withdrawn (it had no registered version); it stays suspended; recorded in the ledger"
                ),
            }
            Ok(())
        }
    }
}

/// A version as its owner reads it: identity, digests, then the quality report.
/// The catalog's `max_rows_per_value` declarations as verified on the
/// dataset's current files, for its owner: one line per declaration, or
/// nothing when it declares none. A failed check is a warning (the version
/// is registered; jobs count again and, failing that, bound every
/// contribution).
pub(crate) fn row_bounds_text(
    dataset: &DatasetId,
    verified: &Result<sandbox_runtime::DeclaredRowBounds, sandbox_runtime::RuntimeError>,
) -> String {
    let mut s = String::new();
    match verified {
        Err(e) => s.push_str(&format!(
            "warning: the catalog's max_rows_per_value declarations of {dataset} could not be checked ({e}); \
             the first job checks them again\n"
        )),
        Ok(v) => {
            for (column, bound) in &v.holds {
                s.push_str(&format!(
                    "  max_rows_per_value {column} = {bound}: holds (jobs may skip contribution bounding it makes unnecessary)\n"
                ));
            }
            for (column, most) in &v.violated {
                let found = if *most == u64::MAX {
                    "the column could not be counted".to_string()
                } else {
                    format!("a value has {most} rows")
                };
                s.push_str(&format!(
                    "warning: max_rows_per_value {column} does not hold on {dataset}: {found}; \
                     jobs ignore it and bound every contribution (correct the catalog entry or the data)\n"
                ));
            }
        }
    }
    s
}

pub(crate) fn manifest_text(m: &VersionManifest) -> String {
    let mut s = format!(
        "{} version {} ({}), registered by {} at {}\n  source: {} ({}{}, {} bytes, sha256 {})\n  stored: {} rows, data sha256 {}\n  pseudonymized: {} (secret {})\n",
        m.dataset,
        m.version,
        m.directory,
        m.owner,
        m.registered_at,
        m.source.file_name,
        m.source.format.as_str(),
        m.source.encoding.as_ref().map(|e| format!(", {e}")).unwrap_or_default(),
        m.source.bytes,
        short(&m.source.sha256),
        m.rows,
        short(&m.data_sha256),
        if m.pseudonymized_columns.is_empty() {
            "none".to_string()
        } else {
            m.pseudonymized_columns.join(", ")
        },
        m.pseudonym_key_id,
    );
    s.push_str("quality report:\n");
    for line in m.quality.render().lines() {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// The shipped example: the market regulator's random inspections, a
/// GB18030 CSV export with a few deliberate problems for the report.
const DEMO_CSV: &[u8] = include_bytes!("../../../examples/onboarding/gov.market_inspections.csv");
const DEMO_ENTRY: &str = include_str!("../../../examples/onboarding/gov.market_inspections.entry.toml");
const DEMO_POLICY: &str = include_str!("../../../examples/onboarding/gov.market_inspections.policy.toml");
pub(crate) const DEMO_OWNER: &str = "market-regulator";
const DEMO_PROVIDER: &str = "shanghai-market-regulation";

/// The demo's onboarding step: the market regulator registers the shipped
/// CSV (once; later runs show the version already registered).
pub(crate) fn demo_onboarding(root: &Path) -> Result<(), CliError> {
    println!("\n═══ Onboarding (数据登记): an owner registers a file ═══");
    let dir = DataDir::open(root)?;
    let store = open_store(&dir)?;
    crate::governance::ensure_account(
        &store,
        DEMO_OWNER,
        &Role::DataOwner {
            provider: DEMO_PROVIDER.into(),
        },
    )?;
    let layout = DataLayout::new(dir.root());
    let id: DatasetId = "gov.market_inspections".parse().map_err(|e| fail(format!("{e}")))?;
    if let Some(m) = sandbox_ingest::current_manifest(&layout, &id).map_err(ingest_error)?
        && m.source.sha256 == sandbox_ingest::sha256_hex(DEMO_CSV)
    {
        println!("(already registered from the shipped file)");
        print!("{}", manifest_text(&m));
        return Ok(());
    }
    println!(
        "▶ {DEMO_OWNER}: sandbox dataset register gov.market_inspections.csv --encoding gb18030 \\\n    \
         --entry gov.market_inspections.entry.toml --policy gov.market_inspections.policy.toml \\\n    \
         --key credit_code --key inspected --max-rejected-rows 1 --max-duplicate-keys 1"
    );
    let key = pseudonym_key(None, &dir)?;
    // The raw file goes to a temporary directory, never into the data directory.
    let tmp = std::env::temp_dir().join(format!("sandbox-demo-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| fail(format!("cannot create {}: {e}", tmp.display())))?;
    let file = tmp.join("gov.market_inspections.csv");
    let written = std::fs::write(&file, DEMO_CSV).map_err(|e| fail(format!("cannot write {}: {e}", file.display())));
    let mut options = IngestOptions {
        key: vec!["credit_code".into(), "inspected".into()],
        ..Default::default()
    };
    options.csv.encoding = TextEncoding::Gb18030;
    options.thresholds.max_rejected_rows = Some(1);
    options.thresholds.max_duplicate_keys = Some(1);
    let result = written.and_then(|()| {
        register_as(
            &dir,
            &store,
            DEMO_OWNER,
            &key,
            &file,
            DEMO_ENTRY,
            Some(DEMO_POLICY),
            options,
            &Registrant::ProviderOwner,
        )
    });
    let _ = std::fs::remove_dir_all(&tmp);
    let manifest = result?;
    print!("{}", manifest_text(&manifest));
    Ok(())
}

/// The first 16 characters of a digest, for people (the JSON has it whole).
fn short(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}
