//! SQL jobs end to end: public key sets, dry runs, budgets, threshold rules.

use crate::fixture::{TEST_GRANT, isolated_sandbox, sandbox};
use sandbox_model::ReleasedCell;
use sandbox_runtime::sandbox::DEMO_GRANT;
use sandbox_runtime::{SqlJobOptions, SqlJobResult};
use std::sync::Arc;

fn released(r: SqlJobResult) -> sandbox_model::ReleasedTable {
    match r {
        SqlJobResult::Released { table, .. } => table,
        other => panic!("expected a release, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_key_appears_even_when_empty() {
    let s = sandbox();
    let sql = "SELECT district, COUNT(*) AS n FROM gov.legal_entities WHERE registered_capital < 0 GROUP BY district";
    let t = released(
        s.run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
            .await
            .expect("run"),
    );
    assert_eq!(t.rows.len(), 16);
    for row in &t.rows {
        let ReleasedCell::Noisy {
            value,
            scale,
            ci95,
            mechanism,
        } = &row[1]
        else {
            panic!("noisy count expected")
        };
        assert_eq!(mechanism, "discrete_laplace");
        assert!(*value >= 0.0 && *scale > 0.0 && ci95[0] <= ci95[1]);
    }
    assert_eq!(t.delta_spent, 0.0, "public keys need no δ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_cost_without_reading_or_charging() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = isolated_sandbox(&tmp);
    let before = s.budget(DEMO_GRANT).expect("budget");
    let sql = "SELECT industry, AVG(insured_employees) AS staff FROM gov.legal_entities GROUP BY industry";
    let r = s
        .run_sql(
            DEMO_GRANT,
            sql,
            &SqlJobOptions {
                epsilon: Some(0.5),
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .expect("dry run");
    let SqlJobResult::DryRun(report) = r else {
        panic!("dry run expected")
    };
    assert_eq!(report.epsilon, 0.5);
    assert_eq!(report.public_groups, Some(20));
    // AVG splits its ε in two: the centred sum has Δ = G·R·(U-L)/2 = 2500, b = 2500 / 0.25.
    let sum = &report.aggregates[0].1.components[1];
    assert!((sum.1 - 10_000.0).abs() < 1e-6, "{report:?}");
    assert_eq!(s.budget(DEMO_GRANT).expect("budget"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_over_cap_epsilon_charge_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = isolated_sandbox(&tmp);
    let before = s.budget(DEMO_GRANT).expect("budget");
    let e = s
        .run_sql(
            DEMO_GRANT,
            "SELECT credit_code FROM gov.legal_entities",
            &SqlJobOptions::default(),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.rule(), Some("identifier-in-output"));
    let e = s
        .run_sql(
            DEMO_GRANT,
            "SELECT district, COUNT(*) FROM gov.legal_entities GROUP BY district",
            &SqlJobOptions {
                epsilon: Some(5.0),
                dry_run: false,
                ..Default::default()
            },
        )
        .await
        .expect_err("over cap");
    assert_eq!(e.rule(), Some("epsilon-over-cap"));
    // Below the policies' minimum ε per query (0.01 by default): refused
    // before it runs, not charged a rounding error.
    for tiny in [1e-17, 0.009] {
        let e = s
            .run_sql(
                DEMO_GRANT,
                "SELECT district, COUNT(*) FROM gov.legal_entities GROUP BY district",
                &SqlJobOptions {
                    epsilon: Some(tiny),
                    dry_run: false,
                    ..Default::default()
                },
            )
            .await
            .expect_err("below the minimum");
        assert_eq!(e.rule(), Some("epsilon-below-minimum"), "{e}");
        assert!(e.to_string().contains("minimum of 0.01"), "{e}");
    }
    assert_eq!(s.budget(DEMO_GRANT).expect("budget"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_is_budgeted_per_agreement_and_dataset() {
    use sandbox_governance::Role;
    let tmp = tempfile::tempdir().expect("tmp");
    let s = isolated_sandbox(&tmp);
    let line = |s: &sandbox_runtime::Sandbox| {
        s.budget(DEMO_GRANT)
            .expect("budget")
            .into_iter()
            .find(|b| b.dataset == "gov.legal_entities")
            .expect("line")
    };
    assert_eq!(line(&s).delta_total, 1e-4, "the default: 100 × δ");
    // The owner allows δ for one query with partition selection.
    s.store()
        .create_account("ops", &Role::Operator, "operator-token-0123456789abcdef0123", "ops")
        .expect("ops");
    s.store()
        .create_account(
            "market",
            &Role::DataOwner {
                provider: "shanghai-market-regulation".into(),
            },
            "market-token-0123456789abcdef0123456789",
            "ops",
        )
        .expect("owner");
    let path = s.data_dir().policies_dir().join("gov.legal_entities.toml");
    let text = std::fs::read_to_string(&path).expect("policy");
    let text = text.replacen("epsilon_budget = 10.0", "epsilon_budget = 10.0\ndelta_budget = 1e-6", 1);
    s.set_policy("market", "gov.legal_entities.toml", &text)
        .expect("policy set");
    assert_eq!(line(&s).delta_total, 1e-6);
    // `founded` has no public key set: groups are chosen with δ.
    let sql = "SELECT founded, COUNT(*) FROM gov.legal_entities GROUP BY founded";
    let options = SqlJobOptions {
        epsilon: Some(0.5),
        dry_run: false,
        ..Default::default()
    };
    let t = released(s.run_sql(DEMO_GRANT, sql, &options).await.expect("first"));
    assert_eq!(t.delta_spent, 1e-6);
    let e = s.run_sql(DEMO_GRANT, sql, &options).await.expect_err("δ spent");
    assert_eq!(e.rule(), Some("delta-budget-exhausted"), "{e}");
    let l = line(&s);
    assert_eq!((l.delta_spent, l.delta_left(), l.epsilon_spent), (1e-6, 0.0, 0.5));
    // Public keys need no δ: still allowed.
    let public = "SELECT district, COUNT(*) FROM gov.legal_entities GROUP BY district";
    s.run_sql(DEMO_GRANT, public, &options).await.expect("no δ needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_never_overspend_a_grant() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Arc::new(isolated_sandbox(&tmp));
    // gov.legal_entities: budget 10, 1 per query at the cap; spend 0.75 each.
    let sql = "SELECT district, COUNT(*) AS n FROM gov.legal_entities GROUP BY district";
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.run_sql(
                    DEMO_GRANT,
                    sql,
                    &SqlJobOptions {
                        epsilon: Some(0.75),
                        dry_run: false,
                        ..Default::default()
                    },
                )
                .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut exhausted = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => ok += 1,
            Err(e) if e.rule() == Some("budget-exhausted") => exhausted += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(ok, 13, "floor(10 / 0.75) jobs fit");
    assert_eq!(exhausted, 11);
    let line = s
        .budget(DEMO_GRANT)
        .expect("budget")
        .into_iter()
        .find(|b| b.dataset == "gov.legal_entities")
        .expect("line");
    assert_eq!(line.epsilon_spent, 9.75, "exactly 13 × 0.75");
    let charged = s.store().charged(DEMO_GRANT).expect("charged");
    let c = charged.iter().find(|c| c.0 == "gov.legal_entities").expect("charge");
    assert_eq!(c.1, line.epsilon_spent, "charges match the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_rules_suppress_small_groups_and_round() {
    let s = sandbox();
    // Tax data is released under `both`: DP noise, then k = 10 on exact unit
    // counts, dominance and rounding to 1. A filter that leaves few firms per
    // year must withhold those years, naming the rule.
    // One firm a year passes the filter (seed 42). k is decided on a noisy
    // unit count (scale 9 here: G = 3 over a third of ε), so a year of one
    // firm shows with probability P(L ≥ 9) = e^-1 / (1 + e^-1/9) ≈ 0.19,
    // all three in 0.73 % of runs; over five runs (the loop stops at the
    // first withheld year, usually the first) some year is withheld but
    // with probability 0.0073⁵ ≈ 2·10⁻¹¹ (over three it was 4·10⁻⁷).
    let sql = "SELECT year, SUM(tax_paid) AS tax FROM gov.tax_payments WHERE tax_paid > 4990 GROUP BY year";
    let mut withheld_once = false;
    for _ in 0..5 {
        let t = released(
            s.run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
                .await
                .expect("run"),
        );
        assert_eq!(t.rows.len(), 3);
        let withheld = t
            .rows
            .iter()
            .filter(|r| matches!(r[1], ReleasedCell::Withheld { .. }))
            .count();
        assert_eq!(withheld > 0, !t.suppressed.is_empty(), "{t:?}");
        if withheld > 0 {
            withheld_once = true;
            break;
        }
    }
    assert!(withheld_once, "no year of one firm was withheld in five runs");
    let sql = "SELECT year, SUM(tax_paid) AS tax FROM gov.tax_payments GROUP BY year";
    let t = released(
        s.run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
            .await
            .expect("run"),
    );
    for r in &t.rows {
        if let ReleasedCell::Noisy { value, .. } = r[1] {
            assert_eq!(value, value.round(), "rounded to base 1");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_counts_center_on_the_truth() {
    // 40 releases of a global COUNT(*) of enterprises: their mean is within
    // 6 standard errors of the number of rows the generator wrote.
    let s = sandbox();
    let report = sandbox_datagen::Scale::small();
    let truth = report.entities as f64;
    let mut values = Vec::new();
    for _ in 0..40 {
        let t = released(
            s.run_sql(
                TEST_GRANT,
                "SELECT COUNT(*) AS n FROM gov.legal_entities",
                &SqlJobOptions::default(),
            )
            .await
            .expect("run"),
        );
        let ReleasedCell::Noisy { value, scale, .. } = t.rows[0][0] else {
            panic!("noisy")
        };
        assert_eq!(scale, 1.0, "G = R = 1, ε = 1");
        values.push(value);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let se = (2.0f64).sqrt() / (values.len() as f64).sqrt();
    assert!((mean - truth).abs() < 6.0 * se + 0.5, "mean {mean} vs {truth}");
}
