//! Who may register a dataset version: a data owner for its provider's
//! datasets, or an applicant bringing its own enterprise table to fuse with
//! the data its agreements cover (政企数据融合). Decided on the validated
//! entry and policy, before any row of the file is read
//! ([`Store::record_enterprise_dataset_version`] checks the assignment
//! again in the transaction that records it).

use crate::RuntimeError;
use sandbox_governance::{Agreement, DatasetVersionRecord, GovernanceError, Role, Store};
use sandbox_model::{Catalog, Dataset, DatasetId, OpenClass, ProviderKind};
use std::collections::BTreeSet;

/// How a registration's version is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registrant {
    /// A data owner account of the entry's provider.
    ProviderOwner,
    /// An applicant registering under the enterprise provider it owns (or
    /// claims with this version).
    Enterprise { provider: String },
}

/// Decides whether `account` may register `dataset` whose policy declares
/// fusions with `fusion_partners`; `catalog` is the installed catalog.
///
/// A data owner registers its provider's datasets. An applicant registers
/// only:
/// - under the enterprise provider the operator assigned to its account
///   (`Store::create_enterprise_applicant`), with an entry of kind
///   `enterprise` whose provider name no other provider uses;
/// - in a namespace of its own: not `gov`, and none another provider's
///   datasets use;
/// - a conditionally open dataset (its raw rows never leave: jobs on it go
///   through its policy like any other dataset's);
/// - while it holds an active agreement, with a policy whose fusions
///   ([`check_applicant_fusions`]) name only datasets its active
///   agreements cover, at least one (the other owner must still permit the
///   fusion in its own policy before a job may join them).
///
/// # Errors
/// [`RuntimeError::Refused`] naming the rule (`not-owner`,
/// `applicant-upload-provider`, `applicant-upload-namespace`,
/// `applicant-upload-class`, `applicant-upload-agreement`,
/// `applicant-upload-fusion`); store errors.
pub fn registrant(
    store: &Store,
    catalog: &Catalog,
    account: &str,
    dataset: &Dataset,
    fusion_partners: &[DatasetId],
) -> Result<Registrant, RuntimeError> {
    let provider = dataset.provider.id.as_str();
    let id = &dataset.id;
    match store.role(account)? {
        Some(Role::DataOwner { provider: p }) if p == provider => return Ok(Registrant::ProviderOwner),
        Some(Role::Applicant) => {}
        _ => {
            return Err(RuntimeError::refused(
                "not-owner",
                format!("only an owner account of provider `{provider}` registers {id}"),
            ));
        }
    }
    let own = own_provider(store, account)?;
    if own != provider {
        return Err(RuntimeError::refused(
            "applicant-upload-provider",
            format!("`{account}` registers its own data under its enterprise provider `{own}`, not `{provider}`"),
        ));
    }
    if dataset.provider.kind != ProviderKind::Enterprise {
        return Err(RuntimeError::refused(
            "applicant-upload-provider",
            format!("the entry of {id} names provider `{provider}` of kind government; it is of kind `enterprise`"),
        ));
    }
    if let Some(other) = catalog
        .iter()
        .find(|d| d.provider.id != provider && d.provider.name.trim() == dataset.provider.name.trim())
    {
        return Err(RuntimeError::refused(
            "applicant-upload-provider",
            format!(
                "the provider name `{}` is provider `{}`'s; give your enterprise's own name",
                dataset.provider.name, other.provider.id
            ),
        ));
    }
    let namespace = id.namespace();
    let taken = catalog
        .iter()
        .any(|d| d.id.namespace() == namespace && d.provider.id != provider);
    if namespace == GOVERNMENT_NAMESPACE || taken {
        return Err(RuntimeError::refused(
            "applicant-upload-namespace",
            format!(
                "the namespace `{namespace}` of {id} holds another provider's datasets; name your tables in a \
                 namespace of your own (e.g. `{}.{}`)",
                provider.replace('-', "_"),
                id.table()
            ),
        ));
    }
    if dataset.open_class != OpenClass::Conditional {
        return Err(RuntimeError::refused(
            "applicant-upload-class",
            format!(
                "enterprise data brought into the sandbox is conditionally open (`open_class = \"conditional\"`), \
                 so that only what its policy releases leaves; {id} is not"
            ),
        ));
    }
    check_applicant_fusions(store, account, id, fusion_partners)?;
    Ok(Registrant::Enterprise {
        provider: provider.to_string(),
    })
}

/// The namespace of the government's datasets: never an enterprise's.
pub const GOVERNMENT_NAMESPACE: &str = "gov";

/// The enterprise provider assigned to an applicant, or the refusal.
fn own_provider(store: &Store, account: &str) -> Result<String, RuntimeError> {
    store.enterprise_provider_of(account)?.ok_or_else(|| {
        RuntimeError::refused(
            "applicant-upload-provider",
            format!(
                "`{account}` has no enterprise provider: the operator gives an applicant one when it creates the \
                 account (`account create … --role applicant --provider ID`), and only then may it bring its own data"
            ),
        )
    })
}

/// The rule on an applicant's own table's fusions, at registration and at
/// every later policy change: while the applicant holds an active
/// agreement, at least one `[[fusion]]`, each with a dataset one of its
/// active agreements covers.
///
/// # Errors
/// [`RuntimeError::Refused`] (`applicant-upload-agreement`,
/// `applicant-upload-fusion`); store errors.
pub fn check_applicant_fusions(
    store: &Store,
    account: &str,
    dataset: &DatasetId,
    fusion_partners: &[DatasetId],
) -> Result<(), RuntimeError> {
    let agreements = active_agreements(store, account)?;
    let covered: BTreeSet<&DatasetId> = agreements.iter().flat_map(|a| a.terms.datasets.iter()).collect();
    if fusion_partners.is_empty() {
        return Err(RuntimeError::refused(
            "applicant-upload-fusion",
            format!(
                "the policy of {dataset} declares no [[fusion]]: enterprise data is brought in to be fused with a \
                 dataset your agreements cover ({})",
                names(&covered)
            ),
        ));
    }
    if let Some(outside) = fusion_partners.iter().find(|d| !covered.contains(d)) {
        return Err(RuntimeError::refused(
            "applicant-upload-fusion",
            format!(
                "the policy of {dataset} declares a fusion with {outside}, which none of your active agreements \
                 covers ({})",
                names(&covered)
            ),
        ));
    }
    Ok(())
}

/// The applicant's active agreements, or the refusal when it holds none.
fn active_agreements(store: &Store, account: &str) -> Result<Vec<Agreement>, RuntimeError> {
    let agreements = store.active_agreements_held_by(account)?;
    if agreements.is_empty() {
        return Err(RuntimeError::refused(
            "applicant-upload-agreement",
            format!(
                "an applicant brings in and changes its own data only while it holds an active agreement; \
                 `{account}` holds none"
            ),
        ));
    }
    Ok(agreements)
}

impl Registrant {
    /// Records a version in the ledger as this registrant may: a data
    /// owner's plainly, an applicant's after checking, in the same
    /// transaction, that the provider is still its own.
    ///
    /// # Errors
    /// [`RuntimeError::Refused`] (`not-owner`) when it is not; store errors.
    pub fn record(&self, store: &Store, record: &DatasetVersionRecord) -> Result<(), RuntimeError> {
        let recorded = match self {
            Registrant::ProviderOwner => store.record_dataset_version(record),
            Registrant::Enterprise { provider } => store.record_enterprise_dataset_version(record, provider),
        };
        recorded.map_err(|e| match e {
            GovernanceError::Forbidden(m) => RuntimeError::refused("not-owner", m),
            other => other.into(),
        })
    }
}

/// The ledger's record of a registered version, from its manifest (the
/// same fields whether the CLI or the HTTP API registered it).
pub fn version_record(m: &sandbox_ingest::VersionManifest) -> DatasetVersionRecord {
    DatasetVersionRecord {
        dataset: m.dataset.clone(),
        version: m.version,
        owner: m.owner.clone(),
        rows: m.rows,
        rows_rejected: m.quality.rows_rejected,
        data_sha256: m.data_sha256.clone(),
        source_sha256: m.source.sha256.clone(),
        catalog_sha256: m.catalog_sha256.clone(),
        policy_sha256: m.policy_sha256.clone(),
        pseudonym_key_id: m.pseudonym_key_id.clone(),
    }
}

fn names(covered: &BTreeSet<&DatasetId>) -> String {
    let v: Vec<String> = covered.iter().map(|d| d.to_string()).collect();
    format!("they cover {}", v.join(", "))
}

/// Whether `account` may upload a file to register as `dataset` (the
/// registration itself is then decided by [`registrant`]): a data owner for
/// its provider's datasets and new ids, an applicant with an active
/// agreement for its enterprise provider's datasets and new ids.
///
/// # Errors
/// [`RuntimeError::Refused`] (`not-owner`, `applicant-upload-provider`,
/// `applicant-upload-agreement`).
pub fn may_upload(store: &Store, catalog: &Catalog, account: &str, dataset: &DatasetId) -> Result<(), RuntimeError> {
    let installed = catalog.get(dataset).map(|d| (d.provider.id.clone(), d.provider.kind));
    let not_owner = |p: &str| {
        RuntimeError::refused(
            "not-owner",
            format!("only an owner account of provider `{p}` registers {dataset}"),
        )
    };
    match store.role(account)? {
        Some(Role::DataOwner { provider }) => match installed {
            Some((p, _)) if p != provider => Err(not_owner(&p)),
            _ => Ok(()),
        },
        Some(Role::Applicant) => {
            let own = own_provider(store, account)?;
            if let Some((p, kind)) = installed
                && (p != own || kind != ProviderKind::Enterprise)
            {
                return Err(not_owner(&p));
            }
            active_agreements(store, account)?;
            Ok(())
        }
        _ => Err(RuntimeError::refused(
            "role-data-owner",
            "only data owners, and applicants bringing their own data, upload",
        )),
    }
}
