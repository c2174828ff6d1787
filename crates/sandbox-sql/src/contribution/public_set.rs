//! Membership of a string key in its public key set, as one vectorised
//! function.
//!
//! Every job with public key sets filters its rows by `key IN (set)`
//! before aggregating (rows outside the set must cost nothing: see
//! `docs/threat-model.md`). DataFusion's generic `IN` for strings hashes
//! every row's string and compares through a dynamic comparator; on a
//! 10M-row scan that was the largest cost of a DP plan over the plain query
//! (`docs/benchmarks.md`). Keys are short (months, districts, codes): in a
//! `Utf8View` column a string of at most 12 bytes *is* its 16-byte view
//! (length and bytes), so membership is an integer search among the set's
//! views; longer strings are compared by their bytes. The result is
//! exactly SQL's `key IN (set)` under a filter: true for a member, false
//! for anything else, NULL included.

use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::collections::HashSet;
use std::sync::Arc;

/// The longest string a `Utf8View` view holds inline.
const INLINE: usize = 12;

/// `__sandbox_in_public_set(key)` for one set of strings. Only the engine
/// builds calls of it (never registered in a session).
#[derive(Debug)]
pub struct InPublicSet {
    /// The set, sorted and without duplicates (its identity).
    members: Vec<String>,
    /// The views of the members of at most [`INLINE`] bytes, sorted.
    inline_views: Vec<u128>,
    /// The members longer than [`INLINE`] bytes.
    long: HashSet<Vec<u8>>,
    signature: Signature,
}

impl PartialEq for InPublicSet {
    fn eq(&self, other: &Self) -> bool {
        self.members == other.members
    }
}
impl Eq for InPublicSet {}
impl std::hash::Hash for InPublicSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.members.hash(state);
    }
}

/// The view of a string of at most [`INLINE`] bytes: its length in the low
/// 32 bits, then its bytes, zero-padded (the Arrow format's layout).
fn inline_view(bytes: &[u8]) -> u128 {
    let mut view = [0u8; 16];
    view[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    view[4..4 + bytes.len()].copy_from_slice(bytes);
    u128::from_le_bytes(view)
}

/// The view with every byte past the string's length zeroed, so that a
/// producer's padding never decides membership.
#[inline]
fn canonical_inline(view: u128, len: usize) -> u128 {
    let kept_bits = 32 + 8 * len;
    if kept_bits >= 128 {
        view
    } else {
        view & ((1u128 << kept_bits) - 1)
    }
}

impl InPublicSet {
    /// The function of `members` (any order, duplicates allowed).
    pub fn new(members: impl IntoIterator<Item = String>) -> Self {
        let mut members: Vec<String> = members.into_iter().collect();
        members.sort();
        members.dedup();
        let mut inline_views: Vec<u128> = members
            .iter()
            .filter(|m| m.len() <= INLINE)
            .map(|m| inline_view(m.as_bytes()))
            .collect();
        inline_views.sort_unstable();
        let long = members
            .iter()
            .filter(|m| m.len() > INLINE)
            .map(|m| m.as_bytes().to_vec())
            .collect();
        InPublicSet {
            members,
            inline_views,
            long,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    /// The set, sorted.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    fn contains(&self, s: &[u8]) -> bool {
        if s.len() <= INLINE {
            self.inline_views.binary_search(&inline_view(s)).is_ok()
        } else {
            self.long.contains(s)
        }
    }
}

/// `__sandbox_in_public_set(key)` on `key` (a string column).
pub fn call(key: Expr, members: impl IntoIterator<Item = String>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(InPublicSet::new(members))),
        vec![key],
    ))
}

impl ScalarUDFImpl for InPublicSet {
    fn name(&self) -> &str {
        "__sandbox_in_public_set"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [key] = args.args.as_slice() else {
            return datafusion::common::exec_err!("__sandbox_in_public_set takes one argument");
        };
        let keys = match key {
            ColumnarValue::Scalar(s) => {
                let member = match s {
                    ScalarValue::Utf8(Some(v)) | ScalarValue::Utf8View(Some(v)) | ScalarValue::LargeUtf8(Some(v)) => {
                        self.contains(v.as_bytes())
                    }
                    _ => false,
                };
                return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(member))));
            }
            ColumnarValue::Array(a) => a,
        };
        let n = keys.len();
        let members = match keys.data_type() {
            DataType::Utf8View => {
                let a = keys.as_string_view();
                let views = a.views();
                BooleanBuffer::collect_bool(n, |i| {
                    if a.is_null(i) {
                        return false;
                    }
                    let view = views[i];
                    let len = view as u32 as usize;
                    if len <= INLINE {
                        self.inline_views.binary_search(&canonical_inline(view, len)).is_ok()
                    } else {
                        self.long.contains(a.value(i).as_bytes())
                    }
                })
            }
            DataType::Utf8 => {
                let a = keys.as_string::<i32>();
                BooleanBuffer::collect_bool(n, |i| a.is_valid(i) && self.contains(a.value(i).as_bytes()))
            }
            DataType::LargeUtf8 => {
                let a = keys.as_string::<i64>();
                BooleanBuffer::collect_bool(n, |i| a.is_valid(i) && self.contains(a.value(i).as_bytes()))
            }
            other => {
                return datafusion::common::exec_err!("__sandbox_in_public_set on a {other} column");
            }
        };
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(members, None))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, LargeStringArray, StringArray, StringViewArray};
    use datafusion::arrow::datatypes::Field;

    fn run(f: &InPublicSet, keys: ArrayRef) -> Vec<bool> {
        let n = keys.len();
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(keys)],
            arg_fields: vec![Arc::new(Field::new("k", DataType::Utf8View, true))],
            number_rows: n,
            return_field: Arc::new(Field::new("m", DataType::Boolean, false)),
            config_options: Arc::new(Default::default()),
        };
        let ColumnarValue::Array(out) = f.invoke_with_args(args).expect("invoke") else {
            panic!("an array")
        };
        out.as_boolean().iter().map(|b| b.expect("never NULL")).collect()
    }

    /// Every key type gives exactly the members: short and long strings,
    /// the 12/13-byte edge, prefixes, case, padding, NUL, multi-byte
    /// characters, the empty string and NULL.
    #[test]
    fn members_and_only_members_in_every_string_type() {
        let set = [
            "2023-01",
            "",
            "黄浦区",
            "exactly12byt",
            "thirteen byte",
            "a long district name beyond twelve bytes",
        ];
        let f = InPublicSet::new(set.iter().map(|s| s.to_string()));
        let keys: Vec<Option<&str>> = vec![
            Some("2023-01"),
            Some("2023-1"),
            Some("2023-01 "),
            Some("2023-01\0"),
            Some(""),
            None,
            Some("黄浦区"),
            Some("黄浦"),
            Some("exactly12byt"),
            Some("exactly12by"),
            Some("thirteen byte"),
            Some("thirteen bytE"),
            Some("a long district name beyond twelve bytes"),
            Some("a long district name beyond twelve byte"),
            Some("A long district name beyond twelve bytes"),
        ];
        let want: Vec<bool> = keys.iter().map(|k| k.is_some_and(|k| set.contains(&k))).collect();
        let view: ArrayRef = Arc::new(StringViewArray::from(keys.clone()));
        let utf8: ArrayRef = Arc::new(StringArray::from(keys.clone()));
        let large: ArrayRef = Arc::new(LargeStringArray::from(keys.clone()));
        assert_eq!(run(&f, view.clone()), want);
        assert_eq!(run(&f, utf8), want);
        assert_eq!(run(&f, large), want);
        // A slice keeps its rows' answers.
        assert_eq!(run(&f, view.slice(3, 8)), want[3..11].to_vec());
    }

    /// A view whose padding past the string is not zero (allowed to a
    /// producer that does not follow the layout) is still a member.
    #[test]
    fn padding_past_the_string_never_decides_membership() {
        let f = InPublicSet::new(["ab".to_string()]);
        let dirty = inline_view(b"ab") | (0xFFu128 << 120);
        assert_eq!(canonical_inline(dirty, 2), inline_view(b"ab"));
        assert!(f.inline_views.binary_search(&canonical_inline(dirty, 2)).is_ok());
    }
}
