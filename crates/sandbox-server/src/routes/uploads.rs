//! Registration over HTTP: a data owner uploads a file (streamed to disk,
//! size-limited) and then registers it as a new version of one of its
//! datasets, exactly as `sandbox dataset register` does (`sandbox-ingest`:
//! checks, quality report, pseudonyms, atomic switch, ledger record).
//!
//! ```text
//! PUT  /v1/datasets/{dataset}/upload     body: the file (CSV, Parquet or .xlsx), streamed
//! POST /v1/datasets/{dataset}/register   JSON: entry, policy, reading options → the version's manifest
//! ```
//!
//! An upload goes to `<root>/uploads/<dataset>/<account>.part` and is
//! renamed `.ready` only when the whole body arrived within the limit; a
//! failed or truncated upload removes its part file, and a new upload
//! replaces the previous one, so an interrupted upload is restarted by
//! sending it again. The upload is removed once registered (or refused).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body as JsonBody, PathParam};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use futures::StreamExt;
use sandbox_ingest::{DataLayout, FileFormat, IngestError, IngestOptions, PseudonymKey, Registration, TextEncoding};
use sandbox_model::{Dataset, DatasetId};
use sandbox_runtime::registrant;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;
use utoipa::ToSchema;

/// What an upload stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    pub dataset: String,
    pub bytes: u64,
    /// SHA-256 of the bytes received.
    pub sha256: String,
    pub note: String,
}

/// How to read and check an uploaded file (the CLI's `dataset register` options).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The catalog entry, TOML or JSON; default: the installed one.
    #[serde(default)]
    pub entry: Option<String>,
    /// The output policy (TOML); default: the installed one (required for a new dataset).
    #[serde(default)]
    pub policy: Option<String>,
    /// `csv`, `parquet` or `xlsx` (default: Parquet or .xlsx when the file's
    /// first bytes say so, else CSV).
    #[serde(default)]
    pub format: Option<String>,
    /// CSV encoding: `utf-8` (default), `gb18030` or `gbk`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// CSV delimiter, one ASCII character (default `,`).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// The file has a header line (default true).
    #[serde(default)]
    pub header: Option<bool>,
    /// Key columns; duplicates on them are counted.
    #[serde(default)]
    pub key: Vec<String>,
    /// Refuse when more rows than this cannot be read (default 0).
    #[serde(default)]
    pub max_rejected_rows: Option<u64>,
    /// Refuse when more rows than this repeat a key (default 0).
    #[serde(default)]
    pub max_duplicate_keys: Option<u64>,
}

/// `<root>/uploads/<dataset>/`, and the caller's file in it (named by a
/// digest of the account, so no account name reaches a path).
fn upload_paths(state: &AppState, dataset: &DatasetId, account: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = state.sandbox.data_dir().root().join("uploads").join(dataset.as_str());
    let name = hex::encode(&Sha256::digest(account.as_bytes())[..12]);
    (
        dir.clone(),
        dir.join(format!("{name}.part")),
        dir.join(format!("{name}.ready")),
    )
}

/// How many datasets one account may have an upload waiting for (stored,
/// complete or in progress, not yet registered): each holds up to
/// `--max-upload-bytes` of disk until it is registered or replaced.
pub const MAX_WAITING_UPLOADS: usize = 4;

/// The datasets other than `except` for which `account` has an upload
/// waiting, by id.
fn waiting_uploads(state: &AppState, account: &str, except: &DatasetId) -> Vec<String> {
    let root = state.sandbox.data_dir().root().join("uploads");
    let mut waiting: Vec<String> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id: DatasetId = name.parse().ok()?;
            let (_, part, ready) = upload_paths(state, &id, account);
            (id != *except && (part.is_file() || ready.is_file())).then_some(name)
        })
        .collect();
    waiting.sort();
    waiting
}

fn dataset_id(dataset: &str) -> ApiResult<DatasetId> {
    dataset
        .parse()
        .map_err(|e| ApiError::invalid(format!("`{dataset}` is not a dataset id: {e}")))
}

/// An owner may upload for its provider's datasets, and for a dataset id
/// not in the catalog yet (the entry it registers names the provider); an
/// applicant with an active agreement for its own enterprise provider's
/// datasets and new ids (see [`sandbox_runtime::registrant`]).
fn check_owner(state: &AppState, caller: &Caller, id: &DatasetId) -> ApiResult<()> {
    let catalog = state.sandbox.catalog();
    Ok(registrant::may_upload(
        state.sandbox.store(),
        &catalog,
        &caller.account,
        id,
    )?)
}

/// Uploads a file to register (data owners): the body is the file, streamed
/// to disk; at most `--max-upload-bytes` (default 1 GiB). Sending it
/// again restarts the upload.
#[utoipa::path(put, path = "/v1/datasets/{dataset}/upload", tag = "catalog", security(("bearer" = [])),
    params(("dataset" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file: CSV, Parquet or .xlsx"),
    responses((status = 201, body = Uploaded), (status = 403, body = crate::ErrorBody), (status = 413, body = crate::ErrorBody)))]
pub async fn upload_data(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(dataset): PathParam<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Uploaded>)> {
    let admitted = caller.and_then(|caller| {
        let id = dataset_id(&dataset)?;
        check_owner(&state, &caller, &id)?;
        Ok((caller, id))
    });
    let (caller, id) = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => {
            drain_before_refusing(body).await;
            return Err(refusal);
        }
    };
    let (dir, part, ready) = upload_paths(&state, &id, &caller.account);
    let waiting = waiting_uploads(&state, &caller.account, &id);
    if waiting.len() >= MAX_WAITING_UPLOADS {
        drain_before_refusing(body).await;
        return Err(ApiError::refused(
            "upload-quota",
            format!(
                "you have {} uploads waiting to be registered ({}); register them first (a registration \
                 call removes its upload, whether it registers or is refused), or upload again to one of \
                 those datasets, which replaces your upload there",
                waiting.len(),
                waiting.join(", ")
            ),
        ));
    }
    let io = |e: std::io::Error| {
        tracing::error!(error = %e, "an upload could not be stored");
        ApiError::internal("the upload could not be stored; the operator's log has the details")
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    // A new upload starts over: the previous one (complete or not) goes.
    let _ = std::fs::remove_file(&ready);
    let limit = state.uploads.max_bytes;
    let result: ApiResult<(u64, String)> = async {
        let mut file = std::fs::File::create(&part).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|_| ApiError::invalid("the upload was interrupted; nothing was kept, send it again"))?;
            bytes += chunk.len() as u64;
            if bytes > limit {
                return Err(ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "too_large",
                    rule: None,
                    message: format!("the upload is over {limit} bytes (--max-upload-bytes); nothing was kept"),
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io)?;
        }
        if bytes == 0 {
            return Err(ApiError::invalid("the upload is empty; nothing was kept"));
        }
        file.sync_all().map_err(io)?;
        Ok((bytes, hex::encode(hasher.finalize())))
    }
    .await;
    match result {
        Ok((bytes, sha256)) => {
            std::fs::rename(&part, &ready).map_err(io)?;
            Ok((
                StatusCode::CREATED,
                Json(Uploaded {
                    dataset: id.to_string(),
                    bytes,
                    sha256,
                    note: format!("uploaded; register it with POST /v1/datasets/{id}/register"),
                }),
            ))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

/// How much of a refused upload's body is read (and discarded) before the
/// refusal is sent.
const REFUSAL_DRAIN_BYTES: usize = 1 << 20;
/// How long a refused upload's body is read before the refusal is sent.
const REFUSAL_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards up to [`REFUSAL_DRAIN_BYTES`] of a refused upload, for
/// at most [`REFUSAL_DRAIN_TIME`]. A client that sends its body without
/// waiting for `100 Continue` (most do) is still writing when the refusal is
/// ready; answering and closing at once resets the connection under it, and
/// it sees "broken pipe" instead of the 401/403 that says why. Larger bodies
/// are cut off all the same: nothing of a refused upload is stored.
async fn drain_before_refusing(body: Body) {
    let drain = async {
        let mut stream = body.into_data_stream();
        let mut read = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > REFUSAL_DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_DRAIN_TIME, drain).await;
}

fn ingest_error(e: IngestError) -> ApiError {
    match e {
        IngestError::Quality { .. } => ApiError::refused("quality-thresholds", e.to_string()),
        IngestError::Busy(m) => ApiError::conflict(m),
        IngestError::Io { .. } | IngestError::Parquet(_) | IngestError::Record(_) | IngestError::Secret { .. } => {
            tracing::error!(error = %e, "a registration failed");
            ApiError::internal("the registration failed and nothing was registered; the operator's log has the details")
        }
        other => ApiError::invalid(other.to_string()),
    }
}

fn options(r: &RegisterRequest) -> ApiResult<IngestOptions> {
    let invalid = |e: IngestError| ApiError::invalid(e.to_string());
    let mut o = IngestOptions {
        format: r
            .format
            .as_deref()
            .map(FileFormat::parse)
            .transpose()
            .map_err(invalid)?,
        key: r.key.clone(),
        ..Default::default()
    };
    if let Some(e) = &r.encoding {
        o.csv.encoding = TextEncoding::parse(e).map_err(invalid)?;
    }
    if let Some(d) = &r.delimiter {
        o.csv.delimiter = match d.as_bytes() {
            [b] if b.is_ascii() => *b,
            _ => return Err(ApiError::invalid("delimiter: one ASCII character")),
        };
    }
    o.csv.header = r.header.unwrap_or(true);
    o.thresholds.max_rejected_rows = Some(r.max_rejected_rows.unwrap_or(0));
    o.thresholds.max_duplicate_keys = Some(r.max_duplicate_keys.unwrap_or(0));
    Ok(o)
}

fn parse_entry(text: &str) -> ApiResult<Dataset> {
    let parsed = if text.trim_start().starts_with('{') {
        serde_json::from_str::<Dataset>(text).map_err(|e| e.to_string())
    } else {
        sandbox_policy::parse_catalog_entry("entry", text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::invalid(format!("not a catalog entry: {e}")))
}

/// Removes an upload when dropped (the end of the call that registers it).
struct UploadDone(PathBuf);

impl Drop for UploadDone {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.0.display(), %e, "an upload could not be removed");
        }
    }
}

/// Registers the caller's upload as a new version (data owners): checked,
/// pseudonymized, made current for jobs that start afterwards, recorded in
/// the ledger; answers the version's manifest with its quality report. A
/// refusal registers nothing. Either way the upload is removed.
#[utoipa::path(post, path = "/v1/datasets/{dataset}/register", tag = "catalog", security(("bearer" = [])),
    params(("dataset" = String, Path)), request_body = RegisterRequest,
    responses((status = 201, description = "the version's manifest with its quality report", content_type = "application/json"),
        (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn register_upload(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(dataset): PathParam<String>,
    JsonBody(request): JsonBody<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let id = dataset_id(&dataset)?;
    // Registered or refused, the call ends the caller's upload: a raw file
    // never waits in the sandbox after the call that names it.
    let (_, _, ready) = upload_paths(&state, &id, &caller.account);
    let _upload = UploadDone(ready.clone());
    check_owner(&state, &caller, &id)?;
    let root = state.sandbox.data_dir().root().to_path_buf();
    let entry = match &request.entry {
        Some(e) => e.clone(),
        None => std::fs::read_to_string(root.join("catalog").join(format!("{id}.toml")))
            .map_err(|_| ApiError::invalid(format!("{id} is not in the catalog: give its entry")))?,
    };
    let parsed = parse_entry(&entry)?;
    if parsed.id != id {
        return Err(ApiError::invalid(format!("the entry is for {}, not {id}", parsed.id)));
    }
    // Who may register it is decided on the validated entry and policy,
    // before a row is read.
    let subject = sandbox_ingest::registration_subject(&DataLayout::new(&root), &entry, request.policy.as_deref())
        .map_err(ingest_error)?;
    let registrant = registrant::registrant(
        state.sandbox.store(),
        &state.sandbox.catalog(),
        &caller.account,
        &subject.dataset,
        &subject.fusion_partners,
    )?;
    if !ready.is_file() {
        return Err(ApiError::not_found(format!(
            "no complete upload of {id} from you; PUT /v1/datasets/{id}/upload first"
        )));
    }
    let mut options = options(&request)?;
    if options.format.is_none() {
        // An upload has no file name: its first bytes say what it is.
        let mut head = [0u8; 4];
        let n = std::fs::File::open(&ready)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .unwrap_or(0);
        options.format = Some(match &head[..n] {
            b"PAR1" => FileFormat::Parquet,
            b"PK\x03\x04" => FileFormat::Xlsx,
            _ => FileFormat::Csv,
        });
    }
    let policy = request.policy.clone();
    let account = caller.account.clone();
    let sandbox = state.sandbox.clone();
    let file = ready.clone();
    let key_path = state.uploads.pseudonym_key.clone().or_else(PseudonymKey::default_path);
    let manifest = tokio::task::spawn_blocking(move || -> ApiResult<sandbox_ingest::VersionManifest> {
        let key_path = key_path
            .ok_or_else(|| ApiError::internal("no place for the pseudonymization secret (SANDBOX_PSEUDONYM_KEY)"))?;
        let key = PseudonymKey::load_or_create(&key_path, &root).map_err(ingest_error)?;
        let registration = Registration {
            file: &file,
            entry: &entry,
            policy: policy.as_deref(),
            owner: &account,
            options,
        };
        let staged = sandbox_ingest::stage(&DataLayout::new(&root), &key, &registration);
        // The store's refusal (the provider is no longer the applicant's),
        // kept to answer with its rule.
        let mut refusal = None;
        let manifest = staged.map_err(ingest_error)?.commit(|m| {
            let record = sandbox_runtime::registrant::version_record(m);
            registrant.record(sandbox.store(), &record).map_err(|e| {
                let text = e.to_string();
                refusal = Some(e);
                text
            })
        });
        if let Some(e) = refusal {
            return Err(e.into());
        }
        let manifest = manifest.map_err(ingest_error)?;
        // In the catalog at once (and its entry and policy in the ledger).
        if let Err(e) = sandbox.refresh() {
            tracing::warn!(error = %e, "the catalog could not be reloaded after a registration");
        }
        Ok(manifest)
    })
    .await
    .map_err(|_| ApiError::internal("the registration did not finish"))??;
    // Where jobs read tables from an object store, the new version is read
    // only once it is published there.
    if let Ok(id) = manifest.dataset.parse::<sandbox_model::DatasetId>()
        && let Err(e) = state.sandbox.publish(&id).await
    {
        tracing::error!(dataset = %id, error = %e, "registered, but not published");
        return Err(ApiError::internal(
            "the version is registered, but could not be published where jobs read it; the operator log has the cause \
             (`sandbox dataset publish` retries)",
        ));
    }
    // The catalog's row bounds are checked on the new files in the
    // background (minutes at 100M rows), so that the first job finds the
    // result instead of counting; a job that starts before it ends counts
    // for itself.
    if let Ok(id) = manifest.dataset.parse::<sandbox_model::DatasetId>() {
        let sandbox = state.sandbox.clone();
        tokio::spawn(async move {
            match sandbox.verify_declared_row_bounds(&id).await {
                Ok(v) if !v.violated.is_empty() => {
                    tracing::warn!(dataset = %id, violated = ?v.violated, "registered data break the catalog's max_rows_per_value declarations")
                }
                Ok(v) => tracing::info!(dataset = %id, holds = ?v.holds, "max_rows_per_value declarations verified"),
                Err(e) => tracing::warn!(dataset = %id, error = %e, "max_rows_per_value declarations not verified"),
            }
        });
    }
    let value = serde_json::to_value(&manifest).map_err(|_| ApiError::internal("the manifest could not be written"))?;
    Ok((StatusCode::CREATED, Json(value)))
}
