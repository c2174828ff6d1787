//! Catalog metadata for SQL clients and BI tools (GetCatalogs,
//! GetDbSchemas, GetTables): the tables a caller may query, and only those
//! — the datasets of the caller's active agreements, each with the columns
//! its agreement covers. A dataset's namespace is the schema (`gov`), its
//! table the table (`tax_payments`), in the session's catalog `sandbox`.
//! Names and column types are catalog facts, never data.

use crate::auth::Caller;
use crate::error::governance_status;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::{CommandGetCatalogs, CommandGetDbSchemas, CommandGetTables};
use sandbox_model::FieldType;
use sandbox_runtime::Sandbox;
use std::collections::BTreeMap;
use tonic::Status;

/// The table type every dataset is listed as.
const TABLE_TYPE: &str = "TABLE";

/// One table a caller may query: schema (namespace), table and the
/// columns its agreements cover.
pub(crate) struct CoveredTable {
    pub schema: String,
    pub table: String,
    pub columns: Schema,
}

fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::Utf8 => DataType::Utf8,
        FieldType::Int64 => DataType::Int64,
        FieldType::Float64 => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Date => DataType::Date32,
    }
}

/// The tables of the caller's active agreements (none for an owner or the
/// operator, who run no jobs), sorted by schema and table.
pub(crate) fn covered_tables(sandbox: &Sandbox, who: &Caller) -> Result<Vec<CoveredTable>, Status> {
    let agreements = sandbox
        .store()
        .agreements_held_by(&who.account)
        .map_err(|e| governance_status(&e))?;
    // dataset -> covered column names (`None`: all of them).
    let mut covered: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
    for agreement in agreements.iter().filter(|a| a.status == "active") {
        for dataset in &agreement.terms.datasets {
            let prefix = format!("{dataset}.");
            let names: Vec<String> = agreement
                .terms
                .columns
                .iter()
                .filter_map(|c| c.strip_prefix(&prefix).map(str::to_string))
                .collect();
            let all = names.iter().any(|n| n == "*");
            let entry = covered.entry(dataset.to_string()).or_insert(Some(Vec::new()));
            match (entry.as_mut(), all) {
                (_, true) => *entry = None,
                (Some(list), false) => list.extend(names),
                (None, false) => {}
            }
        }
    }
    let mut tables = Vec::new();
    for dataset in sandbox.catalog().iter() {
        let Some(columns) = covered.get(dataset.id.as_str()) else {
            continue;
        };
        let fields: Vec<Field> = dataset
            .fields
            .iter()
            .filter(|f| columns.as_ref().is_none_or(|c| c.contains(&f.name)))
            .map(|f| Field::new(&f.name, arrow_type(f.data_type), true))
            .collect();
        tables.push(CoveredTable {
            schema: dataset.id.namespace().to_string(),
            table: dataset.id.table().to_string(),
            columns: Schema::new(fields),
        });
    }
    tables.sort_by(|a, b| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)));
    Ok(tables)
}

/// GetCatalogs: the one catalog, when the caller may query anything.
pub(crate) fn catalogs(query: CommandGetCatalogs, tables: &[CoveredTable]) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    if !tables.is_empty() {
        builder.append(sandbox_sql::session::CATALOG);
    }
    builder.build().map_err(Status::from)
}

/// GetDbSchemas: the namespaces of the caller's tables (the command's
/// catalog and schema pattern applied by the builder).
pub(crate) fn db_schemas(query: CommandGetDbSchemas, tables: &[CoveredTable]) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    let mut seen = std::collections::BTreeSet::new();
    for t in tables {
        if seen.insert(t.schema.as_str()) {
            builder.append(sandbox_sql::session::CATALOG, &t.schema);
        }
    }
    builder.build().map_err(Status::from)
}

/// GetTables: the caller's tables, with their covered columns when asked
/// (the command's filters applied by the builder).
pub(crate) fn tables(query: CommandGetTables, tables: &[CoveredTable]) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    for t in tables {
        builder
            .append(
                sandbox_sql::session::CATALOG,
                &t.schema,
                &t.table,
                TABLE_TYPE,
                &t.columns,
            )
            .map_err(Status::from)?;
    }
    builder.build().map_err(Status::from)
}
