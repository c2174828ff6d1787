//! What a record may say: the size and shape of every free-text field and
//! every timestamp a caller gives the store, checked before anything is
//! written (the HTTP API, Flight SQL and the CLI all reach the store
//! through here, so each limit holds on every path). Errors are
//! [`GovernanceError::Invalid`] naming the field and the limit.

use crate::GovernanceError;
use chrono::{DateTime, SecondsFormat, Utc};

/// A reason or note (a rejection, suspension, revocation, resumption).
pub const MAX_REASON_BYTES: usize = 4 * 1024;
/// An application's usage scenario.
pub const MAX_SCENARIO_BYTES: usize = 16 * 1024;
/// A name: an account id, a provider id, an application id.
pub const MAX_NAME_BYTES: usize = 128;
/// Entries of a list field (datasets, columns, job kinds, materials).
pub const MAX_LIST_ITEMS: usize = 256;
/// One entry of a list field.
pub const MAX_ITEM_BYTES: usize = 1024;

/// Checks a free-text field: at most `max` bytes, no NUL or other control
/// character but newline and tab, and not blank when `required`.
pub fn text(field: &str, value: &str, max: usize, required: bool) -> Result<(), GovernanceError> {
    if value.len() > max {
        return Err(GovernanceError::Invalid(format!(
            "`{field}` has {} bytes; at most {max} are accepted",
            value.len()
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(GovernanceError::Invalid(format!(
            "`{field}` contains a control character (NUL or similar)"
        )));
    }
    if required && value.trim().is_empty() {
        return Err(GovernanceError::Invalid(format!("`{field}` must not be empty")));
    }
    Ok(())
}

/// Checks a list field: at most [`MAX_LIST_ITEMS`] entries, each a
/// non-blank text of at most [`MAX_ITEM_BYTES`].
pub fn list<S: AsRef<str>>(field: &str, items: &[S]) -> Result<(), GovernanceError> {
    if items.len() > MAX_LIST_ITEMS {
        return Err(GovernanceError::Invalid(format!(
            "`{field}` has {} entries; at most {MAX_LIST_ITEMS} are accepted",
            items.len()
        )));
    }
    for item in items {
        text(field, item.as_ref(), MAX_ITEM_BYTES, true)?;
    }
    Ok(())
}

/// Parses an RFC 3339 timestamp that must lie in the future (an expiry);
/// returns it in the store's form, UTC to the second
/// (`2027-01-01T00:00:00Z`), so that stored expiries compare as text.
pub fn future_timestamp(field: &str, value: &str) -> Result<String, GovernanceError> {
    let parsed = DateTime::parse_from_rfc3339(value.trim()).map_err(|e| {
        GovernanceError::Invalid(format!(
            "`{field}` is not an RFC 3339 timestamp such as 2027-01-01T00:00:00Z: {e}"
        ))
    })?;
    let utc = parsed.with_timezone(&Utc);
    if utc <= Utc::now() {
        return Err(GovernanceError::Invalid(format!(
            "`{field}` = {value} is not in the future"
        )));
    }
    Ok(utc.to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_capped_and_clean() {
        assert!(text("reason", "fine\nreason", 100, true).is_ok());
        assert!(text("reason", "", 100, false).is_ok());
        for (value, max, required) in [
            ("", 100, true),
            ("  ", 100, true),
            ("a\0b", 100, false),
            ("abcd", 3, false),
        ] {
            let e = text("reason", value, max, required).expect_err(value);
            assert!(e.to_string().contains("`reason`"), "{e}");
        }
        assert!(list("columns", &["a", "b"]).is_ok());
        assert!(list("columns", &["a", ""]).is_err());
        assert!(list("columns", &vec!["a"; MAX_LIST_ITEMS + 1]).is_err());
    }

    #[test]
    fn expiries_are_typed_and_in_the_future() {
        assert_eq!(
            future_timestamp("expires_at", "2999-01-01T08:00:00+08:00").expect("valid"),
            "2999-01-01T00:00:00Z"
        );
        for bad in [
            "garbage",
            "",
            "2020-01-01T00:00:00Z",
            "2999-01-01",
            "2999-01-01T00:00:00Z\0",
        ] {
            assert!(future_timestamp("expires_at", bad).is_err(), "{bad:?}");
        }
    }
}
