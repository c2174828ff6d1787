//! Who may register a dataset version: a data owner for its provider's
//! datasets, or an applicant bringing its own enterprise table to fuse with
//! the data its agreements cover (政企数据融合). Decided on the validated
//! entry and policy, before any row of the file is read; the applicant's
//! claim on its enterprise provider is then written with the version
//! ([`Store::record_enterprise_dataset_version`]).

use crate::RuntimeError;
use sandbox_governance::{Role, Store};
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
/// - an entry whose provider is of kind `enterprise` and whose open class
///   is `conditional` (its raw rows never leave: jobs on it go through its
///   policy like any other dataset's);
/// - under the provider it claimed before, or a provider no account owns
///   and no installed dataset names;
/// - while it holds an active agreement, and with a policy that declares at
///   least one fusion, each with a dataset one of its active agreements
///   covers (the other owner must still permit the fusion in its own policy
///   before a job may join them).
///
/// # Errors
/// [`RuntimeError::Refused`] naming the rule (`not-owner`,
/// `applicant-upload-provider`, `applicant-upload-class`,
/// `applicant-upload-agreement`, `applicant-upload-fusion`); store errors.
pub fn registrant(
    store: &Store,
    catalog: &Catalog,
    account: &str,
    dataset: &Dataset,
    fusion_partners: &[DatasetId],
) -> Result<Registrant, RuntimeError> {
    let provider = dataset.provider.id.as_str();
    let id = &dataset.id;
    let not_owner = || {
        RuntimeError::refused(
            "not-owner",
            format!("only an owner account of provider `{provider}` registers {id}"),
        )
    };
    match store.role(account)? {
        Some(Role::DataOwner { provider: p }) if p == provider => return Ok(Registrant::ProviderOwner),
        Some(Role::Applicant) => {}
        _ => return Err(not_owner()),
    }
    if dataset.provider.kind != ProviderKind::Enterprise {
        return Err(RuntimeError::refused(
            "applicant-upload-provider",
            format!(
                "an applicant registers only its own enterprise's data: the entry of {id} names provider \
                 `{provider}` of kind government; give `kind = \"enterprise\"` and your enterprise's provider id"
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
    match store.enterprise_provider_of(account)? {
        Some(own) if own == provider => {}
        Some(own) => {
            return Err(RuntimeError::refused(
                "applicant-upload-provider",
                format!("`{account}` registers for its enterprise provider `{own}` only, not `{provider}`"),
            ));
        }
        None => {
            let named = catalog.iter().any(|d| d.provider.id == provider);
            if named || store.provider_has_owner(provider)? {
                return Err(not_owner());
            }
        }
    }
    let agreements = store.active_agreements_held_by(account)?;
    if agreements.is_empty() {
        return Err(RuntimeError::refused(
            "applicant-upload-agreement",
            format!("an applicant brings its own data only while it holds an active agreement; `{account}` holds none"),
        ));
    }
    let covered: BTreeSet<&DatasetId> = agreements.iter().flat_map(|a| a.terms.datasets.iter()).collect();
    if fusion_partners.is_empty() {
        return Err(RuntimeError::refused(
            "applicant-upload-fusion",
            format!(
                "the policy of {id} declares no [[fusion]]: enterprise data is brought in to be fused with a \
                 dataset your agreements cover ({})",
                names(&covered)
            ),
        ));
    }
    if let Some(outside) = fusion_partners.iter().find(|d| !covered.contains(d)) {
        return Err(RuntimeError::refused(
            "applicant-upload-fusion",
            format!(
                "the policy of {id} declares a fusion with {outside}, which none of your active agreements \
                 covers ({})",
                names(&covered)
            ),
        ));
    }
    Ok(Registrant::Enterprise {
        provider: provider.to_string(),
    })
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
/// [`RuntimeError::Refused`] (`not-owner`, `applicant-upload-agreement`).
pub fn may_upload(store: &Store, catalog: &Catalog, account: &str, dataset: &DatasetId) -> Result<(), RuntimeError> {
    let installed = catalog.get(dataset).map(|d| d.provider.id.clone());
    let not_owner = |p: &str| {
        RuntimeError::refused(
            "not-owner",
            format!("only an owner account of provider `{p}` registers {dataset}"),
        )
    };
    match store.role(account)? {
        Some(Role::DataOwner { provider }) => match installed {
            Some(p) if p != provider => Err(not_owner(&p)),
            _ => Ok(()),
        },
        Some(Role::Applicant) => {
            if let Some(p) = installed
                && store.enterprise_provider_of(account)?.as_deref() != Some(p.as_str())
            {
                return Err(not_owner(&p));
            }
            if store.active_agreements_held_by(account)?.is_empty() {
                return Err(RuntimeError::refused(
                    "applicant-upload-agreement",
                    format!(
                        "an applicant brings its own data only while it holds an active agreement; `{account}` \
                         holds none"
                    ),
                ));
            }
            Ok(())
        }
        _ => Err(RuntimeError::refused(
            "role-data-owner",
            "only data owners, and applicants bringing their own data, upload",
        )),
    }
}
