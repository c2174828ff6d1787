//! The queries run on D and its neighbours.

use crate::neighbours::World;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// (origin, SQL) for every query of the corpus.
pub fn all(world: &World) -> Vec<(String, String)> {
    let mut out = table_queries();
    out.extend(attacks(world));
    out.extend(generated(0x5eed_2026, 72));
    out.extend(generated_derived(0xde71_7ed0, 24));
    out.extend(red_team_1201());
    out.extend(band_edges());
    out.extend(declared_keys());
    out.extend(
        post_processing(world)
            .into_iter()
            .map(|(origin, with, _)| (origin, with)),
    );
    out
}

/// Post-processing shapes (HAVING, expressions of aggregates, ORDER BY,
/// LIMIT, a filter over an aggregating subquery), each with the same query
/// without them: on D their release traces must be identical (the same
/// candidate groups, selection, statistics), since post-processing runs on
/// released values only. (origin, with post-processing, without).
pub fn post_processing(world: &World) -> Vec<(String, String, String)> {
    let f = &world.facts;
    let date = &f.rare_date;
    let cap = f.rare_capital - 0.005;
    let pairs = [
        (
            "SELECT founded, COUNT(*) AS n FROM gov.legal_entities GROUP BY founded HAVING COUNT(*) >= 1 ORDER BY n DESC LIMIT 3".to_string(),
            "SELECT founded, COUNT(*) AS n FROM gov.legal_entities GROUP BY founded".to_string(),
        ),
        (
            format!(
                "SELECT district, SUM(registered_capital) / COUNT(*) AS m FROM gov.legal_entities
                 WHERE founded = DATE '{date}' GROUP BY district HAVING SUM(registered_capital) > {cap}"
            ),
            format!(
                "SELECT district, SUM(registered_capital) AS s, COUNT(*) AS n FROM gov.legal_entities
                 WHERE founded = DATE '{date}' GROUP BY district"
            ),
        ),
        (
            format!(
                "SELECT industry FROM gov.legal_entities GROUP BY industry
                 HAVING AVG(registered_capital) > {cap} OR COUNT(*) = 1 ORDER BY AVG(registered_capital) DESC"
            ),
            "SELECT industry, AVG(registered_capital) AS a, COUNT(*) AS n FROM gov.legal_entities GROUP BY industry".to_string(),
        ),
        (
            "SELECT * FROM (SELECT t.year, SUM(t.tax_paid) AS s FROM gov.tax_payments t GROUP BY t.year) x WHERE s > 0 ORDER BY s LIMIT 1".to_string(),
            "SELECT t.year, SUM(t.tax_paid) AS s FROM gov.tax_payments t GROUP BY t.year".to_string(),
        ),
        (
            "SELECT sex, 100 * COUNT(DISTINCT person_id) / COUNT(*) AS per_visit, ROUND(AVG(cost), 0) AS c FROM health.clinic_visits
             GROUP BY sex HAVING COUNT(*) BETWEEN 1 AND 100000000".to_string(),
            "SELECT sex, COUNT(DISTINCT person_id) AS p, COUNT(*) AS n, AVG(cost) AS c FROM health.clinic_visits GROUP BY sex".to_string(),
        ),
    ];
    pairs
        .into_iter()
        .enumerate()
        .map(|(i, (with, without))| (format!("post-processing {}", i + 1), with, without))
        .collect()
}

/// Every accepted query of `tests/sql/queries.test`.
fn table_queries() -> Vec<(String, String)> {
    let text = include_str!("../sql/queries.test");
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        if !line.trim().starts_with("accept") {
            continue;
        }
        let mut sql = String::new();
        while let Some((_, l)) = lines.peek() {
            if l.trim().is_empty() {
                break;
            }
            sql.push_str(l);
            sql.push('\n');
            lines.next();
        }
        out.push((format!("queries.test:{}", n + 1), sql));
    }
    out
}

/// The attack shapes of the soundness issue, aimed at the rare units.
fn attacks(world: &World) -> Vec<(String, String)> {
    let f = &world.facts;
    let date = &f.rare_date;
    let until = &f.padding_until;
    let cap = f.rare_capital - 0.005;
    let staff = f.rare_employees;
    let district = &f.rare_district;
    let cost = f.top_cost - 0.5;
    let shapes = [
        // 1. Protected tables bridged through an open lookup table.
        format!(
            "SELECT a.district, COUNT(*) AS n FROM gov.legal_entities a JOIN gov.districts d ON a.district = d.district
             JOIN gov.legal_entities b ON b.district = d.district WHERE b.founded = DATE '{date}' GROUP BY a.district"
        ),
        format!(
            "SELECT a.district, COUNT(*) AS n FROM gov.legal_entities a JOIN gov.districts d ON a.district = d.district
             JOIN gov.legal_entities b ON b.district = d.district
             WHERE b.founded = DATE '{date}' AND b.registered_capital > {cap} GROUP BY a.district"
        ),
        format!(
            "SELECT a.sex, COUNT(*) AS n FROM health.clinic_visits a JOIN gov.districts d ON a.district = d.district
             JOIN health.clinic_visits b ON b.district = d.district WHERE b.cost > {cost} GROUP BY a.sex"
        ),
        format!(
            "SELECT t.year, SUM(t.tax_paid) AS s FROM gov.tax_payments t JOIN gov.legal_entities l ON t.credit_code = l.credit_code
             JOIN gov.districts d ON l.district = d.district JOIN gov.legal_entities b ON b.district = d.district
             WHERE b.founded = DATE '{date}' GROUP BY t.year"
        ),
        format!(
            "SELECT a.district, COUNT(*) AS n FROM gov.legal_entities a
             JOIN (SELECT b.district AS dd FROM gov.legal_entities b WHERE b.founded = DATE '{date}') s ON a.district = s.dd
             GROUP BY a.district"
        ),
        format!(
            "SELECT d.district, COUNT(*) AS n FROM gov.districts d JOIN gov.legal_entities b ON b.district = d.district
             JOIN bank.loans l ON l.credit_code = b.credit_code JOIN gov.legal_entities a ON a.district = d.district
             WHERE b.founded = DATE '{date}' GROUP BY d.district"
        ),
        // Fused tables grouped by one owner's public keys: the other
        // owner's k is decided on a noisy distinct-unit count.
        format!(
            "SELECT l.term_months, COUNT(*) AS n, SUM(b.registered_capital) AS c FROM bank.loans l
             JOIN gov.legal_entities b ON l.credit_code = b.credit_code WHERE b.founded = DATE '{date}'
             GROUP BY l.term_months"
        ),
        format!(
            "SELECT b.district, COUNT(*) AS n, AVG(l.amount) AS a FROM bank.loans l
             JOIN gov.legal_entities b ON l.credit_code = b.credit_code WHERE b.registered_capital > {cap}
             GROUP BY b.district"
        ),
        // 2. An alias that would become the privacy unit.
        "SELECT founded, COUNT(*) AS n FROM (SELECT founded, name AS __SANDBOX_UNIT_9 FROM gov.legal_entities) t GROUP BY founded"
            .to_string(),
        "SELECT founded, COUNT(*) AS n FROM (SELECT founded, name AS \"__Sandbox_Unit_0\" FROM gov.legal_entities) t GROUP BY founded"
            .to_string(),
        "SELECT t.founded, COUNT(*) AS n FROM (SELECT founded, district AS __sandbox_unit_1 FROM gov.legal_entities) AS t GROUP BY t.founded"
            .to_string(),
        // 3. Data-dependent execution errors.
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE CASE WHEN founded = DATE '{date}' THEN CAST(industry AS BIGINT) ELSE 0 END = 0 GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities WHERE 100 / (insured_employees - {staff}) > -1000000 GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities WHERE insured_employees % (insured_employees - {staff}) >= 0 GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE to_date(CASE WHEN founded = DATE '{date}' THEN 'garbage' ELSE '2020-01-01' END) IS NOT NULL GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE substr(industry, 1, CASE WHEN founded = DATE '{date}' THEN -1 ELSE 1 END) <> 'x' GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE make_date(2020, CASE WHEN founded = DATE '{date}' THEN 13 ELSE 1 END, 1) IS NOT NULL GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE CAST(CASE WHEN founded = DATE '{date}' THEN registered_capital * 1e300 ELSE 1 END AS BIGINT) > 0 GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE power(CASE WHEN founded = DATE '{date}' THEN 10 ELSE 2 END, 40) > 0 GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE abs(CASE WHEN founded = DATE '{date}' THEN -9223372036854775807 - 1 ELSE 1 END) > 0 GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE date_trunc(CASE WHEN founded = DATE '{date}' THEN 'fortnight' ELSE 'month' END, CAST(founded AS TIMESTAMP)) IS NOT NULL
             GROUP BY district"
        ),
        format!(
            "SELECT industry, AVG(insured_employees / (insured_employees - {staff})) AS r FROM gov.legal_entities GROUP BY industry"
        ),
        // Found by the red team: date, timestamp and decimal arithmetic that
        // overflows on one row's value; one row's group key grown to gigabytes.
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE CASE WHEN founded = DATE '{date}' THEN founded + INTERVAL '95020000 days' ELSE founded END > DATE '1900-01-01'
             GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE CASE WHEN founded = DATE '{date}' THEN CAST(founded AS TIMESTAMP) + INTERVAL '95020000 days'
                   ELSE CAST(founded AS TIMESTAMP) END > TIMESTAMP '1900-01-01 00:00:00' GROUP BY district"
        ),
        format!(
            "SELECT district, COUNT(*) AS n FROM gov.legal_entities
             WHERE CAST(registered_capital AS DECIMAL(38,0)) * CAST('10000000000000000000000000000000000' AS DECIMAL(38,0))
                   > CAST('1' AS DECIMAL(38,0)) AND founded <> DATE '{date}' OR registered_capital > {cap} GROUP BY district"
        ),
            "SELECT year, SUM(tax_paid) AS s FROM gov.tax_payments
             WHERE CASE WHEN tax_paid > 4000 THEN make_date(year, 1, 1) + INTERVAL '95020000 days' END IS NULL GROUP BY year"
            .to_string(),
        format!(
            "WITH a AS (SELECT district, founded, CASE WHEN founded = DATE '{date}' THEN concat(district, district, district, district, district, district, district, district) ELSE district END AS k FROM gov.legal_entities),
                  b AS (SELECT district, founded, concat(k, k, k, k, k, k, k, k) AS k FROM a),
                  c AS (SELECT district, founded, concat(k, k, k, k, k, k, k, k) || k AS k FROM b)
             SELECT district, COUNT(*) AS n FROM c WHERE length(k) > 0 OR k IS NULL GROUP BY district"
        ),
        // 5. `both` mode: k and dominance on a group padded to exactly k.
        format!(
            "SELECT t.year, SUM(t.tax_paid) AS s FROM gov.tax_payments t JOIN gov.legal_entities l ON t.credit_code = l.credit_code
             WHERE l.founded >= DATE '{date}' AND l.founded <= DATE '{until}' GROUP BY t.year"
        ),
        format!(
            "SELECT t.year, AVG(t.tax_paid) AS s FROM gov.tax_payments t JOIN gov.legal_entities l ON t.credit_code = l.credit_code
             WHERE l.founded >= DATE '{date}' AND l.founded <= DATE '{until}' AND t.tax_paid > 0 GROUP BY t.year"
        ),
        // 6. A unit with many groups: dropped groups are no candidates.
        "SELECT age, COUNT(*) AS n FROM health.clinic_visits GROUP BY age".to_string(),
        "SELECT diagnosis_chapter, age, COUNT(*) AS n FROM health.clinic_visits GROUP BY diagnosis_chapter, age".to_string(),
        // 7. A desensitized dimension (clinic age in 5-year bands): grouping
        // by it, by expressions over it, filtering and joining on one age.
        "SELECT age, COUNT(*) AS n, AVG(cost) AS c FROM health.clinic_visits GROUP BY age".to_string(),
        "SELECT age + 0 AS a, COUNT(*) AS n FROM health.clinic_visits GROUP BY age + 0".to_string(),
        "SELECT CASE WHEN age = 37 THEN 'one' ELSE 'other' END AS k, COUNT(*) AS n FROM health.clinic_visits GROUP BY 1"
            .to_string(),
        "SELECT sex, COUNT(*) AS n, SUM(cost) AS s FROM health.clinic_visits WHERE age = 37 GROUP BY sex".to_string(),
        "SELECT sex, COUNT(*) AS n FROM health.clinic_visits WHERE age BETWEEN 35 AND 39 GROUP BY sex".to_string(),
        "SELECT district, COUNT(*) AS n FROM health.clinic_visits WHERE age % 5 = 2 GROUP BY district".to_string(),
        // 7b. Desensitized measures (the suite's policies band clinic cost
        // and insured employees, `neighbours::MEASURE_RULES`): sums and
        // means of the coarsened values, filters on them, the rare
        // patient's top cost.
        "SELECT sex, SUM(cost) AS s, AVG(cost) AS a FROM health.clinic_visits GROUP BY sex".to_string(),
        "SELECT district, AVG(insured_employees) AS a, SUM(insured_employees) AS s FROM gov.legal_entities GROUP BY district"
            .to_string(),
        format!(
            "SELECT sex, COUNT(*) AS n, SUM(cost) AS s FROM health.clinic_visits WHERE cost >= {top} GROUP BY sex",
            top = f.top_cost
        ),
        "SELECT diagnosis_chapter, AVG(cost) AS a FROM health.clinic_visits WHERE cost > 0 AND cost < 50 GROUP BY diagnosis_chapter"
            .to_string(),
        // 8. Measure-dependent conditions in a lookup LEFT JOIN; COUNT(DISTINCT) on a nullable side.
        format!(
            "SELECT d.population_10k, COUNT(*) AS n FROM gov.legal_entities a
             LEFT JOIN gov.districts d ON a.district = d.district AND a.registered_capital > {cap} GROUP BY d.population_10k"
        ),
            "SELECT b.term_months, COUNT(*) AS n FROM gov.legal_entities l
             LEFT JOIN bank.loans b ON l.credit_code = b.credit_code AND b.amount > 100 GROUP BY b.term_months"
            .to_string(),
        "SELECT l.district, COUNT(DISTINCT b.credit_code) AS n FROM gov.legal_entities l
         LEFT JOIN bank.loans b ON l.credit_code = b.credit_code GROUP BY l.district"
            .to_string(),
        format!(
            "SELECT d.district, COUNT(*) AS n FROM gov.districts d LEFT JOIN gov.legal_entities a
             ON a.district = d.district AND a.founded = DATE '{date}' GROUP BY d.district"
        ),
        format!(
            "SELECT a.industry, COUNT(*) AS n FROM gov.legal_entities a WHERE a.district = '{district}' AND a.founded = DATE '{date}' GROUP BY a.industry"
        ),
        // Regular expressions and LIKE with data patterns.
        "SELECT district, COUNT(*) AS n FROM gov.legal_entities WHERE industry LIKE district GROUP BY district".to_string(),
        "SELECT district, COUNT(*) AS n FROM gov.legal_entities WHERE industry ~ '^[A-C]' GROUP BY district".to_string(),
        "SELECT district, COUNT(*) AS n FROM gov.legal_entities WHERE industry LIKE 'C%' GROUP BY district".to_string(),
        // Derived measures and analyst bounds: one unit's value isolated by
        // CASE, division by zero, NaN and overflow on its row only, and an
        // analyst's CLAMP wider than the owner's bounds.
        format!(
            "SELECT district, SUM(CASE WHEN founded = DATE '{date}' THEN registered_capital ELSE 0 END) AS s,
                    AVG(CASE WHEN founded = DATE '{date}' THEN insured_employees END) AS a
             FROM gov.legal_entities GROUP BY district"
        ),
        format!(
            "SELECT industry, AVG(CLAMP(registered_capital / (insured_employees - {staff}), -1000000, 1000000)) AS r
             FROM gov.legal_entities GROUP BY industry"
        ),
        format!(
            "SELECT industry, AVG(CLAMP(sqrt(registered_capital - {cap}), 0, 100)) AS r, SUM(CLAMP(ln(registered_capital - {cap}), -10, 10)) AS l
             FROM gov.legal_entities GROUP BY industry"
        ),
        format!(
            "SELECT district, SUM(CLAMP(CASE WHEN founded = DATE '{date}' THEN registered_capital * 1e300 * 1e300 ELSE 1 END, 0, 100)) AS s,
                    VARIANCE(CLAMP(CASE WHEN founded = DATE '{date}' THEN 0.0 / 0.0 ELSE registered_capital END, 0, 5000)) AS v
             FROM gov.legal_entities GROUP BY district"
        ),
        "SELECT district, AVG(CLAMP(registered_capital, -1000000000, 1000000000)) AS a, SUM(CLAMP(registered_capital, 0, 2000)) AS s
         FROM gov.legal_entities GROUP BY district"
            .to_string(),
        format!(
            "SELECT t.year, SUM(CAST(t.tax_paid > {cap} AS INT)) AS n, AVG(t.tax_paid * 2 + t.vat) AS m FROM gov.tax_payments t GROUP BY t.year"
        ),
        format!(
            "SELECT sex, AVG(CASE WHEN cost > {cost} THEN cost * 10 ELSE 0 END) AS c, SUM(GREATEST(cost - {cost}, 0)) AS g
             FROM health.clinic_visits GROUP BY sex"
        ),        // DP quantiles: the rare unit's own value as the only one of its
        // group (MIN = MAX = MEDIAN of one value), extremes over the whole
        // table, percentiles of derived measures and analyst bounds, the
        // person with most visits (total-row cap L), and a quantile next
        // to the AVG of the same measure.
        format!(
            "SELECT district, MIN(registered_capital) AS lo, MAX(registered_capital) AS hi, MEDIAN(insured_employees) AS m
             FROM gov.legal_entities WHERE founded = DATE '{date}' GROUP BY district"
        ),
        "SELECT MAX(registered_capital) AS hi, MIN(insured_employees) AS lo FROM gov.legal_entities".to_string(),
        format!(
            "SELECT industry, percentile_cont(0.9) WITHIN GROUP (ORDER BY CLAMP(registered_capital, 0, {cap})) AS p90,
                    approx_percentile_cont(0.25) WITHIN GROUP (ORDER BY insured_employees DESC) AS p75
             FROM gov.legal_entities GROUP BY industry"
        ),
        format!(
            "SELECT district, MEDIAN(CASE WHEN founded = DATE '{date}' THEN registered_capital * 1000 ELSE 0 END) AS m,
                    AVG(registered_capital) AS a
             FROM gov.legal_entities GROUP BY district"
        ),
        format!(
            "SELECT district, MEDIAN(cost) AS m, MAX(CLAMP(cost, 0, {cost})) AS top, COUNT(*) AS n FROM health.clinic_visits GROUP BY district"
        ),
        "SELECT b.term_months, MEDIAN(b.amount) AS m FROM bank.loans b GROUP BY b.term_months".to_string(),        // DP bound estimation: the rare unit's extreme value in the
        // table-wide quantile, a derived measure, and a chosen quantile.
        "SELECT district, AVG(CLAMP_AUTO(registered_capital)) AS a, SUM(CLAMP_AUTO(registered_capital, 0.9)) AS s
         FROM gov.legal_entities GROUP BY district"
            .to_string(),
        format!(
            "SELECT industry, AVG(CLAMP_AUTO(CASE WHEN founded = DATE '{date}' THEN registered_capital * 100 ELSE insured_employees END)) AS a
             FROM gov.legal_entities GROUP BY industry"
        ),
        "SELECT month, AVG(CLAMP_AUTO(electricity_kwh, 0.95)) AS a FROM gov.utility_usage GROUP BY month".to_string(),
        format!(
            "SELECT district, SUM(CLAMP_AUTO(cost)) AS s FROM health.clinic_visits WHERE cost < {cost} GROUP BY district"
        ),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, sql)| (format!("attack {}", i + 1), sql))
        .collect()
}

/// A table the generator draws from: (dataset, alias, measures, dimensions).
struct Table {
    dataset: &'static str,
    measures: &'static [&'static str],
    dimensions: &'static [&'static str],
    enterprise: bool,
}

const TABLES: &[Table] = &[
    Table {
        dataset: "gov.legal_entities",
        measures: &["registered_capital", "insured_employees"],
        dimensions: &["district", "industry", "founded"],
        enterprise: true,
    },
    Table {
        dataset: "gov.tax_payments",
        measures: &["tax_paid", "vat"],
        dimensions: &["year"],
        enterprise: true,
    },
    Table {
        dataset: "gov.utility_usage",
        measures: &["electricity_kwh", "water_m3", "gas_m3"],
        dimensions: &["month"],
        enterprise: true,
    },
    Table {
        dataset: "bank.loans",
        measures: &["amount", "rate", "defaulted"],
        dimensions: &["term_months"],
        enterprise: true,
    },
    Table {
        dataset: "health.clinic_visits",
        measures: &["cost"],
        dimensions: &["sex", "district", "diagnosis_chapter", "age"],
        enterprise: false,
    },
];

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Seeded random queries over joins (fusions, lookups, bridges), subqueries,
/// CASE, casts, filters and group keys. Many are refused; the property is
/// the same either way.
fn generated(seed: u64, count: usize) -> Vec<(String, String)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for i in 0..count {
        let base = pick(&mut rng, TABLES);
        let mut from = format!("{} a", base.dataset);
        // Columns visible as (qualified name, is measure).
        let mut measures: Vec<String> = base.measures.iter().map(|m| format!("a.{m}")).collect();
        let mut dimensions: Vec<String> = base.dimensions.iter().map(|d| format!("a.{d}")).collect();
        let unit = if base.enterprise {
            "a.credit_code"
        } else {
            "a.person_id"
        };
        match rng.random_range(0..6) {
            // fusion with another enterprise table on the unit
            0 | 1 if base.enterprise => {
                let other = loop {
                    let t = pick(&mut rng, TABLES);
                    if t.enterprise && t.dataset != base.dataset {
                        break t;
                    }
                };
                let kind = if rng.random_bool(0.3) { "LEFT JOIN" } else { "JOIN" };
                from.push_str(&format!(" {kind} {} b ON a.credit_code = b.credit_code", other.dataset));
                measures.extend(other.measures.iter().map(|m| format!("b.{m}")));
                dimensions.extend(other.dimensions.iter().map(|d| format!("b.{d}")));
            }
            // lookup
            2 if base.dimensions.contains(&"district") => {
                let kind = if rng.random_bool(0.3) { "LEFT JOIN" } else { "JOIN" };
                from.push_str(&format!(" {kind} gov.districts d ON a.district = d.district"));
                dimensions.push("d.division_code".into());
            }
            // bridge through the lookup to a second protected scan (refused)
            3 if base.dimensions.contains(&"district") => {
                from.push_str(&format!(
                    " JOIN gov.districts d ON a.district = d.district JOIN {} c ON c.district = d.district",
                    base.dataset
                ));
                measures.extend(base.measures.iter().map(|m| format!("c.{m}")));
            }
            // subquery wrapping the base
            4 => {
                let cols: Vec<String> = base
                    .measures
                    .iter()
                    .chain(base.dimensions)
                    .map(|c| c.to_string())
                    .chain(std::iter::once(unit.trim_start_matches("a.").to_string()))
                    .collect();
                from = format!("(SELECT {} FROM {}) a", cols.join(", "), base.dataset);
            }
            _ => {}
        }
        let m = pick(&mut rng, &measures).clone();
        let dim = pick(&mut rng, &dimensions).clone();
        let filter = match rng.random_range(0..8) {
            0 => format!(" WHERE {m} > {}", rng.random_range(0..500)),
            1 => format!(" WHERE CASE WHEN {m} > 10 THEN CAST({dim} AS BIGINT) ELSE 0 END = 0"),
            2 => format!(" WHERE 100 / ({m} - {}) > 0", rng.random_range(0..3)),
            3 => format!(" WHERE CAST({dim} AS VARCHAR) <> 'x'"),
            4 => format!(" WHERE {m} BETWEEN 1 AND {}", rng.random_range(10..10_000)),
            5 => format!(" WHERE {m} IS NOT NULL AND {m} % 7 <> 3"),
            _ => String::new(),
        };
        let key = match rng.random_range(0..5) {
            0 => format!("CASE WHEN CAST({dim} AS VARCHAR) < 'M' THEN 'low' ELSE 'high' END"),
            1 => format!("CAST({dim} AS VARCHAR)"),
            2 => m.clone(),
            _ => dim.clone(),
        };
        let aggregate = match rng.random_range(0..7) {
            0 => format!("SUM({m})"),
            1 => format!("AVG({m})"),
            2 => format!("COUNT(DISTINCT {unit})"),
            3 => format!("COUNT({m})"),
            4 => format!("VARIANCE({m})"),
            5 => format!("AVG(CAST({m} AS DOUBLE))"),
            _ => "COUNT(*)".to_string(),
        };
        let sql = if rng.random_bool(0.15) {
            format!("SELECT {aggregate} AS v FROM {from}{filter}")
        } else {
            format!("SELECT {key} AS k, {aggregate} AS v FROM {from}{filter} GROUP BY {key}")
        };
        out.push((format!("generated {i}"), sql));
    }
    out
}

/// Seeded aggregates of expressions (derived measures, analyst CLAMPs)
/// over one table or a fusion of two, with filters and group keys.
fn generated_derived(seed: u64, count: usize) -> Vec<(String, String)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for i in 0..count {
        let base = pick(&mut rng, TABLES);
        let mut from = format!("{} a", base.dataset);
        let mut measures: Vec<String> = base.measures.iter().map(|m| format!("a.{m}")).collect();
        let mut dimensions: Vec<String> = base.dimensions.iter().map(|d| format!("a.{d}")).collect();
        if base.enterprise && rng.random_bool(0.4) {
            let other = loop {
                let t = pick(&mut rng, TABLES);
                if t.enterprise && t.dataset != base.dataset {
                    break t;
                }
            };
            from.push_str(&format!(" JOIN {} b ON a.credit_code = b.credit_code", other.dataset));
            measures.extend(other.measures.iter().map(|m| format!("b.{m}")));
            dimensions.extend(other.dimensions.iter().map(|d| format!("b.{d}")));
        }
        let m = pick(&mut rng, &measures).clone();
        let m2 = pick(&mut rng, &measures).clone();
        let dim = pick(&mut rng, &dimensions).clone();
        let k = rng.random_range(0..2_000);
        let value = match rng.random_range(0..8) {
            0 => format!("{m} * 2 - {m2}"),
            1 => format!("CASE WHEN {m} > {k} THEN {m2} ELSE 0 END"),
            2 => format!("CLAMP({m}, 0, {})", k + 1),
            3 => format!("ABS({m} - {m2})"),
            4 => format!("CLAMP({m} / {m2}, 0, 100)"),
            5 => format!("CAST({m} > {k} AS INT)"),
            6 => format!("CLAMP({m} % ({m2} - {k}), -50, 50)"),
            _ => format!("LEAST(GREATEST({m}, {k}), {}) + COALESCE({m2}, 0)", k + 500),
        };
        let function = *pick(&mut rng, &["SUM", "AVG", "VARIANCE", "STDDEV"]);
        let filter = if rng.random_bool(0.3) {
            format!(" WHERE {m} > {}", rng.random_range(0..500))
        } else {
            String::new()
        };
        out.push((
            format!("generated derived {i}"),
            format!("SELECT {dim} AS k, {function}({value}) AS v FROM {from}{filter} GROUP BY {dim}"),
        ));
    }
    out
}

/// Red team 2026-12-01 (run alone with
/// `SANDBOX_NEIGHBOURING_ONLY=red-team-1201`): group keys that are NULL in
/// all but one column give every group of a unit the same keyed priority
/// (a NULL leaves the hash unchanged), so the choice of a person's G = 5
/// groups and the order its L = 50 rows are spent in is decided by the
/// tie-break alone: the engine's key order and the release step's group
/// ids must agree. One query per path that skips the per-unit stage keeps
/// the suite's non-vacuity check satisfied.
fn red_team_1201() -> Vec<(String, String)> {
    let chapters = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"];
    let keys: Vec<String> = chapters
        .iter()
        .map(|c| format!("CASE WHEN diagnosis_chapter = '{c}' THEN sex END"))
        .collect();
    let select: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("{k} AS c{i}")).collect();
    let tie = format!(
        "SELECT {}, COUNT(*) AS n, SUM(cost) AS s FROM health.clinic_visits GROUP BY {} -- red-team-1201",
        select.join(", "),
        keys.join(", ")
    );
    let districts: Vec<String> = chapters[..8]
        .iter()
        .map(|c| format!("CASE WHEN diagnosis_chapter = '{c}' THEN district END"))
        .collect();
    let tie_district = format!(
        "SELECT COUNT(*) AS n, AVG(cost) AS a FROM health.clinic_visits GROUP BY {} -- red-team-1201",
        districts.join(", ")
    );
    vec![
        ("red-team-1201 NULL-swapped keys (sex)".into(), tie),
        ("red-team-1201 NULL-swapped keys (district)".into(), tie_district),
        (
            "red-team-1201 public keys, no per-unit stage".into(),
            "SELECT district, COUNT(*) AS n, SUM(registered_capital) AS s FROM gov.legal_entities GROUP BY district -- red-team-1201".into(),
        ),
    ]
}

/// Shapes that a declared key of several columns (`"credit_code+month" = 1`
/// on the usage table) lets skip the per-unit stage or count units by
/// their rows; the release must not move by more than one unit's bound all
/// the same (and the in-engine totals equal the release step's).
fn declared_keys() -> Vec<(String, String)> {
    [
        "SELECT month, COUNT(DISTINCT credit_code) AS firms FROM gov.utility_usage GROUP BY month",
        "SELECT month, COUNT(DISTINCT credit_code) AS firms, AVG(electricity_kwh) AS kwh FROM gov.utility_usage \
         WHERE gas_m3 > 10 GROUP BY month",
        "SELECT u.month, COUNT(DISTINCT u.credit_code) AS firms, SUM(u.water_m3) AS w FROM gov.utility_usage u \
         JOIN bank.loans l ON u.credit_code = l.credit_code GROUP BY u.month",
        "SELECT m, COUNT(DISTINCT c) AS firms FROM (SELECT credit_code AS c, month AS m FROM gov.utility_usage) t GROUP BY m",
        "SELECT substr(month, 1, 4) AS y, COUNT(DISTINCT credit_code) AS firms FROM gov.utility_usage GROUP BY substr(month, 1, 4)",
        // The benchmark's public-key shapes (rows outside the public months
        // made NULL in one unread group: `contribution::public_set`).
        "SELECT month, COUNT(*) AS n, AVG(electricity_kwh) AS kwh FROM gov.utility_usage GROUP BY month",
        "SELECT month, AVG(electricity_kwh) AS kwh, VARIANCE(electricity_kwh) AS v FROM gov.utility_usage GROUP BY month",
        // Two public keys from two owners' tables: one NULL group for every
        // pattern of keys outside their sets.
        "SELECT u.month, e.district, COUNT(DISTINCT u.credit_code) AS firms, SUM(u.water_m3) AS w \
         FROM gov.utility_usage u JOIN gov.legal_entities e ON u.credit_code = e.credit_code GROUP BY u.month, e.district",
        // The benchmark's two-table fusion: each enterprise's 24 rows in
        // one (district, industry) group, units counted by their keyed
        // hash (`UnitHash`), the public-key filter below the join.
        "SELECT l.district, l.industry, AVG(u.electricity_kwh) AS kwh, COUNT(*) AS n \
         FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code GROUP BY l.district, l.industry",
    ]
    .iter()
    .enumerate()
    .map(|(i, q)| (format!("declared key {i}"), q.to_string()))
    .collect()
}

/// Queries that tell a banded measure's edge `99.99999999999999` from
/// `100` (see `MEASURE_RULES`): a rule rebuilt one step off on an executor
/// would move a whole band across these filters and keys.
fn band_edges() -> Vec<(String, String)> {
    [
        "SELECT sex, COUNT(*) AS n FROM health.clinic_visits WHERE cost >= 100 GROUP BY sex",
        "SELECT CASE WHEN cost < 100 THEN 'below' ELSE 'at or above' END AS k, COUNT(*) AS n, SUM(cost) AS s \
         FROM health.clinic_visits GROUP BY 1",
    ]
    .into_iter()
    .enumerate()
    .map(|(i, sql)| (format!("band edges {i}"), sql.to_string()))
    .collect()
}
