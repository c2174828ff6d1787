//! Hostile SQL: every one gets a clear error, the host stays up.

use crate::fixture::{TEST_GRANT, sandbox};
use sandbox_runtime::{RuntimeError, SqlJobOptions};
use sandbox_sql::{EngineLimits, SqlError};
use std::time::Duration;

async fn rule_of(sql: &str) -> Option<&'static str> {
    let s = sandbox();
    s.run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
        .await
        .err()
        .and_then(|e| e.rule())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_flat_expressions_are_refused_before_planning() {
    let ones = vec!["1"; 20_000].join("+");
    let sql = format!("SELECT COUNT(*) FROM gov.legal_entities WHERE insured_employees < {ones}");
    let rule = rule_of(&sql).await;
    assert!(
        matches!(
            rule,
            Some("sql-too-long") | Some("sql-too-large") | Some("expression-too-large")
        ),
        "{rule:?}"
    );
    let ones = vec!["1"; 2_000].join("+");
    let sql = format!("SELECT COUNT(*) FROM gov.legal_entities WHERE insured_employees < {ones}");
    assert_eq!(rule_of(&sql).await, Some("expression-too-large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_deep_text_is_refused() {
    let sql = format!("SELECT COUNT(*) FROM gov.legal_entities /* {} */", "x".repeat(100_000));
    assert_eq!(rule_of(&sql).await, Some("sql-too-long"));
    let sql = format!(
        "SELECT COUNT(*) FROM gov.legal_entities WHERE {}1{} = 1",
        "(".repeat(200),
        ")".repeat(200)
    );
    assert_eq!(rule_of(&sql).await, Some("nesting-too-deep"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_an_error_not_a_panic() {
    let s = sandbox();
    for sql in [
        "",
        "   ",
        "SELEC",
        "\u{0}\u{1}\u{2}",
        "SELECT (((",
        "'unterminated",
        "SELECT COUNT(*) FROM nowhere.table",
        "🙂🙃",
        "SELECT COUNT(*) FROM gov.legal_entities WHERE district = ?",
    ] {
        let e = s
            .run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
            .await
            .expect_err(sql);
        let text = e.to_string();
        assert!(!text.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_stops_a_job_and_the_next_one_runs() {
    let limits = EngineLimits {
        deadline: Duration::from_nanos(1),
        ..EngineLimits::default()
    };
    let s = sandbox().with_limits(limits);
    let sql = "SELECT l.district, AVG(u.electricity_kwh) FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code GROUP BY l.district";
    let e = s
        .run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
        .await
        .expect_err("deadline");
    assert!(matches!(e, RuntimeError::Sql(SqlError::Deadline(_))), "{e}");
    let s = sandbox();
    s.run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
        .await
        .expect("next job runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_pool_limits_a_job() {
    let limits = EngineLimits {
        memory_bytes: 4 * 1024,
        ..EngineLimits::default()
    };
    let s = sandbox().with_limits(limits);
    let sql = "SELECT l.district, AVG(u.electricity_kwh) FROM gov.utility_usage u JOIN gov.legal_entities l ON u.credit_code = l.credit_code GROUP BY l.district";
    let e = s
        .run_sql(TEST_GRANT, sql, &SqlJobOptions::default())
        .await
        .expect_err("memory");
    assert!(matches!(e, RuntimeError::Sql(SqlError::Memory(_))), "{e}");
}
