//! The generated datasets, their exact Arrow schemas and where they live on
//! disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// 上海 district lookup (public).
pub const DISTRICTS: &str = "gov.districts";
/// 法人库: the legal-entity register.
pub const LEGAL_ENTITIES: &str = "gov.legal_entities";
/// Annual tax payments per entity.
pub const TAX_PAYMENTS: &str = "gov.tax_payments";
/// Monthly electricity, water and gas per entity.
pub const UTILITY_USAGE: &str = "gov.utility_usage";
/// The bank's own loan book.
pub const LOANS: &str = "bank.loans";
/// Person-level clinic visits.
pub const CLINIC_VISITS: &str = "health.clinic_visits";

/// Every dataset this crate generates, in canonical (digest) order.
pub const DATASETS: [&str; 6] = [
    DISTRICTS,
    LEGAL_ENTITIES,
    TAX_PAYMENTS,
    UTILITY_USAGE,
    LOANS,
    CLINIC_VISITS,
];

/// The directory holding a dataset's part files: `out_dir/<namespace>/<table>/`.
/// A dataset id without a dot maps to `out_dir/<dataset>/`.
pub fn table_dir(out_dir: &Path, dataset: &str) -> PathBuf {
    match dataset.split_once('.') {
        Some((namespace, table)) => out_dir.join(namespace).join(table),
        None => out_dir.join(dataset),
    }
}

/// The part file's path relative to `out_dir`, with `/` separators (stable
/// across platforms; used in the digest).
pub(crate) fn relative_part_path(dataset: &str, file_name: &str) -> String {
    match dataset.split_once('.') {
        Some((namespace, table)) => format!("{namespace}/{table}/{file_name}"),
        None => format!("{dataset}/{file_name}"),
    }
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}
fn int64(name: &str) -> Field {
    Field::new(name, DataType::Int64, false)
}
fn float64(name: &str) -> Field {
    Field::new(name, DataType::Float64, false)
}
fn date32(name: &str) -> Field {
    Field::new(name, DataType::Date32, false)
}

/// The exact Arrow schema of a generated dataset (all columns non-null), or
/// `None` for a dataset this crate does not generate.
pub fn schema(dataset: &str) -> Option<SchemaRef> {
    let fields = match dataset {
        DISTRICTS => vec![
            utf8("district"),
            utf8("division_code"),
            float64("area_km2"),
            float64("population_10k"),
        ],
        LEGAL_ENTITIES => vec![
            utf8("credit_code"),
            utf8("name"),
            utf8("district"),
            utf8("industry"),
            float64("registered_capital"),
            date32("founded"),
            int64("insured_employees"),
        ],
        TAX_PAYMENTS => vec![utf8("credit_code"), int64("year"), float64("tax_paid"), float64("vat")],
        UTILITY_USAGE => vec![
            utf8("credit_code"),
            utf8("month"),
            float64("electricity_kwh"),
            float64("water_m3"),
            float64("gas_m3"),
        ],
        LOANS => vec![
            utf8("loan_id"),
            utf8("credit_code"),
            float64("amount"),
            float64("rate"),
            int64("term_months"),
            int64("defaulted"),
        ],
        CLINIC_VISITS => vec![
            utf8("person_id"),
            date32("visit_date"),
            int64("age"),
            utf8("sex"),
            utf8("district"),
            utf8("diagnosis_chapter"),
            float64("cost"),
        ],
        _ => return None,
    };
    Some(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataset_has_a_schema() {
        for dataset in DATASETS {
            assert!(schema(dataset).is_some(), "{dataset}");
        }
        assert!(schema("gov.nothing").is_none());
    }

    #[test]
    fn table_dirs() {
        let root = Path::new("/data");
        assert_eq!(
            table_dir(root, "gov.utility_usage"),
            Path::new("/data/gov/utility_usage")
        );
        assert_eq!(
            relative_part_path("bank.loans", "part-00000.parquet"),
            "bank/loans/part-00000.parquet"
        );
    }
}
