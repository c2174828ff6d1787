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
/// The grant of the zCDP pass: its lines have spent nothing when the
/// policies turn to zCDP accounting, so they follow them.
pub const ZCDP_GRANT: &str = "neighbouring-zcdp";

/// Desensitization rules on measures the suite adds to the shipped
/// policies of D and of every neighbour (dataset, column, rule): a banded
/// measure is aggregated as its coarsened values, clamped to its bounds
/// above the scan. `P` holds the same data with these columns stored
/// already coarsened, under the shipped policies.
pub const MEASURE_RULES: &[(&str, &str, &str)] = &[
    // 99.99999999999999 (the largest double below 100): an edge whose
    // shortest decimal form a JSON reader can bring back as 100.0, which
    // moved rows between bands on the cluster's executors (red team
    // 2026-12-01); the distributed suite compares this rule's releases.
    (
        "health.clinic_visits",
        "cost",
        "bands = [0, 50, 99.99999999999999, 200, 500, 1000, 2000, 5000]",
    ),
    ("gov.legal_entities", "insured_employees", "band = 10"),
];

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
    /// Visits whose stored cost lies strictly inside the band [0, 50).
    pub costs_inside_first_band: usize,
}

pub struct World {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    /// D with the [`MEASURE_RULES`] columns stored already coarsened.
    precoarsened: PathBuf,
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
        move_outside_the_public_months(&ctx, &base, &ordinary);
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
        let costs_inside_first_band: usize =
            pick("SELECT COUNT(*) FROM health_clinic_visits WHERE cost > 0 AND cost < 50")
                .parse()
                .expect("count");
        let precoarsened = tmp.path().join("p");
        write_precoarsened(&ctx, &base, &precoarsened);
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
            precoarsened,
            neighbours,
            facts: Facts {
                rare_date,
                rare_capital,
                rare_employees,
                rare_district,
                padding_until,
                top_cost,
                costs_inside_first_band,
            },
        }
    }

    /// A sandbox on D (`None`) or on a neighbour, with a grant whose
    /// budgets no test run exhausts.
    pub fn sandbox(&self, neighbour: Option<&Neighbour>) -> Sandbox {
        let root = neighbour.map_or(&self.base, |n| &n.root);
        let dir = DataDir::open(root).expect("data dir");
        add_measure_rules(&dir);
        self.open(dir)
    }

    /// A sandbox on D or a neighbour whose DP policies account budgets
    /// under zCDP (`[dp] accounting = "zcdp"`, written into its policies),
    /// with [`ZCDP_GRANT`]: its jobs compose under zCDP (discrete Gaussian
    /// noise on counts and sums). Opened after every pure-accounting pass.
    pub fn zcdp_sandbox(&self, neighbour: Option<&Neighbour>) -> Sandbox {
        let root = neighbour.map_or(&self.base, |n| &n.root);
        let dir = DataDir::open(root).expect("data dir");
        add_measure_rules(&dir);
        crate::fixture::raise_policy_budgets(&dir);
        for entry in std::fs::read_dir(dir.policies_dir()).expect("policies").flatten() {
            let text = std::fs::read_to_string(entry.path()).expect("policy");
            if text.contains("\n[dp]\n") && !text.contains("accounting = ") {
                let text = text.replacen("\n[dp]\n", "\n[dp]\naccounting = \"zcdp\"\n", 1);
                std::fs::write(entry.path(), text).expect("write policy");
            }
        }
        let sandbox = Sandbox::open(dir).expect("sandbox");
        let budgets = sandbox
            .catalog()
            .iter()
            .filter(|d| d.open_class == sandbox_model::OpenClass::Conditional)
            .map(|d| (d.id.clone(), 1e9))
            .collect();
        sandbox
            .store()
            .upsert_grant(&Grant::new(ZCDP_GRANT, "tests", budgets))
            .expect("grant");
        sandbox
    }

    /// A sandbox on `P`: D with the banded measures stored already
    /// coarsened, under the shipped policies (no rule on them).
    pub fn precoarsened(&self) -> Sandbox {
        self.open(DataDir::open(&self.precoarsened).expect("data dir"))
    }

    fn open(&self, dir: DataDir) -> Sandbox {
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

/// Adds the [`MEASURE_RULES`] to the policies in `dir` (once).
fn add_measure_rules(dir: &DataDir) {
    for (dataset, column, rule) in MEASURE_RULES {
        let path = dir.policies_dir().join(format!("{dataset}.toml"));
        let text = std::fs::read_to_string(&path).expect("policy");
        let line = format!("{column} = {{ {rule} }}");
        if text.contains(&line) {
            continue;
        }
        let text = match text.find("\n[desensitize]\n") {
            Some(at) => {
                let after = at + "\n[desensitize]\n".len();
                format!("{}{line}\n{}", &text[..after], &text[after..])
            }
            None => format!("{text}\n[desensitize]\n{line}\n"),
        };
        std::fs::write(&path, text).expect("write policy");
    }
}

/// Writes `P` under `root`: D's tables, those with a [`MEASURE_RULES`]
/// column rewritten with that column coarsened by the policy's own
/// function, every other table linked.
fn write_precoarsened(ctx: &SessionContext, base: &Path, root: &Path) {
    use sandbox_sql::datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array};
    use sandbox_sql::datafusion::arrow::datatypes::{Float64Type, Int64Type};
    let dir = DataDir::open(root).expect("data dir");
    // The rules as the policy compiles them (the functions the runtime
    // applies beneath the plan).
    let scratch = tempfile::tempdir().expect("tempdir");
    let with_rules = DataDir::open(scratch.path()).expect("data dir");
    add_measure_rules(&with_rules);
    let catalog = sandbox_policy::load_catalog_dir(&with_rules.catalog_dir()).expect("catalog");
    let policies = sandbox_policy::PolicySet::load_dir(&with_rules.policies_dir(), &catalog).expect("policies");
    std::fs::remove_dir_all(dir.tables_dir()).expect("rm tables");
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
            let Some((_, column, _)) = MEASURE_RULES.iter().find(|(d, _, _)| *d == dataset) else {
                std::os::unix::fs::symlink(table.path(), &target).expect("link");
                continue;
            };
            let id: sandbox_model::DatasetId = dataset.parse().expect("id");
            let rule = policies
                .get(&id)
                .and_then(|p| p.column(column))
                .and_then(|c| c.desensitize.clone())
                .expect("the measure's rule");
            let name = dataset.replace('.', "_");
            let path = format!("{}/", table_dir(base, &dataset).display());
            if ctx.table_exist(name.as_str()).ok() != Some(true) {
                block_on(ctx.register_parquet(&name, &path, ParquetReadOptions::default())).expect("register");
            }
            let batches = query(ctx, &format!("SELECT * FROM {name}"));
            std::fs::create_dir_all(&target).expect("mkdir");
            let file = std::fs::File::create(target.join("part-0.parquet")).expect("create");
            let schema = batches.first().expect("a batch").schema();
            let at = schema.index_of(column).expect("column");
            let mut writer = ArrowWriter::try_new(file, schema.clone(), None).expect("writer");
            for b in &batches {
                let mut columns = b.columns().to_vec();
                let c = &columns[at];
                let coarse: ArrayRef = match c.data_type() {
                    sandbox_sql::datafusion::arrow::datatypes::DataType::Float64 => std::sync::Arc::new(
                        c.as_primitive::<Float64Type>()
                            .iter()
                            .map(|v| v.map(|x| rule.apply_f64(x)))
                            .collect::<Float64Array>(),
                    ),
                    sandbox_sql::datafusion::arrow::datatypes::DataType::Int64 => std::sync::Arc::new(
                        c.as_primitive::<Int64Type>()
                            .iter()
                            .map(|v| v.map(|x| rule.apply_i64(x)))
                            .collect::<Int64Array>(),
                    ),
                    other => panic!("{dataset}.{column} is {other}"),
                };
                columns[at] = coarse;
                writer
                    .write(&RecordBatch::try_new(schema.clone(), columns).expect("batch"))
                    .expect("write");
            }
            writer.close().expect("close");
        }
    }
}

/// Writes D without `unit` under `root`: the unit's tables filtered, every
/// other table linked.
/// Rows outside the public key sets: the ordinary enterprise's 2024 usage
/// is relabelled 2031 (months no policy lists), keeping its row count and
/// the declared key `"credit_code+month" = 1`. Jobs grouped by month then
/// read rows outside the set (made NULL or filtered out, by path), and the
/// neighbour without that enterprise lacks them.
fn move_outside_the_public_months(ctx: &SessionContext, base: &Path, unit: &str) {
    let batches = query(
        ctx,
        &format!(
            "SELECT * REPLACE (CASE WHEN credit_code = '{unit}' AND month >= '2024-01' \
             THEN '2031-' || substr(month, 6, 2) ELSE month END AS month) FROM gov_utility_usage"
        ),
    );
    let moved: usize = query(
        ctx,
        &format!("SELECT * FROM gov_utility_usage WHERE credit_code = '{unit}' AND month >= '2024-01'"),
    )
    .iter()
    .map(|b| b.num_rows())
    .sum();
    assert!(moved > 0, "the ordinary enterprise has 2024 usage to move");
    let dir = table_dir(base, "gov.utility_usage");
    std::fs::remove_dir_all(&dir).expect("rm usage");
    std::fs::create_dir_all(&dir).expect("mkdir usage");
    let file = std::fs::File::create(dir.join("part-0.parquet")).expect("create");
    let schema = batches.first().expect("a batch").schema();
    let mut writer = ArrowWriter::try_new(file, schema, None).expect("writer");
    for b in &batches {
        writer.write(b).expect("write");
    }
    writer.close().expect("close");
    block_on(async {
        ctx.deregister_table("gov_utility_usage").expect("deregister");
        ctx.register_parquet(
            "gov_utility_usage",
            &format!("{}/", dir.display()),
            ParquetReadOptions::default(),
        )
        .await
    })
    .expect("register");
}

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
