//! The catalog entries and policies that ship with the sandbox, embedded so
//! that `sandbox demo` works from the binary alone.

/// (file name, contents) of every shipped catalog entry.
pub const CATALOG: &[(&str, &str)] = &[
    (
        "gov.legal_entities.toml",
        include_str!("../../../catalog/gov.legal_entities.toml"),
    ),
    (
        "gov.tax_payments.toml",
        include_str!("../../../catalog/gov.tax_payments.toml"),
    ),
    (
        "gov.utility_usage.toml",
        include_str!("../../../catalog/gov.utility_usage.toml"),
    ),
    (
        "gov.districts.toml",
        include_str!("../../../catalog/gov.districts.toml"),
    ),
    ("bank.loans.toml", include_str!("../../../catalog/bank.loans.toml")),
    (
        "health.clinic_visits.toml",
        include_str!("../../../catalog/health.clinic_visits.toml"),
    ),
];

/// (file name, contents) of every shipped policy.
pub const POLICIES: &[(&str, &str)] = &[
    (
        "gov.legal_entities.toml",
        include_str!("../../../policies/gov.legal_entities.toml"),
    ),
    (
        "gov.tax_payments.toml",
        include_str!("../../../policies/gov.tax_payments.toml"),
    ),
    (
        "gov.utility_usage.toml",
        include_str!("../../../policies/gov.utility_usage.toml"),
    ),
    (
        "gov.districts.toml",
        include_str!("../../../policies/gov.districts.toml"),
    ),
    ("bank.loans.toml", include_str!("../../../policies/bank.loans.toml")),
    (
        "health.clinic_visits.toml",
        include_str!("../../../policies/health.clinic_visits.toml"),
    ),
];
