//! The verify step of a SQL job: the catalog's `max_rows_per_value`
//! declarations, checked on the files the job scans before they may skip
//! contribution bounding (see [`crate::multiplicity`]).

use super::Sandbox;
use sandbox_model::DatasetId;
use sandbox_sql::JobSession;

impl Sandbox {
    /// Installs in `session` the catalog's `max_rows_per_value`
    /// declarations of `datasets` that hold on the session's pinned files,
    /// counting them through the session's own tables where the cache has
    /// no result for those files (see [`crate::multiplicity`]). A
    /// declaration that cannot be checked is not used: the job then bounds
    /// every contribution.
    pub(super) async fn verify_row_bounds(
        &self,
        session: &mut JobSession,
        datasets: &std::collections::BTreeSet<DatasetId>,
        policies: &sandbox_policy::PolicySet,
    ) {
        for dataset in datasets {
            let Some(binding) = session.binding(dataset) else {
                continue;
            };
            let declared = binding.declared_max_rows_per_value.clone();
            if declared.is_empty() {
                continue;
            }
            // Published objects are named by URL; local files (and public
            // samples, which stay local) by absolute path.
            let published = binding.files.iter().all(|f| f.contains("://"));
            let fingerprint = match &self.tables {
                Some(tables) if published => {
                    crate::multiplicity::FileFingerprint::of_objects(tables, &binding.files).await
                }
                _ => {
                    let files: Vec<std::path::PathBuf> = binding.files.iter().map(std::path::PathBuf::from).collect();
                    crate::multiplicity::FileFingerprint::of(&files)
                }
            };
            let fingerprint = match fingerprint {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(%dataset, error = %e, "max_rows_per_value not verified; not used");
                    continue;
                }
            };
            // The count reads through the binding (types, rules) under the
            // policy: a cache made under others is not reused.
            let scan = crate::multiplicity::scan_digest(binding, policies.get(dataset));
            let cache = self.dir.verification_cache(dataset);
            let verification = match crate::multiplicity::cached(&cache, &fingerprint, &scan, &declared) {
                Some(v) => v,
                None => {
                    let columns: Vec<String> = declared.keys().cloned().collect();
                    let started = std::time::Instant::now();
                    // NULLs are counted in the declared single columns (a
                    // unit column among them lets the plan skip its filter).
                    let singles: Vec<String> = columns
                        .iter()
                        .filter(|c| sandbox_sql::multiplicity::key_columns(c).len() == 1)
                        .cloned()
                        .collect();
                    let counts = async {
                        let counted =
                            sandbox_sql::multiplicity::count_max_rows_per_value(session, dataset, &columns).await?;
                        let nulls = sandbox_sql::multiplicity::count_nulls(session, dataset, &singles).await?;
                        Ok::<_, sandbox_sql::SqlError>((counted, nulls))
                    };
                    match counts.await {
                        Ok((counted, nulls)) => {
                            let v =
                                crate::multiplicity::Verification::new(fingerprint, scan, &declared, &counted, &nulls);
                            tracing::info!(%dataset, elapsed = ?started.elapsed(), holds = ?v.holds.keys().collect::<Vec<_>>(), "row multiplicity declarations verified");
                            if !v.violated.is_empty() {
                                tracing::warn!(%dataset, violated = ?v.violated, "the data break the catalog's max_rows_per_value declarations: they are ignored (full contribution bounding applies)");
                            }
                            crate::multiplicity::store(&cache, &v);
                            v
                        }
                        Err(e) => {
                            tracing::warn!(%dataset, error = %e, "max_rows_per_value not verified; not used");
                            continue;
                        }
                    }
                }
            };
            session.set_verified_max_rows_per_value(dataset, verification.holds);
            session.set_null_free_columns(dataset, verification.null_free);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{DataDir, Sandbox};
    use sandbox_model::DatasetId;
    use std::collections::{BTreeMap, BTreeSet};

    /// The bounds `verify_row_bounds` installs for `dataset` in a new
    /// session of `sandbox`.
    async fn verified(sandbox: &Sandbox, dataset: &DatasetId) -> Option<BTreeMap<String, u64>> {
        let mut session = sandbox.session_over(&[], false).await.expect("session");
        let datasets = BTreeSet::from([dataset.clone()]);
        sandbox
            .verify_row_bounds(&mut session, &datasets, &sandbox.policies())
            .await;
        session.max_rows_per_value(dataset).cloned()
    }

    /// `gov.districts` declares one row per district, which holds (16
    /// names). Its owner then masks the name to its last character: every
    /// name ends in 区, so all rows share one value. The bound verified on
    /// the same files before the rule must not be reused: the next job
    /// counts again through the masked column, finds 16 rows per value and
    /// installs no bound (full contribution bounding applies).
    #[tokio::test]
    async fn a_rule_added_later_makes_the_bound_be_counted_again() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::open(tmp.path().join("data")).expect("data dir");
        let options =
            sandbox_datagen::GenerateOptions::new(42, sandbox_datagen::Scale::with_entities(50), dir.tables_dir())
                .only(["gov.districts"]);
        sandbox_datagen::generate(&options).expect("generate");
        let policy = dir.policies_dir().join("gov.districts.toml");
        let sandbox = Sandbox::open(dir).expect("sandbox");
        let id: DatasetId = "gov.districts".parse().expect("id");

        let one = BTreeMap::from([("district".to_string(), 1)]);
        assert_eq!(verified(&sandbox, &id).await, Some(one.clone()));
        // Cached: the same files and policy give the same bound.
        assert!(sandbox.data_dir().verification_cache(&id).exists());
        assert_eq!(verified(&sandbox, &id).await, Some(one));

        let text = std::fs::read_to_string(&policy).expect("policy");
        std::fs::write(
            &policy,
            format!("{text}\n[desensitize]\ndistrict = {{ mask_keep_last = 1 }}\n"),
        )
        .expect("write policy");
        assert!(sandbox.refresh().expect("refresh"), "the new policy is loaded");
        assert_eq!(verified(&sandbox, &id).await, Some(BTreeMap::new()));
        // The count under the rule is what the cache now holds.
        let cache: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sandbox.data_dir().verification_cache(&id)).expect("cache"))
                .expect("json");
        assert_eq!(cache["violated"]["district"], 16, "{cache}");
    }
}

/// Red team 2026-12-01 (keys of several columns).
#[cfg(test)]
mod red_team_keys {
    use crate::{DataDir, Sandbox};
    use sandbox_model::DatasetId;
    use std::collections::{BTreeMap, BTreeSet};

    async fn verified(sandbox: &Sandbox, id: &DatasetId) -> Option<BTreeMap<String, u64>> {
        let mut session = sandbox
            .session_over(std::slice::from_ref(id), false)
            .await
            .expect("session");
        let datasets = BTreeSet::from([id.clone()]);
        sandbox
            .verify_row_bounds(&mut session, &datasets, &sandbox.policies())
            .await;
        session.max_rows_per_value(id).cloned()
    }

    /// A rule that coarsens the month (two years' January share one
    /// masked value) makes `"credit_code+month" = 1` false of what the job
    /// reads: the recount finds 2 rows per enterprise and masked month, and
    /// only the single-column bound is installed (so no query counts an
    /// enterprise's units by its rows per masked month).
    #[tokio::test]
    async fn a_rule_coarsening_a_key_column_drops_the_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::open(tmp.path().join("data")).expect("data dir");
        let options =
            sandbox_datagen::GenerateOptions::new(42, sandbox_datagen::Scale::with_entities(30), dir.tables_dir())
                .only(["gov.utility_usage"]);
        sandbox_datagen::generate(&options).expect("generate");
        let policy = dir.policies_dir().join("gov.utility_usage.toml");
        let sandbox = Sandbox::open(dir).expect("sandbox");
        let id: DatasetId = "gov.utility_usage".parse().expect("id");
        let both = BTreeMap::from([("credit_code".to_string(), 24), ("credit_code+month".to_string(), 1)]);
        assert_eq!(verified(&sandbox, &id).await, Some(both));

        let text = std::fs::read_to_string(&policy).expect("policy");
        std::fs::write(
            &policy,
            format!("{text}\n[desensitize]\nmonth = {{ mask_keep_last = 2 }}\n"),
        )
        .expect("write policy");
        assert!(sandbox.refresh().expect("refresh"), "the new policy is loaded");
        let one = BTreeMap::from([("credit_code".to_string(), 24)]);
        assert_eq!(verified(&sandbox, &id).await, Some(one));
    }
}
