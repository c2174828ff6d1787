//! A rule on a measure applies beneath the plan like any other rule: the
//! checked job's aggregates (clamped to the owner's bounds above the scan)
//! are exactly those of the same rows stored already coarsened.

use super::attack::{coarsened, write_table};
use super::*;
use crate::contribution::{Bounding, compute_totals};
use crate::multiplicity::UnitBounds;
use crate::partials::{Contributions, plan_measures};

/// Every test dataset's policy: `health.visits` with its rules, the
/// others (the same columns and roles) without any.
struct Policies(Vec<Policy>);

impl PolicyLookup for Policies {
    fn policy(&self, dataset: &DatasetId) -> Option<&Policy> {
        self.0.iter().find(|p| &p.dataset == dataset)
    }
    fn open_class(&self, dataset: &DatasetId) -> Option<OpenClass> {
        self.policy(dataset).map(|_| OpenClass::Conditional)
    }
}

/// Per group (by key): rows, units, and each measure's count and sum on
/// its grid, as the release would receive them (exact, unbounded).
type Totals = BTreeMap<String, (i128, i128, Vec<(i128, i128)>)>;

async fn totals(session: &JobSession, policies: &Policies, sql: &str) -> Totals {
    let q = session
        .plan_and_check(sql, policies)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let (_, measures) = plan_measures(&q).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let stats = compute_totals(session, &q, &measures, Bounding::Exact, UnitBounds::default(), true)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let Contributions::Totals { totals, .. } = stats.contributions else {
        panic!("{sql}: totals expected");
    };
    stats
        .groups
        .keys
        .iter()
        .enumerate()
        .map(|(g, key)| {
            let measures = totals.measures.iter().map(|m| (m.count[g], m.sum[g])).collect();
            (
                serde_json::to_string(key).expect("key"),
                (totals.rows[g], totals.units[g], measures),
            )
        })
        .collect()
}

#[tokio::test]
async fn sum_and_avg_of_a_banded_measure_are_those_of_the_precoarsened_values() {
    let dir = tempfile::tempdir().expect("dir");
    // The pre-coarsened table's owner lists the coarsened public keys of
    // `age` (those `health.visits` releases).
    let coarse = policy_edited("health.coarse", &|t| {
        let t = t.replace("public_keys = [18, 19, 20, 23, 37]", "public_keys = [15, 20, 35]");
        t.find("[desensitize]").map_or(t.clone(), |at| t[..at].to_string())
    });
    let policies = Policies(vec![policy(), coarse, policy_named("health.raw", false)]);
    let visits = policies.policy(&"health.visits".parse().expect("id")).expect("policy");
    let rules = scan_rules(visits);
    assert!(
        rules.contains_key("cost"),
        "the measure's rule is applied beneath the plan"
    );
    let session = JobSession::new(
        &[
            write_table(dir.path(), "health.visits", rows(), rules.clone()),
            write_table(dir.path(), "health.coarse", coarsened(&rules), BTreeMap::new()),
            write_table(dir.path(), "health.raw", rows(), BTreeMap::new()),
        ],
        EngineLimits::default(),
    )
    .expect("session");
    let queries = [
        "SELECT SUM(cost) AS s, AVG(cost) AS a FROM {t}",
        "SELECT age, SUM(cost) AS s, AVG(cost) AS a, COUNT(*) AS n FROM {t} GROUP BY age",
        "SELECT name, AVG(cost) AS a FROM {t} GROUP BY name",
        // Filters on the measure compare coarsened values too.
        "SELECT SUM(cost) AS s FROM {t} WHERE cost >= 100",
        "SELECT COUNT(*) AS n FROM {t} WHERE cost BETWEEN 1100 AND 1110",
    ];
    let mut differs_from_raw = 0;
    for q in queries {
        let on_rules = totals(&session, &policies, &q.replace("{t}", "health.visits")).await;
        let on_coarse = totals(&session, &policies, &q.replace("{t}", "health.coarse")).await;
        assert_eq!(on_rules, on_coarse, "{q}");
        let on_raw = totals(&session, &policies, &q.replace("{t}", "health.raw")).await;
        differs_from_raw += usize::from(on_raw != on_rules);
    }
    // Not vacuous: the stored values give other totals for most queries.
    assert!(
        differs_from_raw >= 4,
        "only {differs_from_raw} queries differ from the raw table"
    );
}

/// Coarsening is a function of each row applied before the owner's
/// bounds: a label outside [lower, upper] (here bottom coding to −1000 and
/// the top edge 10000, with bounds [0, 5000]) is clamped like any stored
/// value, and the grid (so each row's reach, and with it the sensitivity)
/// is the one the bounds give, as without the rule.
#[tokio::test]
async fn a_coarsened_measure_is_still_clamped_to_the_owners_bounds() {
    let dir = tempfile::tempdir().expect("dir");
    let wide = policy_edited("health.visits", &|t| {
        t.replace(
            "cost = { bands = [0, 100, 1000] }",
            "cost = { bands = [-1000, 100, 10000] }",
        )
    });
    let rule = wide
        .column("cost")
        .and_then(|c| c.desensitize.clone())
        .expect("cost rule");
    assert_eq!(rule, Desensitization::Bands(vec![-1000.0, 100.0, 10000.0]));
    let policies = Policies(vec![wide]);
    let rules = scan_rules(&policies.0[0]);
    let session = JobSession::new(
        &[write_table(dir.path(), "health.visits", rows(), rules)],
        EngineLimits::default(),
    )
    .expect("session");
    let labels: Vec<f64> = rows().iter().filter_map(|r| r.2).map(|x| rule.apply_f64(x)).collect();
    assert!(
        labels.contains(&-1000.0) && labels.contains(&10000.0),
        "labels outside the bounds"
    );
    for (sql, grid_for) in [
        (
            "SELECT SUM(cost) AS s FROM health.visits",
            sandbox_dp::fixed_point::Quantizer::for_sum as fn(f64, f64) -> _,
        ),
        (
            "SELECT AVG(cost) AS a FROM health.visits",
            sandbox_dp::fixed_point::Quantizer::for_mean,
        ),
    ] {
        let q = session.plan_and_check(sql, &policies).unwrap_or_else(|e| panic!("{e}"));
        let (_, measures) = plan_measures(&q).unwrap_or_else(|e| panic!("{e}"));
        let grid = &measures[0].grid;
        assert_eq!(*grid, grid_for(0.0, 5000.0).expect("grid"), "{sql}: the bounds' grid");
        let want: i128 = labels.iter().filter_map(|x| grid.to_grid(*x)).map(i128::from).sum();
        let got = totals(&session, &policies, sql).await;
        let (_, _, m) = got.get("[]").unwrap_or_else(|| panic!("{sql}: {got:?}"));
        assert_eq!(m[0], (labels.len() as i128, want), "{sql}");
    }
}
