//! Column roles: how a data owner says what each column may be used for.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a column may be used for in a job. A column may carry several roles
/// (a credit code is typically `identifier`, `privacy_unit` and `join_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnRole {
    /// Never output, never grouped by, never compared with a literal.
    Identifier,
    /// The entity whose total contribution differential privacy bounds.
    PrivacyUnit,
    /// Only usable in the join condition of a fusion both policies permit.
    JoinKey,
    /// May be grouped by and output; may carry a public key set.
    Dimension,
    /// May only be aggregated, within public bounds.
    Measure,
    /// May not be read by a job at all.
    Sensitive,
    /// No restriction beyond the aggregation requirement.
    Public,
}

impl ColumnRole {
    pub const ALL: [ColumnRole; 7] = [
        ColumnRole::Identifier,
        ColumnRole::PrivacyUnit,
        ColumnRole::JoinKey,
        ColumnRole::Dimension,
        ColumnRole::Measure,
        ColumnRole::Sensitive,
        ColumnRole::Public,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ColumnRole::Identifier => "identifier",
            ColumnRole::PrivacyUnit => "privacy_unit",
            ColumnRole::JoinKey => "join_key",
            ColumnRole::Dimension => "dimension",
            ColumnRole::Measure => "measure",
            ColumnRole::Sensitive => "sensitive",
            ColumnRole::Public => "public",
        }
    }

    /// Roles that may not be combined with each other on one column.
    fn conflicts_with(self, other: ColumnRole) -> bool {
        use ColumnRole::*;
        let exclusive = [Dimension, Measure, Sensitive, Public];
        let restricted = [Identifier, PrivacyUnit, JoinKey];
        (self != other && exclusive.contains(&self) && exclusive.contains(&other))
            || (exclusive.contains(&self) && restricted.contains(&other))
            || (restricted.contains(&self) && exclusive.contains(&other))
    }
}

impl fmt::Display for ColumnRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The set of roles of one column, kept sorted and free of duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoleSet(Vec<ColumnRole>);

impl RoleSet {
    /// Builds a role set, rejecting empty sets and conflicting roles
    /// (for example `measure` with `dimension`, or `identifier` with `public`).
    pub fn new(roles: impl IntoIterator<Item = ColumnRole>) -> Result<Self, String> {
        let mut v: Vec<ColumnRole> = roles.into_iter().collect();
        v.sort();
        v.dedup();
        if v.is_empty() {
            return Err("a column needs at least one role".into());
        }
        for (i, a) in v.iter().enumerate() {
            for b in &v[i + 1..] {
                if a.conflicts_with(*b) {
                    return Err(format!("roles `{a}` and `{b}` cannot be combined on one column"));
                }
            }
        }
        Ok(RoleSet(v))
    }

    pub fn contains(&self, role: ColumnRole) -> bool {
        self.0.contains(&role)
    }

    /// True for columns that single out an entity: identifiers, privacy
    /// units and join keys. They never reach output, GROUP BY or a filter.
    pub fn is_restricted(&self) -> bool {
        self.contains(ColumnRole::Identifier)
            || self.contains(ColumnRole::PrivacyUnit)
            || self.contains(ColumnRole::JoinKey)
    }

    pub fn iter(&self) -> impl Iterator<Item = ColumnRole> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|r| r.as_str()).collect();
        f.write_str(&names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_and_unit_and_key_combine() {
        let set = RoleSet::new([ColumnRole::JoinKey, ColumnRole::Identifier, ColumnRole::PrivacyUnit]).expect("valid");
        assert!(set.is_restricted());
        assert_eq!(set.to_string(), "identifier, privacy_unit, join_key");
    }

    #[test]
    fn conflicting_roles_are_rejected() {
        assert!(RoleSet::new([ColumnRole::Measure, ColumnRole::Dimension]).is_err());
        assert!(RoleSet::new([ColumnRole::Identifier, ColumnRole::Public]).is_err());
        assert!(RoleSet::new([]).is_err());
    }
}
