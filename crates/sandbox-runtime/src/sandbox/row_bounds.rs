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
    ) {
        for dataset in datasets {
            let Some(binding) = session.binding(dataset) else {
                continue;
            };
            let declared = binding.declared_max_rows_per_value.clone();
            if declared.is_empty() {
                continue;
            }
            let files: Vec<std::path::PathBuf> = binding.files.iter().map(std::path::PathBuf::from).collect();
            let fingerprint = match crate::multiplicity::FileFingerprint::of(&files) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(%dataset, error = %e, "max_rows_per_value not verified; not used");
                    continue;
                }
            };
            let cache = self.dir.verification_cache(dataset);
            let verification = match crate::multiplicity::cached(&cache, &fingerprint, &declared) {
                Some(v) => v,
                None => {
                    let columns: Vec<String> = declared.keys().cloned().collect();
                    let started = std::time::Instant::now();
                    match sandbox_sql::multiplicity::count_max_rows_per_value(session, dataset, &columns).await {
                        Ok(counted) => {
                            let v = crate::multiplicity::Verification::new(fingerprint, &declared, &counted);
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
        }
    }
}
