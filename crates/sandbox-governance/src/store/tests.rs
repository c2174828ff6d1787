use super::*;
use crate::testing::test_dbs;
use std::sync::Arc;

fn ds(s: &str) -> DatasetId {
    s.parse().expect("dataset id")
}

#[test]
fn concurrent_reservations_never_overspend() {
    for db in test_dbs() {
        let store = Arc::new(db.open());
        store
            .upsert_grant(
                &Grant::new("g", "h", vec![(ds("gov.a"), 5.0), (ds("gov.b"), 100.0)])
                    .with_delta_budget(ds("gov.b"), 1e-6),
            )
            .expect("grant");
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for i in 0..20 {
                        let job = JobCharge::new(
                            &format!("j{t}-{i}"),
                            "g",
                            "sql",
                            "d",
                            vec![(ds("gov.a"), 0.1, 0.0), (ds("gov.b"), 0.1, 1e-9)],
                        );
                        if store.reserve(&job).is_ok() {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let ok: i32 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(ok, 50, "{}: exactly 5.0 / 0.1 jobs fit", db.name());
        let budget = store.budget("g").expect("budget");
        assert_eq!(budget[0].exact().epsilon_spent, Epsilon::from_units(5_000_000_000));
        assert_eq!(budget[0].epsilon_spent, 5.0, "exactly, not about");
        let charged = store.charged_exact("g").expect("charged");
        assert_eq!(charged[0].1, budget[0].exact().epsilon_spent);
        assert_eq!(budget[1].epsilon_spent, 5.0, "a refused job charges nothing anywhere");
        assert_eq!(charged[1].2, Delta::from_units(50 * 1_000_000));
        assert_eq!(budget[1].exact().delta_spent, charged[1].2);
        // One ledger entry per admitted job, in one unbroken chain.
        let entries = store.audit_entries().expect("entries");
        assert_eq!(entries.iter().filter(|e| e.kind == "job_charged").count(), 50);
        assert!(matches!(
            store.verify_audit().expect("verify"),
            crate::AuditReport::Intact { entries: 51, .. }
        ));
    }
}

#[test]
fn unknown_grant_and_uncovered_dataset() {
    for db in test_dbs() {
        let store = db.open();
        assert!(matches!(store.grant_datasets("nope"), Err(GovernanceError::NoGrant(_))));
        store
            .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
            .expect("grant");
        let job = JobCharge::new("j", "g", "sql", "d", vec![(ds("gov.z"), 0.1, 0.0)]);
        assert!(matches!(store.reserve(&job), Err(GovernanceError::NotCovered { .. })));
        let job = JobCharge::new("j", "g", "sql", "d", vec![(ds("gov.a"), 0.1, 0.0)]);
        store.reserve(&job).expect("reserve");
        // The same job again while it is recorded as running (a restart
        // interrupted it) resumes under its first charge.
        store.reserve(&job).expect("resume");
        assert_eq!(store.charged("g").expect("charged"), vec![("gov.a".to_string(), 0.1)]);
        assert_eq!(store.budget("g").expect("budget")[0].epsilon_spent, 0.1);
        let other = JobCharge::new("j", "g", "sql", "other digest", vec![(ds("gov.a"), 0.1, 0.0)]);
        assert!(matches!(store.reserve(&other), Err(GovernanceError::DuplicateJob(_))));
        let usage = UsageRecord {
            job_id: "j".into(),
            grant_id: "g".into(),
            ..Default::default()
        };
        store.finish("j", &JobOutcome::Released, &usage).expect("finish");
        assert!(
            matches!(
                store.finish("j", &JobOutcome::Released, &usage),
                Err(GovernanceError::NotRunning(_))
            ),
            "a job finishes once"
        );
        assert!(
            matches!(store.reserve(&job), Err(GovernanceError::DuplicateJob(_))),
            "a finished job never runs again"
        );
        let kinds: Vec<String> = store
            .audit_entries()
            .expect("entries")
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds.iter().filter(|k| *k == "job_resumed").count(), 1);
        assert!(store.verify_audit().expect("verify").is_intact());
    }
}

#[test]
fn released_results_are_stored_with_their_release_only() {
    for db in test_dbs() {
        let store = db.open();
        store
            .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
            .expect("grant");
        let usage = |id: &str| UsageRecord {
            job_id: id.into(),
            grant_id: "g".into(),
            datasets: vec![ds("gov.a")],
            ..Default::default()
        };
        for id in ["released", "suspended", "failed"] {
            store
                .reserve(&JobCharge::new(id, "g", "sql", "d", vec![(ds("gov.a"), 0.1, 0.0)]))
                .expect("reserve");
        }
        store
            .finish_with_result(
                "released",
                &JobOutcome::Released,
                &usage("released"),
                Some("{\"rows\":[]}"),
            )
            .expect("finish");
        assert_eq!(
            store.job_result("released").expect("read").as_deref(),
            Some("{\"rows\":[]}")
        );
        store
            .finish_with_result(
                "failed",
                &JobOutcome::Failed { message: "x".into() },
                &usage("failed"),
                Some("{}"),
            )
            .expect("finish");
        assert_eq!(
            store.job_result("failed").expect("read"),
            None,
            "only releases keep results"
        );
        store.suspend_dataset("gov.a", "ops", "complaint").expect("suspend");
        assert!(
            store
                .finish_with_result("suspended", &JobOutcome::Released, &usage("suspended"), Some("{}"))
                .is_err()
        );
        assert_eq!(
            store.job_result("suspended").expect("read"),
            None,
            "a cancelled release keeps nothing"
        );
        assert_eq!(
            store.recorded_job("suspended").expect("read").expect("row").status,
            "cancelled"
        );
    }
}

#[test]
fn charges_survive_reopening() {
    for db in test_dbs() {
        {
            let store = db.open();
            store
                .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
                .expect("grant");
            store
                .reserve(&JobCharge::new("j", "g", "sql", "d", vec![(ds("gov.a"), 0.7, 0.0)]))
                .expect("reserve");
        }
        let store = db.open();
        store
            .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
            .expect("grant again");
        assert!((store.budget("g").expect("budget")[0].epsilon_spent - 0.7).abs() < 1e-12);
        assert!(
            store
                .reserve(&JobCharge::new("k", "g", "sql", "d", vec![(ds("gov.a"), 0.7, 0.0)]))
                .is_err()
        );
    }
}

/// Racing jobs that each charge δ: exactly as many as the δ budget
/// holds are admitted, whichever of ε or δ runs out first.
#[test]
fn concurrent_reservations_never_overspend_delta() {
    for db in test_dbs() {
        let store = Arc::new(db.open());
        store
            .upsert_grant(
                &Grant::new("g", "h", vec![(ds("gov.a"), 1000.0), (ds("gov.b"), 0.37)])
                    .with_delta_budget(ds("gov.a"), 3.3e-5),
            )
            .expect("grant");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    for i in 0..20 {
                        // δ jobs on gov.a; ε-only jobs on gov.b.
                        let charges = if i % 2 == 0 {
                            vec![(ds("gov.a"), 0.01, 1e-6)]
                        } else {
                            vec![(ds("gov.b"), 0.01, 0.0)]
                        };
                        let job = JobCharge::new(&format!("j{t}-{i}"), "g", "sql", "d", charges);
                        outcomes.push((i % 2 == 0, store.reserve(&job)));
                    }
                    outcomes
                })
            })
            .collect();
        let outcomes: Vec<_> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
        let admitted = |delta: bool| outcomes.iter().filter(|(d, r)| *d == delta && r.is_ok()).count();
        assert_eq!(admitted(true), 33, "{}: 3.3e-5 / 1e-6 δ jobs", db.name());
        assert_eq!(admitted(false), 37, "{}: 0.37 / 0.01 ε jobs", db.name());
        assert!(outcomes.iter().all(|(delta, r)| match r {
            Ok(()) => true,
            Err(GovernanceError::DeltaBudgetExhausted { .. }) => *delta,
            Err(GovernanceError::BudgetExhausted { .. }) => !*delta,
            Err(_) => false,
        }));
        let budget = store.budget("g").expect("budget");
        assert_eq!(budget[0].exact().delta_spent, Delta::from_units(33_000_000_000));
        assert_eq!((budget[0].delta_total, budget[0].delta_left()), (3.3e-5, 0.0));
        assert_eq!(budget[1].exact().epsilon_spent, budget[1].exact().epsilon_total);
        let charged = store.charged_exact("g").expect("charged");
        assert_eq!(charged[0].2, budget[0].exact().delta_spent);
        assert_eq!(charged[1].1, budget[1].exact().epsilon_spent);
    }
}

#[test]
fn budgets_add_up_exactly() {
    for db in test_dbs() {
        let store = db.open();
        store
            .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 0.001), (ds("gov.b"), 1.0)]))
            .expect("grant");
        for i in 0..1000 {
            let job = JobCharge::new(&format!("j{i}"), "g", "sql", "d", vec![(ds("gov.a"), 1e-6, 0.0)]);
            store.reserve(&job).expect("fits");
        }
        let e = store
            .reserve(&JobCharge::new("over", "g", "sql", "d", vec![(ds("gov.a"), 1e-6, 0.0)]))
            .expect_err("the 1001st does not fit");
        assert!(matches!(e, GovernanceError::BudgetExhausted { .. }), "{e}");
        assert!(e.to_string().contains("ε = 0.001 of 0.001 spent"), "{e}");
        let line = &store.budget("g").expect("budget")[0];
        assert_eq!(line.epsilon_spent, 0.001, "1000 × 1e-6, exactly");
        assert_eq!(line.exact().epsilon_spent, Epsilon::from_units(1_000_000));
        // Three charges of 1e-17 are three units, not nothing.
        for i in 0..3 {
            let job = JobCharge::new(&format!("tiny{i}"), "g", "sql", "d", vec![(ds("gov.b"), 1e-17, 0.0)]);
            store.reserve(&job).expect("reserve");
        }
        let line = &store.budget("g").expect("budget")[1];
        assert_eq!(line.exact().epsilon_spent, Epsilon::from_units(3));
        assert!(line.epsilon_spent > 0.0);
        // A negative or NaN charge is an error, not a refund.
        let bad = JobCharge::new("neg", "g", "sql", "d", vec![(ds("gov.b"), -1.0, 0.0)]);
        assert!(matches!(store.reserve(&bad), Err(GovernanceError::Invalid(_))));
        let bad = JobCharge::new("nan", "g", "sql", "d", vec![(ds("gov.b"), f64::NAN, 0.0)]);
        assert!(matches!(store.reserve(&bad), Err(GovernanceError::Invalid(_))));
    }
}

#[test]
fn delta_is_budgeted_and_refused_when_exhausted() {
    for db in test_dbs() {
        let store = db.open();
        store
            .upsert_grant(
                &Grant::new("g", "h", vec![(ds("gov.a"), 10.0), (ds("gov.b"), 10.0)])
                    .with_delta_budget(ds("gov.a"), 2e-6),
            )
            .expect("grant");
        let job =
            |id: &str, dataset: &str, delta: f64| JobCharge::new(id, "g", "sql", "d", vec![(ds(dataset), 0.5, delta)]);
        store.reserve(&job("j1", "gov.a", 1e-6)).expect("first");
        store.reserve(&job("j2", "gov.a", 1e-6)).expect("second");
        let e = store.reserve(&job("j3", "gov.a", 1e-6)).expect_err("δ spent");
        assert!(matches!(e, GovernanceError::DeltaBudgetExhausted { .. }), "{e}");
        assert!(e.to_string().contains("δ = 0.000002 of 0.000002 spent"), "{e}");
        store.reserve(&job("j4", "gov.a", 0.0)).expect("no δ, still runs");
        // No δ budget at all (no grant δ, no policy): no δ may be charged.
        let e = store.reserve(&job("j5", "gov.b", 1e-9)).expect_err("no δ budget");
        assert!(matches!(e, GovernanceError::DeltaBudgetExhausted { .. }), "{e}");
        let line = &store.budget("g").expect("budget")[0];
        assert_eq!(
            (line.delta_total, line.delta_spent, line.delta_left()),
            (2e-6, 2e-6, 0.0)
        );
        assert_eq!(line.epsilon_spent, 1.5, "refused jobs charge nothing");
    }
}

#[test]
fn the_policy_caps_every_budget_line() {
    for db in test_dbs() {
        let store = db.open();
        let policy = |eps: f64, delta: f64| crate::Registration {
            dataset: "gov.a".into(),
            provider: "p".into(),
            open_class: "conditional".into(),
            catalog_digest: "c".into(),
            policy_digest: format!("p{eps}"),
            epsilon_budget: Some(eps),
            delta_budget: Some(delta),
            zcdp_delta: None,
        };
        store
            .register_datasets(&[policy(10.0, 1e-4)], "platform")
            .expect("register");
        // A grant written above the policy (as the old rule allowed)
        // spends no more than the policy's budget.
        store
            .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 16.0)]))
            .expect("grant");
        let line = &store.budget("g").expect("budget")[0];
        assert_eq!((line.epsilon_total, line.delta_total), (10.0, 1e-4));
        for i in 0..10 {
            let job = JobCharge::new(&format!("j{i}"), "g", "sql", "d", vec![(ds("gov.a"), 1.0, 1e-6)]);
            store.reserve(&job).expect("within the policy");
        }
        let over = JobCharge::new("j10", "g", "sql", "d", vec![(ds("gov.a"), 1.0, 0.0)]);
        assert!(matches!(
            store.reserve(&over),
            Err(GovernanceError::BudgetExhausted { .. })
        ));
        // The owner lowers the policy: the line follows it down.
        store
            .register_datasets(&[policy(4.0, 5e-6)], "platform")
            .expect("lower");
        let line = &store.budget("g").expect("budget")[0];
        assert_eq!((line.epsilon_total, line.epsilon_left()), (4.0, 0.0));
        assert_eq!(
            (line.delta_total, line.delta_spent, line.delta_left()),
            (5e-6, 1e-5, 0.0)
        );
        // A policy without [dp] no longer caps it (nothing is charged ε then).
        let mut open = policy(0.0, 0.0);
        (open.epsilon_budget, open.delta_budget, open.policy_digest) = (None, None, "threshold".into());
        store.register_datasets(&[open], "platform").expect("threshold");
        assert_eq!(store.budget("g").expect("budget")[0].epsilon_total, 16.0);
    }
}

/// The classic conversion ε = ρ + 2√(ρ ln(1/δ)) (Bun and Steinke 2016,
/// Proposition 1.3), so the test's count of jobs can be worked by hand.
fn classic(rho: f64, delta: f64) -> Option<f64> {
    Some(rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt())
}

/// zCDP lines: each job of ε = 0.1 costs ρ = 0.005; the line's ε spent is
/// its ρ converted at δ_c = 1e-6, so an ε budget of 10 holds ρ ≈ 1.3527
/// (ρ + 2√(13.8155 ρ) = 10): 270 jobs where pure accounting allows 100.
/// The recorded charges add up to the line's ε and δ spent; δ_c is charged
/// once. A line that spent under pure accounting stays pure when the
/// policy changes; an unspent one follows the policy.
#[test]
fn zcdp_lines_add_rho_and_cap_its_conversion() {
    for db in test_dbs() {
        let store = db.open();
        let policy = |zcdp: Option<f64>| crate::Registration {
            dataset: "gov.a".into(),
            provider: "p".into(),
            open_class: "conditional".into(),
            catalog_digest: "c".into(),
            policy_digest: format!("p{zcdp:?}"),
            epsilon_budget: Some(10.0),
            delta_budget: Some(1e-4),
            zcdp_delta: zcdp,
        };
        store.register_datasets(&[policy(None)], "platform").expect("register");
        for g in ["pure", "z", "unspent"] {
            store
                .upsert_grant(&Grant::new(g, "h", vec![(ds("gov.a"), 10.0)]))
                .expect("grant");
        }
        store
            .reserve(&JobCharge::new("p0", "pure", "sql", "d", vec![(ds("gov.a"), 0.1, 0.0)]))
            .expect("pure job");
        store
            .register_datasets(&[policy(Some(1e-6))], "platform")
            .expect("zcdp");
        let line = |g: &str| store.budget(g).expect("budget").remove(0);
        assert_eq!(line("pure").accounting, "pure", "a line that spent stays as it was");
        assert_eq!(line("unspent").accounting, "zcdp", "an unspent line follows the policy");
        // A threshold job (no ε) does not fix the line.
        store
            .reserve(&JobCharge::new("t0", "z", "sql", "d", vec![(ds("gov.a"), 0.0, 0.0)]))
            .expect("threshold job");
        assert_eq!((line("z").delta_spent, line("z").rho_spent), (0.0, 0.0));
        // Without the conversion a zCDP line cannot be charged.
        assert!(
            store
                .reserve(&JobCharge::new("x", "z", "sql", "d", vec![(ds("gov.a"), 0.1, 0.0)]))
                .is_err()
        );
        let mut accepted = 0;
        for i in 0..300 {
            let job = JobCharge::new(&format!("z{i}"), "z", "sql", "d", vec![(ds("gov.a"), 0.1, 1e-7)])
                .with_zcdp_conversion(classic);
            match store.reserve(&job) {
                Ok(()) => accepted += 1,
                Err(GovernanceError::BudgetExhausted { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(accepted, 270);
        let z = line("z");
        assert_eq!(z.accounting, "zcdp");
        assert!((z.rho_spent - 1.35).abs() < 1e-9, "{}", z.rho_spent);
        let expected = classic(1.35, 1e-6).expect("ε");
        assert!(
            z.epsilon_spent >= expected && z.epsilon_spent < expected + 1e-8,
            "{}",
            z.epsilon_spent
        );
        assert!(
            (z.delta_spent - (1e-6 + 270.0 * 1e-7)).abs() < 1e-15,
            "{}",
            z.delta_spent
        );
        let charged = store.charged("z").expect("charged");
        assert_eq!(charged[0].1, z.epsilon_spent, "charges add up to the line");
        // The policy going back to pure does not change a zCDP line.
        store
            .register_datasets(&[policy(None)], "platform")
            .expect("pure again");
        assert_eq!(line("z").accounting, "zcdp");
        assert_eq!(line("unspent").accounting, "pure");
    }
}

/// A database written before fixed-point accounting is converted when
/// it opens: charges rounded up, spent amounts without float drift.
#[test]
fn an_old_floating_point_database_is_migrated_on_open() {
    for db in test_dbs() {
        {
            let store = db.open();
            store
                .upsert_grant(&Grant::new("g", "h", vec![(ds("gov.a"), 1.0)]))
                .expect("grant");
            store
                .raw(
                    "DROP TABLE charges; DROP TABLE budgets;
                     CREATE TABLE budgets (grant_id TEXT NOT NULL REFERENCES grants(id), dataset TEXT NOT NULL,
                       epsilon_total DOUBLE PRECISION NOT NULL, epsilon_spent DOUBLE PRECISION NOT NULL DEFAULT 0,
                       delta_spent DOUBLE PRECISION NOT NULL DEFAULT 0, PRIMARY KEY (grant_id, dataset));
                     CREATE TABLE charges (job_id TEXT NOT NULL REFERENCES jobs(id), dataset TEXT NOT NULL,
                       epsilon DOUBLE PRECISION NOT NULL, delta DOUBLE PRECISION NOT NULL,
                       PRIMARY KEY (job_id, dataset));
                     INSERT INTO budgets VALUES ('g', 'gov.a', 1.0, 0.30000000000000004, 3e-6);
                     INSERT INTO budgets VALUES ('g', 'gov.b', 2.0, 0.0, 0.0);
                     INSERT INTO jobs (id, grant_id, kind, submission_digest, status, created_at)
                       VALUES ('j1', 'g', 'sql', 'd', 'released', 't'), ('j2', 'g', 'sql', 'd', 'released', 't'),
                              ('j3', 'g', 'sql', 'd', 'released', 't'), ('j4', 'g', 'sql', 'd', 'released', 't');
                     INSERT INTO charges VALUES ('j1', 'gov.a', 0.1, 1e-6), ('j2', 'gov.a', 0.1, 1e-6),
                       ('j3', 'gov.a', 0.1, 1e-6), ('j4', 'gov.b', 1e-17, 0.0);",
                )
                .expect("old schema");
        }
        let store = db.open();
        let budget = store.budget("g").expect("budget");
        assert_eq!(
            budget[0].exact().epsilon_spent,
            Epsilon::from_units(300_000_000),
            "{}",
            db.name()
        );
        assert_eq!(budget[0].exact().delta_spent, Delta::from_units(3_000_000_000));
        assert_eq!(budget[0].epsilon_total, 1.0);
        assert_eq!(
            budget[1].exact().epsilon_spent,
            Epsilon::from_units(1),
            "a charge the float sum lost is kept"
        );
        let charged = store.charged_exact("g").expect("charged");
        assert_eq!(charged[0].1, budget[0].exact().epsilon_spent);
        // Later charges are exact; reopening converts nothing twice.
        store
            .reserve(&JobCharge::new("j5", "g", "sql", "d", vec![(ds("gov.a"), 0.7, 0.0)]))
            .expect("fits exactly: 0.3 + 0.7 = 1");
        drop(store);
        let store = db.open();
        assert_eq!(store.budget("g").expect("budget")[0].epsilon_left(), 0.0);
        let migrations = store
            .audit_entries()
            .expect("entries")
            .into_iter()
            .filter(|e| e.kind == "schema_migrated")
            .count();
        assert_eq!(migrations, 1);
        assert!(store.verify_audit().expect("verify").is_intact());
    }
}

/// Many stores opening one new database at once must all succeed.
#[test]
fn concurrent_opens_wait_for_each_other() {
    for db in test_dbs() {
        std::thread::scope(|scope| {
            for i in 0..16 {
                let db = &db;
                scope.spawn(move || {
                    let store = db.open();
                    store
                        .upsert_grant(&Grant::new(&format!("g{i}"), "h", vec![(ds("gov.a"), 1.0)]))
                        .expect("grant");
                });
            }
        });
        assert!(matches!(
            db.open().verify_audit().expect("verify"),
            crate::AuditReport::Intact { entries: 16, .. }
        ));
    }
}
