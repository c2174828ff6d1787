//! A value kept where the row's group keys all lie in their public key
//! sets, and NULL elsewhere, as one vectorised function.
//!
//! Rows whose keys lie outside their public sets must cost nothing that
//! depends on them (`docs/threat-model.md`, red teams of 2026-12-01).
//! Filtering them out before the aggregation does that, but DataFusion
//! 55's `FilterExec` copies every batch it passes on (its batch
//! coalescer), even when every row stays: on a 10M-row scan that copy was
//! the largest cost of a DP job over its plain query
//! (`docs/benchmarks.md`). Where the engine aggregates rows straight into
//! groups, each key (and the unit, where units are counted distinctly) is
//! instead replaced by `__sandbox_keep_if(value, flag)` with the one flag
//! `__sandbox_in_public_sets(key0, key1, …)`: NULL unless *every* key lies
//! in its set (the flag is the same expression in every call, so the
//! engine evaluates it once per row). All rows outside the sets thus fall
//! into one extra group whose keys are all NULL, with no unit counted in
//! it, which the release never reads (a NULL key lies in no public set).
//! One group, not one per pattern of out-of-set columns: per-column
//! nulling let rows outside the sets fill up to ∏(|Sᵢ|+1) − ∏|Sᵢ| groups
//! whose hashes collide (DataFusion's row hash skips NULL columns), and
//! the distinct units of the NULL group be held in memory (red team
//! `red_team_null`). The values are not copied: only their validity
//! changes (`nullif`).
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

/// A set of 128-bit words (the inline views of short strings, or
/// integers) whose membership test takes a few nanoseconds: open
/// addressing with linear probing in a power-of-two table at most half
/// full, so a lookup is a multiply, a load and a comparison that is almost
/// always decided the same way. (A binary search mispredicts about one
/// branch in two per step: on 10M rows of 24 months it cost about 20 ns a
/// row.) No member is [`EMPTY`]: an inline view's length (its low 32 bits)
/// is at most 12, and an integer's word has its high 64 bits zero.
#[derive(Debug, Clone)]
struct WordSet {
    slots: Vec<u128>,
    /// 64 − log2(slots.len()): the hash's top bits index the table.
    shift: u32,
}

/// An unused slot of a [`WordSet`].
const EMPTY: u128 = u128::MAX;

impl WordSet {
    fn new(words: &[u128]) -> Self {
        let size = (words.len() * 2).next_power_of_two().max(8);
        let mut set = WordSet {
            slots: vec![EMPTY; size],
            shift: 64 - size.trailing_zeros(),
        };
        for &w in words {
            let mut i = set.slot(w);
            while set.slots[i] != EMPTY && set.slots[i] != w {
                i = (i + 1) & (size - 1);
            }
            set.slots[i] = w;
        }
        set
    }

    #[inline]
    fn slot(&self, w: u128) -> usize {
        let folded = (w as u64) ^ ((w >> 64) as u64).rotate_left(29);
        (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Whether `w` is a member (`w` is never [`EMPTY`]: see the type).
    #[inline]
    fn contains(&self, w: u128) -> bool {
        let mask = self.slots.len() - 1;
        let mut i = self.slot(w);
        loop {
            let s = self.slots[i];
            if s == w {
                return true;
            }
            if s == EMPTY {
                return false;
            }
            i = (i + 1) & mask;
        }
    }
}

/// An integer as a [`WordSet`] word.
#[inline]
fn int_word(v: i64) -> u128 {
    u128::from(v as u64)
}

/// One key's public set, for membership tests.
#[derive(Debug)]
pub struct KeySet {
    /// The set's strings, sorted and without duplicates.
    strings: Vec<String>,
    /// The set's integers, sorted and without duplicates.
    ints: Vec<i64>,
    /// The views of the strings of at most [`INLINE`] bytes.
    inline_views: WordSet,
    /// The integers as words.
    int_words: WordSet,
    /// The strings longer than [`INLINE`] bytes.
    long: HashSet<Vec<u8>>,
}

impl PartialEq for KeySet {
    fn eq(&self, other: &Self) -> bool {
        self.strings == other.strings && self.ints == other.ints
    }
}
impl Eq for KeySet {}
impl std::hash::Hash for KeySet {
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

impl KeySet {
    /// The set `strings` ∪ `ints` (any order, duplicates
    /// allowed).
    pub fn new(strings: impl IntoIterator<Item = String>, ints: impl IntoIterator<Item = i64>) -> Self {
        let mut strings: Vec<String> = strings.into_iter().collect();
        strings.sort();
        strings.dedup();
        let mut ints: Vec<i64> = ints.into_iter().collect();
        ints.sort_unstable();
        ints.dedup();
        let views: Vec<u128> = strings
            .iter()
            .filter(|m| m.len() <= INLINE)
            .map(|m| inline_view(m.as_bytes()))
            .collect();
        let inline_views = WordSet::new(&views);
        let int_words = WordSet::new(&ints.iter().map(|&v| int_word(v)).collect::<Vec<_>>());
        let long = strings
            .iter()
            .filter(|m| m.len() > INLINE)
            .map(|m| m.as_bytes().to_vec())
            .collect();
        KeySet {
            strings,
            ints,
            inline_views,
            int_words,
            long,
        }
    }

    /// A public key set as the catalog gives it.
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
            self.inline_views.contains(inline_view(s))
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
                Ok(ScalarValue::Int64(Some(v))) => self.int_words.contains(int_word(v)),
                _ => false,
            },
            _ => false,
        }
    }

    /// Membership of the strings of a `Utf8` or `LargeUtf8` array given
    /// by its offsets and bytes (and its validity).
    ///
    /// A short string's view is built from one 16-byte load of the bytes
    /// buffer, masked to its length: building it byte-wise
    /// ([`inline_view`]) calls `memcpy` per row, which cost about 15 ns a
    /// row on 10M rows.
    fn offset_members<O: datafusion::arrow::array::OffsetSizeTrait>(
        &self,
        offsets: &[O],
        values: &[u8],
        nulls: Option<&datafusion::arrow::buffer::NullBuffer>,
    ) -> BooleanBuffer {
        let n = offsets.len().saturating_sub(1);
        let member = |i: usize| {
            let start = offsets[i].as_usize();
            let end = offsets[i + 1].as_usize();
            let len = end - start;
            if len > INLINE {
                return self.long.contains(&values[start..end]);
            }
            let mut word = [0u8; 16];
            if start + 16 <= values.len() {
                word.copy_from_slice(&values[start..start + 16]);
            } else {
                word[..len].copy_from_slice(&values[start..end]);
            }
            // len ≤ 12: the shift stays below 128.
            let bytes = u128::from_le_bytes(word) & ((1u128 << (8 * len)) - 1);
            self.inline_views.contains((bytes << 32) | len as u128)
        };
        let all = BooleanBuffer::collect_bool(n, member);
        match nulls {
            Some(valid) => &all & valid.inner(),
            None => all,
        }
    }

    /// Which of `keys` lie in the set (NULL and other types never do).
    fn members(&self, keys: &ArrayRef) -> DfResult<BooleanBuffer> {
        let n = keys.len();
        Ok(match keys.data_type() {
            DataType::Utf8View => {
                let a = keys.as_string_view();
                let views = a.views();
                let member = |i: usize| {
                    let view = views[i];
                    let len = view as u32 as usize;
                    if len <= INLINE {
                        self.inline_views.contains(canonical_inline(view, len))
                    } else {
                        self.long.contains(a.value(i).as_bytes())
                    }
                };
                // A NULL row's view is not read (it need not be valid).
                if a.null_count() == 0 {
                    BooleanBuffer::collect_bool(n, member)
                } else {
                    BooleanBuffer::collect_bool(n, |i| a.is_valid(i) && member(i))
                }
            }
            DataType::Utf8 => {
                let a = keys.as_string::<i32>();
                self.offset_members(a.value_offsets(), a.values(), a.nulls())
            }
            DataType::LargeUtf8 => {
                let a = keys.as_string::<i64>();
                self.offset_members(a.value_offsets(), a.values(), a.nulls())
            }
            t if t.is_integer() => {
                // An unsigned value beyond i64 casts to NULL: in no set.
                let wide = cast(keys, &DataType::Int64)?;
                let a = wide.as_primitive::<Int64Type>();
                let values = a.values();
                let member = |i: usize| self.int_words.contains(int_word(values[i]));
                let all = BooleanBuffer::collect_bool(n, member);
                match a.nulls() {
                    Some(valid) => &all & valid.inner(),
                    None => all,
                }
            }
            _ => BooleanBuffer::new_unset(n),
        })
    }
}

/// `__sandbox_in_public_sets(key0, key1, …)`: whether every key lies in
/// its public set (never NULL). Only the engine builds calls of it (never
/// registered in a session).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct InPublicSets {
    sets: Vec<KeySet>,
    signature: Signature,
}

impl InPublicSets {
    /// The function of `sets`, one per key argument.
    pub fn new(sets: Vec<KeySet>) -> Self {
        InPublicSets {
            sets,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    /// The keys' sets, in argument order.
    pub fn sets(&self) -> &[KeySet] {
        &self.sets
    }

    /// Whether each of `n` rows has every key in its set.
    fn public_rows(&self, keys: &[ColumnarValue], n: usize) -> DfResult<BooleanBuffer> {
        if keys.len() != self.sets.len() {
            return datafusion::common::exec_err!("__sandbox_in_public_sets takes {} keys", self.sets.len());
        }
        let mut public = BooleanBuffer::new_set(n);
        for (key, set) in keys.iter().zip(&self.sets) {
            let member = match key {
                ColumnarValue::Scalar(s) => {
                    if set.contains_scalar(s) {
                        continue;
                    }
                    BooleanBuffer::new_unset(n)
                }
                ColumnarValue::Array(a) => set.members(a)?,
            };
            public = &public & &member;
        }
        Ok(public)
    }
}

impl ScalarUDFImpl for InPublicSets {
    fn name(&self) -> &str {
        "__sandbox_in_public_sets"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if args.len() == self.sets.len() {
            Ok(DataType::Boolean)
        } else {
            datafusion::common::plan_err!("__sandbox_in_public_sets takes {} keys", self.sets.len())
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let public = self.public_rows(&args.args, args.number_rows)?;
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(public, None))))
    }
}

/// `__sandbox_keep_if(value, flag)`: `value` where `flag` is true, NULL
/// elsewhere (flag false or NULL); the type is `value`'s. Only validity
/// changes (`nullif`): the values are not copied.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct KeepIf {
    signature: Signature,
}

impl KeepIf {
    /// The function.
    pub fn new() -> Self {
        KeepIf {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for KeepIf {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for KeepIf {
    fn name(&self) -> &str {
        "__sandbox_keep_if"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        match args {
            [value, DataType::Boolean] => Ok(value.clone()),
            _ => datafusion::common::plan_err!("__sandbox_keep_if takes a value and a boolean"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [value, flag] = args.args.as_slice() else {
            return datafusion::common::exec_err!("__sandbox_keep_if takes a value and a boolean");
        };
        let n = args.number_rows;
        let flag = flag.to_array(n)?;
        let Some(flag) = flag.as_boolean_opt() else {
            return datafusion::common::exec_err!("__sandbox_keep_if takes a boolean flag");
        };
        // Kept: flag true and valid.
        let kept = match flag.nulls() {
            Some(valid) => flag.values() & valid.inner(),
            None => flag.values().clone(),
        };
        match value {
            ColumnarValue::Scalar(s) if kept.count_set_bits() == n => Ok(ColumnarValue::Scalar(s.clone())),
            ColumnarValue::Scalar(s) if n == 1 || kept.count_set_bits() == 0 => {
                Ok(ColumnarValue::Scalar(ScalarValue::try_from(s.data_type())?))
            }
            value => {
                let values = value.to_array(n)?;
                let outside = BooleanArray::new(!&kept, None);
                Ok(ColumnarValue::Array(nullif(values.as_ref(), &outside)?))
            }
        }
    }
}

/// `__sandbox_in_public_sets(keys…)` for the keys' public sets (same
/// order).
pub fn in_sets(keys: Vec<Expr>, sets: &[&[PublicKey]]) -> Expr {
    let f = InPublicSets::new(sets.iter().map(|s| KeySet::of_set(s)).collect());
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(ScalarUDF::new_from_impl(f)), keys))
}

/// `__sandbox_keep_if(value, flag)`.
pub fn keep_if(value: Expr, flag: Expr) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(KeepIf::new())),
        vec![value, flag],
    ))
}

#[cfg(test)]
mod tests;
