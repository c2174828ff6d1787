//! Neighbouring-database tests: the same job on a database D and on D minus
//! one privacy unit, with DP noise switched off in the test-only mode
//! (`neighbouring-tests`, debug builds only), must
//!
//! * have the same outcome: released, refused by the same rule, or failed
//!   with the same message;
//! * when released, move each noised statistic (summed over all candidate
//!   groups, L1) by at most its declared sensitivity, and the bounded unit
//!   counts that partition selection and k see by at most G.
//!
//! What a release shows is a function of those statistics (plus public key
//! sets), so with noise on the release is (ε, δ)-DP as declared. The
//! corpus: every accepted query of `tests/sql/queries.test`, the attack
//! shapes of the soundness issue, and queries from a seeded generator over
//! joins, lookups, subqueries, CASE, casts, filters and group keys. The
//! removed units include the rare ones (a founding date only one
//! enterprise has, the largest capital, the most loans, the person with
//! most visits).
//!
//! A hand-written guest's UDFs are compared on both evaluation paths (a
//! provably stateless per-row export sharing an instance per batch, and a
//! stateful one that must get a fresh instance per row). With the example
//! guests built (`SANDBOX_WASM_GUESTS`, as scripts/test.sh does), a
//! WebAssembly UDF job and an analysis job are compared too.
//!
//! Its own test binary: noise off is a process-wide switch.

mod corpus;
// The shared fixture's policy-budget helper (the rest is the integration
// binary's).
#[allow(dead_code)]
#[path = "../integration/fixture.rs"]
mod fixture;
mod neighbours;
mod outcome;
mod samples;

use neighbours::{Neighbour, World};
use outcome::{Outcome, compare, run, run_as};
use sandbox_runtime::testing::{ReleaseTrace, take_traces};
use sandbox_runtime::{Sandbox, SqlJobOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_privacy_unit_moves_no_outcome_beyond_its_sensitivity() {
    sandbox_runtime::testing::set_noise_off(true);
    let world = World::build();
    let mut corpus = corpus::all(&world);
    assert!(corpus.len() >= 100, "corpus of {} queries", corpus.len());
    // For development only: `SANDBOX_NEIGHBOURING_ONLY=<text>` runs the
    // corpus queries containing <text> (CI and scripts/test.sh run all).
    let only = std::env::var("SANDBOX_NEIGHBOURING_ONLY").ok();
    if let Some(text) = &only {
        corpus.retain(|(_, sql)| sql.contains(text.as_str()));
        eprintln!("SANDBOX_NEIGHBOURING_ONLY={text}: {} queries", corpus.len());
    }
    let base = world.sandbox(None);
    let neighbours: Vec<(&Neighbour, Sandbox)> = world.neighbours.iter().map(|n| (n, world.sandbox(Some(n)))).collect();
    let mut failures = Vec::new();
    let mut released = 0usize;
    for (origin, sql) in &corpus {
        let on_d = run(&base, sql).await;
        if matches!(on_d, Outcome::Released(_)) {
            released += 1;
        }
        // The release after a bound estimation is compared at D's bound.
        if let Outcome::Released(t) = &on_d
            && !t.estimated.is_empty()
        {
            sandbox_runtime::testing::pin_estimates(Some(t.estimated.clone()));
        }
        for (neighbour, sandbox) in &neighbours {
            if !neighbour.touches(sql) {
                continue;
            }
            let on_n = run(sandbox, sql).await;
            let verdict = match (&on_d, &on_n) {
                (Outcome::Released(a), Outcome::Released(b)) => compare(a, b),
                (a, b) if a == b => Ok(()),
                (a, b) => Err(format!("outcome {} on D, {} without the unit", a.kind(), b.kind())),
            };
            if let Err(why) = verdict {
                failures.push(format!(
                    "[{origin}] without {}: {why}\n    {}",
                    neighbour.label,
                    sql.trim()
                ));
            }
        }
        sandbox_runtime::testing::pin_estimates(None);
    }
    failures.extend(engine_bounding_matches_release_step(&base, &corpus).await);
    failures.extend(desensitized_dimension(&base).await);
    failures.extend(desensitized_measures(&world, &base).await);
    if only.is_some() {
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        return;
    }
    // Post-processing sees released values only: with or without it, the
    // release on D is the same.
    for (origin, with, without) in corpus::post_processing(&world) {
        let (a, b) = (run(&base, &with).await, run(&base, &without).await);
        // Observed groups are numbered in the order the engine's partitions
        // deliver them; compare them by key.
        let by_key = |t: &ReleaseTrace| {
            let mut t = t.clone();
            t.groups
                .sort_by_key(|g| serde_json::to_string(&g.key).unwrap_or_default());
            t
        };
        match (&a, &b) {
            (Outcome::Released(x), Outcome::Released(y)) if by_key(x) == by_key(y) => {}
            (Outcome::Released(_), Outcome::Released(_)) => failures.push(format!(
                "[{origin}] the release differs with post-processing:\n    {}",
                with.trim()
            )),
            _ => failures.push(format!(
                "[{origin}] {} with post-processing, {} without",
                a.kind(),
                b.kind()
            )),
        }
    }
    failures.extend(row_export_guests(&base, &neighbours).await);
    failures.extend(webassembly_jobs(&base, &neighbours).await);
    let neighbour_count = neighbours.len();
    drop(neighbours);
    failures.extend(zcdp_accounting(&world, &corpus).await);
    eprintln!(
        "neighbouring databases: {} queries ({released} released on D) × {neighbour_count} neighbours, {} violations",
        corpus.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} neighbouring-database violations:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The corpus again, one query in [`ZCDP_STRIDE`], with every DP policy
/// accounting under zCDP: the same outcomes on D and each neighbour, and
/// statistics within their declared L1 and L2 sensitivities (the L2 check
/// runs on every release of the main pass too); counts and sums must get
/// the discrete Gaussian (a release without one is a failure).
async fn zcdp_accounting(world: &World, corpus: &[(String, String)]) -> Vec<String> {
    const ZCDP_STRIDE: usize = 5;
    let mut failures = Vec::new();
    let base = world.zcdp_sandbox(None);
    let neighbours: Vec<(&Neighbour, Sandbox)> = world
        .neighbours
        .iter()
        .map(|n| (n, world.zcdp_sandbox(Some(n))))
        .collect();
    let (mut released, mut gaussian) = (0usize, 0usize);
    for (origin, sql) in corpus.iter().step_by(ZCDP_STRIDE) {
        let on_d = run_as(&base, neighbours::ZCDP_GRANT, sql).await;
        if let Outcome::Released(t) = &on_d {
            released += 1;
            if t.mechanisms.iter().any(|m| m == "discrete_gaussian") {
                gaussian += 1;
            }
            if !t.estimated.is_empty() {
                sandbox_runtime::testing::pin_estimates(Some(t.estimated.clone()));
            }
        }
        for (neighbour, sandbox) in &neighbours {
            if !neighbour.touches(sql) {
                continue;
            }
            let on_n = run_as(sandbox, neighbours::ZCDP_GRANT, sql).await;
            let verdict = match (&on_d, &on_n) {
                (Outcome::Released(a), Outcome::Released(b)) => compare(a, b),
                (a, b) if a == b => Ok(()),
                (a, b) => Err(format!("outcome {} on D, {} without the unit", a.kind(), b.kind())),
            };
            if let Err(why) = verdict {
                failures.push(format!(
                    "[zcdp {origin}] without {}: {why}\n    {}",
                    neighbour.label,
                    sql.trim()
                ));
            }
        }
        sandbox_runtime::testing::pin_estimates(None);
    }
    eprintln!("zCDP pass: {released} released on D, {gaussian} with discrete Gaussian noise");
    if released < 20 || gaussian * 2 < released {
        failures.push(format!(
            "[zcdp] {released} releases, {gaussian} with Gaussian noise: the zCDP path was not exercised"
        ));
    }
    failures
}

/// The shipped clinic policy generalizes `age` to 5-year bands
/// (`[desensitize] age = { band = 5 }`): with noise off, the released
/// groups of `GROUP BY age` are bands, and a filter on one age within a
/// band counts nothing while the band's own value counts the band.
async fn desensitized_dimension(base: &Sandbox) -> Vec<String> {
    let mut failures = Vec::new();
    let grouped = "SELECT age, COUNT(*) AS n FROM health.clinic_visits GROUP BY age";
    match run(base, grouped).await {
        Outcome::Released(t) => {
            let keys: Vec<i64> = t.groups.iter().filter_map(|g| g.key.first()?.as_i64()).collect();
            if keys.len() != t.groups.len() || keys.len() < 10 {
                failures.push(format!(
                    "[desensitize] {} integer band keys of {} groups",
                    keys.len(),
                    t.groups.len()
                ));
            }
            if let Some(k) = keys.iter().find(|k| k.rem_euclid(5) != 0) {
                failures.push(format!("[desensitize] group {k} is not a 5-year band: {grouped}"));
            }
        }
        other => failures.push(format!("[desensitize] {}: {grouped}", other.kind())),
    }
    let count = |sql: &'static str| async move {
        match run(base, sql).await {
            // COUNT(*)'s exact bounded statistic (noise is off).
            Outcome::Released(t) => Ok(t
                .groups
                .iter()
                .filter_map(|g| g.components.first()?.first().copied())
                .sum::<i128>()),
            other => Err(format!("[desensitize] {}: {sql}", other.kind())),
        }
    };
    match count("SELECT COUNT(*) AS n FROM health.clinic_visits WHERE age = 37").await {
        Ok(0) => {}
        Ok(n) => failures.push(format!("[desensitize] WHERE age = 37 counted {n} visits")),
        Err(e) => failures.push(e),
    }
    match count("SELECT COUNT(*) AS n FROM health.clinic_visits WHERE age = 35").await {
        Ok(n) if n > 0 => {}
        Ok(n) => failures.push(format!(
            "[desensitize] WHERE age = 35 (the band 35-39) counted {n} persons"
        )),
        Err(e) => failures.push(e),
    }
    failures
}

/// The suite's policies band two measures (`neighbours::MEASURE_RULES`):
/// with noise off, every aggregate of them releases exactly what the same
/// job releases on `P`, the same data stored already coarsened under the
/// shipped policies (the same groups, unit counts, bounded statistics and
/// calibration), and a filter strictly inside a band matches nothing.
async fn desensitized_measures(world: &neighbours::World, base: &Sandbox) -> Vec<String> {
    let mut failures = Vec::new();
    let precoarsened = world.precoarsened();
    let by_key = |o: Outcome| match o {
        Outcome::Released(mut t) => {
            t.groups
                .sort_by_key(|g| serde_json::to_string(&g.key).unwrap_or_default());
            Outcome::Released(t)
        }
        other => other,
    };
    let queries = [
        "SELECT sex, SUM(cost) AS s, AVG(cost) AS a FROM health.clinic_visits GROUP BY sex",
        "SELECT age, AVG(cost) AS a, COUNT(*) AS n FROM health.clinic_visits GROUP BY age",
        "SELECT district, SUM(cost) AS s FROM health.clinic_visits WHERE cost >= 100 GROUP BY district",
        "SELECT SUM(insured_employees) AS s, AVG(insured_employees) AS a FROM gov.legal_entities",
        "SELECT district, AVG(insured_employees) AS a FROM gov.legal_entities WHERE insured_employees >= 10 GROUP BY district",
    ];
    for sql in queries {
        let (on_rules, on_coarse) = (by_key(run(base, sql).await), by_key(run(&precoarsened, sql).await));
        match (&on_rules, &on_coarse) {
            (Outcome::Released(a), Outcome::Released(b)) if a == b => {}
            (a, b) => failures.push(format!(
                "[desensitize] a banded measure: {} under the rule, {} on the pre-coarsened data (or the traces differ): {sql}",
                a.kind(),
                b.kind()
            )),
        }
    }
    // Coarsened values only: no cost lies strictly inside the band [0, 50),
    // though stored costs do.
    let inside = "SELECT COUNT(*) AS n FROM health.clinic_visits WHERE cost > 0 AND cost < 50";
    match run(base, inside).await {
        Outcome::Released(t) => {
            let n: i128 = t
                .groups
                .iter()
                .filter_map(|g| g.components.first()?.first().copied())
                .sum();
            if n != 0 {
                failures.push(format!("[desensitize] {inside} counted {n} visits"));
            }
        }
        other => failures.push(format!("[desensitize] {}: {inside}", other.kind())),
    }
    if world.facts.costs_inside_first_band == 0 {
        failures.push("[desensitize] no stored cost lies inside the band [0, 50): the check is vacuous".into());
    }
    failures
}

/// Contribution bounding inside the engine (the default) and in the
/// release step from per-unit partials (the dominance rule's form) must
/// give every query exactly the same bounded statistics: both choose a
/// unit's groups by the same keyed priority under the same key.
async fn engine_bounding_matches_release_step(base: &Sandbox, corpus: &[(String, String)]) -> Vec<String> {
    let sorted = |o: Outcome| match o {
        Outcome::Released(mut t) => {
            t.groups
                .sort_by_key(|g| serde_json::to_string(&g.key).unwrap_or_default());
            Outcome::Released(t)
        }
        other => other,
    };
    let mut failures = Vec::new();
    let mut compared = 0usize;
    let mut unbounded = 0usize;
    for (origin, sql) in corpus {
        sandbox_runtime::testing::force_engine_bounding(true);
        let before = sandbox_runtime::testing::unbounded_totals_jobs();
        let in_engine = sorted(run(base, sql).await);
        let skipped_units = sandbox_runtime::testing::unbounded_totals_jobs() > before;
        sandbox_runtime::testing::force_unit_partials(true);
        let in_release = sorted(run(base, sql).await);
        sandbox_runtime::testing::force_unit_partials(false);
        if matches!(in_engine, Outcome::Released(_)) {
            compared += 1;
            unbounded += usize::from(skipped_units);
        }
        if in_engine != in_release {
            failures.push(format!(
                "[{origin}] bounding in the engine and in the release step differ: {} vs {}\n    {}",
                in_engine.kind(),
                in_release.kind(),
                sql.trim()
            ));
        }
    }
    eprintln!(
        "bounding in the engine vs in the release step: {compared} released queries compared, \
         {unbounded} of them computed without a per-unit stage (verified row bounds)"
    );
    // Not vacuous: the catalog's verified bounds (one row per enterprise,
    // 24 per enterprise and month, ...) let many corpus queries skip it.
    if unbounded == 0 {
        failures.push("no corpus query took the path without a per-unit stage".into());
    }
    failures
}

/// A hand-written guest (no wasm32 toolchain needed) with two UDFs whose
/// per-row exports take the two paths: `scaled` is stateless (one instance
/// per batch), `leak` keeps a running maximum in a global, so if its rows
/// ever shared an instance, one unit's value would move every later row's
/// (its batch export gives every row 0.5 in a fresh instance).
fn row_export_guest() -> Vec<u8> {
    use sandbox_sql::datafusion::arrow::array::{Float64Array, RecordBatch};
    use sandbox_sql::datafusion::arrow::datatypes::{DataType, Field, Schema};
    use sandbox_sql::datafusion::arrow::ipc::writer::StreamWriter;
    let manifest = r#"{"abi":1,"udfs":[{"name":"scaled","args":["float64"],"returns":"float64","bounds":[0.0,1.0]},{"name":"leak","args":["float64"],"returns":"float64","bounds":[0.0,1.0]}]}"#;
    let schema = std::sync::Arc::new(Schema::new(vec![Field::new("result", DataType::Float64, true)]));
    let one_row =
        RecordBatch::try_new(schema.clone(), vec![std::sync::Arc::new(Float64Array::from(vec![0.5]))]).expect("batch");
    let mut canned = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut canned, &schema).expect("writer");
        writer.write(&one_row).expect("write");
        writer.finish().expect("finish");
    }
    let bytes = |b: &[u8]| b.iter().map(|b| format!("\\{b:02x}")).collect::<String>();
    let pack = |ptr: u64, len: usize| ((ptr << 32) | len as u64) as i64;
    let wat = format!(
        r#"(module
          (memory (export "memory") 2)
          (global $bump (mut i32) (i32.const 65536))
          (global $max (mut f64) (f64.const 0))
          (data (i32.const 1024) "{manifest}")
          (data (i32.const 16384) "{canned}")
          (func (export "sandbox_alloc") (param $len i32) (result i32) (local $p i32)
            (local.set $p (global.get $bump))
            (global.set $bump (i32.add (local.get $p) (i32.and (i32.add (local.get $len) (i32.const 7)) (i32.const -8))))
            (local.get $p))
          (func (export "sandbox_dealloc") (param i32 i32))
          (func (export "sandbox_manifest") (result i64) (i64.const {manifest_at}))
          (func (export "sandbox_udf_scaled") (param i32 i32) (result i64) (i64.const {canned_at}))
          (func (export "sandbox_udf_leak") (param i32 i32) (result i64) (i64.const {canned_at}))
          (func (export "sandbox_row_scaled") (param f64) (result f64)
            (f64.div (local.get 0) (f64.const 10000)))
          (func (export "sandbox_row_leak") (param f64) (result f64)
            (global.set $max (f64.max (global.get $max) (f64.div (local.get 0) (f64.const 10000))))
            (global.get $max)))"#,
        manifest = bytes(manifest.as_bytes()),
        canned = bytes(&canned),
        manifest_at = pack(1024, manifest.len()),
        canned_at = pack(16384, canned.len()),
    );
    wat::parse_str(wat).expect("guest WAT")
}

/// Per-row exports on both paths keep every statistic within its
/// sensitivity.
async fn row_export_guests(base: &Sandbox, neighbours: &[(&Neighbour, Sandbox)]) -> Vec<String> {
    let module = row_export_guest();
    let mut failures = Vec::new();
    for function in ["scaled", "leak"] {
        let sql = format!(
            "SELECT l.district, SUM({function}(u.electricity_kwh)) AS s, AVG({function}(u.electricity_kwh)) AS a
             FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code
             WHERE u.month = '2024-06' GROUP BY l.district"
        );
        let on_d = run_udf(base, &module, &sql).await;
        if !matches!(on_d, Outcome::Released(_)) {
            failures.push(format!("[row export `{function}`] not released on D: {on_d:?}"));
            continue;
        }
        for (neighbour, sandbox) in neighbours.iter().filter(|(n, _)| n.touches(&sql)) {
            let verdict = match (&on_d, &run_udf(sandbox, &module, &sql).await) {
                (Outcome::Released(a), Outcome::Released(b)) => compare(a, b),
                (a, b) => Err(format!("outcome {} on D, {} without the unit", a.kind(), b.kind())),
            };
            if let Err(why) = verdict {
                failures.push(format!("[row export `{function}`] without {}: {why}", neighbour.label));
            }
        }
    }
    failures
}

/// WebAssembly jobs, when the example guests are built (`SANDBOX_WASM_GUESTS`,
/// as in scripts/test.sh): a UDF inside SQL must keep the statistics within
/// their sensitivity like any measure, and an analysis's released block
/// average may move by at most `(upper - lower) / k` per output.
async fn webassembly_jobs(base: &Sandbox, neighbours: &[(&Neighbour, Sandbox)]) -> Vec<String> {
    let Some(dir) = std::env::var_os("SANDBOX_WASM_GUESTS").map(std::path::PathBuf::from) else {
        return Vec::new();
    };
    let (Ok(udf), Ok(model)) = (
        std::fs::read(dir.join("risk_score.wasm")),
        std::fs::read(dir.join("default_model.wasm")),
    ) else {
        return Vec::new();
    };
    eprintln!(
        "neighbouring databases: also a WebAssembly UDF job and an analysis job (guests in {})",
        dir.display()
    );
    let mut failures = Vec::new();
    let udf_sql = "SELECT l.district, AVG(risk_score(u.electricity_kwh, u.gas_m3)) AS risk, SUM(risk_score(u.electricity_kwh, u.gas_m3)) AS s
                   FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code
                   WHERE u.month = '2024-06' GROUP BY l.district";
    let input = "SELECT u.electricity_kwh, u.gas_m3, CAST(b.defaulted AS DOUBLE) AS defaulted
                 FROM bank.loans b JOIN gov.utility_usage u ON b.credit_code = u.credit_code WHERE u.month = '2024-06'";
    let blocks = 8;
    let udf_on_d = run_udf(base, &udf, udf_sql).await;
    let (model_on_d, ranges) = run_model(base, &model, input, blocks).await;
    assert!(
        matches!(udf_on_d, Outcome::Released(_)),
        "the UDF job is released on D: {udf_on_d:?}"
    );
    for (neighbour, sandbox) in neighbours.iter().filter(|(n, _)| n.touches(udf_sql)) {
        let verdict = match (&udf_on_d, &run_udf(sandbox, &udf, udf_sql).await) {
            (Outcome::Released(a), Outcome::Released(b)) => compare(a, b),
            (a, b) => Err(format!("outcome {} on D, {} without the unit", a.kind(), b.kind())),
        };
        if let Err(why) = verdict {
            failures.push(format!("[risk_score UDF] without {}: {why}", neighbour.label));
        }
        let (model_on_n, _) = run_model(sandbox, &model, input, blocks).await;
        for (i, ((a, b), (lo, hi))) in model_on_d.iter().zip(&model_on_n).zip(&ranges).enumerate() {
            let bound = (hi - lo) / blocks as f64 * (1.0 + 1e-9);
            let within = (a - b).abs() <= bound;
            if !within {
                failures.push(format!(
                    "[default_model analysis] without {}: output {i} moved by {} where (upper - lower)/k = {bound}",
                    neighbour.label,
                    (a - b).abs()
                ));
            }
        }
    }
    if let Ok(fragile) = std::fs::read(dir.join("mistakes.wasm")) {
        failures.extend(fragile_analysis(base, neighbours, &fragile).await);
        failures.extend(fragile_udf(base, neighbours, &fragile).await);
    }
    failures
}

/// A SQL job whose function fails on some rows (`fails_above(x)` panics
/// when x >= 1000, here a month of at least 50 000 kWh): every statistic,
/// and the count of rows that took the default, within its sensitivity.
async fn fragile_udf(base: &Sandbox, neighbours: &[(&Neighbour, Sandbox)], module: &[u8]) -> Vec<String> {
    let sql = "SELECT l.district, AVG(fails_above(u.electricity_kwh / 50)) AS v, COUNT(*) AS n
               FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code
               WHERE u.month = '2024-06' GROUP BY l.district";
    let mut failures = Vec::new();
    let on_d = run_udf(base, module, sql).await;
    let Outcome::Released(trace) = &on_d else {
        return vec![format!("[fragile UDF] not released on D: {on_d:?}")];
    };
    eprintln!(
        "neighbouring databases: fragile UDF, (defaulted rows, sensitivity) on D: {:?}",
        trace.defaults
    );
    // Not vacuous: some rows fail on D (noise is off).
    if trace.defaults.is_none_or(|(exact, _)| exact == 0) {
        failures.push(format!(
            "[fragile UDF] no row failed on D ({:?}): the shape tests nothing",
            trace.defaults
        ));
    }
    for (neighbour, sandbox) in neighbours.iter().filter(|(n, _)| n.touches(sql)) {
        let verdict = match (&on_d, &run_udf(sandbox, module, sql).await) {
            (Outcome::Released(a), Outcome::Released(b)) => compare(a, b),
            (a, b) => Err(format!("outcome {} on D, {} without the unit", a.kind(), b.kind())),
        };
        if let Err(why) = verdict {
            failures.push(format!("[fragile UDF] without {}: {why}", neighbour.label));
        }
    }
    failures
}

/// An analysis whose blocks fail depending on the data (the `mistakes`
/// guest fails a block holding a row with `fail >= 1000`, here a month of
/// more than 50 000 kWh, rare enough that only some blocks fail (24 of 1 082 rows on D)): removing one unit changes one block, so the
/// released outputs move by at most `(upper − lower) / k` and the released
/// count of blocks that used the default by at most 1.
async fn fragile_analysis(base: &Sandbox, neighbours: &[(&Neighbour, Sandbox)], module: &[u8]) -> Vec<String> {
    let input = "SELECT COALESCE(u.electricity_kwh, 0) AS value,
                        CASE WHEN u.electricity_kwh > 50000 THEN 1000.0 ELSE 0.0 END AS fail
                 FROM bank.loans b JOIN gov.utility_usage u ON b.credit_code = u.credit_code WHERE u.month = '2024-06'";
    let blocks = 64;
    let (on_d, ranges) = run_model(base, module, input, blocks).await;
    let defaults_on_d = on_d[ranges.len()];
    eprintln!("neighbouring databases: fragile analysis, {defaults_on_d} of {blocks} blocks use the default on D");
    let mut failures = Vec::new();
    // Not vacuous: some blocks fail on D and some do not (noise is off).
    if defaults_on_d < 1.0 || defaults_on_d > (blocks - 1) as f64 {
        failures.push(format!(
            "[fragile analysis] {defaults_on_d} of {blocks} blocks used the default on D: the shape tests nothing"
        ));
    }
    for (neighbour, sandbox) in neighbours.iter().filter(|(n, _)| n.touches(input)) {
        let (on_n, _) = run_model(sandbox, module, input, blocks).await;
        for (i, (lo, hi)) in ranges.iter().enumerate() {
            let bound = (hi - lo) / blocks as f64 * (1.0 + 1e-9);
            if (on_d[i] - on_n[i]).abs() > bound {
                failures.push(format!(
                    "[fragile analysis] without {}: output {i} moved by {} where (upper - lower)/k = {bound}",
                    neighbour.label,
                    (on_d[i] - on_n[i]).abs()
                ));
            }
        }
        let moved = (defaults_on_d - on_n[ranges.len()]).abs();
        if moved > 1.0 {
            failures.push(format!(
                "[fragile analysis] without {}: the count of blocks using the default moved by {moved} (sensitivity 1)",
                neighbour.label
            ));
        }
    }
    failures
}

async fn run_udf(s: &Sandbox, module: &[u8], sql: &str) -> Outcome {
    let job = s.load_wasm(module).expect("guest admitted");
    take_traces();
    match s
        .run_sql_with_functions(neighbours::GRANT, sql, &SqlJobOptions::default(), job.row_functions())
        .await
    {
        Ok(_) => Outcome::Released(Box::new(take_traces().pop().expect("a traced release"))),
        Err(e) => match e.rule() {
            Some(rule) => Outcome::Refused(rule.to_string()),
            None => Outcome::Failed(e.to_string()),
        },
    }
}

/// The released outputs of an analysis (then, last, the count of blocks
/// that used the default) and their declared ranges.
async fn run_model(s: &Sandbox, module: &[u8], input: &str, blocks: usize) -> (Vec<f64>, Vec<(f64, f64)>) {
    let job = s.load_wasm(module).expect("guest admitted");
    let program = job.analysis().expect("an analysis");
    let ranges: Vec<(f64, f64)> = program.outputs().iter().map(|(_, lo, hi)| (*lo, *hi)).collect();
    let options = sandbox_runtime::AnalysisOptions { blocks, epsilon: None };
    let released = s
        .run_analysis(neighbours::GRANT, program, input, &options)
        .await
        .expect("released");
    let values = released
        .table
        .rows
        .iter()
        .map(|row| match row.get(1) {
            Some(sandbox_model::ReleasedCell::Noisy { value, .. }) => *value,
            _ => f64::NAN,
        })
        .collect();
    (values, ranges)
}
