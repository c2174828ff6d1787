//! Who is calling, on every RPC: an interceptor resolves the bearer token
//! to an account and role before any handler runs (the handlers read the
//! [`Caller`] it leaves in the request's extensions and fail closed
//! without one), and which agreement a job runs under.

use crate::error::{governance_status, refused};
use sandbox_governance::{Role, Store};
use sandbox_runtime::Sandbox;
use std::sync::Arc;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata key naming the agreement (grant) a job runs under.
pub const AGREEMENT_HEADER: &str = "x-sandbox-agreement";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: String,
    pub role: Role,
}

impl Caller {
    /// Only applicants run jobs.
    pub(crate) fn require_applicant(&self) -> Result<(), Status> {
        match self.role {
            Role::Applicant => Ok(()),
            _ => Err(refused(
                "role-applicant",
                "only applicants run jobs; data owners and the operator do not",
            )),
        }
    }
}

/// The caller the interceptor authenticated.
pub(crate) fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("send `authorization: Bearer <token>` metadata"))
}

/// The bearer token of a request's `authorization` metadata.
fn bearer(metadata: &tonic::metadata::MetadataMap) -> Result<&str, Status> {
    let value = metadata
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated("send `authorization: Bearer <token>` metadata"))?;
    value
        .to_str()
        .ok()
        .and_then(sandbox_governance::bearer_token)
        .ok_or_else(|| Status::unauthenticated("the authorization metadata must be `Bearer <token>`"))
}

/// The interceptor in front of every RPC: bearer token → account and role.
#[derive(Clone)]
pub struct Authenticator {
    sandbox: Arc<Sandbox>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        Authenticator { sandbox }
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let token = bearer(request.metadata())?;
        let (account, role) = self.sandbox.store().authenticate(token).map_err(|e| {
            if matches!(e, sandbox_governance::GovernanceError::Unauthenticated) {
                tracing::info!("flight request with an unknown token");
            }
            governance_status(&e)
        })?;
        request.extensions_mut().insert(Caller { account, role });
        Ok(request)
    }
}

/// The agreement a job of `account` runs under: the `x-sandbox-agreement`
/// metadata if sent (it must be one the account holds; an agreement held
/// by another account is refused exactly like a missing one), else the
/// account's only active agreement.
pub(crate) fn agreement_for(
    store: &Store,
    account: &str,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<String, Status> {
    if let Some(value) = metadata.get(AGREEMENT_HEADER) {
        let grant = value
            .to_str()
            .map(str::trim)
            .map_err(|_| Status::invalid_argument(format!("`{AGREEMENT_HEADER}` must be text")))?;
        let holds = store
            .agreement(grant)
            .map_err(|e| governance_status(&e))?
            .is_some_and(|a| a.holder == account);
        if !holds {
            return Err(refused(
                "agreement-holder",
                &format!("`{grant}` is not one of your agreements"),
            ));
        }
        return Ok(grant.to_string());
    }
    let active: Vec<String> = store
        .agreements_held_by(account)
        .map_err(|e| governance_status(&e))?
        .into_iter()
        .filter(|a| a.status == "active")
        .map(|a| a.id)
        .collect();
    match active.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(Status::invalid_argument(format!(
            "you hold no active agreement; apply for one, or name one with the `{AGREEMENT_HEADER}` metadata"
        ))),
        several => Err(Status::invalid_argument(format!(
            "you hold {} active agreements ({}); name one with the `{AGREEMENT_HEADER}` metadata \
             (ADBC: `adbc.flight.sql.rpc.call_header.{AGREEMENT_HEADER}`)",
            several.len(),
            several.join(", ")
        ))),
    }
}
