//! The governance lifecycle end to end through the sandbox: a bank applies
//! for tax data, is rejected with a reason, resubmits, is approved, runs
//! jobs under the agreement (and is refused outside it), and is cut off by
//! revocation; a complaint suspends a dataset while a job runs, which is
//! cancelled and releases nothing. The ledger records every step.

use crate::fixture::isolated_sandbox;
use sandbox_governance::{ApplicationBody, AuditReport, Decision, Role};
use sandbox_runtime::sandbox::DEMO_GRANT;
use sandbox_runtime::{Sandbox, SqlJobOptions, SqlJobResult};
use sandbox_sql::datafusion::arrow::array::{Array, Float64Array, RecordBatch};
use sandbox_sql::guest::RowFunction;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const TAX_SQL: &str = "SELECT t.year, AVG(t.tax_paid) FROM gov.tax_payments t GROUP BY t.year";

fn accounts(s: &Sandbox) {
    let store = s.store();
    store
        .create_account("ops", &Role::Operator, "operator-token-0123456789abcdef0123", "ops")
        .expect("operator");
    store
        .create_account("bank", &Role::Applicant, "bank-token-0123456789abcdef0123456789", "ops")
        .expect("bank");
    for (id, provider) in [("tax-bureau", "shanghai-tax"), ("grid", "shanghai-utilities")] {
        store
            .create_account(
                id,
                &Role::DataOwner {
                    provider: provider.into(),
                },
                &format!("{id}-token-0123456789abcdef0123456789"),
                "ops",
            )
            .expect("owner");
    }
}

fn tax_application(scenario: &str, columns: &[&str]) -> ApplicationBody {
    ApplicationBody {
        datasets: vec!["gov.tax_payments".parse().expect("id")],
        columns: columns.iter().map(|c| c.to_string()).collect(),
        job_kinds: vec!["sql".into()],
        scenario: scenario.into(),
        materials: vec![
            "营业执照 (business licence)".into(),
            "数据安全承诺书 (data security pledge)".into(),
        ],
    }
}

async fn run(s: &Sandbox, grant: &str, sql: &str) -> Result<SqlJobResult, sandbox_runtime::RuntimeError> {
    s.run_sql(grant, sql, &SqlJobOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reject_resubmit_approve_run_refuse_revoke() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = isolated_sandbox(&tmp);
    accounts(&s);

    // Only conditionally open datasets are applied for.
    let mut open = tax_application("x", &[]);
    open.datasets = vec!["gov.districts".parse().expect("id")];
    assert_eq!(
        s.apply("bank", "x", &open).expect_err("open").rule(),
        Some("application-dataset")
    );
    assert_eq!(
        s.apply("bank", "x", &tax_application("x", &["gov.tax_payments.no_such_column"]))
            .expect_err("column")
            .rule(),
        Some("application-column")
    );

    // Apply, be rejected with a reason, resubmit, be approved.
    let cols = [
        "gov.tax_payments.year",
        "gov.tax_payments.tax_paid",
        "gov.tax_payments.credit_code",
    ];
    assert_eq!(
        s.apply("bank", "a1", &tax_application("credit scoring", &cols))
            .expect("apply"),
        1
    );
    let reject = Decision::Reject {
        reason: "state how the scores will be used and kept".into(),
    };
    // Another owner's application is answered like one that does not exist.
    let not_mine = s.decide("grid", "a1", &reject).expect_err("not the owner");
    let unknown = s.decide("grid", "a-unknown", &reject).expect_err("unknown");
    assert_eq!(not_mine.rule(), Some("no-application"));
    assert_eq!(
        not_mine.to_string().replace("a1", "ID"),
        unknown.to_string().replace("a-unknown", "ID")
    );
    s.decide("tax-bureau", "a1", &reject).expect("reject");
    assert_eq!(
        run(&s, "agreement-a1", TAX_SQL)
            .await
            .expect_err("no agreement yet")
            .rule(),
        Some("no-grant")
    );
    let scenario = "inclusive-finance credit scoring of SME borrowers; only aggregates leave the sandbox";
    assert_eq!(
        s.apply("bank", "a1", &tax_application(scenario, &cols))
            .expect("resubmit"),
        2
    );
    // The owner's policy caps what an approval may grant (tax: ε 10).
    let e = s
        .decide(
            "tax-bureau",
            "a1",
            &Decision::Approve {
                epsilon: 16.0,
                expires_at: "2999-01-01T00:00:00Z".into(),
                call_quota: 10,
            },
        )
        .expect_err("above the policy's epsilon_budget");
    assert_eq!(e.rule(), Some("approval-over-policy-budget"), "{e}");
    s.decide(
        "tax-bureau",
        "a1",
        &Decision::Approve {
            epsilon: 5.0,
            expires_at: "2999-01-01T00:00:00Z".into(),
            call_quota: 10,
        },
    )
    .expect("approve");

    // Run under the agreement; a column outside it is refused by name.
    assert!(matches!(
        run(&s, "agreement-a1", TAX_SQL).await.expect("runs"),
        SqlJobResult::Released { .. }
    ));
    let e = run(
        &s,
        "agreement-a1",
        "SELECT t.year, AVG(t.vat) FROM gov.tax_payments t GROUP BY t.year",
    )
    .await
    .expect_err("outside the agreement");
    assert_eq!(e.rule(), Some("agreement-column"), "{e}");
    assert!(e.to_string().contains("gov.tax_payments.vat"), "{e}");
    // Datasets the agreement does not cover are not even visible.
    assert!(
        run(
            &s,
            "agreement-a1",
            "SELECT month, AVG(electricity_kwh) FROM gov.utility_usage GROUP BY month"
        )
        .await
        .is_err()
    );

    // Revocation cuts the bank off.
    assert_eq!(
        s.revoke_agreement("bank", "agreement-a1", "x")
            .expect_err("not allowed")
            .rule(),
        Some("not-owner-or-operator")
    );
    s.revoke_agreement("ops", "agreement-a1", "usage report showed re-identification attempts")
        .expect("revoke");
    let e = run(&s, "agreement-a1", TAX_SQL).await.expect_err("revoked");
    assert_eq!(e.rule(), Some("agreement-inactive"));
    assert!(e.to_string().contains("re-identification"), "{e}");

    let entries = s.store().audit_entries().expect("ledger");
    assert!(
        entries.iter().any(|e| e.kind == "job_charged"
            && e.actor == "bank"
            && e.payload["submission"].as_str().is_some_and(|t| t == TAX_SQL)),
        "the ledger records the submitted SQL, attributed to the bank"
    );
    assert!(entries.iter().any(|e| {
        e.kind == "job_refused"
            && e.payload["outcome"]["rule"] == "agreement-column"
            && e.payload["submission"]
                .as_str()
                .is_some_and(|t| t.contains("AVG(t.vat)"))
    }));
    let kinds: Vec<String> = entries.into_iter().map(|e| e.kind).collect();
    for k in [
        "dataset_registered",
        "application_submitted",
        "application_rejected",
        "agreement_signed",
        "job_charged",
        "job_finished",
        "job_refused",
        "agreement_revoked",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing");
    }
    assert!(matches!(
        s.store().verify_audit().expect("verify"),
        AuditReport::Intact { .. }
    ));
}

/// A row function that blocks until released, so a job is provably running
/// when the complaint arrives.
#[derive(Debug)]
struct Gate {
    open: Arc<AtomicBool>,
}

impl RowFunction for Gate {
    fn name(&self) -> &str {
        "gate"
    }
    fn arity(&self) -> usize {
        1
    }
    fn bounds(&self) -> (f64, f64) {
        (0.0, 1e6)
    }
    fn identity(&self) -> &str {
        "gate"
    }
    /// The trial call before the charge runs on generated rows: it does
    /// not wait at the gate (only the job's evaluation on data does).
    fn trial(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        Ok(vec![0.0; args.num_rows()])
    }
    fn evaluate(&self, args: &RecordBatch) -> Result<Vec<f64>, String> {
        while !self.open.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let a = args.column(0).as_any().downcast_ref::<Float64Array>().ok_or("type")?;
        Ok((0..a.len()).map(|i| a.value(i)).collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_cancels_a_running_job_and_refuses_new_ones() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Arc::new(isolated_sandbox(&tmp));
    accounts(&s);
    let open = Arc::new(AtomicBool::new(false));
    let job = {
        let s = s.clone();
        let f: Arc<dyn RowFunction> = Arc::new(Gate { open: open.clone() });
        tokio::spawn(async move {
            s.run_sql_with_functions(
                DEMO_GRANT,
                // The function reads utility data only: a job function may not
                // read tax data, whose policy allows no variance (which a
                // function could emulate).
                "SELECT t.year, AVG(gate(u.electricity_kwh)) FROM gov.tax_payments t
                 JOIN gov.utility_usage u ON t.credit_code = u.credit_code GROUP BY t.year",
                &SqlJobOptions::default(),
                vec![f],
            )
            .await
        })
    };
    // Wait until the job is charged and computing.
    let started = std::time::Instant::now();
    while s.running_jobs() == 0 {
        assert!(started.elapsed().as_secs() < 60, "the job never started");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let dataset = "gov.tax_payments".parse().expect("id");
    assert_eq!(
        s.suspend_dataset("bank", &dataset, "x")
            .expect_err("applicants cannot")
            .rule(),
        Some("not-owner-or-operator")
    );
    let cancelled = s
        .suspend_dataset(
            "tax-bureau",
            &dataset,
            "complaint: a data subject objects to the use of their records",
        )
        .expect("suspend");
    assert_eq!(cancelled, 1);
    open.store(true, Ordering::Release);
    let e = job.await.expect("task").expect_err("cancelled");
    assert_eq!(e.rule(), Some("dataset-suspended"), "{e}");
    let counts = s.store().job_counts(DEMO_GRANT).expect("counts");
    assert!(
        counts.iter().any(|(status, n)| status == "cancelled" && *n == 1),
        "{counts:?}"
    );
    assert!(!counts.iter().any(|(status, _)| status == "released"), "{counts:?}");
    // New jobs are refused until the dataset is resumed.
    let e = run(&s, DEMO_GRANT, TAX_SQL).await.expect_err("suspended");
    assert_eq!(e.rule(), Some("dataset-suspended"));
    s.store()
        .resume_dataset("gov.tax_payments", "tax-bureau", "complaint resolved")
        .expect("resume");
    assert!(run(&s, DEMO_GRANT, TAX_SQL).await.is_ok());
    assert!(matches!(
        s.store().verify_audit().expect("verify"),
        AuditReport::Intact { .. }
    ));
}
