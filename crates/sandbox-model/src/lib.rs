//! # sandbox-model
//!
//! The vocabulary shared by every other crate of the data sandbox: datasets and
//! their fields as listed in the open-data catalog (开放清单), open classes,
//! column roles, privacy units, job requests, released results and usage
//! records. It owns no behaviour beyond validation of its own values and
//! depends on `serde` only, so it builds in seconds.
//!
//! Where it sits on the job path: everything from admission to the ledger
//! speaks these types; nothing here touches data.
//!
//! ```
//! use sandbox_model::{credit_code, DatasetId};
//!
//! let id: DatasetId = "gov.legal_entities".parse().unwrap();
//! assert_eq!(id.namespace(), "gov");
//! assert!(credit_code::validate("91310115MA1H7GQX3T").is_err()); // wrong check character
//! ```

pub mod catalog;
pub mod credit_code;
pub mod districts;
pub mod job;
pub mod release;
pub mod role;

mod error;

pub use catalog::{Catalog, Dataset, DatasetId, Field, FieldType, OpenClass, Provider, ProviderKind};
pub use error::ModelError;
pub use job::{DefaultsCount, JobKind, JobOutcome, UsageRecord};
pub use release::{ReleasedCell, ReleasedColumn, ReleasedTable, Suppression};
pub use role::{ColumnRole, RoleSet};
