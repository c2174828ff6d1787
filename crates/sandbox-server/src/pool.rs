//! The job pool: jobs wait in the store's queue and run on a fixed number
//! of workers, so a burst of submissions never runs more than `workers`
//! jobs at once and never holds more than `max_queued` waiting ones.
//!
//! Restart safety: the queue lives in the store. When the pool starts it
//! looks at every job a stop interrupted: one whose end the store recorded
//! (released, refused, failed, cancelled) takes that end; one not yet
//! charged goes back to `queued`; a job that was already charged resumes
//! under its first charge (the store refuses to charge an id twice), so no
//! job is lost and none is charged twice.
//!
//! Every state change is a compare-and-set in the store
//! ([`sandbox_governance::Store::transition`]): a worker claims only a
//! queued job, a cancellation cancels only a queued one, a worker records
//! an end only for a running one. A cancellation that finds the job
//! running asks its worker to stop (registered before the claim, removed
//! only after the end is recorded) and says so.

use crate::error::{ApiError, ApiResult};
use crate::job::{JobRequest, JobView, decode_module};
use crate::metrics::Metrics;
use sandbox_governance::{QueueState, QueuedJob, Transition};
use sandbox_model::JobOutcome;
use sandbox_runtime::{AnalysisOptions, JobContext, RuntimeError, Sandbox, SqlJobOptions, SqlJobResult};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Notify, mpsc, oneshot};

/// Who waits for a job's end in this process (Flight SQL requests).
type Waiter = oneshot::Sender<Result<(), ApiError>>;

/// The pool's limits.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Jobs running at once.
    pub workers: usize,
    /// Jobs waiting at most; more submissions are answered `503 busy`.
    pub max_queued: usize,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            workers: 2,
            max_queued: 256,
        }
    }
}

/// Runs queued jobs.
#[derive(Clone)]
pub struct JobPool {
    inner: Arc<Inner>,
}

struct Inner {
    sandbox: Arc<Sandbox>,
    metrics: Arc<Metrics>,
    sender: mpsc::UnboundedSender<String>,
    waiting: AtomicUsize,
    running: AtomicUsize,
    limits: PoolLimits,
    /// The jobs claimed or about to be claimed in this process: how to ask
    /// each to stop.
    cancels: Mutex<HashMap<String, Arc<Notify>>>,
    /// Charged jobs a restart interrupted, which a worker claims although
    /// they are `running` already.
    resuming: Mutex<HashSet<String>>,
    waiters: Mutex<HashMap<String, Waiter>>,
    /// The stage each running job has reached (kept in memory: a stage is
    /// worth no write to the store, and a restart runs the job again).
    stages: Arc<Mutex<HashMap<String, &'static str>>>,
}

impl std::fmt::Debug for JobPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobPool")
            .field("limits", &self.inner.limits)
            .field("waiting", &self.waiting())
            .field("running", &self.running())
            .finish()
    }
}

fn new_job_id() -> ApiResult<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("no randomness for a job id: {e}")))?;
    Ok(format!("job-{}", hex::encode(bytes)))
}

/// How a job ended, for the queue, the metrics and any waiter.
struct Ending {
    state: QueueState,
    error: Option<serde_json::Value>,
    failure: Option<ApiError>,
}

impl Ending {
    fn of(result: Result<(), RuntimeError>) -> Self {
        match result {
            Ok(()) => Ending {
                state: QueueState::Succeeded,
                error: None,
                failure: None,
            },
            Err(e) => Self::failed(ApiError::from(e)),
        }
    }

    fn failed(api: ApiError) -> Self {
        let state = match api.rule {
            Some("job-cancelled") => QueueState::Cancelled,
            Some(_) => QueueState::Refused,
            None => QueueState::Failed,
        };
        Ending {
            state,
            error: Some(json!({"rule": api.rule, "message": api.message})),
            failure: Some(api),
        }
    }
}

/// What a cancellation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancellation {
    /// The job was waiting: it is cancelled and nothing was charged.
    Cancelled,
    /// The job is running: its worker was asked to stop. It ends cancelled
    /// (with its charge kept if it was charged already) unless it was
    /// already releasing.
    Requested,
}

fn cancelled_before_running() -> ApiError {
    ApiError::refused("job-cancelled", "cancelled by its submitter before it ran")
}

impl JobPool {
    /// Starts `limits.workers` workers on the current tokio runtime and
    /// takes up the jobs a stop interrupted.
    pub fn start(sandbox: Arc<Sandbox>, metrics: Arc<Metrics>, limits: PoolLimits) -> ApiResult<Self> {
        if limits.workers == 0 || limits.max_queued == 0 {
            return Err(ApiError::invalid(
                "the job pool needs at least one worker and one queue slot",
            ));
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let pool = JobPool {
            inner: Arc::new(Inner {
                sandbox,
                metrics,
                sender,
                waiting: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                limits,
                cancels: Mutex::new(HashMap::new()),
                resuming: Mutex::new(HashSet::new()),
                waiters: Mutex::new(HashMap::new()),
                stages: Arc::default(),
            }),
        };
        pool.recover()?;
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for worker in 0..limits.workers {
            let pool = pool.clone();
            let receiver = receiver.clone();
            tokio::spawn(async move {
                loop {
                    let next = receiver.lock().await.recv().await;
                    let Some(id) = next else { break };
                    pool.inner.waiting.fetch_sub(1, Ordering::SeqCst);
                    pool.run(&id).await;
                }
                tracing::debug!(worker, "job worker stopped");
            });
        }
        Ok(pool)
    }

    /// A job as its submitter sees it, with the stage it has reached.
    pub fn view(&self, job: QueuedJob) -> JobView {
        let stage = self
            .inner
            .stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job.id)
            .copied();
        JobView::new(job, stage)
    }

    /// Jobs waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    /// Jobs a worker is running.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Queues a job for `account`, which must hold the agreement.
    pub fn submit(&self, account: &str, request: &JobRequest) -> ApiResult<QueuedJob> {
        self.submit_with(account, request, None)
    }

    /// Queues a job and waits for its end: the job as it ended, or the
    /// refusal or failure that ended it (Flight SQL, which answers in one
    /// request).
    pub async fn submit_and_wait(&self, account: &str, request: &JobRequest) -> ApiResult<QueuedJob> {
        let (sender, receiver) = oneshot::channel();
        let job = self.submit_with(account, request, Some(sender))?;
        match receiver.await {
            Ok(Ok(())) => self
                .inner
                .sandbox
                .store()
                .queued_job(&job.id)?
                .ok_or_else(|| ApiError::internal("a finished job vanished")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ApiError::internal("the job's worker stopped before the job ended")),
        }
    }

    fn submit_with(&self, account: &str, request: &JobRequest, waiter: Option<Waiter>) -> ApiResult<QueuedJob> {
        request.validate()?;
        let store = self.inner.sandbox.store();
        let grant = request.agreement();
        let holds = store.agreement(grant)?.is_some_and(|a| a.holder == account);
        if !holds {
            return Err(ApiError::refused(
                "agreement-holder",
                format!("`{grant}` is not one of your agreements"),
            ));
        }
        // Reserve a queue slot before storing, so concurrent submissions
        // never exceed the limit.
        let slot = self
            .inner
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.inner.limits.max_queued).then_some(n + 1)
            });
        if slot.is_err() {
            return Err(ApiError::busy(format!(
                "{} jobs are waiting already; submit again shortly",
                self.inner.limits.max_queued
            )));
        }
        let queued = (|| {
            let id = new_job_id()?;
            let text = serde_json::to_string(request).map_err(|e| ApiError::internal(e.to_string()))?;
            store.enqueue(&id, account, grant, request.kind(), &text)?;
            let job = store
                .queued_job(&id)?
                .ok_or_else(|| ApiError::internal("a queued job vanished"))?;
            Ok::<_, ApiError>(job)
        })();
        match queued {
            Ok(job) => {
                tracing::info!(job = %job.id, account, grant, kind = request.kind(), "job queued");
                if let Some(waiter) = waiter {
                    self.lock_waiters().insert(job.id.clone(), waiter);
                }
                if self.inner.sender.send(job.id.clone()).is_err() {
                    return Err(ApiError::internal("the job workers have stopped"));
                }
                Ok(job)
            }
            Err(e) => {
                self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// Cancels a job, and says what actually happened. A queued job is
    /// cancelled at once by a compare-and-set on its state (a worker's claim
    /// and this cancellation cannot both win), so nothing is charged. A
    /// running job is asked to stop: one not yet charged ends cancelled with
    /// nothing spent, one already charged ends cancelled with its charge
    /// kept, one already releasing completes. Errors: 409 for an ended job,
    /// 404 for an unknown one.
    pub fn cancel(&self, job: &QueuedJob) -> ApiResult<Cancellation> {
        let store = self.inner.sandbox.store();
        let error = json!({"rule": "job-cancelled", "message": "cancelled by its submitter before it ran"});
        match store.transition(&job.id, &[QueueState::Queued], QueueState::Cancelled, Some(&error))? {
            Transition::Moved => {
                self.inner.metrics.job_finished("cancelled", std::time::Duration::ZERO);
                self.tell_waiter(&job.id, Err(cancelled_before_running()));
                Ok(Cancellation::Cancelled)
            }
            Transition::Found(Some(QueueState::Running)) => {
                // A worker of this process registers the job here before it
                // claims it and removes it only after recording its end, so a
                // running job of this process is always found.
                match self.lock_cancels().get(&job.id) {
                    Some(notify) => {
                        notify.notify_one();
                        Ok(Cancellation::Requested)
                    }
                    None => Err(ApiError::conflict(format!(
                        "job `{}` is running in another server process; cancel it there",
                        job.id
                    ))),
                }
            }
            Transition::Found(Some(ended)) => Err(ApiError::conflict(format!(
                "job `{}` has ended already ({})",
                job.id,
                ended.as_str()
            ))),
            Transition::Found(None) => Err(ApiError::not_found(format!("you have no job `{}`", job.id))),
        }
    }

    /// Takes up the jobs a stop interrupted: one whose end the store
    /// recorded takes that end; one charged before the stop resumes under
    /// its charge (it stays `running`); any other goes back to `queued`.
    fn recover(&self) -> ApiResult<()> {
        let store = self.inner.sandbox.store();
        let unfinished = [QueueState::Queued, QueueState::Running];
        for job in store.unfinished_jobs()? {
            match store.recorded_job(&job.id)? {
                Some(recorded) if recorded.status != "running" => {
                    let state = match recorded.status.as_str() {
                        "released" => QueueState::Succeeded,
                        "refused" => QueueState::Refused,
                        "cancelled" => QueueState::Cancelled,
                        _ => QueueState::Failed,
                    };
                    let error = recorded.outcome.filter(|_| state != QueueState::Succeeded);
                    store.transition(&job.id, &unfinished, state, error.as_ref())?;
                    tracing::info!(job = %job.id, state = state.as_str(), "job ended before the restart");
                }
                recorded => {
                    if recorded.is_some() {
                        // Charged: a cancellation from now on must reach it.
                        self.lock_resuming().insert(job.id.clone());
                        self.lock_cancels().insert(job.id.clone(), Arc::new(Notify::new()));
                    } else {
                        store.transition(&job.id, &[QueueState::Running], QueueState::Queued, None)?;
                    }
                    tracing::info!(job = %job.id, "job interrupted by a restart runs again");
                    self.inner.waiting.fetch_add(1, Ordering::SeqCst);
                    self.inner
                        .sender
                        .send(job.id.clone())
                        .map_err(|_| ApiError::internal("the job workers have stopped"))?;
                }
            }
        }
        Ok(())
    }

    /// Claims a job for a worker: queued → running, or a charged job a
    /// restart interrupted (already running). `None` when the job was
    /// cancelled (or ended) first.
    fn claim(&self, id: &str) -> Result<Option<QueuedJob>, sandbox_governance::GovernanceError> {
        let store = self.inner.sandbox.store();
        let resuming = self.lock_resuming().remove(id);
        let from: &[QueueState] = if resuming {
            &[QueueState::Queued, QueueState::Running]
        } else {
            &[QueueState::Queued]
        };
        match store.transition(id, from, QueueState::Running, None)? {
            Transition::Moved => store.queued_job(id),
            Transition::Found(_) => Ok(None),
        }
    }

    /// Runs one job to its end.
    async fn run(&self, id: &str) {
        let store = self.inner.sandbox.store();
        // Registered before the claim, so that a cancellation that finds
        // the job running always reaches its worker.
        let notify = self
            .lock_cancels()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        let job = match self.claim(id) {
            Ok(Some(job)) => job,
            Ok(None) => {
                self.lock_cancels().remove(id);
                self.tell_waiter(id, Err(cancelled_before_running()));
                return;
            }
            Err(e) => {
                self.lock_cancels().remove(id);
                tracing::error!(job = id, error = %e, "could not claim a job");
                self.tell_waiter(id, Err(ApiError::from(e)));
                return;
            }
        };
        self.inner.running.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let ending = self.execute(&job, &notify).await;
        self.inner.running.fetch_sub(1, Ordering::SeqCst);
        if ending.state == QueueState::Succeeded {
            match store.job_charges(id) {
                Ok(charges) => {
                    for (dataset, epsilon) in charges {
                        self.inner.metrics.epsilon_spent(&dataset, epsilon);
                    }
                }
                Err(e) => tracing::warn!(job = id, error = %e, "could not read a job's charges"),
            }
        }
        self.inner
            .metrics
            .job_finished(ending.state.as_str(), started.elapsed());
        match store.transition(id, &[QueueState::Running], ending.state, ending.error.as_ref()) {
            Ok(Transition::Moved) => {}
            Ok(Transition::Found(found)) => {
                tracing::error!(job = id, found = ?found, "a running job's state moved under its worker");
            }
            // The store recorded how the job ended; the next start reads it.
            Err(e) => tracing::error!(job = id, error = %e, "could not record a job's end"),
        }
        // Only now: until its end is recorded a cancellation must find it.
        self.lock_cancels().remove(id);
        self.inner.stages.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        tracing::info!(job = id, state = ending.state.as_str(), elapsed = ?started.elapsed(), "job ended");
        self.tell_waiter(id, ending.failure.map_or(Ok(()), Err));
    }

    fn lock_resuming(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.resuming.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
        self.inner.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells whoever waits for the job in this process how it ended.
    fn tell_waiter(&self, id: &str, outcome: Result<(), ApiError>) {
        if let Some(waiter) = self.lock_waiters().remove(id) {
            // The waiter may have gone (its client hung up): nothing to do.
            let _ = waiter.send(outcome);
        }
    }

    fn lock_cancels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.inner.cancels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the job's computation; a cancellation request stops it.
    async fn execute(&self, job: &QueuedJob, cancel: &Notify) -> Ending {
        let request: JobRequest = match serde_json::from_str(&job.request) {
            Ok(r) => r,
            Err(e) => {
                return Ending::failed(ApiError::internal(format!("the stored request is unreadable: {e}")));
            }
        };
        let sandbox = self.inner.sandbox.clone();
        let (stages, progress_id) = (self.inner.stages.clone(), job.id.clone());
        let context = JobContext {
            id: Some(job.id.clone()),
            progress: Some(Arc::new(move |stage| {
                stages
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(progress_id.clone(), stage);
            })),
        };
        let work = run_request(&sandbox, &context, &job.grant, request);
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return Ending::of(result),
                () = cancel.notified() => {
                    // Between its charge and its release a job is registered
                    // as running and stops itself, recording the cancellation.
                    if sandbox.cancel_job(&job.id) {
                        continue;
                    }
                    // Not charged yet (the charge and the registration happen
                    // in one poll of `work`, which is not being polled now):
                    // dropping the work cancels it with nothing spent.
                    match sandbox.store().recorded_job(&job.id) {
                        Ok(None) => {
                            return Ending::failed(ApiError::refused(
                                "job-cancelled",
                                "cancelled by its submitter before it was charged",
                            ));
                        }
                        // Already ended: let the work return its result.
                        _ => continue,
                    }
                }
            }
        }
    }
}

/// Runs one request through the sandbox; a released result (or a dry
/// run's report) is stored with the job.
async fn run_request(
    sandbox: &Sandbox,
    context: &JobContext,
    grant: &str,
    request: JobRequest,
) -> Result<(), RuntimeError> {
    let id = context.id.clone().unwrap_or_default();
    match request {
        JobRequest::Sql {
            sql,
            epsilon,
            dry_run,
            wasm_module,
            target_ci,
            target_rows,
            trial,
            ..
        } => {
            let functions = match wasm_module {
                Some(m) => {
                    let bytes = decode_module(&m).map_err(|e| RuntimeError::Setup(e.message))?;
                    let admitted = sandbox.load_wasm(&bytes);
                    let job = recorded_if_refused(sandbox, &id, grant, "sql", &sql, &bytes, admitted)?;
                    job.row_functions()
                }
                None => Vec::new(),
            };
            if trial {
                let report = sandbox.trial_sql(grant, &sql, functions).await?;
                return store_uncharged(sandbox, &id, json!({"kind": "sql_trial", "report": report}));
            }
            let options = SqlJobOptions {
                epsilon,
                dry_run,
                target_ci,
                target_rows,
            };
            match sandbox.run_sql_job(context, grant, &sql, &options, functions).await? {
                SqlJobResult::Released { .. } => Ok(()),
                SqlJobResult::DryRun(report) => {
                    store_uncharged(sandbox, &id, json!({"kind": "dry_run", "report": report}))
                }
            }
        }
        JobRequest::Analysis {
            input_sql,
            wasm_module,
            blocks,
            epsilon,
            trial,
            dry_run,
            ..
        } => {
            let bytes = decode_module(&wasm_module).map_err(|e| RuntimeError::Setup(e.message))?;
            let program = sandbox.load_wasm(&bytes).and_then(|job| {
                job.analysis().ok_or_else(|| {
                    RuntimeError::refused(
                        "wasm-no-analysis",
                        "the module exports no analysis program (see docs/wasm.md)",
                    )
                })
            });
            let program = recorded_if_refused(sandbox, &id, grant, "wasm", &input_sql, &bytes, program)?;
            let options = AnalysisOptions {
                blocks: blocks.unwrap_or(AnalysisOptions::default().blocks),
                epsilon,
            };
            if dry_run {
                let report = sandbox
                    .dry_run_analysis(grant, program.as_ref(), &input_sql, &options)
                    .await?;
                return store_uncharged(sandbox, &id, json!({"kind": "analysis_dry_run", "report": report}));
            }
            if trial {
                let report = sandbox.trial_analysis(grant, program, &input_sql, &options).await?;
                return store_uncharged(sandbox, &id, json!({"kind": "trial", "report": report}));
            }
            sandbox
                .run_analysis_job(context, grant, program, &input_sql, &options)
                .await?;
            Ok(())
        }
    }
}

/// Stores the result of a run that spent nothing (a dry run or a trial).
fn store_uncharged(sandbox: &Sandbox, id: &str, result: serde_json::Value) -> Result<(), RuntimeError> {
    let text = serde_json::to_string(&result).map_err(|e| RuntimeError::Setup(e.to_string()))?;
    sandbox.store().store_uncharged_result(id, &text)?;
    Ok(())
}

/// Records in the ledger a job whose module was refused at admission
/// (before the job reached the runtime, which records its own refusals).
fn recorded_if_refused<T>(
    sandbox: &Sandbox,
    id: &str,
    grant: &str,
    kind: &str,
    sql: &str,
    module: &[u8],
    admitted: Result<T, RuntimeError>,
) -> Result<T, RuntimeError> {
    if let Err(e) = &admitted
        && let Some(rule) = e.rule()
    {
        let text = format!(
            "{sql}\n-- module {} (refused at admission)",
            hex::encode(Sha256::digest(module))
        );
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        let outcome = JobOutcome::Refused { rule: rule.to_string() };
        if let Err(err) = sandbox
            .store()
            .record_refusal_with_text(id, grant, kind, &digest, Some(&text), &outcome)
        {
            tracing::warn!(job = id, error = %err, "could not record a refused module");
        }
    }
    admitted
}
