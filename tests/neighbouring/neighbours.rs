//! The database D (the small synthetic data, seed 42) and its neighbours:
//! copies of D without every row of one privacy unit.

use sandbox_datagen::{GenerateOptions, Scale};
use sandbox_governance::Grant;
use sandbox_runtime::{DataDir, Sandbox};
use sandbox_sql::datafusion::arrow::array::{AsArray, RecordBatch};
use sandbox_sql::datafusion::parquet::arrow::ArrowWriter;
use sandbox_sql::datafusion::prelude::{ParquetReadOptions, SessionContext};
use std::path::{Path, PathBuf};

pub const GRANT: &str = "neighbouring";

/// Datasets whose privacy unit is the enterprise, with its column.
const ENTERPRISE_TABLES: &[(&str, &str)] = &[
    ("gov.legal_entities", "credit_code"),
    ("gov.tax_payments", "credit_code"),
    ("gov.utility_usage", "credit_code"),
    ("bank.loans", "credit_code"),
];
const PERSON_TABLES: &[(&str, &str)] = &[("health.clinic_visits", "person_id")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Enterprise,
    Person,
}

/// D minus one privacy unit.
#[derive(Debug)]
pub struct Neighbour {
    pub label: String,
    pub entity: Entity,
    root: PathBuf,
}

impl Neighbour {
    /// Whether removing this unit can change the query's input at all.
    pub fn touches(&self, sql: &str) -> bool {
        let reads_persons = sql.contains("clinic_visits");
        let reads_enterprises = ["legal_entities", "tax_payments", "utility_usage", "bank.loans"]
            .iter()
            .any(|t| sql.contains(t));
        match self.entity {
            Entity::Person => reads_persons,
            Entity::Enterprise => reads_enterprises,
        }
    }
}

/// Values of D the attack shapes aim at (they single out the rare units).
#[derive(Debug, Clone)]
pub struct Facts {
    /// A founding date only one enterprise has, and that enterprise's values.
    pub rare_date: String,
    pub rare_capital: f64,
    pub rare_employees: i64,
    pub rare_district: String,
    /// Nine later founding dates, for padding a group to k = 10.
    pub padding_until: String,
    /// The cost of the most expensive visit of the person with most visits.
    pub top_cost: f64,
}

pub struct World {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    pub neighbours: Vec<Neighbour>,
    pub facts: Facts,
}

fn table_dir(root: &Path, dataset: &str) -> PathBuf {
    DataDir::open(root)
        .expect("data dir")
        .table_dir(&dataset.parse().expect("dataset id"))
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn query(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    block_on(async { ctx.sql(sql).await.expect("plan").collect().await.expect("collect") })
}

fn first_string(batches: &[RecordBatch], column: usize) -> String {
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    let c = sandbox_sql::datafusion::arrow::compute::cast(
        b.column(column),
        &sandbox_sql::datafusion::arrow::datatypes::DataType::Utf8,
    )
    .expect("cast");
    c.as_string::<i32>().value(0).to_string()
}

impl World {
    pub fn build() -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("d");
        let dir = DataDir::open(&base).expect("data dir");
        sandbox_datagen::generate(&GenerateOptions {
            seed: 42,
            scale: Scale::small(),
            out_dir: dir.tables_dir(),
            rows_per_file: 1_000_000,
            only: None,
        })
        .expect("generate");
        let ctx = SessionContext::new();
        for (dataset, _) in ENTERPRISE_TABLES.iter().chain(PERSON_TABLES) {
            let name = dataset.replace('.', "_");
            let path = format!("{}/", table_dir(&base, dataset).display());
            block_on(ctx.register_parquet(&name, &path, ParquetReadOptions::default())).expect("register");
        }
        let pick = |sql: &str| first_string(&query(&ctx, sql), 0);
        let rare = query(
            &ctx,
            "SELECT e.credit_code, CAST(e.founded AS VARCHAR) AS f, e.registered_capital, e.insured_employees, e.district
             FROM gov_legal_entities e JOIN
               (SELECT founded AS once FROM gov_legal_entities GROUP BY founded HAVING COUNT(*) = 1) o ON e.founded = o.once
             ORDER BY f LIMIT 1",
        );
        let rare_code = first_string(&rare, 0);
        let rare_date = first_string(&rare, 1);
        let rare_capital: f64 = first_string(&rare, 2).parse().expect("capital");
        let rare_employees: i64 = first_string(&rare, 3).parse().expect("employees");
        let rare_district = first_string(&rare, 4);
        let padding_until = pick(&format!(
            "SELECT CAST(founded AS VARCHAR) AS f FROM gov_legal_entities WHERE founded >= DATE '{rare_date}'
             ORDER BY f LIMIT 1 OFFSET 9"
        ));
        let richest =
            pick("SELECT credit_code FROM gov_legal_entities ORDER BY registered_capital DESC, credit_code LIMIT 1");
        let borrower =
            pick("SELECT credit_code FROM bank_loans GROUP BY credit_code ORDER BY COUNT(*) DESC, credit_code LIMIT 1");
        let taxpayer = pick("SELECT credit_code FROM gov_tax_payments ORDER BY tax_paid DESC, credit_code LIMIT 1");
        let ordinary = pick("SELECT credit_code FROM gov_legal_entities ORDER BY credit_code LIMIT 1 OFFSET 777");
        let patient = pick(
            "SELECT person_id FROM health_clinic_visits GROUP BY person_id ORDER BY COUNT(*) DESC, person_id LIMIT 1",
        );
        let one_visit = pick(
            "SELECT person_id FROM health_clinic_visits GROUP BY person_id HAVING COUNT(*) = 1 ORDER BY person_id LIMIT 1",
        );
        let top_cost: f64 = pick(&format!(
            "SELECT MAX(cost) FROM health_clinic_visits WHERE person_id = '{patient}'"
        ))
        .parse()
        .expect("cost");
        let removals = [
            (
                "the enterprise with a founding date of its own",
                Entity::Enterprise,
                rare_code,
            ),
            ("the enterprise with the largest capital", Entity::Enterprise, richest),
            ("the enterprise with the most loans", Entity::Enterprise, borrower),
            ("the largest taxpayer", Entity::Enterprise, taxpayer),
            ("an ordinary enterprise", Entity::Enterprise, ordinary),
            ("the person with the most visits", Entity::Person, patient),
            ("a person with one visit", Entity::Person, one_visit),
        ];
        let mut neighbours = Vec::new();
        for (i, (label, entity, unit)) in removals.into_iter().enumerate() {
            let root = tmp.path().join(format!("n{i}"));
            write_neighbour(&ctx, &base, &root, entity, &unit);
            neighbours.push(Neighbour {
                label: label.to_string(),
                entity,
                root,
            });
        }
        World {
            _tmp: tmp,
            base,
            neighbours,
            facts: Facts {
                rare_date,
                rare_capital,
                rare_employees,
                rare_district,
                padding_until,
                top_cost,
            },
        }
    }

    /// A sandbox on D (`None`) or on a neighbour, with a grant whose
    /// budgets no test run exhausts.
    pub fn sandbox(&self, neighbour: Option<&Neighbour>) -> Sandbox {
        let root = neighbour.map_or(&self.base, |n| &n.root);
        let dir = DataDir::open(root).expect("data dir");
        crate::fixture::raise_policy_budgets(&dir);
        let sandbox = Sandbox::open(dir).expect("sandbox");
        let budgets = sandbox
            .catalog()
            .iter()
            .filter(|d| d.open_class == sandbox_model::OpenClass::Conditional)
            .map(|d| (d.id.clone(), 1e9))
            .collect();
        sandbox
            .store()
            .upsert_grant(&Grant::new(GRANT, "tests", budgets))
            .expect("grant");
        sandbox
    }
}

/// Writes D without `unit` under `root`: the unit's tables filtered, every
/// other table linked.
fn write_neighbour(ctx: &SessionContext, base: &Path, root: &Path, entity: Entity, unit: &str) {
    let dir = DataDir::open(root).expect("data dir");
    std::fs::remove_dir_all(dir.tables_dir()).expect("rm tables");
    let mut removed = 0usize;
    let filtered = match entity {
        Entity::Enterprise => ENTERPRISE_TABLES,
        Entity::Person => PERSON_TABLES,
    };
    let base_tables = DataDir::open(base).expect("data dir").tables_dir();
    for ns in std::fs::read_dir(base_tables).expect("tables") {
        let ns = ns.expect("entry");
        for table in std::fs::read_dir(ns.path()).expect("namespace") {
            let table = table.expect("entry");
            let dataset = format!(
                "{}.{}",
                ns.file_name().to_string_lossy(),
                table.file_name().to_string_lossy()
            );
            let target = table_dir(root, &dataset);
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            match filtered.iter().find(|(d, _)| *d == dataset) {
                None => std::os::unix::fs::symlink(table.path(), &target).expect("link"),
                Some((_, column)) => {
                    std::fs::create_dir_all(&target).expect("mkdir");
                    let name = dataset.replace('.', "_");
                    let batches = query(ctx, &format!("SELECT * FROM {name} WHERE {column} <> '{unit}'"));
                    removed += query(ctx, &format!("SELECT * FROM {name} WHERE {column} = '{unit}'"))
                        .iter()
                        .map(|b| b.num_rows())
                        .sum::<usize>();
                    let file = std::fs::File::create(target.join("part-0.parquet")).expect("create");
                    let schema = batches.first().expect("a batch").schema();
                    let mut writer = ArrowWriter::try_new(file, schema, None).expect("writer");
                    for b in &batches {
                        writer.write(b).expect("write");
                    }
                    writer.close().expect("close");
                }
            }
        }
    }
    assert!(removed > 0, "the unit {unit} has no rows to remove");
}
