//! Catalog everywhere: before each request, the sandbox reloads its
//! catalog and policies if their files changed (a dataset registered with
//! `sandbox dataset register` while the server runs, a policy installed),
//! so the catalog, dataset pages, samples and jobs see it at once.

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

pub(crate) async fn refresh_catalog(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let sandbox = state.sandbox.clone();
    // One directory listing each when nothing changed; off the async threads.
    match tokio::task::spawn_blocking(move || sandbox.refresh()).await {
        Ok(Err(e)) => tracing::warn!(error = %e, "the catalog could not be reloaded; the previous one stays in force"),
        Err(e) => tracing::warn!(error = %e, "the catalog reload did not finish"),
        Ok(Ok(_)) => {}
    }
    next.run(request).await
}
