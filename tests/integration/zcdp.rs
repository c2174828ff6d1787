//! Budgets accounted under zero-concentrated DP (`[dp] accounting =
//! "zcdp"`): a grant's line on such a dataset charges ρ = ε²/2 per job, its
//! jobs get discrete Gaussian noise calibrated to L2 sensitivities, and the
//! line's ε spent is its ρ converted at the policy's δ.

use crate::fixture::roomy_sandbox;
use sandbox_governance::Grant;
use sandbox_model::{DatasetId, ReleasedCell};
use sandbox_runtime::{DataDir, Sandbox, SqlJobOptions, SqlJobResult};

const TAX: &str = "gov.tax_payments";
const SQL: &str = "SELECT year, AVG(tax_paid) AS t FROM gov.tax_payments GROUP BY year";

fn grant(s: &Sandbox, id: &str) {
    let tax: DatasetId = TAX.parse().expect("id");
    s.store()
        .upsert_grant(&Grant::new(id, "tests", vec![(tax, 1000.0)]))
        .expect("grant");
}

/// The centred sum's noise scale (output units) in a dry run at ε.
async fn sum_scale(s: &Sandbox, grant: &str, epsilon: f64) -> f64 {
    let options = SqlJobOptions {
        epsilon: Some(epsilon),
        dry_run: true,
        ..Default::default()
    };
    match s.run_sql(grant, SQL, &options).await.expect("dry run") {
        SqlJobResult::DryRun(d) => d.aggregates[0].1.components[1].1,
        other => panic!("dry run expected, got {other:?}"),
    }
}

/// The tax policy (G = 3 years, R = 1 row, so L1 = 3 and L2 = √3 per
/// enterprise; mode `both`, so the query's ε is split over the mean, the
/// k-threshold's unit counts and dominance: three parts). Under basic
/// composition the mean's sum gets ε/6 and Laplace scale 3M/(ε/6) = 18M/ε;
/// under zCDP it gets ρ/6 = ε²/12 and σ = √3·M/√(2ε²/12) = √18·M/ε: √18 ≈
/// 4.24 times less noise at the same nominal ε. A line that spent under
/// pure accounting stays pure; one job on the zCDP line charges ρ = ε²/2
/// and moves its ε spent to OpenDP's conversion of that ρ at δ = 1e-6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zcdp_policy_calibrates_to_l2_and_accounts_in_rho() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pure = roomy_sandbox(&tmp);
    grant(&pure, "pure");
    let job = SqlJobOptions {
        epsilon: Some(0.5),
        ..Default::default()
    };
    pure.run_sql("pure", SQL, &job).await.expect("a pure job");
    let pure_scale = sum_scale(&pure, "pure", 0.5).await;
    drop(pure);

    let dir = DataDir::open(tmp.path().join("iso")).expect("data dir");
    let path = dir.policies_dir().join(format!("{TAX}.toml"));
    let text = std::fs::read_to_string(&path).expect("policy");
    std::fs::write(
        &path,
        text.replacen("\n[dp]\n", "\n[dp]\naccounting = \"zcdp\"\nzcdp_delta = 1e-6\n", 1),
    )
    .expect("write policy");
    let s = Sandbox::open(dir).expect("sandbox");
    grant(&s, "z");
    let lines = |g: &str| s.store().budget(g).expect("budget").remove(0);
    assert_eq!(
        lines("pure").accounting,
        "pure",
        "a line that spent keeps its accounting"
    );
    assert_eq!(lines("z").accounting, "zcdp");
    assert_eq!(sum_scale(&s, "pure", 0.5).await, pure_scale, "and its calibration");

    let zcdp_scale = sum_scale(&s, "z", 0.5).await;
    let ratio = pure_scale / zcdp_scale;
    assert!(
        (ratio - 18f64.sqrt()).abs() < 0.01,
        "Laplace {pure_scale} / Gaussian {zcdp_scale} = {ratio}"
    );

    let table = match s.run_sql("z", SQL, &job).await.expect("a zCDP job") {
        SqlJobResult::Released { table, .. } => table,
        other => panic!("release expected, got {other:?}"),
    };
    for row in &table.rows {
        for cell in row {
            if let ReleasedCell::Noisy { mechanism, .. } = cell {
                assert_eq!(mechanism, "discrete_gaussian");
            }
        }
    }
    assert!(
        table.notes.iter().any(|n| n.contains("zero-concentrated")),
        "{:?}",
        table.notes
    );
    let line = lines("z");
    assert!((line.rho_spent - 0.125).abs() < 1e-12, "ρ = ε²/2: {}", line.rho_spent);
    let converted = sandbox_dp::accounting::zcdp_epsilon(0.125, 1e-6).expect("conversion");
    assert!(
        line.epsilon_spent >= converted && line.epsilon_spent < converted + 2e-9,
        "ε spent {} vs the conversion {converted}",
        line.epsilon_spent
    );
    assert_eq!(
        line.delta_spent, 1e-6,
        "the conversion δ, once (public years: no selection δ)"
    );
}
