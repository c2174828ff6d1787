//! One registration: validate the entry and policy against the catalog,
//! read the file, check, pseudonymize and write the rows into a staging
//! directory, and hand back a [`StagedVersion`] that the caller commits
//! after recording it (or drops, leaving nothing behind).

use crate::convert::{Cell, Failure, coerce};
use crate::layout::{
    self, CURRENT, DATA_FILE, DataLayout, DatasetLock, ENTRY, MANIFEST, POLICY, STAGING_PREFIX, sync_dir, write_atomic,
    write_synced,
};
use crate::quality::{ColumnQuality, QualityReport};
use crate::read::{SourceRow, detect_format, display_name, read_rows};
use crate::secret::PseudonymKey;
use crate::spec::{FileFormat, IngestOptions, ValueCheck};
use crate::writer::{StoredFile, VersionWriter};
use crate::{IngestError, io};
use sandbox_model::districts::SHANGHAI_DISTRICTS;
use sandbox_model::{Catalog, ColumnRole, Dataset, DatasetId, FieldType, credit_code};
use sandbox_policy::PublicKey;
use serde::{Deserialize, Serialize};
use sha2_11::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What an owner registers.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    /// The data file (CSV, Parquet or .xlsx).
    pub file: &'a Path,
    /// The catalog entry, TOML or JSON (a JSON text starts with `{`).
    pub entry: &'a str,
    /// The output policy (TOML) with the column roles; `None` keeps the
    /// dataset's installed policy (required for a new dataset).
    pub policy: Option<&'a str>,
    /// The account registering (recorded in the manifest and the ledger).
    pub owner: &'a str,
    pub options: IngestOptions,
}

/// Where the data came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub file_name: String,
    pub format: FileFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    pub bytes: u64,
    pub sha256: String,
}

/// Everything recorded about one version (`manifest.json` in its directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionManifest {
    pub dataset: String,
    pub version: u64,
    /// The version's directory name (`v000002`).
    pub directory: String,
    pub owner: String,
    /// UTC, RFC 3339.
    pub registered_at: String,
    pub source: SourceInfo,
    pub files: Vec<StoredFile>,
    pub rows: u64,
    /// SHA-256 over the stored files' names and digests.
    pub data_sha256: String,
    /// SHA-256 of the catalog entry and the policy as installed.
    pub catalog_sha256: String,
    pub policy_sha256: String,
    /// Which secret made the pseudonyms ([`PseudonymKey::id`]).
    pub pseudonym_key_id: String,
    pub pseudonymized_columns: Vec<String>,
    pub quality: QualityReport,
}

/// SHA-256 of `bytes`, hex (the digest a manifest gives a source file).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn file_sha256(path: &Path) -> Result<(u64, String), IngestError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// Now, UTC, digits and `T`, `Z` only (`20261130T073227Z`): for names.
pub(crate) fn now_compact() -> String {
    now_rfc3339().chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

/// Now, UTC, RFC 3339 to the second.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil_from_days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses the entry (TOML, or JSON when it starts with `{`) and returns it
/// with its TOML text as installed.
fn parse_entry(text: &str) -> Result<(Dataset, String), IngestError> {
    let spec = |m: String| IngestError::Spec(format!("catalog entry: {m}"));
    if text.trim_start().starts_with('{') {
        let d: Dataset = serde_json::from_str(text).map_err(|e| spec(e.to_string()))?;
        d.validate().map_err(|e| spec(e.to_string()))?;
        let toml = toml::to_string(&d).map_err(|e| spec(e.to_string()))?;
        Ok((d, toml))
    } else {
        let d = sandbox_policy::parse_catalog_entry("entry", text).map_err(|e| spec(e.to_string()))?;
        Ok((d, text.to_string()))
    }
}

/// Per-column plan: what is checked and what is pseudonymized.
struct ColumnPlan {
    name: String,
    data_type: FieldType,
    check: Option<ValueCheck>,
    bounds: Option<(f64, f64)>,
    /// The dimension's public key set, if the policy declares one (text
    /// and integer keys apart, so that a row's value is looked up without
    /// a copy).
    public_keys: Option<(HashSet<String>, HashSet<i64>)>,
    pseudonymize: bool,
}

/// The validated inputs of a registration.
struct Plan {
    dataset: Dataset,
    entry_toml: String,
    policy_text: String,
    columns: Vec<ColumnPlan>,
    key: Vec<usize>,
}

/// What a registration would install, validated before any row is read:
/// the catalog entry and the output policy (alone, against the entry and
/// together with every installed policy).
#[derive(Debug, Clone)]
pub struct RegistrationSubject {
    pub dataset: Dataset,
    /// The datasets the policy declares a `[[fusion]]` with.
    pub fusion_partners: Vec<DatasetId>,
}

/// Validates a registration's entry and policy (`None`: the installed one)
/// without reading its file, so that who may register it can be decided
/// first. Errors as [`stage`] gives them for the same inputs.
pub fn registration_subject(
    layout: &DataLayout,
    entry: &str,
    policy: Option<&str>,
) -> Result<RegistrationSubject, IngestError> {
    let (dataset, _, _, policy) = entry_and_policy(layout, entry, policy)?;
    Ok(RegistrationSubject {
        dataset,
        fusion_partners: policy.fusions.iter().map(|f| f.dataset.clone()).collect(),
    })
}

/// The entry (with its TOML as installed) and the policy (with its text),
/// each validated, and every installed policy validated with this one.
fn entry_and_policy(
    layout: &DataLayout,
    entry: &str,
    policy: Option<&str>,
) -> Result<(Dataset, String, String, sandbox_policy::Policy), IngestError> {
    let (dataset, entry_toml) = parse_entry(entry)?;
    let id = dataset.id.clone();
    let setup = |m: String| IngestError::Spec(m);
    let existing = if layout.catalog_dir().exists() {
        sandbox_policy::load_catalog_dir(&layout.catalog_dir())
            .map_err(|e| setup(format!("the installed catalog does not load: {e}")))?
    } else {
        Catalog::new()
    };
    if let Some(old) = existing.get(&id)
        && old.provider.id != dataset.provider.id
    {
        return Err(setup(format!(
            "{id} is provided by `{}`; a new version cannot change its provider to `{}`",
            old.provider.id, dataset.provider.id
        )));
    }
    let mut catalog = Catalog::new();
    for d in existing.iter().filter(|d| d.id != id) {
        catalog.insert(d.clone()).map_err(|e| setup(e.to_string()))?;
    }
    catalog.insert(dataset.clone()).map_err(|e| setup(e.to_string()))?;
    // The policy: given, or the one installed.
    let target = format!("{id}.toml");
    let policy_text = match policy {
        Some(p) => p.to_string(),
        None => {
            let path = layout.policies_dir().join(&target);
            std::fs::read_to_string(&path).map_err(|_| {
                setup(format!(
                    "{id} has no output policy installed: give one with --policy (it declares the column roles)"
                ))
            })?
        }
    };
    let policy =
        sandbox_policy::parse_policy(&target, &policy_text, &catalog).map_err(|e| setup(format!("policy: {e}")))?;
    // Every installed policy together with this one (fusions name each other).
    let mut sources = vec![(target.clone(), policy_text.clone())];
    if let Ok(entries) = std::fs::read_dir(layout.policies_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".toml") && name != target {
                let body = std::fs::read_to_string(e.path()).map_err(io(&e.path()))?;
                sources.push((name, body));
            }
        }
    }
    sandbox_policy::PolicySet::from_sources(&sources, &catalog)
        .map_err(|e| setup(format!("the policies do not agree with this one: {e}")))?;
    Ok((dataset, entry_toml, policy_text, policy))
}

fn plan(layout: &DataLayout, reg: &Registration<'_>) -> Result<Plan, IngestError> {
    let (dataset, entry_toml, policy_text, policy) = entry_and_policy(layout, reg.entry, reg.policy)?;
    let setup = |m: String| IngestError::Spec(m);
    let options = &reg.options;
    for c in options.checks.keys() {
        if dataset.field(c).is_none() {
            return Err(setup(format!(
                "--check names column `{c}`, which the entry does not declare"
            )));
        }
    }
    let mut columns = Vec::new();
    for f in &dataset.fields {
        let roles = policy.column(&f.name).map(|c| &c.roles);
        let pseudonymize =
            roles.is_some_and(|r| r.contains(ColumnRole::Identifier) || r.contains(ColumnRole::PrivacyUnit));
        let check = options
            .checks
            .get(&f.name)
            .copied()
            .or_else(|| ValueCheck::default_for(&f.name));
        if f.data_type != FieldType::Utf8 {
            if pseudonymize {
                return Err(setup(format!(
                    "column `{}` is an identifier or privacy unit, stored as a pseudonym: declare it `utf8` in the entry",
                    f.name
                )));
            }
            if options.checks.contains_key(&f.name) {
                return Err(setup(format!("column `{}`: code checks apply to utf8 columns", f.name)));
            }
        }
        columns.push(ColumnPlan {
            name: f.name.clone(),
            data_type: f.data_type,
            check: check.filter(|_| f.data_type == FieldType::Utf8),
            bounds: policy.column(&f.name).and_then(|c| c.bounds),
            public_keys: policy.column(&f.name).and_then(|c| c.public_keys.as_ref()).map(|keys| {
                let text = keys
                    .iter()
                    .filter_map(|k| match k {
                        PublicKey::Str(s) => Some(s.clone()),
                        PublicKey::Int(_) => None,
                    })
                    .collect();
                let ints = keys
                    .iter()
                    .filter_map(|k| match k {
                        PublicKey::Int(i) => Some(*i),
                        PublicKey::Str(_) => None,
                    })
                    .collect();
                (text, ints)
            }),
            pseudonymize,
        });
    }
    let mut key = Vec::new();
    for k in &options.key {
        match dataset.fields.iter().position(|f| f.name == *k) {
            Some(i) => key.push(i),
            None => {
                return Err(setup(format!(
                    "--key names column `{k}`, which the entry does not declare"
                )));
            }
        }
    }
    Ok(Plan {
        dataset,
        entry_toml,
        policy_text,
        columns,
        key,
    })
}

/// A version written, synced and named but not yet current. Dropping it
/// without [`commit`](Self::commit) removes it.
#[derive(Debug)]
pub struct StagedVersion {
    layout: DataLayout,
    dataset_dir: PathBuf,
    version_dir: PathBuf,
    manifest: VersionManifest,
    entry_toml: String,
    policy_text: String,
    committed: bool,
    _lock: DatasetLock,
}

impl std::fmt::Debug for DatasetLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatasetLock")
    }
}

/// Removes a directory when dropped unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take()
            && let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), %e, "could not remove a failed registration's files");
        }
    }
}

#[cfg(test)]
thread_local! {
    /// The stage at which a test makes the registration fail.
    pub(crate) static FAIL_AT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

fn fail_point(stage: &'static str) -> Result<(), IngestError> {
    #[cfg(test)]
    if FAIL_AT.with(|f| f.get()) == Some(stage) {
        return Err(IngestError::Injected(stage));
    }
    let _ = stage;
    Ok(())
}

fn key_hash(cells: &[Cell], key: &[usize]) -> Option<u128> {
    let mut h = Sha256::new();
    for &i in key {
        match &cells[i] {
            Cell::Null => return None,
            Cell::Str(s) => h.update(s.as_bytes()),
            Cell::Int(v) => h.update(v.to_le_bytes()),
            Cell::Float(v) => h.update(v.to_bits().to_le_bytes()),
            Cell::Bool(v) => h.update([u8::from(*v)]),
            Cell::Date(v) => h.update(v.to_le_bytes()),
        }
        h.update([0x1f]);
    }
    let digest = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    Some(u128::from_le_bytes(first))
}

/// Reads, checks and writes the file into a new version directory (not yet
/// current). Fails, leaving nothing behind, on any error or when the
/// quality report breaks the owner's thresholds.
pub fn stage(layout: &DataLayout, key: &PseudonymKey, reg: &Registration<'_>) -> Result<StagedVersion, IngestError> {
    // The dataset is locked before its installed entry is read (who
    // provides it): two first registrations of one id by different
    // providers cannot both pass that check.
    let (entry, _) = parse_entry(reg.entry)?;
    let id = entry.id.clone();
    let dataset_dir = layout.dataset_dir(&id);
    let existed = dataset_dir.exists();
    let lock = DatasetLock::acquire(&dataset_dir, &id)?;
    let planned = plan(layout, reg).and_then(|p| Ok((p, detect_format(reg.file, &reg.options)?)));
    let (plan, format) = match planned {
        Ok(planned) => planned,
        Err(e) => {
            // A refused first registration leaves no directory behind.
            drop(lock);
            if !existed {
                let namespace = dataset_dir.parent().map(Path::to_path_buf);
                drop(RemoveOnDrop(Some(dataset_dir)));
                // And no empty namespace directory (only removed if empty).
                if let Some(ns) = namespace {
                    let _ = std::fs::remove_dir(ns);
                }
            }
            return Err(e);
        }
    };
    layout::clean_leftovers(&dataset_dir)?;
    let version = layout::version_numbers(&dataset_dir)?.last().copied().unwrap_or(0) + 1;
    let nonce = {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| IngestError::Spec(format!("no randomness from the OS: {e}")))?;
        hex::encode(b)
    };
    let staging = dataset_dir.join(format!("{STAGING_PREFIX}{nonce}"));
    std::fs::create_dir(&staging).map_err(io(&staging))?;
    let mut cleanup = RemoveOnDrop(Some(staging.clone()));

    let mut report = QualityReport {
        key: plan.key.iter().map(|&i| plan.columns[i].name.clone()).collect(),
        columns: plan
            .columns
            .iter()
            .map(|c| ColumnQuality {
                name: c.name.clone(),
                check: c.check,
                pseudonymized: c.pseudonymize,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut writer = VersionWriter::create(&staging.join(DATA_FILE), &plan.dataset.fields)?;
    let mut seen_keys: HashSet<u128> = HashSet::new();
    // The sink borrows the report, the writer and the key set until the file is read.
    let mut sink = |row: SourceRow| -> Result<(), IngestError> {
        report.rows_read += 1;
        let line = row.line;
        let raw = match row.cells {
            Ok(c) => c,
            Err(reason) => {
                report.rows_rejected += 1;
                report.issue(line, None, &reason, true);
                return Ok(());
            }
        };
        let mut cells = Vec::with_capacity(raw.len());
        let mut rejected = false;
        for (i, value) in raw.into_iter().enumerate() {
            let col = &plan.columns[i];
            match coerce(value, col.data_type) {
                Ok(c) => cells.push(c),
                Err(failure) => {
                    rejected = true;
                    let q = &mut report.columns[i];
                    q.coercion_failures += 1;
                    if matches!(failure, Failure::Date(_)) {
                        q.malformed_dates += 1;
                    }
                    report.issue(line, Some(&col.name), failure.reason(), true);
                    cells.push(Cell::Null);
                }
            }
        }
        if rejected {
            report.rows_rejected += 1;
            return Ok(());
        }
        for (i, col) in plan.columns.iter().enumerate() {
            match &mut cells[i] {
                Cell::Null => report.columns[i].nulls += 1,
                Cell::Str(s) => match col.check {
                    Some(ValueCheck::CreditCode) => {
                        s.make_ascii_uppercase();
                        if credit_code::validate(s).is_err() {
                            report.columns[i].invalid_codes += 1;
                            report.issue(
                                line,
                                Some(&col.name),
                                "not a valid 统一社会信用代码 (length, characters or check character, GB 32100-2015)",
                                false,
                            );
                        }
                    }
                    Some(ValueCheck::District) if !SHANGHAI_DISTRICTS.iter().any(|(name, _)| name == s) => {
                        report.columns[i].unknown_districts += 1;
                        report.issue(line, Some(&col.name), "not one of Shanghai's 16 district names", false);
                    }
                    Some(ValueCheck::District) | None => {}
                },
                Cell::Int(v) => {
                    if let Some((lo, hi)) = col.bounds
                        && !((*v as f64) >= lo && (*v as f64) <= hi)
                    {
                        report.columns[i].out_of_bounds += 1;
                        report.issue(line, Some(&col.name), "outside the policy's bounds", false);
                    }
                }
                Cell::Float(v) => {
                    if let Some((lo, hi)) = col.bounds
                        && !(*v >= lo && *v <= hi)
                    {
                        report.columns[i].out_of_bounds += 1;
                        report.issue(line, Some(&col.name), "outside the policy's bounds", false);
                    }
                }
                Cell::Bool(_) | Cell::Date(_) => {}
            }
        }
        for (i, col) in plan.columns.iter().enumerate() {
            let Some((text, ints)) = &col.public_keys else { continue };
            let known = match &cells[i] {
                Cell::Str(s) => text.contains(s.as_str()),
                Cell::Int(v) => ints.contains(v),
                _ => true,
            };
            if !known {
                report.columns[i].outside_public_keys += 1;
                report.issue(
                    line,
                    Some(&col.name),
                    "not among the policy's public keys (never released as a group)",
                    false,
                );
            }
        }
        if !plan.key.is_empty()
            && let Some(h) = key_hash(&cells, &plan.key)
            && !seen_keys.insert(h)
        {
            report.duplicate_keys += 1;
            report.issue(line, None, "repeats the key of an earlier row", false);
        }
        for (i, col) in plan.columns.iter().enumerate() {
            if col.pseudonymize
                && let Cell::Str(s) = &mut cells[i]
            {
                *s = key.pseudonym(s);
            }
        }
        writer.push(&cells)?;
        report.rows_stored += 1;
        if report.rows_stored == 1 {
            fail_point("writing")?;
        }
        Ok(())
    };
    read_rows(reg.file, format, &plan.dataset.fields, &reg.options, &mut sink)?;
    drop(seen_keys);
    let file_name = display_name(reg.file);
    if report.rows_read == 0 {
        return Err(IngestError::Empty {
            file: file_name,
            message: "the file has no data rows".into(),
        });
    }
    let breaches = report.breaches(&reg.options.thresholds);
    if !breaches.is_empty() {
        return Err(IngestError::Quality {
            reasons: breaches,
            report: Box::new(report),
        });
    }
    if report.rows_stored == 0 {
        return Err(IngestError::Empty {
            file: file_name,
            message: "no row could be read".into(),
        });
    }
    let stored = writer.finish()?;
    let (bytes, source_sha256) = file_sha256(reg.file)?;
    let directory = layout::version_name(version);
    let manifest = VersionManifest {
        dataset: id.to_string(),
        version,
        directory: directory.clone(),
        owner: reg.owner.to_string(),
        registered_at: now_rfc3339(),
        source: SourceInfo {
            file_name,
            format,
            encoding: (format == FileFormat::Csv).then(|| reg.options.csv.encoding.as_str().to_string()),
            bytes,
            sha256: source_sha256,
        },
        data_sha256: sha256_hex(format!("{} {}\n", stored.name, stored.sha256).as_bytes()),
        rows: stored.rows,
        files: vec![stored],
        catalog_sha256: sha256_hex(plan.entry_toml.as_bytes()),
        policy_sha256: sha256_hex(plan.policy_text.as_bytes()),
        pseudonym_key_id: key.id().to_string(),
        pseudonymized_columns: plan
            .columns
            .iter()
            .filter(|c| c.pseudonymize)
            .map(|c| c.name.clone())
            .collect(),
        quality: report,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| IngestError::Spec(e.to_string()))?;
    write_synced(&staging.join(MANIFEST), &json)?;
    write_synced(&staging.join(ENTRY), plan.entry_toml.as_bytes())?;
    write_synced(&staging.join(POLICY), plan.policy_text.as_bytes())?;
    sync_dir(&staging)?;
    fail_point("naming")?;
    let version_dir = dataset_dir.join(&directory);
    std::fs::rename(&staging, &version_dir).map_err(io(&version_dir))?;
    cleanup.0 = Some(version_dir.clone());
    sync_dir(&dataset_dir)?;
    // From here the StagedVersion owns the cleanup.
    cleanup.0 = None;
    Ok(StagedVersion {
        layout: layout.clone(),
        dataset_dir,
        version_dir,
        manifest,
        entry_toml: plan.entry_toml,
        policy_text: plan.policy_text,
        committed: false,
        _lock: lock,
    })
}

impl StagedVersion {
    pub fn manifest(&self) -> &VersionManifest {
        &self.manifest
    }

    /// Records the version (`record`, typically the audit ledger), then
    /// makes it current and installs its catalog entry and policy. When
    /// `record` fails, the version is removed and nothing changes.
    pub fn commit(
        mut self,
        record: impl FnOnce(&VersionManifest) -> Result<(), String>,
    ) -> Result<VersionManifest, IngestError> {
        fail_point("recording")?;
        record(&self.manifest).map_err(IngestError::Record)?;
        fail_point("switching")?;
        write_atomic(
            &self.dataset_dir.join(CURRENT),
            format!("{}\n", self.manifest.directory).as_bytes(),
        )?;
        // Current now: whatever happens next, the version stays.
        self.committed = true;
        fail_point("installing")?;
        install(
            &self.layout,
            &self.manifest.dataset,
            &self.entry_toml,
            &self.policy_text,
        )?;
        // Generated data the first registration replaces (raw codes): gone.
        // A job already reading it fails; none can start on it any more.
        let removed = layout::remove_unversioned_parts(&self.dataset_dir)?;
        if removed > 0 {
            tracing::info!(dataset = %self.manifest.dataset, removed, "removed the generated files a registration replaced");
        }
        Ok(self.manifest.clone())
    }
}

impl Drop for StagedVersion {
    fn drop(&mut self) {
        if !self.committed {
            drop(RemoveOnDrop(Some(self.version_dir.clone())));
        }
    }
}

/// Installs a version's entry and policy where the runtime loads them.
fn install(layout: &DataLayout, dataset: &str, entry: &str, policy: &str) -> Result<(), IngestError> {
    for (dir, text) in [(layout.catalog_dir(), entry), (layout.policies_dir(), policy)] {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(format!("{dataset}.toml"));
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            write_atomic(&path, text.as_bytes())?;
        }
    }
    Ok(())
}

/// Reads a dataset's current version's manifest (`None`: not registered).
pub fn current_manifest(layout: &DataLayout, dataset: &DatasetId) -> Result<Option<VersionManifest>, IngestError> {
    let dir = layout.dataset_dir(dataset);
    let Some(name) = layout::current_version_name(&dir)? else {
        return Ok(None);
    };
    let path = dir.join(name).join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| IngestError::Spec(format!("{}: {e}", path.display())))
}

/// Makes the installed catalog entry and policy of every registered
/// dataset those of its current version: repairs a registration killed
/// between switching versions and installing them. Returns the datasets
/// repaired. Cheap when nothing is registered; run before opening the
/// sandbox.
pub fn reconcile(layout: &DataLayout) -> Result<Vec<String>, IngestError> {
    let mut repaired = Vec::new();
    let data = layout.root().join("data");
    let Ok(namespaces) = std::fs::read_dir(&data) else {
        return Ok(repaired);
    };
    for ns in namespaces.flatten() {
        let Ok(tables) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for table in tables.flatten() {
            let dir = table.path();
            let Some(name) = layout::current_version_name(&dir)? else {
                continue;
            };
            let id = format!(
                "{}.{}",
                ns.file_name().to_string_lossy(),
                table.file_name().to_string_lossy()
            );
            let read = |f: &str| {
                let p = dir.join(&name).join(f);
                std::fs::read_to_string(&p).map_err(io(&p))
            };
            let (entry, policy) = (read(ENTRY)?, read(POLICY)?);
            let installed = |d: PathBuf| std::fs::read_to_string(d.join(format!("{id}.toml"))).ok();
            if installed(layout.catalog_dir()).as_deref() != Some(entry.as_str())
                || installed(layout.policies_dir()).as_deref() != Some(policy.as_str())
            {
                install(layout, &id, &entry, &policy)?;
                tracing::info!(dataset = %id, "installed the current version's catalog entry and policy");
                repaired.push(id);
            }
        }
    }
    Ok(repaired)
}

/// Withdraws a dataset: records it (`record`, given the current version's
/// manifest if any), then removes `CURRENT` and every version's files. The
/// catalog entry and policy stay (the dataset is listed, suspended, with no
/// data). Returns the manifest of the version withdrawn.
pub fn withdraw(
    layout: &DataLayout,
    dataset: &DatasetId,
    record: impl FnOnce(Option<&VersionManifest>) -> Result<(), String>,
) -> Result<Option<VersionManifest>, IngestError> {
    let dir = layout.dataset_dir(dataset);
    let _lock = DatasetLock::acquire(&dir, dataset)?;
    let manifest = current_manifest(layout, dataset)?;
    record(manifest.as_ref()).map_err(IngestError::Record)?;
    let current = dir.join(CURRENT);
    match std::fs::remove_file(&current) {
        Ok(()) => sync_dir(&dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&current)(e)),
    }
    for n in layout::version_numbers(&dir)? {
        let v = dir.join(layout::version_name(n));
        std::fs::remove_dir_all(&v).map_err(io(&v))?;
    }
    layout::remove_unversioned_parts(&dir)?;
    Ok(manifest)
}
