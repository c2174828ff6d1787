//! A group key kept where it lies in its public key set and NULL
//! elsewhere, as one vectorised function.
//!
//! Rows whose key lies outside its public set must cost nothing that
//! depends on how many such keys there are (`docs/threat-model.md`, red
//! team of 2026-12-01). Filtering them out before the aggregation does
//! that, but DataFusion 55's `FilterExec` copies every batch it passes on
//! (its batch coalescer), even when every row stays: on a 10M-row scan
//! that copy was the largest cost of a DP job over its plain query
//! (`docs/benchmarks.md`). Where the engine aggregates rows straight into
//! groups, the key is instead replaced by `__sandbox_public_key(key)`:
//! every out-of-set key becomes NULL, so all such rows fall into one
//! extra group (one per key column at most), which the release never
//! reads (a NULL key lies in no public set). The values are not copied:
//! only the validity changes (`nullif`).
//!
//! Membership is exactly SQL's `key IN (set)` under a filter: a string key
//! matches the set's strings, an integer key its integers, anything else
//! (NULL included) nothing. Keys are short (months, districts, codes): in a
//! `Utf8View` column a string of at most 12 bytes *is* its 16-byte view
//! (length and bytes), so membership is an integer search among the set's
//! views; longer strings are compared by their bytes.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::{cast, nullif};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sandbox_policy::PublicKey;
use std::collections::HashSet;
use std::sync::Arc;

/// The longest string a `Utf8View` view holds inline.
const INLINE: usize = 12;

/// `__sandbox_public_key(key)` for one public key set. Only the engine
/// builds calls of it (never registered in a session).
#[derive(Debug)]
pub struct PublicKeyOrNull {
    /// The set's strings, sorted and without duplicates.
    strings: Vec<String>,
    /// The set's integers, sorted and without duplicates.
    ints: Vec<i64>,
    /// The views of the strings of at most [`INLINE`] bytes, sorted.
    inline_views: Vec<u128>,
    /// The strings longer than [`INLINE`] bytes.
    long: HashSet<Vec<u8>>,
    signature: Signature,
}

impl PartialEq for PublicKeyOrNull {
    fn eq(&self, other: &Self) -> bool {
        self.strings == other.strings && self.ints == other.ints
    }
}
impl Eq for PublicKeyOrNull {}
impl std::hash::Hash for PublicKeyOrNull {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.strings.hash(state);
        self.ints.hash(state);
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

impl PublicKeyOrNull {
    /// The function of the set `strings` ∪ `ints` (any order, duplicates
    /// allowed).
    pub fn new(strings: impl IntoIterator<Item = String>, ints: impl IntoIterator<Item = i64>) -> Self {
        let mut strings: Vec<String> = strings.into_iter().collect();
        strings.sort();
        strings.dedup();
        let mut ints: Vec<i64> = ints.into_iter().collect();
        ints.sort_unstable();
        ints.dedup();
        let mut inline_views: Vec<u128> = strings
            .iter()
            .filter(|m| m.len() <= INLINE)
            .map(|m| inline_view(m.as_bytes()))
            .collect();
        inline_views.sort_unstable();
        let long = strings
            .iter()
            .filter(|m| m.len() > INLINE)
            .map(|m| m.as_bytes().to_vec())
            .collect();
        PublicKeyOrNull {
            strings,
            ints,
            inline_views,
            long,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    /// The function of a public key set as the catalog gives it.
    pub fn of_set(set: &[PublicKey]) -> Self {
        let strings = set.iter().filter_map(|k| match k {
            PublicKey::Str(s) => Some(s.clone()),
            PublicKey::Int(_) => None,
        });
        let ints = set.iter().filter_map(|k| match k {
            PublicKey::Int(i) => Some(*i),
            PublicKey::Str(_) => None,
        });
        Self::new(strings, ints)
    }

    /// The set's strings, sorted.
    pub fn strings(&self) -> &[String] {
        &self.strings
    }

    /// The set's integers, sorted.
    pub fn ints(&self) -> &[i64] {
        &self.ints
    }

    fn contains_str(&self, s: &[u8]) -> bool {
        if s.len() <= INLINE {
            self.inline_views.binary_search(&inline_view(s)).is_ok()
        } else {
            self.long.contains(s)
        }
    }

    fn contains_scalar(&self, s: &ScalarValue) -> bool {
        match s {
            ScalarValue::Utf8(Some(v)) | ScalarValue::Utf8View(Some(v)) | ScalarValue::LargeUtf8(Some(v)) => {
                self.contains_str(v.as_bytes())
            }
            s if s.data_type().is_integer() && !s.is_null() => match s.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(v))) => self.ints.binary_search(&v).is_ok(),
                _ => false,
            },
            _ => false,
        }
    }

    /// Which of `keys` lie in the set (NULL and other types never do).
    fn members(&self, keys: &ArrayRef) -> DfResult<BooleanBuffer> {
        let n = keys.len();
        Ok(match keys.data_type() {
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
                BooleanBuffer::collect_bool(n, |i| a.is_valid(i) && self.contains_str(a.value(i).as_bytes()))
            }
            DataType::LargeUtf8 => {
                let a = keys.as_string::<i64>();
                BooleanBuffer::collect_bool(n, |i| a.is_valid(i) && self.contains_str(a.value(i).as_bytes()))
            }
            t if t.is_integer() => {
                // An unsigned value beyond i64 casts to NULL: in no set.
                let wide = cast(keys, &DataType::Int64)?;
                let a = wide.as_primitive::<Int64Type>();
                let values = a.values();
                BooleanBuffer::collect_bool(n, |i| a.is_valid(i) && self.ints.binary_search(&values[i]).is_ok())
            }
            _ => BooleanBuffer::new_unset(n),
        })
    }
}

/// `__sandbox_public_key(key)`: `key` where it lies in `set`, NULL
/// elsewhere (same type as `key`).
pub fn call(key: Expr, set: &[PublicKey]) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(PublicKeyOrNull::of_set(set))),
        vec![key],
    ))
}

impl ScalarUDFImpl for PublicKeyOrNull {
    fn name(&self) -> &str {
        "__sandbox_public_key"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        match args {
            [t] => Ok(t.clone()),
            _ => datafusion::common::plan_err!("__sandbox_public_key takes one argument"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [key] = args.args.as_slice() else {
            return datafusion::common::exec_err!("__sandbox_public_key takes one argument");
        };
        match key {
            ColumnarValue::Scalar(s) => Ok(ColumnarValue::Scalar(if self.contains_scalar(s) {
                s.clone()
            } else {
                ScalarValue::try_from(s.data_type())?
            })),
            ColumnarValue::Array(keys) => {
                let outside = BooleanArray::new(!&self.members(keys)?, None);
                Ok(ColumnarValue::Array(nullif(keys.as_ref(), &outside)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, LargeStringArray, StringArray, StringViewArray, UInt64Array};
    use datafusion::arrow::datatypes::Field;

    fn invoke(f: &PublicKeyOrNull, key: ColumnarValue, n: usize) -> ColumnarValue {
        let t = key.data_type();
        let args = ScalarFunctionArgs {
            args: vec![key],
            arg_fields: vec![Arc::new(Field::new("k", t.clone(), true))],
            number_rows: n,
            return_field: Arc::new(Field::new("k", t, true)),
            config_options: Arc::new(Default::default()),
        };
        f.invoke_with_args(args).expect("invoke")
    }

    /// The rows kept (non-NULL), after checking that every kept row holds
    /// its key unchanged and the type is the key's.
    fn kept(f: &PublicKeyOrNull, keys: ArrayRef) -> Vec<bool> {
        let ColumnarValue::Array(out) = invoke(f, ColumnarValue::Array(keys.clone()), keys.len()) else {
            panic!("an array")
        };
        assert_eq!(out.data_type(), keys.data_type());
        assert_eq!(out.len(), keys.len());
        (0..out.len())
            .map(|i| {
                if out.is_valid(i) {
                    assert_eq!(out.slice(i, 1).to_data(), keys.slice(i, 1).to_data(), "row {i} changed");
                }
                out.is_valid(i)
            })
            .collect()
    }

    /// Every string type keeps exactly the members: short and long strings,
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
        let f = PublicKeyOrNull::new(set.iter().map(|s| s.to_string()), [7]);
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
            Some("7"),
        ];
        let want: Vec<bool> = keys.iter().map(|k| k.is_some_and(|k| set.contains(&k))).collect();
        let view: ArrayRef = Arc::new(StringViewArray::from(keys.clone()));
        let utf8: ArrayRef = Arc::new(StringArray::from(keys.clone()));
        let large: ArrayRef = Arc::new(LargeStringArray::from(keys.clone()));
        assert_eq!(kept(&f, view.clone()), want);
        assert_eq!(kept(&f, utf8.clone()), want);
        assert_eq!(kept(&f, large), want);
        // A slice keeps its rows' answers.
        assert_eq!(kept(&f, view.slice(3, 8)), want[3..11].to_vec());
        assert_eq!(kept(&f, utf8.slice(5, 9)), want[5..14].to_vec());
    }

    /// Integer keys of any width keep exactly the set's integers; a string
    /// member never matches an integer key, nor a value beyond i64.
    #[test]
    fn members_and_only_members_among_integers() {
        let f = PublicKeyOrNull::new(["1".to_string()], [1, -5, 2024, i64::MAX]);
        let keys: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), Some(2), None, Some(-5), Some(2024), Some(0)]));
        assert_eq!(kept(&f, keys), vec![true, false, false, true, true, false]);
        let wide: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX, i64::MAX as u64, 1, 3]));
        assert_eq!(kept(&f, wide), vec![false, true, true, false]);
        // Another type lies in no set.
        let floats: ArrayRef = Arc::new(datafusion::arrow::array::Float64Array::from(vec![1.0, 2024.0]));
        assert_eq!(kept(&f, floats), vec![false, false]);
    }

    /// A scalar key gives itself or a NULL of its own type.
    #[test]
    fn a_scalar_key_is_kept_or_a_typed_null() {
        let f = PublicKeyOrNull::new(["a".to_string()], [3]);
        let one = |s: ScalarValue| match invoke(&f, ColumnarValue::Scalar(s), 1) {
            ColumnarValue::Scalar(s) => s,
            ColumnarValue::Array(_) => panic!("a scalar"),
        };
        assert_eq!(one(ScalarValue::Utf8View(Some("a".into()))), ScalarValue::Utf8View(Some("a".into())));
        assert_eq!(one(ScalarValue::Utf8(Some("b".into()))), ScalarValue::Utf8(None));
        assert_eq!(one(ScalarValue::Int16(Some(3))), ScalarValue::Int16(Some(3)));
        assert_eq!(one(ScalarValue::Int64(Some(4))), ScalarValue::Int64(None));
        assert_eq!(one(ScalarValue::Int64(None)), ScalarValue::Int64(None));
    }

    /// A view whose padding past the string is not zero (allowed to a
    /// producer that does not follow the layout) is still a member.
    #[test]
    fn padding_past_the_string_never_decides_membership() {
        let f = PublicKeyOrNull::new(["ab".to_string()], []);
        let dirty = inline_view(b"ab") | (0xFFu128 << 120);
        assert_eq!(canonical_inline(dirty, 2), inline_view(b"ab"));
        assert!(f.inline_views.binary_search(&canonical_inline(dirty, 2)).is_ok());
    }
}
