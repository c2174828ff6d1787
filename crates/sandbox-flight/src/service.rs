//! The Flight SQL service: statements and prepared statements run as
//! sandbox jobs when their `FlightInfo` is asked for (so a refusal is the
//! answer to "execute"), and the released batch is fetched once with the
//! ticket that answer carries. Catalog metadata (GetCatalogs,
//! GetDbSchemas, GetTables, GetSqlInfo) lists what the caller may query.
//! Nothing else is supported.

use crate::auth::{Caller, agreement_for, caller};
use crate::convert::released_to_batch;
use crate::error::job_status;
use crate::held::{Holdings, Limits};
use crate::metadata;
use crate::{FlightConfig, FlightJobs};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::SqlInfoDataBuilder;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery, CommandStatementSubstraitPlan,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket};
use futures::{Stream, TryStreamExt};
use prost::Message;
use sandbox_runtime::Sandbox;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};

type DoGetStream = <SandboxFlightSql as FlightService>::DoGetStream;

/// What this endpoint is for, in every "not supported" answer.
const ONLY_SELECT: &str = "this endpoint runs SELECT jobs whose released (noisy) aggregates you fetch; \
                           see `sandbox catalog` for datasets and columns";

fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not supported: {ONLY_SELECT}"))
}

/// A prepared statement: only its SQL text (parameters are not supported).
#[derive(Clone)]
struct Prepared {
    sql: String,
}

/// The Flight SQL service over one sandbox.
pub struct SandboxFlightSql {
    sandbox: Arc<Sandbox>,
    jobs: Arc<dyn FlightJobs>,
    results: Holdings<RecordBatch>,
    prepared: Holdings<Prepared>,
    running: Arc<Semaphore>,
    max_running: usize,
}

impl std::fmt::Debug for SandboxFlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxFlightSql")
            .field("max_running", &self.max_running)
            .finish_non_exhaustive()
    }
}

impl SandboxFlightSql {
    pub fn new(sandbox: Arc<Sandbox>, jobs: Arc<dyn FlightJobs>, config: &FlightConfig) -> Self {
        SandboxFlightSql {
            sandbox,
            jobs,
            results: Holdings::new(
                Limits {
                    ttl: config.result_ttl,
                    max_total: config.max_held_results,
                    max_per_account: config.max_held_results_per_account,
                },
                "unfetched results",
            ),
            prepared: Holdings::new(
                Limits {
                    ttl: config.prepared_ttl,
                    max_total: config.max_prepared_statements,
                    max_per_account: config.max_prepared_per_account,
                },
                "prepared statements",
            ),
            running: Arc::new(Semaphore::new(config.max_running_jobs)),
            max_running: config.max_running_jobs,
        }
    }

    /// Runs `sql` as a job of the caller and holds its released batch
    /// under a fresh ticket; the `FlightInfo` names the ticket.
    async fn run_job<T>(&self, caller: &Caller, sql: &str, request: &Request<T>) -> Result<FlightInfo, Status> {
        caller.require_applicant()?;
        // Catalog everywhere: a dataset registered since the last call is
        // queryable now (the reload is one directory listing when nothing
        // changed; on a failure the previous catalog stays in force).
        let sandbox = Arc::clone(&self.sandbox);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || sandbox.refresh()).await {
            tracing::warn!(error = %e, "the catalog could not be reloaded; the previous one stays in force");
        }
        let grant = agreement_for(self.sandbox.store(), &caller.account, request.metadata())?;
        let slot = self.results.reserve(&caller.account)?;
        let permit = Arc::clone(&self.running).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} Flight SQL jobs are running already; try again shortly",
                self.max_running
            ))
        })?;
        let started = Instant::now();
        // Spawned, so a job whose client goes away still finishes and
        // records its outcome; the permit is held until it does.
        let job = self.jobs.run_sql(&caller.account, &grant, sql);
        let outcome = tokio::spawn(async move {
            let outcome = job.await;
            drop(permit);
            outcome
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "flight job task failed");
            Status::internal("the job failed; the operator's log has the details")
        })?;
        let job = match outcome {
            Ok(job) => job,
            Err(e) => {
                tracing::info!(account = %caller.account, %grant, rule = e.rule(), error = %e, "flight job not released");
                return Err(job_status(&e));
            }
        };
        let batch = released_to_batch(&job.job_id, &job.table)?;
        tracing::info!(
            account = %caller.account,
            %grant,
            job = %job.job_id,
            rows = batch.num_rows(),
            epsilon = job.table.epsilon_spent,
            ms = started.elapsed().as_millis() as u64,
            "flight job released"
        );
        let ticket = TicketStatementQuery {
            statement_handle: slot.handle().as_bytes().to_vec().into(),
        };
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(batch.schema_ref())
            .map_err(|e| Status::from(crate::FlightError::from(e)))?
            .with_endpoint(endpoint)
            .with_total_records(batch.num_rows() as i64)
            .with_total_bytes(batch.get_array_memory_size() as i64)
            .with_ordered(true)
            .with_app_metadata(job.job_id.into_bytes());
        slot.fill(batch);
        Ok(info)
    }
}

/// A stream of one record batch as Flight data.
fn batch_stream(batch: RecordBatch) -> DoGetStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(Status::from);
    Box::pin(stream)
}

fn sql_info_batch(query: CommandGetSqlInfo) -> Result<RecordBatch, Status> {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "data-sandbox");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    builder.append(SqlInfo::FlightSqlServerReadOnly, true);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    // SqlSupportedTransaction::None
    builder.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    builder.append(SqlInfo::FlightSqlServerCancel, false);
    let info = builder.build().map_err(Status::from)?;
    query.into_builder(&info).build().map_err(Status::from)
}

/// The `FlightInfo` of a metadata command: the answer's schema, and a
/// ticket that is the command itself (the answer is built again, for the
/// same caller, when fetched).
fn metadata_info<T: ProstMessageExt>(
    query: &T,
    batch: &RecordBatch,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(query.as_any().encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(&batch.schema())
        .map_err(|e| Status::from(crate::FlightError::from(e)))?
        .with_endpoint(endpoint)
        .with_descriptor(request.into_inner());
    Ok(Response::new(info))
}

fn handle_text(bytes: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(bytes).map_err(|_| Status::not_found("unknown or expired handle"))
}

#[tonic::async_trait]
impl FlightSqlService for SandboxFlightSql {
    type FlightService = SandboxFlightSql;

    /// Accepts a bearer token (already checked by the interceptor) and
    /// echoes it, for clients that handshake before their calls.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let who = caller(&request)?;
        tracing::debug!(account = %who.account, "flight handshake");
        let authorization = request.metadata().get("authorization").cloned();
        let output = futures::stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        })]);
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> = Response::new(Box::pin(output));
        if let Some(value) = authorization {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = caller(&request)?;
        if query.transaction_id.is_some() {
            return Err(unsupported("transactions"));
        }
        let info = self.run_job(&who, &query.query, &request).await?;
        Ok(Response::new(info.with_descriptor(request.into_inner())))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = caller(&request)?;
        let handle = handle_text(&query.prepared_statement_handle)?;
        let prepared = self
            .prepared
            .get(handle, &who.account)
            .ok_or_else(|| Status::not_found("unknown or expired prepared statement"))?;
        let info = self.run_job(&who, &prepared.sql, &request).await?;
        Ok(Response::new(info.with_descriptor(request.into_inner())))
    }

    /// The released batch of a job, once, to the account that ran it.
    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = caller(&request)?;
        let handle = handle_text(&ticket.statement_handle)?;
        let batch = self
            .results
            .take(handle, &who.account)
            .ok_or_else(|| Status::not_found("unknown, expired or already fetched ticket"))?;
        tracing::debug!(account = %who.account, rows = batch.num_rows(), "flight result fetched");
        Ok(Response::new(batch_stream(batch)))
    }

    async fn do_get_prepared_statement(
        &self,
        _query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        caller(&request)?;
        Err(Status::invalid_argument(
            "fetch a prepared statement's result with the ticket of its FlightInfo",
        ))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let who = caller(&request)?;
        who.require_applicant()?;
        if query.transaction_id.is_some() {
            return Err(unsupported("transactions"));
        }
        let slot = self.prepared.reserve(&who.account)?;
        let handle = slot.handle().to_string();
        slot.fill(Prepared { sql: query.query });
        // The schema is known only once the job has run; parameters are
        // not supported, so both schemas are empty.
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema: Default::default(),
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let who = caller(&request)?;
        let handle = handle_text(&query.prepared_statement_handle)?;
        if self.prepared.remove(handle, &who.account) {
            Ok(())
        } else {
            Err(Status::not_found("unknown or expired prepared statement"))
        }
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        caller(&request)?;
        let schema = sql_info_batch(query.clone())?.schema();
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(query.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::from(crate::FlightError::from(e)))?
            .with_endpoint(endpoint)
            .with_descriptor(request.into_inner());
        Ok(Response::new(info))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        caller(&request)?;
        Ok(Response::new(batch_stream(sql_info_batch(query)?)))
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unsupported("Substrait plans"))
    }

    /// The catalog, for clients that browse before they query (listing
    /// only what the caller's agreements cover; see `metadata`).
    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = caller(&request)?;
        let batch = metadata::catalogs(query, &metadata::covered_tables(&self.sandbox, &who)?)?;
        metadata_info(&query, &batch, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = caller(&request)?;
        let batch = metadata::catalogs(query, &metadata::covered_tables(&self.sandbox, &who)?)?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = caller(&request)?;
        let batch = metadata::db_schemas(query.clone(), &metadata::covered_tables(&self.sandbox, &who)?)?;
        metadata_info(&query, &batch, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = caller(&request)?;
        let batch = metadata::db_schemas(query, &metadata::covered_tables(&self.sandbox, &who)?)?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = caller(&request)?;
        let batch = metadata::tables(query.clone(), &metadata::covered_tables(&self.sandbox, &who)?)?;
        metadata_info(&query, &batch, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = caller(&request)?;
        let batch = metadata::tables(query, &metadata::covered_tables(&self.sandbox, &who)?)?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        _query: CommandGetTableTypes,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unsupported("listing table types"))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        _query: CommandGetXdbcTypeInfo,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unsupported("listing type information"))
    }

    async fn do_put_statement_update(
        &self,
        _query: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(unsupported("updates (INSERT, UPDATE, DELETE, DDL)"))
    }

    async fn do_put_statement_ingest(
        &self,
        _query: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(unsupported("ingesting data"))
    }

    async fn do_put_prepared_statement_query(
        &self,
        _query: CommandPreparedStatementQuery,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        Err(unsupported("binding parameters"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(unsupported("updates (INSERT, UPDATE, DELETE, DDL)"))
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(unsupported("Substrait plans"))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(unsupported("transactions"))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_info_answers_the_basics() {
        let batch = sql_info_batch(CommandGetSqlInfo { info: vec![] }).expect("info");
        assert!(batch.num_rows() >= 5);
        assert!(unsupported("x").message().contains("SELECT"));
    }
}
