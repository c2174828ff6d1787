//! # sandbox-policy
//!
//! Output policies written by data owners (`policies/*.toml`) and catalog
//! entries (`catalog/*.toml`): raw TOML with spans → validated → compiled
//! [`Policy`] values. Every validation error names the file, the line and
//! the field, and a file's errors are reported together.
//!
//! Where it sits on the job path: the runtime loads a [`PolicySet`] once;
//! the SQL and WebAssembly checkers read compiled policies; nothing here
//! touches data. The policy file format is documented in [`raw`].
//!
//! ```
//! use sandbox_policy::{parse_catalog_entry, parse_policy};
//! use sandbox_model::Catalog;
//!
//! let entry = r#"
//! id = "demo.shops"
//! title = "示例门店"
//! provider = { id = "demo", name = "Demo", kind = "enterprise" }
//! domain = "retail"
//! summary = "Shops and their revenue."
//! update_frequency = "yearly"
//! time_coverage = "2024"
//! area_coverage = "上海市"
//! format = "Parquet"
//! open_class = "open"
//! fields = [
//!   { name = "district", type = "utf8", description = "区" },
//!   { name = "revenue", type = "float64", description = "营业收入", unit = "万元" },
//! ]
//! "#;
//! let mut catalog = Catalog::new();
//! catalog.insert(parse_catalog_entry("demo.shops.toml", entry).unwrap()).unwrap();
//!
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
//! revenue = { role = "measure", bounds = [0, 1000] }
//! "#;
//! let p = parse_policy("demo.shops.toml", policy, &catalog).unwrap();
//! assert_eq!(p.column("revenue").unwrap().bounds, Some((0.0, 1000.0)));
//!
//! let broken = policy.replace("min_units = 3", "min_units = 1");
//! let err = parse_policy("policies/demo.shops.toml", &broken, &catalog).unwrap_err();
//! assert!(err.to_string().starts_with("policies/demo.shops.toml:6:13: release.min_units: k (min_units)"));
//! ```

mod catalog;
mod describe;
pub mod desensitize;
mod dir;
mod error;
pub mod files;
pub mod limits;
pub mod model;
pub mod raw;
mod set;
mod span;
mod validate;
mod write;

#[cfg(test)]
mod tests;

pub use catalog::{load_catalog_dir, parse_catalog_entry};
pub use desensitize::{DateUnit, Desensitization};
pub use error::{PolicyError, PolicyErrors};
pub use model::*;
pub use set::{PolicySet, parse_policy};
pub use write::to_toml;
