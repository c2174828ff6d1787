//! Usage reports (数据利用报告): what one grant or agreement did in a period,
//! built from the audit ledger alone, so that anyone holding an export of
//! the ledger can rebuild the report and check it against
//! `sandbox audit verify`.
//!
//! A job belongs to the period in which it was submitted (its
//! `job_charged` or `job_refused` entry); its outcome and usage record come
//! from its `job_finished` entry when that was written before the period's
//! end, otherwise it is listed as running. ε left is the grant's budget as
//! of the end of the period minus every charge before the end, whether or
//! not inside the period.
//!
//! This module builds the report; [`markdown`] renders it for people.

use crate::GovernanceError;
use crate::amount::{Delta, Epsilon};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sandbox_ledger::{Entry, GENESIS};
use sandbox_model::UsageRecord;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

mod markdown;

/// The usage report of one grant (or agreement) over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    /// The grant id (for an agreement, `agreement-<application>`).
    pub grant: String,
    /// The account the grant belongs to.
    pub holder: String,
    pub period: Period,
    /// The terms, when the grant was created by an approval.
    pub agreement: Option<AgreementTerms>,
    /// The state at the end of the period.
    pub status: GrantStatus,
    pub jobs: JobCounts,
    pub calls: Calls,
    /// Every column the period's finished jobs touched, by name.
    pub fields: Vec<FieldUse>,
    /// Functions in the usage records (`avg`, `count`, `wasm:<udf>`,
    /// `wasm:analysis:<name>`, …), with the number of jobs using each.
    pub functions: BTreeMap<String, u64>,
    /// Jobs run (charged) by kind: `sql`, `wasm`.
    pub job_kinds: BTreeMap<String, u64>,
    /// Jobs that ran WebAssembly (analysis jobs, and SQL jobs calling
    /// WebAssembly functions).
    pub webassembly: Vec<WasmUse>,
    /// ε and δ per dataset.
    pub budgets: Vec<DatasetBudget>,
    /// Groups released and suppressed by the period's released jobs.
    pub groups_released: u64,
    pub groups_suppressed: u64,
    /// The period's jobs in the order they were submitted.
    pub job_list: Vec<JobLine>,
    pub ledger: LedgerRange,
}

/// `[from, to)`, normalised to RFC 3339 UTC with milliseconds; `None` is
/// open-ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Period {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// An agreement's terms as signed (`agreement_signed`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgreementTerms {
    pub application: String,
    /// The usage scenario (使用场景).
    pub scenario: String,
    pub datasets: Vec<String>,
    pub columns: Vec<String>,
    pub job_kinds: Vec<String>,
    /// The smallest ε granted for a dataset (per-dataset figures are in
    /// the report's budget lines).
    pub epsilon_per_dataset: f64,
    pub expires_at: String,
    pub call_quota: u64,
    pub signed_at: String,
    /// The data owner who approved.
    pub signed_by: String,
}

/// The grant's state at the end of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantStatus {
    /// `active` or `revoked`.
    pub state: String,
    pub reason: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    /// The agreement's expiry is at or before the end of the period (or,
    /// for an open-ended period, the ledger's last entry).
    pub expired: bool,
}

/// How a released job whose noisy count of defaults is significant is
/// described in its line of the report.
pub const RELEASED_WITH_DEFAULTS: &str = "released with defaults";

/// Jobs submitted in the period, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobCounts {
    /// Charged plus refused.
    pub submitted: u64,
    /// Charged (run): released + failed + cancelled + dry runs + running.
    pub charged: u64,
    pub released: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub dry_runs: u64,
    /// Charged but not finished before the end of the period.
    pub running: u64,
    /// Refused by a rule (never charged).
    pub refused: u64,
    /// Of `released`: jobs with WebAssembly code whose released noisy count
    /// of defaults (failed, empty or NaN blocks) is above its 95 % noise
    /// half-width ([`DefaultsCount::significant`](sandbox_model::DefaultsCount::significant)).
    pub released_with_defaults: u64,
    /// Refusals by the rule that refused them.
    pub refused_by_rule: BTreeMap<String, u64>,
}

/// Calls counted against the agreement's quota (one per charged job).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calls {
    pub in_period: u64,
    /// From the start of the ledger to the end of the period.
    pub to_end: u64,
    pub quota: Option<u64>,
    /// Quota minus calls up to the end of the period.
    pub left: Option<u64>,
}

/// One column (`dataset.column`) and the number of jobs that used it, in
/// any way and per role.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldUse {
    pub column: String,
    pub jobs: u64,
    pub read: u64,
    pub filtered: u64,
    pub grouped: u64,
    pub aggregated: u64,
}

/// A job that ran WebAssembly. The ledger does not record the module's
/// SHA-256 on its own: the submission digest is the SHA-256 over the
/// submitted SQL (or input query) and the module's SHA-256, so a module
/// is checked by recomputing the digest from the submission.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WasmUse {
    pub job: String,
    pub kind: String,
    /// The WebAssembly functions the job called.
    pub functions: Vec<String>,
    pub submission_digest: String,
}

/// ε and δ of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetBudget {
    pub dataset: String,
    /// The budget granted as of the end of the period.
    pub epsilon_total: f64,
    /// Charged by jobs submitted in the period.
    pub epsilon_spent: f64,
    pub delta_spent: f64,
    /// Charged from the start of the ledger to the end of the period.
    pub epsilon_spent_to_end: f64,
    /// `epsilon_total - epsilon_spent_to_end`, not below 0.
    pub epsilon_left: f64,
    /// The δ budget granted, when the ledger records one (an agreement
    /// records its policy's `delta_budget` at signing); `None` when the
    /// line follows the dataset's policy.
    pub delta_total: Option<f64>,
    /// δ charged from the start of the ledger to the end of the period.
    pub delta_spent_to_end: f64,
    /// `delta_total - delta_spent_to_end`, not below 0, when known.
    pub delta_left: Option<f64>,
}

/// One job of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobLine {
    pub job: String,
    /// When it was charged or refused.
    pub submitted_at: String,
    pub kind: String,
    /// `released`, `failed`, `cancelled`, `dry_run`, `running` or `refused`.
    pub status: String,
    /// ε charged to each dataset the job read (0 when refused).
    pub epsilon: f64,
    pub delta: f64,
    pub datasets: Vec<String>,
    pub result_digest: Option<String>,
    /// The refusing rule, the failure message or why it was cancelled.
    pub detail: Option<String>,
}

/// Which part of the ledger the report covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerRange {
    /// Entries the report was built from (the whole ledger).
    pub entries: u64,
    /// First and last entry (of any grant) inside the period.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Entries about this grant inside the period.
    pub grant_entries: u64,
    /// The last entry before the end of the period and its hash (0 and
    /// the genesis hash when there is none).
    pub head_seq: u64,
    pub head_hash: String,
    /// Every entry given follows its predecessor from the genesis
    /// (`sandbox_ledger::verify`; the stored head is checked by
    /// `sandbox audit verify`).
    pub chain_verified: bool,
}

/// Parses a period bound: RFC 3339 (any offset) or a date `YYYY-MM-DD`
/// (midnight UTC), normalised like the ledger's own times.
fn normalize(s: &str) -> Option<String> {
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Millis, true));
    }
    let date = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
    Some(
        date.and_hms_opt(0, 0, 0)?
            .and_utc()
            .to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

fn bound(value: Option<&str>, which: &str) -> Result<Option<String>, GovernanceError> {
    value
        .map(|v| {
            normalize(v).ok_or_else(|| {
                GovernanceError::Invalid(format!(
                    "the period's {which} `{v}` is not an RFC 3339 time (like 2026-11-01T00:00:00Z) or a date (2026-11-01)"
                ))
            })
        })
        .transpose()
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn texts(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn number(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// `(dataset, ε)` pairs of a `budgets` array.
fn budget_list(v: &Value) -> Vec<(String, f64)> {
    v.get("budgets")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|b| Some((text(b, "dataset")?.to_string(), number(b, "epsilon"))))
                .collect()
        })
        .unwrap_or_default()
}

/// `(dataset, δ)` pairs of a `budgets` array, where a δ budget is recorded.
fn delta_budget_list(v: &Value) -> Vec<(String, f64)> {
    v.get("budgets")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|b| Some((text(b, "dataset")?.to_string(), b.get("delta")?.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// `(dataset, ε, δ)` triples of a `charges` array.
fn charge_list(v: &Value) -> Vec<(String, f64, f64)> {
    v.get("charges")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    Some((
                        text(c, "dataset")?.to_string(),
                        number(c, "epsilon"),
                        number(c, "delta"),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sums in exact units (ε 1e-9, δ 1e-15), like the store's.
#[derive(Default)]
struct Spend {
    epsilon: Epsilon,
    delta: Delta,
    epsilon_to_end: Epsilon,
    delta_to_end: Delta,
}

fn add_eps(sum: &mut Epsilon, x: f64) {
    let charged = Epsilon::charge(x).unwrap_or_default();
    *sum = sum.checked_add(charged).unwrap_or(*sum);
}

fn add_delta(sum: &mut Delta, x: f64) {
    let charged = Delta::charge(x).unwrap_or_default();
    *sum = sum.checked_add(charged).unwrap_or(*sum);
}

/// Jobs using a column: in any way, and read / filtered / grouped /
/// aggregated.
#[derive(Default)]
struct Roles {
    jobs: u64,
    by_role: [u64; 4],
}

/// Does `entry` concern `grant`?
fn about(entry: &Entry, grant: &str) -> bool {
    let key = match entry.kind.as_str() {
        "agreement_signed" | "agreement_revoked" => "agreement",
        "grant_created" | "grant_extended" | "job_charged" | "job_refused" => "grant",
        "job_finished" => {
            return entry.payload.get("usage").and_then(|u| text(u, "grant_id")) == Some(grant);
        }
        _ => return false,
    };
    text(&entry.payload, key) == Some(grant)
}

impl UsageReport {
    /// Builds the report of `grant` over `[from, to)` from the ledger's
    /// entries (oldest first). Fails with [`GovernanceError::NoGrant`] when
    /// no entry creates the grant and [`GovernanceError::Invalid`] when a
    /// bound is not a time or the period is empty.
    pub fn from_entries(
        entries: &[Entry],
        grant: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<UsageReport, GovernanceError> {
        let from = bound(from, "start")?;
        let to = bound(to, "end")?;
        if let (Some(f), Some(t)) = (&from, &to)
            && f >= t
        {
            return Err(GovernanceError::Invalid(format!(
                "the period is empty: it starts at {f} and ends at {t}"
            )));
        }
        let created = entries.iter().any(|e| {
            matches!(e.kind.as_str(), "grant_created" | "grant_extended" | "agreement_signed") && about(e, grant)
        });
        if !created {
            return Err(GovernanceError::NoGrant(grant.to_string()));
        }

        let mut holder = String::new();
        let mut agreement: Option<AgreementTerms> = None;
        let mut status = GrantStatus {
            state: "active".into(),
            reason: None,
            revoked_at: None,
            revoked_by: None,
            expired: false,
        };
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        let mut delta_totals: BTreeMap<String, f64> = BTreeMap::new();
        let mut spend: BTreeMap<String, Spend> = BTreeMap::new();
        let mut counts = JobCounts::default();
        let mut calls_in_period = 0u64;
        let mut calls_to_end = 0u64;
        let mut fields: BTreeMap<String, Roles> = BTreeMap::new();
        let mut functions: BTreeMap<String, u64> = BTreeMap::new();
        let mut job_kinds: BTreeMap<String, u64> = BTreeMap::new();
        let mut webassembly = Vec::new();
        let (mut groups_released, mut groups_suppressed) = (0u64, 0u64);
        let mut job_list: Vec<JobLine> = Vec::new();
        let mut job_index: HashMap<String, usize> = HashMap::new();
        let mut ledger = LedgerRange {
            entries: entries.len() as u64,
            first_seq: None,
            last_seq: None,
            grant_entries: 0,
            head_seq: 0,
            head_hash: GENESIS.to_string(),
            chain_verified: sandbox_ledger::verify(entries).is_ok(),
        };
        let mut last_at: Option<String> = None;

        for entry in entries {
            let at = normalize(&entry.at).unwrap_or_else(|| entry.at.clone());
            let before_end = to.as_ref().is_none_or(|t| at < *t);
            let in_period = before_end && from.as_ref().is_none_or(|f| at >= *f);
            if before_end && entry.seq >= ledger.head_seq {
                ledger.head_seq = entry.seq;
                ledger.head_hash = entry.hash.clone();
            }
            if in_period {
                ledger.first_seq = Some(ledger.first_seq.map_or(entry.seq, |s| s.min(entry.seq)));
                ledger.last_seq = Some(ledger.last_seq.map_or(entry.seq, |s| s.max(entry.seq)));
            }
            if last_at.as_ref().is_none_or(|l| at > *l) {
                last_at = Some(at.clone());
            }
            if !about(entry, grant) {
                continue;
            }
            if in_period {
                ledger.grant_entries += 1;
            }
            let p = &entry.payload;
            match entry.kind.as_str() {
                "grant_created" | "grant_extended" => {
                    if holder.is_empty() {
                        holder = text(p, "holder").unwrap_or(&entry.actor).to_string();
                    }
                    if before_end {
                        for (dataset, epsilon) in budget_list(p) {
                            totals.entry(dataset).or_insert(epsilon);
                        }
                        for (dataset, delta) in delta_budget_list(p) {
                            delta_totals.entry(dataset).or_insert(delta);
                        }
                    }
                }
                "agreement_signed" => {
                    if let Some(h) = text(p, "holder") {
                        holder = h.to_string();
                    }
                    let terms = AgreementTerms {
                        application: text(p, "application").unwrap_or_default().to_string(),
                        scenario: text(p, "scenario").unwrap_or_default().to_string(),
                        datasets: texts(p, "datasets"),
                        columns: texts(p, "columns"),
                        job_kinds: texts(p, "job_kinds"),
                        epsilon_per_dataset: number(p, "epsilon"),
                        expires_at: text(p, "expires_at").unwrap_or_default().to_string(),
                        call_quota: p.get("call_quota").and_then(Value::as_u64).unwrap_or(0),
                        signed_at: entry.at.clone(),
                        signed_by: entry.actor.clone(),
                    };
                    if before_end {
                        // Each owner sets ε for its own datasets (`budgets`);
                        // `epsilon` alone is the smallest of them.
                        let budgets = budget_list(p);
                        for (dataset, delta) in delta_budget_list(p) {
                            delta_totals.entry(dataset).or_insert(delta);
                        }
                        for dataset in &terms.datasets {
                            let eps = budgets
                                .iter()
                                .find(|(d, _)| d == dataset)
                                .map_or(terms.epsilon_per_dataset, |(_, e)| *e);
                            totals.entry(dataset.clone()).or_insert(eps);
                        }
                    }
                    agreement = Some(terms);
                }
                "agreement_revoked" if before_end => {
                    status.state = "revoked".into();
                    status.reason = text(p, "reason").map(str::to_string);
                    status.revoked_at = Some(entry.at.clone());
                    status.revoked_by = Some(entry.actor.clone());
                }
                "job_charged" if before_end => {
                    let charges = charge_list(p);
                    calls_to_end += 1;
                    for (dataset, epsilon, delta) in &charges {
                        let s = spend.entry(dataset.clone()).or_default();
                        add_eps(&mut s.epsilon_to_end, *epsilon);
                        add_delta(&mut s.delta_to_end, *delta);
                        if in_period {
                            add_eps(&mut s.epsilon, *epsilon);
                            add_delta(&mut s.delta, *delta);
                        }
                    }
                    if in_period {
                        calls_in_period += 1;
                        counts.charged += 1;
                        let kind = text(p, "kind").unwrap_or_default().to_string();
                        *job_kinds.entry(kind.clone()).or_default() += 1;
                        let job = text(p, "job").unwrap_or_default().to_string();
                        job_index.insert(job.clone(), job_list.len());
                        job_list.push(JobLine {
                            job,
                            submitted_at: entry.at.clone(),
                            kind,
                            status: "running".into(),
                            epsilon: charges.iter().map(|c| c.1).fold(0.0, f64::max),
                            delta: charges.iter().map(|c| c.2).fold(0.0, f64::max),
                            datasets: charges.iter().map(|c| c.0.clone()).collect(),
                            result_digest: None,
                            detail: None,
                        });
                    }
                }
                "job_refused" if in_period => {
                    let rule = p
                        .get("outcome")
                        .and_then(|o| text(o, "rule"))
                        .unwrap_or("unknown")
                        .to_string();
                    *counts.refused_by_rule.entry(rule.clone()).or_default() += 1;
                    job_list.push(JobLine {
                        job: text(p, "job").unwrap_or_default().to_string(),
                        submitted_at: entry.at.clone(),
                        kind: text(p, "kind").unwrap_or_default().to_string(),
                        status: "refused".into(),
                        epsilon: 0.0,
                        delta: 0.0,
                        datasets: Vec::new(),
                        result_digest: None,
                        detail: Some(rule),
                    });
                }
                "job_finished" if before_end => {
                    let Some(&i) = text(p, "job").and_then(|j| job_index.get(j)) else {
                        continue; // submitted before the period
                    };
                    let line = &mut job_list[i];
                    line.status = text(p, "status").unwrap_or("unknown").to_string();
                    let outcome = p.get("outcome");
                    line.detail = match line.status.as_str() {
                        "failed" => outcome.and_then(|o| text(o, "message")).map(str::to_string),
                        "refused" => outcome.and_then(|o| text(o, "rule")).map(str::to_string),
                        "cancelled" => text(p, "cancelled_because").map(str::to_string),
                        _ => None,
                    };
                    if line.status == "refused" {
                        // Charged, then refused: counted under its rule too.
                        let rule = line.detail.clone().unwrap_or_else(|| "unknown".into());
                        *counts.refused_by_rule.entry(rule).or_default() += 1;
                    }
                    let Some(usage) = p
                        .get("usage")
                        .and_then(|u| serde_json::from_value::<UsageRecord>(u.clone()).ok())
                    else {
                        continue;
                    };
                    line.result_digest = usage.result_digest.clone();
                    if let Some(defaults) = usage.defaults.as_ref().filter(|d| d.significant()) {
                        let of = defaults.out_of.map(|n| format!(" of {n}")).unwrap_or_default();
                        line.detail = Some(format!(
                            "{RELEASED_WITH_DEFAULTS}: about {:.0}{of} {} (a noisy count, ±{:.0} at 95 %)",
                            defaults.noisy, defaults.unit, defaults.half_width_95
                        ));
                    }
                    groups_released += usage.groups_released;
                    groups_suppressed += usage.groups_suppressed;
                    let roles = [
                        &usage.columns_read,
                        &usage.columns_filtered,
                        &usage.columns_grouped,
                        &usage.columns_aggregated,
                    ];
                    let mut touched = BTreeSet::new();
                    for (role, columns) in roles.into_iter().enumerate() {
                        for column in columns.iter().collect::<BTreeSet<_>>() {
                            fields.entry(column.clone()).or_default().by_role[role] += 1;
                            touched.insert(column.clone());
                        }
                    }
                    for column in touched {
                        fields.entry(column).or_default().jobs += 1;
                    }
                    let used: BTreeSet<&String> = usage.functions.iter().collect();
                    for f in &used {
                        *functions.entry((*f).clone()).or_default() += 1;
                    }
                    let wasm: Vec<String> = used.into_iter().filter(|f| f.starts_with("wasm:")).cloned().collect();
                    if line.kind == "wasm" || !wasm.is_empty() {
                        webassembly.push(WasmUse {
                            job: line.job.clone(),
                            kind: line.kind.clone(),
                            functions: wasm,
                            submission_digest: usage.submission_digest.clone(),
                        });
                    }
                }
                _ => {}
            }
        }

        for line in &job_list {
            match line.status.as_str() {
                "released" => {
                    counts.released += 1;
                    if line
                        .detail
                        .as_deref()
                        .is_some_and(|d| d.starts_with(RELEASED_WITH_DEFAULTS))
                    {
                        counts.released_with_defaults += 1;
                    }
                }
                "failed" => counts.failed += 1,
                "cancelled" => counts.cancelled += 1,
                "dry_run" => counts.dry_runs += 1,
                "running" => counts.running += 1,
                "refused" => counts.refused += 1,
                _ => {}
            }
        }
        counts.submitted = job_list.len() as u64;

        if let Some(terms) = &agreement {
            let as_of = to.clone().or(last_at);
            let expires = normalize(&terms.expires_at).unwrap_or_else(|| terms.expires_at.clone());
            status.expired = as_of.is_some_and(|t| expires <= t);
        }
        let quota = agreement.as_ref().map(|a| a.call_quota);
        let calls = Calls {
            in_period: calls_in_period,
            to_end: calls_to_end,
            quota,
            left: quota.map(|q| q.saturating_sub(calls_to_end)),
        };
        let datasets: BTreeSet<&String> = totals.keys().chain(spend.keys()).collect();
        let budgets = datasets
            .into_iter()
            .map(|d| {
                let total = Epsilon::total(totals.get(d).copied().unwrap_or(0.0)).unwrap_or_default();
                let delta_total = delta_totals.get(d).and_then(|x| Delta::total(*x).ok());
                let s = spend.get(d);
                let to_end = s.map_or(Epsilon::ZERO, |s| s.epsilon_to_end);
                let delta_to_end = s.map_or(Delta::ZERO, |s| s.delta_to_end);
                DatasetBudget {
                    dataset: d.clone(),
                    epsilon_total: total.as_f64(),
                    epsilon_spent: s.map_or(0.0, |s| s.epsilon.as_f64()),
                    delta_spent: s.map_or(0.0, |s| s.delta.as_f64()),
                    epsilon_spent_to_end: to_end.as_f64(),
                    epsilon_left: total.saturating_sub(to_end).as_f64(),
                    delta_total: delta_total.map(Delta::as_f64),
                    delta_spent_to_end: delta_to_end.as_f64(),
                    delta_left: delta_total.map(|t| t.saturating_sub(delta_to_end).as_f64()),
                }
            })
            .collect();
        let fields = fields
            .into_iter()
            .map(|(column, r)| {
                let [read, filtered, grouped, aggregated] = r.by_role;
                FieldUse {
                    column,
                    jobs: r.jobs,
                    read,
                    filtered,
                    grouped,
                    aggregated,
                }
            })
            .collect();

        Ok(UsageReport {
            grant: grant.to_string(),
            holder,
            period: Period { from, to },
            agreement,
            status,
            jobs: counts,
            calls,
            fields,
            functions,
            job_kinds,
            webassembly,
            budgets,
            groups_released,
            groups_suppressed,
            job_list,
            ledger,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_ledger::Chain;
    use serde_json::json;

    /// Builds a ledger with `Chain`, one minute apart from 2026-11-01T10:00Z
    /// unless a time is given.
    struct Ledger {
        chain: Chain,
        entries: Vec<Entry>,
    }

    impl Ledger {
        fn new() -> Self {
            Ledger {
                chain: Chain::new(),
                entries: Vec::new(),
            }
        }

        fn at(&mut self, at: &str, actor: &str, kind: &str, payload: Value) -> &mut Self {
            let e = self.chain.append(at, actor, kind, payload);
            self.entries.push(e);
            self
        }

        fn add(&mut self, actor: &str, kind: &str, payload: Value) -> &mut Self {
            let at = format!("2026-11-01T10:{:02}:00.000Z", self.entries.len());
            self.at(&at, actor, kind, payload)
        }

        fn grant(&mut self, grant: &str, budgets: &[(&str, f64)]) -> &mut Self {
            let budgets: Vec<Value> = budgets
                .iter()
                .map(|(d, e)| json!({"dataset": d, "epsilon": e}))
                .collect();
            self.add(
                "bank",
                "grant_created",
                json!({"grant": grant, "holder": "bank", "budgets": budgets}),
            )
        }

        fn charge(&mut self, job: &str, grant: &str, kind: &str, charges: &[(&str, f64)]) -> &mut Self {
            let charges: Vec<Value> = charges
                .iter()
                .map(|(d, e)| json!({"dataset": d, "epsilon": e, "delta": 0.0}))
                .collect();
            self.add(
                "bank",
                "job_charged",
                json!({"job": job, "grant": grant, "kind": kind, "submission_digest": format!("sub-{job}"), "charges": charges}),
            )
        }

        fn finish(&mut self, job: &str, grant: &str, outcome: Value, usage: Value) -> &mut Self {
            let status = outcome["status"].clone();
            let mut u = json!({
                "job_id": job, "grant_id": grant, "datasets": ["gov.a"], "columns_read": [],
                "columns_filtered": [], "columns_grouped": [], "columns_aggregated": [], "functions": [],
                "epsilon": 0.5, "delta": 0.0, "groups_released": 0, "groups_suppressed": 0,
                "submission_digest": format!("sub-{job}"), "result_digest": null,
            });
            if let (Some(u), Some(extra)) = (u.as_object_mut(), usage.as_object()) {
                for (k, v) in extra {
                    u.insert(k.clone(), v.clone());
                }
            }
            self.add(
                "bank",
                "job_finished",
                json!({"job": job, "status": status, "outcome": outcome, "usage": u}),
            )
        }

        fn refuse(&mut self, job: &str, grant: &str, rule: &str) -> &mut Self {
            self.add(
                "bank",
                "job_refused",
                json!({"job": job, "grant": grant, "kind": "sql", "submission_digest": "d",
                       "outcome": {"status": "refused", "rule": rule}}),
            )
        }

        fn signed(&mut self, application: &str, expires_at: &str) -> &mut Self {
            self.add(
                "tax-bureau",
                "agreement_signed",
                json!({
                    "agreement": format!("agreement-{application}"), "application": application, "holder": "bank",
                    "datasets": ["gov.a"], "columns": ["gov.a.x"], "job_kinds": ["sql"],
                    "scenario": "credit | model", "epsilon": 2.0, "expires_at": expires_at, "call_quota": 10,
                }),
            )
        }
    }

    fn released() -> Value {
        json!({"status": "released"})
    }

    /// A grant with every kind of outcome, and noise from another grant.
    fn mixed() -> Vec<Entry> {
        let mut l = Ledger::new();
        l.grant("g", &[("gov.a", 5.0), ("gov.b", 1.0)])
            .grant("other", &[("gov.a", 9.0)])
            .charge("j1", "g", "sql", &[("gov.a", 0.5), ("gov.b", 0.5)])
            .finish(
                "j1",
                "g",
                released(),
                json!({"columns_read": ["gov.a.x", "gov.b.y"], "columns_grouped": ["gov.a.d"],
                       "columns_aggregated": ["gov.a.x"], "functions": ["avg", "count"],
                       "groups_released": 7, "groups_suppressed": 2, "result_digest": "r1"}),
            )
            .charge("j2", "g", "sql", &[("gov.a", 0.25)])
            .finish(
                "j2",
                "g",
                json!({"status": "failed", "message": "too many groups"}),
                json!({"columns_read": ["gov.a.x"], "columns_filtered": ["gov.a.x"], "functions": ["avg"]}),
            )
            .charge("j3", "g", "wasm", &[("gov.a", 0.25)])
            .finish(
                "j3",
                "g",
                json!({"status": "cancelled"}),
                json!({"columns_read": ["gov.a.x"], "functions": ["wasm:analysis:model"]}),
            )
            .refuse("j4", "g", "identifier-in-group-by")
            .refuse("j5", "g", "identifier-in-group-by")
            .refuse("j6", "g", "budget-exhausted")
            .charge("x1", "other", "sql", &[("gov.a", 3.0)])
            .charge("j7", "g", "sql", &[("gov.a", 0.1)])
            .finish(
                "j7",
                "g",
                json!({"status": "dry_run"}),
                json!({"functions": ["wasm:risk_score", "avg"]}),
            )
            .charge("j8", "g", "sql", &[("gov.a", 0.1)]);
        l.entries
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn counts_jobs_by_outcome_and_refusals_by_rule() {
        let r = UsageReport::from_entries(&mixed(), "g", None, None).expect("report");
        assert_eq!(r.holder, "bank");
        let j = &r.jobs;
        assert_eq!(
            (
                j.submitted,
                j.charged,
                j.released,
                j.failed,
                j.cancelled,
                j.dry_runs,
                j.running,
                j.refused
            ),
            (8, 5, 1, 1, 1, 1, 1, 3)
        );
        assert_eq!(j.refused_by_rule["identifier-in-group-by"], 2);
        assert_eq!(j.refused_by_rule["budget-exhausted"], 1);
        assert_eq!((r.calls.in_period, r.calls.to_end, r.calls.quota), (5, 5, None));
        assert_eq!(r.job_kinds["sql"], 4);
        assert_eq!(r.job_kinds["wasm"], 1);
        assert_eq!((r.groups_released, r.groups_suppressed), (7, 2));
        let j1 = &r.job_list[0];
        assert_eq!((j1.job.as_str(), j1.status.as_str()), ("j1", "released"));
        assert_eq!(j1.result_digest.as_deref(), Some("r1"));
        assert_eq!(j1.datasets, ["gov.a", "gov.b"]);
        assert_eq!(r.job_list[1].detail.as_deref(), Some("too many groups"));
        assert!(r.job_list.iter().all(|l| l.job != "x1"), "another grant's job");
        assert_eq!(r.status.state, "active");
        assert!(r.agreement.is_none());
        assert!(r.ledger.chain_verified);
        assert_eq!(r.ledger.entries, 15);
        assert_eq!(
            (r.ledger.first_seq, r.ledger.last_seq, r.ledger.head_seq),
            (Some(1), Some(15), 15)
        );
        assert_eq!(r.ledger.grant_entries, 13);
        assert_eq!(r.ledger.head_hash, mixed()[14].hash);
    }

    #[test]
    fn fields_functions_and_webassembly_used() {
        let r = UsageReport::from_entries(&mixed(), "g", None, None).expect("report");
        let field = |c: &str| r.fields.iter().find(|f| f.column == c).expect(c).clone();
        let x = field("gov.a.x");
        assert_eq!((x.jobs, x.read, x.filtered, x.grouped, x.aggregated), (3, 3, 1, 0, 1));
        let d = field("gov.a.d");
        assert_eq!((d.jobs, d.grouped), (1, 1));
        assert_eq!(field("gov.b.y").jobs, 1);
        assert_eq!(r.fields.len(), 3);
        assert_eq!(r.functions["avg"], 3);
        assert_eq!(r.functions["count"], 1);
        assert_eq!(r.functions["wasm:analysis:model"], 1);
        let wasm: Vec<(&str, &str)> = r
            .webassembly
            .iter()
            .map(|w| (w.job.as_str(), w.submission_digest.as_str()))
            .collect();
        assert_eq!(wasm, [("j3", "sub-j3"), ("j7", "sub-j7")]);
        assert_eq!(r.webassembly[1].functions, ["wasm:risk_score"]);
    }

    #[test]
    fn epsilon_spent_in_the_period_and_left_overall() {
        let r = UsageReport::from_entries(&mixed(), "g", None, None).expect("report");
        let a = &r.budgets[0];
        assert_eq!(a.dataset, "gov.a");
        assert!(close(a.epsilon_total, 5.0));
        assert!(close(a.epsilon_spent, 1.2), "{}", a.epsilon_spent);
        assert!(close(a.epsilon_left, 3.8));
        let b = &r.budgets[1];
        assert!(close(b.epsilon_spent, 0.5) && close(b.epsilon_left, 0.5));
        assert_eq!(r.budgets.len(), 2);

        // From j3's charge (10:06) on: earlier charges still count toward ε left.
        let r = UsageReport::from_entries(&mixed(), "g", Some("2026-11-01T10:06:00Z"), None).expect("report");
        let a = &r.budgets[0];
        assert!(close(a.epsilon_spent, 0.45), "{}", a.epsilon_spent);
        assert!(close(a.epsilon_spent_to_end, 1.2));
        assert!(close(a.epsilon_left, 3.8));
        assert!(close(r.budgets[1].epsilon_spent, 0.0));
        assert!(close(r.budgets[1].epsilon_left, 0.5));
    }

    #[test]
    fn the_period_selects_jobs_by_submission_and_outcomes_by_its_end() {
        let entries = mixed();
        // [10:02, 10:05): j1 charged 10:02 and finished 10:03; j2 charged 10:04, finished 10:05 (after the end).
        let r = UsageReport::from_entries(
            &entries,
            "g",
            Some("2026-11-01T10:02:00Z"),
            Some("2026-11-01T10:05:00Z"),
        )
        .expect("report");
        let jobs: Vec<(&str, &str)> = r.job_list.iter().map(|l| (l.job.as_str(), l.status.as_str())).collect();
        assert_eq!(jobs, [("j1", "released"), ("j2", "running")]);
        assert_eq!((r.jobs.released, r.jobs.running, r.jobs.failed), (1, 1, 0));
        assert_eq!(r.calls.in_period, 2);
        // j2's usage is not in yet: only j1's fields.
        assert_eq!(r.fields.iter().find(|f| f.column == "gov.a.x").map(|f| f.jobs), Some(1));
        // Charges after the end count neither as spent nor against ε left.
        let a = &r.budgets[0];
        assert!(close(a.epsilon_spent, 0.75) && close(a.epsilon_left, 4.25));
        assert_eq!((r.ledger.first_seq, r.ledger.last_seq), (Some(3), Some(5)));
        assert!(
            r.to_markdown()
                .contains("- Period: from 2026-11-01T10:02:00.000Z (included) to 2026-11-01T10:05:00.000Z (excluded)")
        );
        assert_eq!(r.ledger.head_seq, 5);
        assert_eq!(r.ledger.head_hash, entries[4].hash);
        // A period before anything happened: the grant exists, nothing ran.
        let r = UsageReport::from_entries(&entries, "g", None, Some("2026-10-01")).expect("report");
        assert_eq!(r.jobs.submitted, 0);
        assert!(r.budgets.is_empty());
        assert_eq!((r.ledger.head_seq, r.ledger.head_hash.as_str()), (0, GENESIS));
        // Offsets are normalised to UTC: 18:02+08:00 is 10:02Z.
        let r = UsageReport::from_entries(&entries, "g", Some("2026-11-01T18:02:00+08:00"), None).expect("report");
        assert_eq!(r.period.from.as_deref(), Some("2026-11-01T10:02:00.000Z"));
        assert_eq!(r.job_list[0].job, "j1");
        assert_eq!(r.jobs.submitted, 8);
    }

    #[test]
    fn agreement_terms_quota_and_revocation() {
        let mut l = Ledger::new();
        l.signed("a1", "2026-12-01T00:00:00Z")
            .charge("j1", "agreement-a1", "sql", &[("gov.a", 0.5)])
            .at(
                "2026-11-15T00:00:00.000Z",
                "ops",
                "agreement_revoked",
                json!({"agreement": "agreement-a1", "reason": "complaint upheld"}),
            );
        let r = UsageReport::from_entries(&l.entries, "agreement-a1", None, None).expect("report");
        assert_eq!(r.holder, "bank");
        let a = r.agreement.as_ref().expect("terms");
        assert_eq!((a.application.as_str(), a.call_quota), ("a1", 10));
        assert_eq!(a.columns, ["gov.a.x"]);
        assert_eq!(a.signed_by, "tax-bureau");
        assert_eq!(r.status.state, "revoked");
        assert_eq!(r.status.reason.as_deref(), Some("complaint upheld"));
        assert_eq!(r.status.revoked_by.as_deref(), Some("ops"));
        assert!(!r.status.expired);
        assert_eq!((r.calls.to_end, r.calls.left), (1, Some(9)));
        assert!(close(r.budgets[0].epsilon_total, 2.0) && close(r.budgets[0].epsilon_left, 1.5));

        // Before the revocation it was active; after the expiry it is expired.
        let r = UsageReport::from_entries(&l.entries, "agreement-a1", None, Some("2026-11-10")).expect("report");
        assert_eq!((r.status.state.as_str(), r.status.reason.as_ref()), ("active", None));
        let r = UsageReport::from_entries(&l.entries, "agreement-a1", None, Some("2026-12-01")).expect("report");
        assert!(r.status.expired);
    }

    #[test]
    fn an_unknown_grant_and_bad_periods_are_refused() {
        let entries = mixed();
        assert!(matches!(
            UsageReport::from_entries(&entries, "nope", None, None),
            Err(GovernanceError::NoGrant(g)) if g == "nope"
        ));
        assert!(matches!(
            UsageReport::from_entries(&[], "g", None, None),
            Err(GovernanceError::NoGrant(_))
        ));
        for (from, to) in [
            (Some("yesterday"), None),
            (None, Some("2026-13-01")),
            (Some("2026-11-01 10:00"), None),
            (Some(""), None),
        ] {
            let e = UsageReport::from_entries(&entries, "g", from, to).expect_err("bad date");
            assert!(
                matches!(&e, GovernanceError::Invalid(m) if m.contains("not an RFC 3339 time")),
                "{e}"
            );
        }
        let e = UsageReport::from_entries(&entries, "g", Some("2026-11-02"), Some("2026-11-01T00:00:00Z"))
            .expect_err("empty");
        assert!(e.to_string().contains("the period is empty"), "{e}");
        assert!(UsageReport::from_entries(&entries, "g", Some("2026-11-02"), Some("2026-11-02")).is_err());
    }

    #[test]
    fn a_tampered_ledger_is_flagged() {
        let mut entries = mixed();
        entries[3].payload["status"] = json!("failed");
        let r = UsageReport::from_entries(&entries, "g", None, None).expect("report");
        assert!(!r.ledger.chain_verified);
        assert!(r.to_markdown().contains("BROKEN"));
    }

    #[test]
    fn markdown_carries_the_key_figures() {
        let mut l = Ledger::new();
        l.signed("a1", "2999-01-01T00:00:00Z")
            .charge("j1", "agreement-a1", "sql", &[("gov.a", 0.5)])
            .finish(
                "j1",
                "agreement-a1",
                released(),
                json!({"columns_read": ["gov.a.x"], "functions": ["sum"], "groups_released": 4, "result_digest": "abc123"}),
            )
            .refuse("j2", "agreement-a1", "k-anonymity");
        let r = UsageReport::from_entries(&l.entries, "agreement-a1", None, None).expect("report");
        let md = r.to_markdown();
        for needle in [
            "# 数据利用报告 / Data usage report",
            "- Grant: `agreement-a1`",
            "- Holder: bank",
            "- Period: from the start of the ledger to the end of the ledger",
            "| scenario (使用场景) | credit \\| model |",
            "| call quota | 10 |",
            "Status at the end of the period: active",
            "| 2 | 1 | 0 | 0 | 0 | 0 | 0 | 1 |",
            "Calls (charged jobs): 1 in the period, 1 up to its end; quota 10, 9 left.",
            "| `k-anonymity` | 1 |",
            "| gov.a | 2 | 0.5 | 0.5 | 1.5 | policy's | 0 | 0 | policy's |",
            "| gov.a.x | 1 | 1 | 0 | 0 | 0 |",
            "| `sum` | 1 |",
            "Jobs run by kind: sql: 1.",
            "Groups released: 4; suppressed: 0.",
            "`abc123`",
            &format!("Head at the end of the period: entry 4, hash `{}`", l.entries[3].hash),
            "Hash chain of the entries read: intact",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["jobs"]["released"], 1);
        assert_eq!(json["budgets"][0]["epsilon_left"], 1.5);
        assert_eq!(json["agreement"]["call_quota"], 10);
    }

    #[test]
    fn reads_the_entries_the_store_writes() {
        use crate::{ApplicationBody, Decision, JobCharge, Role, Store};
        use sandbox_model::{DatasetId, JobOutcome};
        let ds = |s: &str| -> DatasetId { s.parse().expect("dataset") };
        let s = Store::open_in_memory().expect("store");
        s.create_account("ops", &Role::Operator, "operator-token-0123456789abcdef0123", "ops")
            .expect("ops");
        s.create_account("bank", &Role::Applicant, "bank-token-0123456789abcdef0123456789", "ops")
            .expect("bank");
        let body = ApplicationBody {
            datasets: vec![ds("gov.tax_payments")],
            columns: vec!["gov.tax_payments.tax_paid".into()],
            job_kinds: vec!["sql".into(), "wasm".into()],
            scenario: "credit model".into(),
            materials: vec![],
        };
        // The policy's budgets: δ for the agreement comes from them.
        let policy = crate::Registration {
            dataset: "gov.tax_payments".into(),
            provider: "tax".into(),
            open_class: "conditional".into(),
            catalog_digest: "c".into(),
            policy_digest: "p".into(),
            epsilon_budget: Some(10.0),
            delta_budget: Some(1e-4),
        };
        s.register_datasets(&[policy], "platform").expect("register");
        s.apply("a1", "bank", &body).expect("apply");
        let approve = Decision::Approve {
            epsilon: 1.0,
            expires_at: "2999-01-01T00:00:00Z".into(),
            call_quota: 5,
        };
        s.decide("a1", "tax-bureau", &approve).expect("approve");
        let g = "agreement-a1";
        s.reserve(&JobCharge::new(
            "j1",
            g,
            "sql",
            "d1",
            vec![(ds("gov.tax_payments"), 0.3, 1e-6)],
        ))
        .expect("reserve");
        let usage = UsageRecord {
            job_id: "j1".into(),
            grant_id: g.into(),
            datasets: vec![ds("gov.tax_payments")],
            columns_read: vec!["gov.tax_payments.tax_paid".into()],
            columns_aggregated: vec!["gov.tax_payments.tax_paid".into()],
            functions: vec!["avg".into()],
            epsilon: 0.3,
            delta: 1e-6,
            groups_released: 3,
            submission_digest: "d1".into(),
            result_digest: Some("r1".into()),
            ..Default::default()
        };
        s.finish("j1", &JobOutcome::Released, &usage).expect("finish");
        s.record_refusal("j2", g, "sql", "d2", &JobOutcome::Refused { rule: "k".into() })
            .expect("refuse");
        s.revoke(g, "ops", "complaint upheld").expect("revoke");

        let r = UsageReport::from_entries(&s.audit_entries().expect("entries"), g, None, None).expect("report");
        assert_eq!(r.holder, "bank");
        let a = r.agreement.as_ref().expect("terms");
        assert_eq!(a.datasets, ["gov.tax_payments"]);
        assert_eq!(a.job_kinds, ["sql", "wasm"]);
        assert_eq!((a.call_quota, a.expires_at.as_str()), (5, "2999-01-01T00:00:00Z"));
        assert_eq!(
            (r.jobs.released, r.jobs.refused, r.calls.to_end, r.calls.left),
            (1, 1, 1, Some(4))
        );
        assert_eq!(r.status.reason.as_deref(), Some("complaint upheld"));
        let b = &r.budgets[0];
        assert_eq!((b.epsilon_left, b.delta_spent), (0.7, 1e-6), "exact sums");
        assert_eq!((b.delta_total, b.delta_left), (Some(1e-4), Some(9.9e-5)));
        assert_eq!(r.fields[0].aggregated, 1);
        assert_eq!(r.job_list[0].result_digest.as_deref(), Some("r1"));
        assert!(r.ledger.chain_verified);
        match s.verify_audit().expect("verify") {
            crate::AuditReport::Intact { entries, head } => {
                assert_eq!((r.ledger.head_seq, &r.ledger.head_hash), (entries, &head));
            }
            crate::AuditReport::Broken(b) => panic!("{b}"),
        }
    }
}
