//! # sandbox-datagen
//!
//! Deterministic synthetic data for the data sandbox: Shanghai's
//! conditionally-open government data (法人库, tax, utilities, clinic visits,
//! district lookup) fused with a bank's own loan book, for the inclusive
//! finance (普惠金融) scenario. It owns the generated tables' schemas, the
//! on-disk layout (`out_dir/<namespace>/<table>/part-NNNNN.parquet`, one
//! directory per table so a listing table provider reads it as one table) and
//! the statistical model behind the rows; nothing else in the workspace
//! writes these files.
//!
//! Same seed and scale give byte-identical Parquet files. Every table draws
//! from its own ChaCha8 stream derived from the seed, and one shared entity
//! model (credit codes, size, latent health) links the entity-level tables:
//! firms whose utility usage falls default more often on their loans, as do
//! small firms.
//!
//! ```
//! use sandbox_datagen::{generate, table_dir, GenerateOptions, Scale};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let opts = GenerateOptions::new(42, Scale::with_entities(50), dir.path())
//!     .only(["gov.districts", "bank.loans"]);
//! let report = generate(&opts).unwrap();
//! assert_eq!(report.table("gov.districts").unwrap().rows, 16);
//! assert!(table_dir(dir.path(), "bank.loans").join("part-00000.parquet").exists());
//! assert_eq!(report.digest, generate(&opts).unwrap().digest);
//! ```

mod calendar;
mod entities;
mod error;
mod generate;
mod options;
mod pipeline;
mod random;
mod reference;
mod schema;
mod tables;
mod writer;

pub use error::DatagenError;
pub use generate::generate;
pub use options::{GenerateOptions, GenerateReport, MAX_MONTHS, Scale, TableReport};
pub use schema::{
    CLINIC_VISITS, DATASETS, DISTRICTS, LEGAL_ENTITIES, LOANS, TAX_PAYMENTS, UTILITY_USAGE, schema, table_dir,
};

#[cfg(test)]
mod tests;
