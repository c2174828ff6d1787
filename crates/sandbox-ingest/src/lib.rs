//! # sandbox-ingest
//!
//! Data onboarding: a data owner registers a file (CSV in UTF-8 or
//! GB18030/GBK, Parquet, or Excel `.xlsx`) as a new version of a dataset,
//! with its catalog entry (开放清单 fields) and output policy (column
//! roles). The file is streamed: each row is coerced to the declared
//! types, checked (nulls, duplicate keys, bounds, 统一社会信用代码 check
//! characters, district names, dates), its `identifier` and `privacy_unit`
//! columns replaced by keyed-hash pseudonyms ([`PseudonymKey`]), and
//! written as Parquet in bounded batches into a staging directory. The
//! [`QualityReport`] is stored with the version and can refuse it
//! ([`Thresholds`]). A [`StagedVersion`] becomes current only when the
//! caller commits it after recording it in the ledger; a failure at any
//! point leaves the previous version and the catalog as they were. The
//! on-disk layout is described in [`layout`].
//!
//! Where it sits: beside the job path, under the CLI (and later the HTTP
//! API); it names the heavy file readers (`csv`, `encoding_rs`, `calamine`)
//! so that no other crate does. Jobs read the versions it writes through
//! DataFusion's listing tables (`sandbox-sql`).
//!
//! ```
//! use sandbox_ingest::{DataLayout, IngestOptions, PseudonymKey, Registration, stage};
//!
//! let root = tempfile::tempdir().unwrap();
//! let layout = DataLayout::new(root.path());
//! let csv = root.path().join("shops.csv");
//! std::fs::write(&csv, "district,revenue\n浦东新区,12.5\n黄浦区,7\n").unwrap();
//! let entry = r#"
//! id = "demo.shops"
//! title = "示例门店"
//! provider = { id = "demo", name = "Demo", kind = "enterprise" }
//! domain = "retail"
//! summary = "Shops and their revenue."
//! update_frequency = "yearly"
//! time_coverage = "2024"
//! area_coverage = "上海市"
//! format = "CSV"
//! open_class = "open"
//! fields = [
//!   { name = "district", type = "utf8", description = "区" },
//!   { name = "revenue", type = "float64", description = "营业收入", unit = "万元" },
//! ]
//! "#;
//! let policy = r#"
//! dataset = "demo.shops"
//! version = "1"
//! [release]
//! mode = "threshold"
//! min_units = 3
//! aggregates = ["count", "sum"]
//! [jobs]
//! sql = true
//! wasm = false
//! [columns]
//! district = { role = "dimension" }
//! revenue = { role = "measure", bounds = [0, 10] }
//! "#;
//! let key = PseudonymKey::from_secret(&[7; 32]).unwrap();
//! let registration = Registration { file: &csv, entry, policy: Some(policy), owner: "demo-owner", options: IngestOptions::default() };
//! let staged = stage(&layout, &key, &registration).unwrap();
//! assert_eq!(staged.manifest().quality.columns[1].out_of_bounds, 1); // 12.5 > 10
//! let manifest = staged.commit(|_| Ok(())).unwrap(); // record it in the ledger here
//! assert_eq!((manifest.version, manifest.rows), (1, 2));
//! assert!(root.path().join("catalog/demo.shops.toml").exists());
//! ```

mod convert;
mod error;
pub mod layout;
mod quality;
mod read;
mod register;
pub mod sample;
mod secret;
mod spec;
mod writer;

#[cfg(test)]
mod tests;

pub use error::IngestError;
pub(crate) use error::io;
pub use layout::DataLayout;
pub use quality::{ColumnQuality, MAX_LISTED_ISSUES, QualityReport, RowIssue};
pub use register::{
    Registration, RegistrationSubject, SourceInfo, StagedVersion, VersionManifest, current_manifest, reconcile,
    registration_subject, sha256_hex, stage, withdraw,
};
pub use sample::{SampleCost, SampleManifest, SampleOptions, current_sample, make_sample, stale_sample_message};
pub use secret::{PSEUDONYM_HEX, PseudonymKey, SECRET_ENV};
pub use spec::{CsvOptions, FileFormat, IngestOptions, TextEncoding, Thresholds, ValueCheck};
pub use writer::{BATCH_ROWS, ROW_GROUP_ROWS, StoredFile, arrow_type};
