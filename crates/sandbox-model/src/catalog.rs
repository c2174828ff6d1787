//! The open-data catalog (开放清单): what each dataset is, who provides it,
//! what its fields mean, and in which open class it sits.

use crate::ModelError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A dataset's id, `namespace.table` (for example `gov.tax_payments`). The
/// namespace is the provider's short name; it doubles as the SQL schema.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatasetId {
    full: String,
    dot: usize,
}

impl DatasetId {
    pub fn namespace(&self) -> &str {
        &self.full[..self.dot]
    }
    pub fn table(&self) -> &str {
        &self.full[self.dot + 1..]
    }
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl FromStr for DatasetId {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('.') {
            Some((ns, table)) if valid_part(ns) && valid_part(table) => Ok(DatasetId {
                full: s.to_string(),
                dot: ns.len(),
            }),
            _ => Err(ModelError::InvalidDatasetId(s.to_string())),
        }
    }
}

impl TryFrom<String> for DatasetId {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DatasetId> for String {
    fn from(id: DatasetId) -> String {
        id.full
    }
}

impl fmt::Display for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// The three open classes of Shanghai's public-data rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenClass {
    /// 无条件开放: anyone may use it; no application needed.
    Open,
    /// 有条件开放: only under an approved application and signed agreement,
    /// and only through the sandbox.
    Conditional,
    /// 非开放: cannot be applied for.
    Closed,
}

impl OpenClass {
    pub fn label(self) -> &'static str {
        match self {
            OpenClass::Open => "open (无条件开放)",
            OpenClass::Conditional => "conditional (有条件开放)",
            OpenClass::Closed => "closed (非开放)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// A government department (数据提供部门).
    Government,
    /// An enterprise bringing its own data into the sandbox.
    Enterprise,
}

/// The data owner: who provides a dataset and writes its output policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
}

/// Physical types a catalog field may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Utf8,
    Int64,
    Float64,
    Boolean,
    Date,
}

impl FieldType {
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::Int64 | FieldType::Float64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: FieldType,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub id: DatasetId,
    pub title: String,
    pub provider: Provider,
    pub domain: String,
    pub summary: String,
    pub update_frequency: String,
    pub time_coverage: String,
    pub area_coverage: String,
    pub format: String,
    pub open_class: OpenClass,
    /// What an applicant must provide or accept (required for `conditional`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_conditions: Option<String>,
    pub fields: Vec<Field>,
    /// Declared upper bounds on how many rows share one (non-null) value of
    /// a column, e.g. `{ credit_code = 24 }` for one row per enterprise and
    /// month over 24 months; 1 declares a unique column. A key of columns
    /// joined by `+` bounds the rows sharing one combination of their
    /// values, NULL counting as a value: `{ "credit_code+month" = 1 }`
    /// declares one row per enterprise and month. The runtime
    /// verifies each declaration against the data files before using it
    /// (a violated declaration is reported to the owner and ignored), and
    /// uses verified ones to skip contribution bounding that cannot bind
    /// (docs/policy.md). Being declared, the bounds are public: a plan chosen
    /// from them reveals nothing about the data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_rows_per_value: BTreeMap<String, u64>,
}

impl Dataset {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Checks the entry's own consistency (not its policy).
    pub fn validate(&self) -> Result<(), ModelError> {
        let err = |message: String| ModelError::InvalidDataset {
            dataset: self.id.to_string(),
            message,
        };
        if self.fields.is_empty() {
            return Err(err("has no fields".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.fields {
            if !valid_column_name(&f.name) {
                return Err(err(format!(
                    "field name `{}` must be lower-case letters, digits and `_`",
                    f.name
                )));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(err(format!("field `{}` is listed twice", f.name)));
            }
            if f.description.trim().is_empty() {
                return Err(err(format!("field `{}` needs a description", f.name)));
            }
        }
        for (column, &rows) in &self.max_rows_per_value {
            let parts: Vec<&str> = column.split('+').collect();
            if let Some(missing) = parts.iter().find(|c| self.field(c).is_none()) {
                return Err(err(format!(
                    "max_rows_per_value names `{missing}`, which is not a field"
                )));
            }
            let distinct: std::collections::BTreeSet<&str> = parts.iter().copied().collect();
            if distinct.len() != parts.len() {
                return Err(err(format!("max_rows_per_value `{column}` names a column twice")));
            }
            if rows == 0 {
                return Err(err(format!(
                    "max_rows_per_value for `{column}` must be at least 1 (1 declares a unique column)"
                )));
            }
        }
        match (self.open_class, &self.open_conditions) {
            (OpenClass::Conditional, None) => Err(err("a conditional dataset must state its open_conditions".into())),
            (OpenClass::Conditional, Some(c)) if c.trim().is_empty() => {
                Err(err("a conditional dataset must state its open_conditions".into()))
            }
            _ => Ok(()),
        }
    }
}

pub(crate) fn valid_column_name(s: &str) -> bool {
    valid_part(s)
}

/// All catalog entries, keyed by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    datasets: BTreeMap<DatasetId, Dataset>,
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, dataset: Dataset) -> Result<(), ModelError> {
        dataset.validate()?;
        if self.datasets.contains_key(&dataset.id) {
            return Err(ModelError::DuplicateDataset(dataset.id.to_string()));
        }
        self.datasets.insert(dataset.id.clone(), dataset);
        Ok(())
    }

    pub fn get(&self, id: &DatasetId) -> Option<&Dataset> {
        self.datasets.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Dataset> {
        self.datasets.values()
    }

    pub fn len(&self) -> usize {
        self.datasets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_ids_parse_and_reject() {
        let id: DatasetId = "bank.loans".parse().expect("valid");
        assert_eq!((id.namespace(), id.table()), ("bank", "loans"));
        for bad in ["loans", "Bank.loans", "a.b.c", ".x", "x.", "a.b-c", "a. b"] {
            assert!(bad.parse::<DatasetId>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_row_bound_key_of_several_columns_names_fields_once_each() {
        let text = include_str!("../../../catalog/gov.utility_usage.toml");
        let entry: Dataset = toml::from_str(text).expect("the shipped entry");
        entry.validate().expect("valid");
        assert_eq!(entry.max_rows_per_value.get("credit_code+month"), Some(&1));
        for (key, expected) in [
            ("credit_code+nope", "names `nope`, which is not a field"),
            ("credit_code+credit_code", "names a column twice"),
            ("credit_code+", "names ``, which is not a field"),
        ] {
            let mut bad = entry.clone();
            bad.max_rows_per_value.insert(key.into(), 1);
            let e = bad.validate().expect_err(key).to_string();
            assert!(e.contains(expected), "{key}: {e}");
        }
    }
}
