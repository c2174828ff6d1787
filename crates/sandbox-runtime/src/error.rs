use thiserror::Error;

/// Errors of the job pipeline. `is_refusal` tells the CLI which exit code
/// to use (2 for a refusal, 1 for anything else).
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Sql(#[from] sandbox_sql::SqlError),
    #[error(transparent)]
    Governance(#[from] sandbox_governance::GovernanceError),
    #[error("refused: {message} [rule: {rule}]")]
    Refused { rule: &'static str, message: String },
    #[error("the release step failed: {0}")]
    Release(#[from] sandbox_dp::DpError),
    /// A WebAssembly module was refused at admission, or the engine failed.
    #[error("WebAssembly: {}", .0.public_message())]
    Wasm(sandbox_wasm::WasmError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot access {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl RuntimeError {
    pub fn refused(rule: &'static str, message: impl Into<String>) -> Self {
        RuntimeError::Refused {
            rule,
            message: message.into(),
        }
    }

    /// True when the job was refused by a rule (not failed).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RuntimeError::Refused { .. }
                | RuntimeError::Wasm(
                    sandbox_wasm::WasmError::ModuleTooLarge { .. }
                        | sandbox_wasm::WasmError::InvalidModule(_)
                        | sandbox_wasm::WasmError::ImportRefused { .. }
                        | sandbox_wasm::WasmError::MissingExport { .. }
                        | sandbox_wasm::WasmError::ExportType { .. }
                        | sandbox_wasm::WasmError::ModuleLimits(_)
                        | sandbox_wasm::WasmError::InvalidManifest(_)
                )
                | RuntimeError::Sql(sandbox_sql::SqlError::Refused(_))
                | RuntimeError::Governance(
                    sandbox_governance::GovernanceError::BudgetExhausted { .. }
                        | sandbox_governance::GovernanceError::DeltaBudgetExhausted { .. }
                        | sandbox_governance::GovernanceError::OverPolicyBudget { .. }
                        | sandbox_governance::GovernanceError::NotCovered { .. }
                        | sandbox_governance::GovernanceError::NoGrant(_)
                        | sandbox_governance::GovernanceError::AgreementInactive { .. }
                        | sandbox_governance::GovernanceError::DatasetSuspended { .. }
                        | sandbox_governance::GovernanceError::AccountingChanged { .. }
                )
        )
    }

    /// What a refusal says, without the `refused:` prefix and the rule
    /// (front ends show the rule on its own); other errors as displayed.
    pub fn refusal_message(&self) -> String {
        match self {
            RuntimeError::Refused { message, .. } => message.clone(),
            RuntimeError::Sql(sandbox_sql::SqlError::Refused(refusal)) => refusal.message.clone(),
            other => other.to_string(),
        }
    }

    /// The rule that refused the job, when it was refused.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            RuntimeError::Refused { rule, .. } => Some(rule),
            RuntimeError::Wasm(_) if self.is_refusal() => Some("wasm-module"),
            RuntimeError::Sql(e) => e.rule(),
            RuntimeError::Governance(sandbox_governance::GovernanceError::BudgetExhausted { .. }) => {
                Some("budget-exhausted")
            }
            RuntimeError::Governance(sandbox_governance::GovernanceError::DeltaBudgetExhausted { .. }) => {
                Some("delta-budget-exhausted")
            }
            RuntimeError::Governance(sandbox_governance::GovernanceError::OverPolicyBudget { .. }) => {
                Some("approval-over-policy-budget")
            }
            RuntimeError::Governance(sandbox_governance::GovernanceError::NotCovered { .. }) => {
                Some("dataset-not-granted")
            }
            RuntimeError::Governance(sandbox_governance::GovernanceError::NoGrant(_)) => Some("no-grant"),
            RuntimeError::Governance(sandbox_governance::GovernanceError::AgreementInactive { .. }) => {
                Some("agreement-inactive")
            }
            RuntimeError::Governance(sandbox_governance::GovernanceError::DatasetSuspended { .. }) => {
                Some("dataset-suspended")
            }
            RuntimeError::Governance(sandbox_governance::GovernanceError::AccountingChanged { .. }) => {
                Some("accounting-changed")
            }
            _ => None,
        }
    }
}
