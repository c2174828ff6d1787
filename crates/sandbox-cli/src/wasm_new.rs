//! `sandbox wasm new DIR`: a WebAssembly job to start from, wherever the
//! developer keeps it — its own Cargo workspace (so it is never taken for a
//! member of an enclosing one), the SDK by absolute path, a UDF and an
//! analysis with host-side tests, and a README with the commands from
//! `cargo test` to a trial run on the sample data.

use crate::commands::{CliError, fail};
use std::path::{Path, PathBuf};

/// Where this binary's sources put the SDK (`<checkout>/sandbox-sdk/sdk`).
fn built_in_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sandbox-sdk/sdk")
}

/// The crate name for a directory name: lower-case letters, digits and
/// `_`/`-`, starting with a letter.
fn crate_name(dir: &Path) -> Result<String, CliError> {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_lowercase()) && name.len() <= 64 {
        Ok(name)
    } else {
        Err(fail(format!(
            "`{}` does not make a crate name: name the directory with a letter first, then letters, digits, `-` or `_`",
            dir.display()
        )))
    }
}

/// Writes the job's files into `dir`, which must not exist or be empty.
/// `sdk`: the SDK's directory (default: the one of this binary's checkout).
///
/// # Errors
/// A non-empty `dir`, an SDK directory without a `Cargo.toml`, a name that
/// is no crate name, or a write that fails (nothing is left half-written:
/// the files go to a staging directory renamed into place).
pub fn create(dir: &Path, sdk: Option<&Path>) -> Result<String, CliError> {
    let name = crate_name(dir)?;
    let sdk = sdk.map(Path::to_path_buf).unwrap_or_else(built_in_sdk);
    let sdk = sdk
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| {
            fail(format!(
                "no SDK at {}: give --sdk with the path of sandbox-sdk/sdk in your checkout",
                sdk.display()
            ))
        })?;
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(fail(format!(
            "{} exists and is not empty; nothing was written",
            dir.display()
        )));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| fail(format!("{}: {e}", parent.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(".sandbox-wasm-new-")
        .tempdir_in(&parent)
        .map_err(|e| fail(format!("{}: {e}", parent.display())))?;
    let sdk_text = sdk.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    let files = [
        (
            "Cargo.toml",
            CARGO_TOML.replace("{name}", &name).replace("{sdk}", &sdk_text),
        ),
        ("src/lib.rs", LIB_RS.replace("{name}", &name)),
        (
            "README.md",
            README
                .replace("{name}", &name)
                .replace("{file}", &name.replace('-', "_")),
        ),
        (".gitignore", "/target\n".to_string()),
    ];
    // The SDK's own lock file pins the versions its tests ran with.
    if let Some(lock) = sdk.parent().map(|w| w.join("Cargo.lock")).filter(|l| l.is_file()) {
        std::fs::copy(&lock, staging.path().join("Cargo.lock"))
            .map_err(|e| fail(format!("{}: {e}", lock.display())))?;
    }
    for (path, text) in &files {
        let target = staging.path().join(path);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).map_err(|e| fail(format!("{}: {e}", p.display())))?;
        }
        std::fs::write(&target, text).map_err(|e| fail(format!("{}: {e}", target.display())))?;
    }
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        fail(format!("{}: {e}", dir.display()))
    })?;
    Ok(name)
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
sandbox-sdk = { path = "{sdk}" }

[profile.release]
opt-level = 3        # "s" gives a smaller module; 3 runs per-row UDFs ~10 % faster
lto = true
panic = "abort"      # a panic traps the instance; it never unwinds into the host
codegen-units = 1

# The job is a workspace of its own, wherever it is kept.
[workspace]
"#;

const LIB_RS: &str = r#"//! {name}: a sandbox job (see docs/wasm.md of the sandbox).
//!
//! `score` is a UDF a SQL job calls per row; `summary` is an analysis run
//! on blocks of rows (`sandbox wasm run`). Keep either or both.

use sandbox_sdk::{RecordBatch, SdkError, column_f64, export};

/// A UDF: a function of one row's numbers (a NULL arrives as NaN). Its
/// output is clamped to the declared bounds; a NaN output becomes NULL; a
/// panic gives the row the midpoint of the bounds.
fn score(value: f64) -> f64 {
    if value.is_nan() {
        return 0.0;
    }
    (value / 100_000.0).clamp(0.0, 1.0)
}

/// An analysis: a function of one block of rows, one value per declared
/// output. Read columns by the input query's names.
fn summary(batch: &RecordBatch) -> Result<[f64; 2], SdkError> {
    let values: Vec<f64> = column_f64(batch, "value")?.into_iter().filter(|v| !v.is_nan()).collect();
    let mean = if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    };
    Ok([mean, values.len() as f64])
}

export! {
    udf score(value: f64) -> f64 in [0.0, 1.0] => score;
    analysis summary(batch: &RecordBatch) -> [mean in [0.0, 100000.0], rows in [0.0, 10000.0]] => summary;
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_sdk::arrow_array::{ArrayRef, Float64Array};
    use std::sync::Arc;

    fn column(name: &str, values: Vec<Option<f64>>) -> RecordBatch {
        RecordBatch::try_from_iter([(name, Arc::new(Float64Array::from(values)) as ArrayRef)]).expect("batch")
    }

    #[test]
    fn the_udf_scores_each_row() {
        let rows = column("value", vec![Some(50_000.0), None, Some(1e9)]);
        assert_eq!(SANDBOX_JOB.call_udf("score", &rows).expect("runs"), vec![0.5, 0.0, 1.0]);
    }

    #[test]
    fn the_analysis_summarises_a_block() {
        let block = column("value", vec![Some(10.0), Some(30.0), None]);
        assert_eq!(SANDBOX_JOB.analyze(&block).expect("runs"), vec![20.0, 2.0]);
        // An input query without a `value` column: the message the host shows.
        let error = SANDBOX_JOB.analyze(&column("kwh", vec![Some(1.0)])).expect_err("no column");
        assert_eq!(error.message(), "the input has no column `value`");
    }
}
"#;

const README: &str = r#"# {name}

A WebAssembly job for the data sandbox: a UDF `score` and an analysis
`summary` (src/lib.rs). The sandbox's docs/wasm.md explains every part.

```sh
cargo test                                                  # on the host, with your own panics and messages
cargo build --release --target wasm32-unknown-unknown      # -> target/wasm32-unknown-unknown/release/{file}.wasm
M=target/wasm32-unknown-unknown/release/{file}.wasm

# Before spending any budget: the noise per output, then a trial on the public samples.
sandbox wasm run $M --dry-run --input "SELECT electricity_kwh AS value FROM gov.utility_usage"
sandbox wasm run $M --trial   --input "SELECT electricity_kwh AS value FROM gov.utility_usage"
sandbox sql --wasm $M --trial "SELECT month, AVG(score(electricity_kwh)) AS s FROM gov.utility_usage GROUP BY month"

# Then for real, under your agreement (--grant):
sandbox wasm run $M --input "SELECT electricity_kwh AS value FROM gov.utility_usage"
sandbox sql --wasm $M "SELECT month, AVG(score(electricity_kwh)) AS s FROM gov.utility_usage GROUP BY month"
```
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_written_whole_or_not_at_all() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("my-job");
        let name = create(&dir, None).expect("created");
        assert_eq!(name, "my-job");
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        assert!(manifest.contains("name = \"my-job\""), "{manifest}");
        assert!(manifest.contains("[workspace]"), "{manifest}");
        let sdk = built_in_sdk().canonicalize().expect("sdk");
        assert!(
            manifest.contains(&format!("path = \"{}\"", sdk.display())),
            "{manifest}"
        );
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("udf score(value: f64)"), "{lib}");
        assert!(
            std::fs::read_to_string(dir.join("README.md"))
                .expect("readme")
                .contains("my_job.wasm")
        );
        // Not over an existing job, nothing touched.
        let again = create(&dir, None).expect_err("not empty");
        assert!(again.message.contains("not empty"), "{}", again.message);
        assert_eq!(std::fs::read_to_string(dir.join("Cargo.toml")).expect("kept"), manifest);
        // No staging directory left behind.
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("my-job")]);
        // A bad SDK path or name: a clear error, nothing written.
        let e = create(&tmp.path().join("other"), Some(Path::new("/nonexistent/sdk"))).expect_err("no sdk");
        assert!(e.message.contains("--sdk"), "{}", e.message);
        assert!(!tmp.path().join("other").exists());
        let e = create(&tmp.path().join("9lives"), None).expect_err("bad name");
        assert!(e.message.contains("crate name"), "{}", e.message);
    }
}
