//! The Flight SQL endpoint over loopback, driven by arrow-flight's own
//! `FlightSqlServiceClient`: released jobs, refusals by rule, tokens,
//! roles, agreements, tickets, prepared statements, what is unsupported,
//! and the ledger.

#![allow(clippy::unwrap_used)]

mod support;

use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetTables, SqlInfo};
use arrow_flight::{FlightInfo, Ticket};
use futures::TryStreamExt;
use sandbox_flight::{DirectJobs, FlightConfig, RELEASE_METADATA_KEY};
use sandbox_model::{ReleasedCell, ReleasedTable};
use sandbox_runtime::Sandbox;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use support::{AGREEMENT, RAW_SQL, TAX_SQL, Tokens, UTILITY_SQL};
use tonic::Code;
use tonic::transport::Channel;

static DATA: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();

/// The generated tables, once per test binary.
fn tables() -> PathBuf {
    DATA.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = support::generate(&tmp.path().join("data")).unwrap();
        (tmp, dir.tables_dir())
    })
    .1
    .clone()
}

struct Server {
    addr: std::net::SocketAddr,
    sandbox: Arc<Sandbox>,
    tokens: Tokens,
    _tmp: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A sandbox of its own (database, accounts, agreement) on the shared
/// tables, served on a loopback port.
async fn start(config: FlightConfig) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let dir = support::linked(&tmp.path().join("sandbox"), &tables()).unwrap();
    let sandbox = Arc::new(Sandbox::open(dir).unwrap());
    let tokens = support::populate(&sandbox).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let jobs = Arc::new(DirectJobs::new(Arc::clone(&sandbox)));
    let served = Arc::clone(&sandbox);
    tokio::spawn(async move {
        sandbox_flight::serve_listener(listener, served, jobs, &config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        addr,
        sandbox,
        tokens,
        _tmp: tmp,
        _stop: stop,
    }
}

async fn client(server: &Server, token: Option<&str>) -> FlightSqlServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::new(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    if let Some(token) = token {
        client.set_token(token.to_string());
    }
    client
}

fn ticket(info: &FlightInfo) -> Ticket {
    info.endpoint[0].ticket.clone().unwrap()
}

async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    ticket: Ticket,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let stream = client.do_get(ticket).await.map_err(status)?;
    stream.try_collect().await.map_err(status)
}

/// The status inside a client error.
fn status(e: impl Into<arrow_flight::error::FlightError>) -> tonic::Status {
    match e.into() {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => panic!("not a status: {other}"),
    }
}

async fn execute(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Result<FlightInfo, tonic::Status> {
    client.execute(sql.to_string(), None).await.map_err(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_job_returns_the_released_batch_once() {
    let server = start(FlightConfig::default()).await;
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;

    let info = execute(&mut bank, UTILITY_SQL).await.unwrap();
    assert_eq!(info.total_records, 24);
    let batches = fetch(&mut bank, ticket(&info)).await.unwrap();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 24);
    let schema = batch.schema();
    assert_eq!(schema.field(0).name(), "month");
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    assert_eq!(schema.field(1).name(), "avg_kwh");
    assert_eq!(schema.field(1).data_type(), &DataType::Float64);
    let months = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(months.value(0), "2023-01");
    let avg = batch.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
    let values: Vec<f64> = (0..avg.len()).map(|i| avg.value(i)).collect();
    assert!(values.iter().all(|v| (0.0..=500_000.0).contains(v)), "{values:?}");
    assert!(values.iter().any(|v| v.fract() != 0.0), "noisy averages: {values:?}");

    // The whole release travels in the schema: every number noisy, with
    // its interval.
    let release: ReleasedTable = serde_json::from_str(&schema.metadata()[RELEASE_METADATA_KEY]).unwrap();
    assert_eq!(release.epsilon_spent, 1.0);
    for (row, v) in release.rows.iter().zip(&values) {
        match &row[1] {
            ReleasedCell::Noisy { value, ci95, .. } => {
                // serde_json parses floats to within one ulp.
                assert!((value - v).abs() <= 1e-9 * v.abs(), "{value} vs {v}");
                assert!(ci95[0] <= *value && *value <= ci95[1]);
            }
            other => panic!("not noisy: {other:?}"),
        }
    }

    // A ticket is single-use.
    let again = fetch(&mut bank, ticket(&info)).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound);

    // Tax data: DP, then rounded to whole 万元 by the owner's policy.
    let info = execute(&mut bank, TAX_SQL).await.unwrap();
    let batches = fetch(&mut bank, ticket(&info)).await.unwrap();
    let years = batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(years.values().to_vec(), vec![2022, 2023, 2024]);

    // The ledger has both jobs, attributed to the bank, and the budget paid.
    let entries = server.sandbox.store().audit_entries().unwrap();
    let charged: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == "job_charged" && e.actor == "bank")
        .filter_map(|e| e.payload["submission"].as_str())
        .collect();
    assert_eq!(charged, vec![UTILITY_SQL, TAX_SQL]);
    let spent: f64 = server
        .sandbox
        .budget(AGREEMENT)
        .unwrap()
        .iter()
        .map(|line| line.epsilon_spent)
        .sum();
    assert_eq!(spent, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_names_the_rule_and_is_recorded() {
    let server = start(FlightConfig::default()).await;
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    let e = execute(&mut bank, RAW_SQL).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().starts_with("refused by rule `"), "{}", e.message());
    assert!(e.message().contains("credit_code"), "{}", e.message());

    // A column outside the agreement.
    let e = execute(
        &mut bank,
        "SELECT t.year, AVG(t.vat) FROM gov.tax_payments t GROUP BY t.year",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().starts_with("refused by rule `agreement-column`"),
        "{}",
        e.message()
    );

    // DDL and DML never run.
    for sql in [
        "DROP TABLE gov.utility_usage",
        "INSERT INTO gov.utility_usage VALUES (1)",
    ] {
        let e = execute(&mut bank, sql).await.unwrap_err();
        assert!(
            matches!(e.code(), Code::PermissionDenied | Code::InvalidArgument),
            "{sql}: {e:?}"
        );
    }
    // Not SQL at all.
    let e = execute(&mut bank, "SELEC nothing").await.unwrap_err();
    assert!(
        matches!(e.code(), Code::PermissionDenied | Code::InvalidArgument),
        "{e:?}"
    );

    let refused = server
        .sandbox
        .store()
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "job_refused")
        .count();
    assert!(refused >= 2, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_needs_a_valid_token() {
    let server = start(FlightConfig::default()).await;
    let mut anonymous = client(&server, None).await;
    let e = execute(&mut anonymous, UTILITY_SQL).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = anonymous
        .get_sql_info(vec![SqlInfo::FlightSqlServerName])
        .await
        .unwrap_err();
    assert_eq!(status(e).code(), Code::Unauthenticated);

    let mut wrong = client(&server, Some("not-a-token-0123456789abcdef0123456789")).await;
    let e = execute(&mut wrong, UTILITY_SQL).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = fetch(&mut wrong, Ticket::new("x")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // Even the RPCs Flight SQL does not route (ListFlights).
    let e = wrong
        .inner_mut()
        .list_flights(arrow_flight::Criteria::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // Handshake: a bearer token is accepted and echoed; anything else is not.
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    let request = futures::stream::iter([arrow_flight::HandshakeRequest::default()]);
    let mut request = tonic::Request::new(request);
    let bearer = format!("Bearer {}", server.tokens.applicant);
    request.metadata_mut().insert("authorization", bearer.parse().unwrap());
    let response = bank.inner_mut().handshake(request).await.unwrap();
    assert_eq!(
        response.metadata().get("authorization").unwrap().to_str().unwrap(),
        bearer
    );
    // Basic authentication is not offered (the client wraps the status).
    let e = anonymous.handshake("bank", "password").await.unwrap_err();
    assert!(e.to_string().contains("must be `Bearer <token>`"), "{e}");

    // Nothing was charged or recorded as a job.
    assert!(
        !server
            .sandbox
            .store()
            .audit_entries()
            .unwrap()
            .iter()
            .any(|e| e.kind.starts_with("job_"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_cannot_fetch_a_ticket() {
    let server = start(FlightConfig::default()).await;
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    let info = execute(&mut bank, UTILITY_SQL).await.unwrap();

    let mut insurer = client(&server, Some(&server.tokens.other_applicant)).await;
    let e = fetch(&mut insurer, ticket(&info)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let mut owner = client(&server, Some(&server.tokens.owner)).await;
    let e = fetch(&mut owner, ticket(&info)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // The failed attempts did not consume it.
    let batches = fetch(&mut bank, ticket(&info)).await.unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_applicants_run_jobs_under_their_own_agreements() {
    let server = start(FlightConfig::default()).await;
    for token in [&server.tokens.owner, &server.tokens.operator] {
        let mut c = client(&server, Some(token)).await;
        let e = execute(&mut c, UTILITY_SQL).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(
            e.message().starts_with("refused by rule `role-applicant`"),
            "{}",
            e.message()
        );
        let e = c.prepare(UTILITY_SQL.to_string(), None).await.unwrap_err();
        assert_eq!(status(e).code(), Code::PermissionDenied);
    }

    // No agreement: told to get one or name one.
    let mut insurer = client(&server, Some(&server.tokens.other_applicant)).await;
    let e = execute(&mut insurer, UTILITY_SQL).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("x-sandbox-agreement"), "{}", e.message());
    // Naming the bank's agreement, or one that does not exist: the same
    // refusal, revealing nothing.
    let mut messages = Vec::new();
    for grant in [AGREEMENT, "agreement-nope"] {
        insurer.set_header("x-sandbox-agreement", grant);
        let e = execute(&mut insurer, UTILITY_SQL).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(
            e.message().starts_with("refused by rule `agreement-holder`"),
            "{}",
            e.message()
        );
        messages.push(e.message().replace(grant, "<grant>"));
    }
    assert_eq!(messages[0], messages[1]);

    // The holder may name it.
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    bank.set_header("x-sandbox-agreement", AGREEMENT);
    let info = execute(&mut bank, UTILITY_SQL).await.unwrap();
    assert_eq!(info.total_records, 24);

    // Revoked: the runtime refuses, naming the rule.
    server
        .sandbox
        .revoke_agreement("ops", AGREEMENT, "test revocation")
        .unwrap();
    let e = execute(&mut bank, UTILITY_SQL).await.unwrap_err();
    assert!(
        e.message().starts_with("refused by rule `agreement-inactive`"),
        "{}",
        e.message()
    );
    // Without the header, the only agreement is no longer active.
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    let e = execute(&mut bank, UTILITY_SQL).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_run_as_jobs() {
    let server = start(FlightConfig::default()).await;
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    let mut prepared = bank.prepare(UTILITY_SQL.to_string(), None).await.unwrap();
    let info = prepared.execute().await.unwrap();
    let batches = fetch(&mut bank, ticket(&info)).await.unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 24);
    // Executed again: a second job (and a second charge).
    let info = prepared.execute().await.unwrap();
    assert_eq!(info.total_records, 24);
    prepared.close().await.unwrap();

    // A refused prepared statement fails when executed.
    let mut refused = bank.prepare(RAW_SQL.to_string(), None).await.unwrap();
    let e = refused.execute().await.unwrap_err();
    assert_eq!(status(e).code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_select_jobs_and_basic_info_are_supported() {
    let server = start(FlightConfig::default()).await;
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    let info = bank
        .get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::FlightSqlServerReadOnly])
        .await
        .unwrap();
    let batches = fetch(&mut bank, ticket(&info)).await.unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);

    let e = bank.get_table_types().await.unwrap_err();
    let e = status(e);
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("not supported"), "{}", e.message());
    let e = bank
        .execute_update("DELETE FROM gov.utility_usage".into(), None)
        .await
        .unwrap_err();
    assert_eq!(status(e).code(), Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_results_are_capped_per_account() {
    let config = FlightConfig {
        max_held_results_per_account: 1,
        ..FlightConfig::default()
    };
    let server = start(config).await;
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    let info = execute(&mut bank, UTILITY_SQL).await.unwrap();
    // The cap is checked before the job runs: nothing charged.
    let e = execute(&mut bank, UTILITY_SQL).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    fetch(&mut bank, ticket(&info)).await.unwrap();
    execute(&mut bank, UTILITY_SQL).await.unwrap();
    let charged = server
        .sandbox
        .store()
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "job_charged")
        .count();
    assert_eq!(charged, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_size_limit_are_refused() {
    let config = FlightConfig {
        max_request_bytes: 4096,
        ..FlightConfig::default()
    };
    let server = start(config).await;
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    let sql = format!(
        "SELECT month, AVG(electricity_kwh) FROM gov.utility_usage /* {} */ GROUP BY month",
        "x".repeat(8192)
    );
    let e = execute(&mut bank, &sql).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_budget_is_a_refusal() {
    let server = start(FlightConfig::default()).await;
    // A second agreement with room for one job, and a header to choose it.
    let body = sandbox_governance::ApplicationBody {
        datasets: vec!["gov.utility_usage".parse().unwrap()],
        columns: vec!["gov.utility_usage.*".into()],
        job_kinds: vec!["sql".into()],
        scenario: "one query".into(),
        materials: vec!["营业执照 (business licence)".into()],
    };
    server.sandbox.apply("bank", "small", &body).unwrap();
    let approve = sandbox_governance::Decision::Approve {
        epsilon: 1.0,
        expires_at: "2999-01-01T00:00:00Z".into(),
        call_quota: 100,
    };
    server.sandbox.decide("grid", "small", &approve).unwrap();

    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    // Two active agreements now: the header is required.
    let e = execute(&mut bank, UTILITY_SQL).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("2 active agreements"), "{}", e.message());
    bank.set_header("x-sandbox-agreement", "agreement-small");
    execute(&mut bank, UTILITY_SQL).await.unwrap();
    let e = execute(&mut bank, UTILITY_SQL).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().starts_with("refused by rule `budget-exhausted`"),
        "{}",
        e.message()
    );
}

/// Table names and (with `include_schema`) column names of a GetTables answer.
async fn listed_tables(client: &mut FlightSqlServiceClient<Channel>) -> Vec<(String, String, Vec<String>)> {
    let command = CommandGetTables {
        include_schema: true,
        ..Default::default()
    };
    let info = client.get_tables(command).await.unwrap();
    let batches = fetch(client, ticket(&info)).await.unwrap();
    let mut out = Vec::new();
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let (schemas, names) = (column("db_schema_name"), column("table_name"));
        let table_schemas = batch
            .column_by_name("table_schema")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::BinaryArray>().cloned())
            .expect("table_schema");
        for i in 0..batch.num_rows() {
            let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(table_schemas.value(i)).expect("schema");
            let fields = schema.fields().iter().map(|f| f.name().clone()).collect();
            out.push((schemas.value(i).to_string(), names.value(i).to_string(), fields));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_only_the_callers_tables_and_covered_columns() {
    let server = start(FlightConfig::default()).await;
    let mut bank = client(&server, Some(&server.tokens.applicant)).await;
    let tables = listed_tables(&mut bank).await;
    let names: Vec<(&str, &str)> = tables.iter().map(|(s, t, _)| (s.as_str(), t.as_str())).collect();
    assert_eq!(names, [("gov", "tax_payments"), ("gov", "utility_usage")]);
    // Only the columns the agreement covers (`vat` is not among them).
    let mut tax_columns = tables[0].2.clone();
    tax_columns.sort();
    assert_eq!(tax_columns, ["credit_code", "tax_paid", "year"]);
    assert!(tables[1].2.len() > 3, "`gov.utility_usage.*` covers every column");

    let info = bank.get_catalogs().await.unwrap();
    let catalogs = fetch(&mut bank, ticket(&info)).await.unwrap();
    assert_eq!(catalogs.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    let info = bank
        .get_db_schemas(arrow_flight::sql::CommandGetDbSchemas::default())
        .await
        .unwrap();
    let schemas = fetch(&mut bank, ticket(&info)).await.unwrap();
    assert_eq!(schemas.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);

    // Another applicant, without agreements, and a data owner see nothing.
    for token in [&server.tokens.other_applicant, &server.tokens.owner] {
        let mut other = client(&server, Some(token)).await;
        assert!(listed_tables(&mut other).await.is_empty());
        let info = other.get_catalogs().await.unwrap();
        let catalogs = fetch(&mut other, ticket(&info)).await.unwrap();
        assert_eq!(catalogs.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    }
    // Without a token: unauthenticated.
    let mut anonymous = client(&server, None).await;
    let e = anonymous.get_catalogs().await.unwrap_err();
    assert_eq!(status(e).code(), Code::Unauthenticated);
}
