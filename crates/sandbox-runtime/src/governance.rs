//! Governance on the job path: the agreement a job runs under must cover
//! its kind and every column it touches, no dataset it reads may be
//! suspended, and a suspension or revocation cancels the jobs it affects
//! while they run. Also the catalog-aware wrappers of the store's
//! application steps (only conditionally open datasets are applied for; an
//! owner decides only for its own provider's datasets).

use crate::RuntimeError;
use crate::sandbox::Sandbox;
use sandbox_governance::{ApplicationBody, Decision, Role};
use sandbox_model::{DatasetId, OpenClass, ProviderKind};
use sandbox_sql::query::UsageFacts;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Jobs between their charge and their release, so that a suspension or
/// revocation can stop them.
#[derive(Debug, Default)]
pub(crate) struct RunningJobs {
    jobs: Mutex<HashMap<String, RunningJob>>,
}

#[derive(Debug)]
struct RunningJob {
    grant: String,
    datasets: BTreeSet<DatasetId>,
    cancel: Arc<Notify>,
}

/// Deregisters its job when dropped.
pub(crate) struct RunningGuard<'a> {
    jobs: &'a RunningJobs,
    id: String,
    cancel: Arc<Notify>,
}

impl RunningGuard<'_> {
    /// Completes when the job is cancelled.
    pub(crate) async fn cancelled(&self) {
        self.cancel.notified().await
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.jobs.lock().remove(&self.id);
    }
}

impl RunningJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunningJob>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn register(&self, id: &str, grant: &str, datasets: &BTreeSet<DatasetId>) -> RunningGuard<'_> {
        let cancel = Arc::new(Notify::new());
        self.lock().insert(
            id.to_string(),
            RunningJob {
                grant: grant.to_string(),
                datasets: datasets.clone(),
                cancel: cancel.clone(),
            },
        );
        RunningGuard {
            jobs: self,
            id: id.to_string(),
            cancel,
        }
    }

    /// Cancels the running jobs `matches` selects; returns how many.
    fn cancel_where(&self, matches: impl Fn(&RunningJob) -> bool) -> usize {
        let jobs = self.lock();
        let mut n = 0;
        for job in jobs.values().filter(|j| matches(j)) {
            // notify_one stores a permit, so a job that has not reached its
            // wait yet still sees the cancellation.
            job.cancel.notify_one();
            n += 1;
        }
        n
    }

    /// Cancels one running job; returns whether it was running.
    pub(crate) fn cancel(&self, id: &str) -> bool {
        match self.lock().get(id) {
            Some(job) => {
                job.cancel.notify_one();
                true
            }
            None => false,
        }
    }

    /// Jobs now running (for status pages and tests).
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }
}

/// Every column a job touched.
fn touched(usage: &UsageFacts) -> BTreeSet<&str> {
    usage
        .read
        .iter()
        .chain(&usage.filtered)
        .chain(&usage.grouped)
        .chain(&usage.aggregated)
        .map(String::as_str)
        .collect()
}

impl Sandbox {
    /// Refuses a job its agreement does not cover or whose datasets are
    /// suspended. Grants without an agreement (the operator's demo grant)
    /// have no column or kind terms.
    pub(crate) fn check_job_allowed(
        &self,
        grant: &str,
        kinds: &[&str],
        datasets: &BTreeSet<DatasetId>,
        usage: &UsageFacts,
    ) -> Result<(), RuntimeError> {
        let names: Vec<&str> = datasets.iter().map(DatasetId::as_str).collect();
        self.store().check_not_suspended(&names)?;
        let Some(agreement) = self.store().agreement(grant)? else {
            return Ok(());
        };
        for kind in kinds {
            if !agreement.terms.job_kinds.iter().any(|k| k == kind) {
                return Err(RuntimeError::refused(
                    "agreement-job-kind",
                    format!(
                        "agreement `{grant}` allows {} jobs, not {kind} jobs",
                        agreement.terms.job_kinds.join(" and ")
                    ),
                ));
            }
        }
        let conditional = |column: &str| {
            self.catalog()
                .iter()
                .find(|d| column.starts_with(&format!("{}.", d.id.as_str())))
                .is_some_and(|d| d.open_class == OpenClass::Conditional)
        };
        for column in touched(usage) {
            let dataset_wide = column
                .rsplit_once('.')
                .map(|(dataset, _)| format!("{dataset}.*"))
                .unwrap_or_default();
            let covered = agreement
                .terms
                .columns
                .iter()
                .any(|c| c == column || *c == dataset_wide);
            if conditional(column) && !covered {
                return Err(RuntimeError::refused(
                    "agreement-column",
                    format!("column {column} is not among the columns agreement `{grant}` covers"),
                ));
            }
        }
        Ok(())
    }

    /// Cancels a job between its charge and its release (its submitter's
    /// request); nothing is released and the charge is kept. Returns
    /// whether the job was running.
    pub fn cancel_job(&self, job_id: &str) -> bool {
        self.running().cancel(job_id)
    }

    /// Suspends a dataset on complaint and cancels the running jobs that
    /// read it; returns how many were cancelled. Only the operator or the
    /// dataset's own owner may suspend.
    pub fn suspend_dataset(&self, account: &str, dataset: &DatasetId, reason: &str) -> Result<usize, RuntimeError> {
        self.require_owner_or_operator(account, dataset)?;
        self.store().suspend_dataset(dataset.as_str(), account, reason)?;
        Ok(self.running().cancel_where(|j| j.datasets.contains(dataset)))
    }

    /// Lifts a dataset's suspension (its owner, or the operator).
    pub fn resume_dataset(&self, account: &str, dataset: &DatasetId, note: &str) -> Result<(), RuntimeError> {
        self.require_owner_or_operator(account, dataset)?;
        Ok(self.store().resume_dataset(dataset.as_str(), account, note)?)
    }

    /// Revokes an agreement and cancels the jobs running under it; returns
    /// how many were cancelled.
    pub fn revoke_agreement(&self, account: &str, agreement: &str, reason: &str) -> Result<usize, RuntimeError> {
        let Some(terms) = self.store().agreement(agreement)? else {
            return Err(RuntimeError::refused(
                "no-agreement",
                format!("no agreement `{agreement}`"),
            ));
        };
        for d in &terms.terms.datasets {
            self.require_owner_or_operator(account, d)?;
        }
        self.store().revoke(agreement, account, reason)?;
        Ok(self.running().cancel_where(|j| j.grant == agreement))
    }

    /// Submits an application after checking it against the catalog:
    /// conditionally open datasets only (open ones need none, closed ones
    /// cannot be applied for), columns of those datasets, known job kinds.
    pub fn apply(&self, applicant: &str, id: &str, body: &ApplicationBody) -> Result<u32, RuntimeError> {
        let catalog = self.catalog();
        for d in &body.datasets {
            let entry = catalog
                .get(d)
                .ok_or_else(|| RuntimeError::refused("application-dataset", format!("{d} is not in the catalog")))?;
            match entry.open_class {
                OpenClass::Conditional => {}
                OpenClass::Open => {
                    return Err(RuntimeError::refused(
                        "application-dataset",
                        format!("{d} is unconditionally open: use it without applying"),
                    ));
                }
                OpenClass::Closed => {
                    return Err(RuntimeError::refused(
                        "application-dataset",
                        format!("{d} is closed and cannot be applied for"),
                    ));
                }
            }
        }
        for c in &body.columns {
            let ok = body.datasets.iter().any(|d| {
                c.strip_prefix(&format!("{}.", d.as_str()))
                    .is_some_and(|col| col == "*" || self.catalog().get(d).is_some_and(|e| e.field(col).is_some()))
            });
            if !ok {
                return Err(RuntimeError::refused(
                    "application-column",
                    format!("{c} is not a column of the datasets applied for (write dataset.column)"),
                ));
            }
        }
        if let Some(k) = body.job_kinds.iter().find(|k| *k != "sql" && *k != "wasm") {
            return Err(RuntimeError::refused(
                "application-job-kind",
                format!("unknown job kind `{k}`: use sql or wasm"),
            ));
        }
        Ok(self.store().apply(id, applicant, body)?)
    }

    /// Records an owner's decision on the datasets of the application that
    /// its provider owns; the agreement is created once every dataset's
    /// owner has approved (see `Store::decide_for`).
    pub fn decide(&self, owner: &str, application: &str, decision: &Decision) -> Result<(), RuntimeError> {
        let body = self
            .store()
            .application(application)?
            .ok_or_else(|| RuntimeError::refused("no-application", format!("no application `{application}`")))?;
        if self.store().owned_provider(owner)?.is_none() {
            return Err(RuntimeError::refused(
                "decide-not-owner",
                format!("`{owner}` is not a data owner"),
            ));
        }
        let mut owned: Vec<DatasetId> = Vec::new();
        for d in &body.datasets {
            if self.owns(owner, d)? {
                owned.push(d.clone());
            }
        }
        if owned.is_empty() {
            // Answered like an unknown application: an owner learns nothing
            // of applications that are not for its datasets.
            return Err(RuntimeError::refused(
                "no-application",
                format!("no application `{application}`"),
            ));
        }
        Ok(self.store().decide_for(application, owner, decision, &owned)?)
    }

    /// A data owner replaces the output policy of one of its datasets: the
    /// file is validated alone and together with every other policy (fusion
    /// keys, privacy units), written atomically to the policies directory,
    /// and its new digest recorded in the ledger as a `policy_version` by
    /// the owner. Sandboxes opened from then on apply it. Returns the new
    /// policy's digest.
    pub fn set_policy(&self, account: &str, file_name: &str, text: &str) -> Result<String, RuntimeError> {
        self.set_policy_of(account, None, file_name, text)
    }

    /// [`set_policy`](Self::set_policy) for the dataset a request named
    /// (`PUT /v1/policies/{dataset}`): a policy file for another dataset is
    /// refused (`policy-dataset-mismatch`) and nothing is installed.
    pub fn set_policy_of(
        &self,
        account: &str,
        expected: Option<&DatasetId>,
        file_name: &str,
        text: &str,
    ) -> Result<String, RuntimeError> {
        let invalid = |e: sandbox_policy::PolicyErrors| RuntimeError::refused("policy-invalid", e.to_string());
        let policy = sandbox_policy::parse_policy(file_name, text, &self.catalog()).map_err(invalid)?;
        let dataset = policy.dataset.clone();
        if let Some(expected) = expected.filter(|e| **e != dataset) {
            return Err(RuntimeError::refused(
                "policy-dataset-mismatch",
                format!("the request names {expected} but the policy file is for {dataset}"),
            ));
        }
        if !self.owns(account, &dataset)? {
            return Err(RuntimeError::refused(
                "not-owner",
                format!("only the owner of {dataset} sets its output policy"),
            ));
        }
        zcdp_budget_fits_one_query(&policy)?;
        if self.store().role(account)? == Some(Role::Applicant) {
            // An applicant's own table keeps the rule it was registered under.
            let partners: Vec<DatasetId> = policy.fusions.iter().map(|f| f.dataset.clone()).collect();
            crate::registrant::check_applicant_fusions(self.store(), account, &dataset, &partners)?;
        }
        // Every policy together, with this one in place of the old one.
        let dir = self.data_dir().policies_dir();
        let target = format!("{dataset}.toml");
        let mut sources = vec![(target.clone(), text.to_string())];
        let entries = std::fs::read_dir(&dir).map_err(|e| RuntimeError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".toml") && name != target {
                let body = sandbox_policy::files::read_text(&entry.path(), sandbox_policy::files::MAX_POLICY_BYTES)
                    .map_err(|e| RuntimeError::Setup(e.to_string()))?;
                sources.push((name, body));
            }
        }
        let installed = sandbox_policy::PolicySet::from_sources(&sources, &self.catalog()).map_err(invalid)?;
        let path = dir.join(&target);
        let staging = dir.join(format!(".{target}.new"));
        let io = |e: std::io::Error| RuntimeError::Io {
            path: path.display().to_string(),
            source: e,
        };
        std::fs::write(&staging, text).map_err(io)?;
        std::fs::rename(&staging, &path).map_err(io)?;
        let mut registration = self
            .registrations()?
            .into_iter()
            .find(|r| r.dataset == dataset.as_str())
            .ok_or_else(|| RuntimeError::Setup(format!("{dataset} vanished from the catalog")))?;
        registration.policy_digest = policy.digest.clone();
        // The new version's budgets cap every line and approval from now on.
        registration.epsilon_budget = policy.dp.map(|dp| dp.epsilon_budget);
        registration.delta_budget = policy.dp.map(|dp| dp.delta_budget);
        // And its accounting, which unspent lines follow from now on.
        registration.zcdp_delta = policy.dp.and_then(|dp| dp.accounting.conversion_delta());
        self.store().register_datasets(&[registration], account)?;
        // Jobs that start from now on use the new version.
        self.replace_policies(installed);
        Ok(policy.digest)
    }

    /// Whether `account` owns `dataset`: a data owner of its provider, or
    /// the applicant whose enterprise provider it is, for a dataset of kind
    /// `enterprise` only (an applicant never owns government data, even if
    /// an id were shared).
    pub fn owns(&self, account: &str, dataset: &DatasetId) -> Result<bool, RuntimeError> {
        let catalog = self.catalog();
        let Some(entry) = catalog.get(dataset) else {
            return Ok(false);
        };
        Ok(match self.store().role(account)? {
            Some(Role::DataOwner { provider }) => entry.provider.id == provider,
            Some(Role::Applicant) => {
                entry.provider.kind == ProviderKind::Enterprise
                    && self.store().enterprise_provider_of(account)?.as_deref() == Some(entry.provider.id.as_str())
            }
            Some(Role::Operator) | None => false,
        })
    }

    fn require_owner_or_operator(&self, account: &str, dataset: &DatasetId) -> Result<(), RuntimeError> {
        if self.store().role(account)? == Some(Role::Operator) || self.owns(account, dataset)? {
            return Ok(());
        }
        Err(RuntimeError::refused(
            "not-owner-or-operator",
            format!("only the platform operator or the owner of {dataset} may do this"),
        ))
    }
}

/// ρ to the ε of (ε, δ)-DP by OpenDP's conversion, for zCDP budget lines
/// ([`sandbox_governance::zcdp`]).
pub(crate) fn zcdp_conversion(rho: f64, delta: f64) -> Option<f64> {
    sandbox_dp::accounting::zcdp_epsilon(rho, delta).ok()
}

/// Under zCDP accounting one query at the per-query cap costs ρ = ε²/2,
/// which converts to more than ε at the conversion δ: a policy whose
/// `epsilon_budget` cannot hold that one query would refuse every job at
/// its own cap. Refused when installed (`policy-zcdp-budget`), naming the
/// fields and the ε one query converts to.
pub(crate) fn zcdp_budget_fits_one_query(policy: &sandbox_policy::Policy) -> Result<(), RuntimeError> {
    let Some(dp) = policy.dp else { return Ok(()) };
    let Some(conversion) = dp.accounting.conversion_delta() else {
        return Ok(());
    };
    let rho = sandbox_dp::accounting::rho_of_epsilon(dp.epsilon_per_query);
    let one_query = sandbox_dp::accounting::zcdp_epsilon(rho, conversion)?;
    if one_query > dp.epsilon_budget {
        return Err(RuntimeError::refused(
            "policy-zcdp-budget",
            format!(
                "under zcdp accounting one query at epsilon_per_query = {} costs ρ = {rho}, which is ε = {one_query:.4} at zcdp_delta = {conversion}: above epsilon_budget = {}; raise epsilon_budget or zcdp_delta, or lower epsilon_per_query",
                dp.epsilon_per_query, dp.epsilon_budget
            ),
        ));
    }
    Ok(())
}
