//! The entry point: validates the options, derives the shared entity model
//! once, generates each selected table in canonical order and computes the
//! run's digest.

use std::fs;

use sha2::{Digest, Sha256};

use crate::DatagenError;
use crate::entities::{self, Entity};
use crate::options::{GenerateOptions, GenerateReport, TableReport};
use crate::pipeline::write_table;
use crate::schema::{CLINIC_VISITS, DATASETS, DISTRICTS, LEGAL_ENTITIES, LOANS, TAX_PAYMENTS, UTILITY_USAGE};
use crate::tables;
use crate::writer::WrittenTable;

/// Generates the selected tables under `opts.out_dir` and reports what was
/// written. Same seed and scale give byte-identical files.
pub fn generate(opts: &GenerateOptions) -> Result<GenerateReport, DatagenError> {
    opts.validate()?;
    let selected = selected(opts)?;
    fs::create_dir_all(&opts.out_dir).map_err(|e| DatagenError::io("create output directory", &opts.out_dir, e))?;

    let needs_entities = selected
        .iter()
        .any(|&d| matches!(d, LEGAL_ENTITIES | TAX_PAYMENTS | UTILITY_USAGE | LOANS));
    let entities: Vec<Entity> = if needs_entities {
        entities::derive(opts.seed, opts.scale.entities)?
    } else {
        Vec::new()
    };

    let mut written = Vec::with_capacity(selected.len());
    for dataset in selected {
        written.push(generate_table(opts, dataset, &entities)?);
    }
    Ok(report(&written))
}

fn generate_table(
    opts: &GenerateOptions,
    dataset: &'static str,
    entities: &[Entity],
) -> Result<WrittenTable, DatagenError> {
    let (out, seed, rows_per_file) = (&opts.out_dir, opts.seed, opts.rows_per_file);
    match dataset {
        DISTRICTS => write_table(out, dataset, rows_per_file, tables::districts::produce),
        LEGAL_ENTITIES => write_table(out, dataset, rows_per_file, |emit| {
            tables::legal_entities::produce(seed, entities, emit)
        }),
        TAX_PAYMENTS => write_table(out, dataset, rows_per_file, |emit| {
            tables::tax_payments::produce(seed, entities, emit)
        }),
        UTILITY_USAGE => write_table(out, dataset, rows_per_file, |emit| {
            tables::utility_usage::produce(seed, entities, opts.scale.months, emit)
        }),
        LOANS => write_table(out, dataset, rows_per_file, |emit| {
            tables::loans::produce(seed, entities, emit)
        }),
        CLINIC_VISITS => {
            let persons = opts.scale.persons;
            write_table(out, dataset, rows_per_file, |emit| {
                tables::clinic_visits::produce(seed, persons, emit)
            })
        }
        other => Err(unknown(other)),
    }
}

/// The datasets to generate, in canonical order.
fn selected(opts: &GenerateOptions) -> Result<Vec<&'static str>, DatagenError> {
    let Some(only) = &opts.only else {
        return Ok(DATASETS.to_vec());
    };
    if let Some(name) = only.iter().find(|n| !DATASETS.contains(&n.as_str())) {
        return Err(unknown(name));
    }
    Ok(DATASETS.into_iter().filter(|d| only.iter().any(|n| n == d)).collect())
}

fn unknown(name: &str) -> DatagenError {
    DatagenError::UnknownDataset {
        name: name.to_owned(),
        known: DATASETS.join(", "),
    }
}

fn report(written: &[WrittenTable]) -> GenerateReport {
    let mut digest = Sha256::new();
    let mut tables = Vec::with_capacity(written.len());
    for table in written {
        for file in &table.files {
            digest.update(file.relative.as_bytes());
            digest.update(b"\n");
            digest.update(file.bytes.to_le_bytes());
            digest.update(file.sha256);
        }
        tables.push(TableReport {
            dataset: table.dataset.clone(),
            rows: table.rows,
            files: table.files.iter().map(|f| f.path.clone()).collect(),
            bytes: table.files.iter().map(|f| f.bytes).sum(),
        });
    }
    GenerateReport {
        tables,
        digest: hex::encode(digest.finalize()),
    }
}
