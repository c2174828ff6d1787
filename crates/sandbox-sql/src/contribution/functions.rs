//! The scalar functions the bounding plan needs beyond DataFusion's own:
//! the keyed priority that chooses each unit's groups, a row cap applied to
//! one (unit, group) partial sum, and a keyed 64-bit unit hash for counting
//! units.
//!
//! All are total (they never fail on data) and carry their parameters in
//! the function value itself, so a plan that holds them can be serialized
//! and run elsewhere without re-deriving anything from names.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt64Array};
use datafusion::arrow::compute::is_null;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::hash_utils::create_hashes;
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use std::sync::Arc;

/// `sandbox_choice_priority(unit, key_1, …, key_k) -> UInt64`: a keyed
/// hash of a (unit, group) pair under the job's choice key. Each unit keeps
/// the G groups of smallest priority, so the kept set is a pseudo-random
/// subset of the unit's own groups that depends on nothing else.
///
/// The key enters through foldhash's quality hasher seeded with it; like
/// the release path's earlier in-memory choice, this is a keyed hash, not
/// a cryptographic PRF: the DP guarantee needs only that a unit's choice
/// is a function of its own partials and the key.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ChoicePriority {
    key: u64,
    signature: Signature,
}

impl ChoicePriority {
    pub fn new(key: u64) -> Self {
        ChoicePriority {
            key,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    /// The job's choice key.
    pub fn key(&self) -> u64 {
        self.key
    }
}

impl ScalarUDFImpl for ChoicePriority {
    fn name(&self) -> &str {
        "sandbox_choice_priority"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::UInt64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        // Each column is hashed on its own and folded in order, with its
        // position and null mask: `create_hashes` over several columns
        // adds their hashes (so (x, y) and (y, x) tie) and skips NULLs (so
        // (NULL, x) and (x, NULL) tie), and a tie leaves the choice to the
        // tie-break instead of the key (red team 2026-12-01).
        use std::hash::BuildHasher;
        let state = foldhash::quality::FixedState::with_seed(self.key);
        let mut folded = vec![0u64; n];
        let mut column_hashes = vec![0u64; n];
        for (position, array) in arrays.iter().enumerate() {
            column_hashes.iter_mut().for_each(|h| *h = 0);
            create_hashes([array], &state, &mut column_hashes)?;
            let nulls = is_null(array.as_ref())?;
            for (row, acc) in folded.iter_mut().enumerate() {
                let value = if nulls.value(row) {
                    None
                } else {
                    Some(column_hashes[row])
                };
                *acc = state.hash_one((*acc, position, value));
            }
        }
        let out = UInt64Array::from(folded);
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `__sandbox_unit_hash(unit) -> UInt64`: a keyed 64-bit hash of a privacy
/// unit of any type, NULL where the unit is NULL, for
/// `COUNT(DISTINCT __sandbox_unit_hash(unit))`: DataFusion 55 counts
/// distinct integers per group with a hash set of (group, value), but
/// distinct strings one group at a time through a per-group accumulator
/// (≈ 3× the CPU on the two-table bench shape).
///
/// Two units that share a hash are counted once. That can only lower a
/// group's unit count, never raise it, and one unit still moves each
/// group's count by at most 1 (removing it removes its hash from the group
/// only if no other unit has it), so the count keeps its sensitivity and
/// thresholds on it (`min_units`) stay on the safe side. The key is drawn
/// per job, so which units collide does not repeat across jobs; with n
/// units a collision happens with probability below n²/2⁶⁵ (≈ 5·10⁻⁹ for
/// 416 667 enterprises).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UnitHash {
    key: u64,
    signature: Signature,
}

impl UnitHash {
    pub fn new(key: u64) -> Self {
        UnitHash {
            key,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    /// The job's hash key.
    pub fn key(&self) -> u64 {
        self.key
    }
}

impl ScalarUDFImpl for UnitHash {
    fn name(&self) -> &str {
        "__sandbox_unit_hash"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::UInt64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [unit] = args.args.as_slice() else {
            return exec_err!("__sandbox_unit_hash takes one argument");
        };
        let unit = unit.to_array(args.number_rows)?;
        let state = foldhash::quality::FixedState::with_seed(self.key);
        let mut hashes = vec![0u64; unit.len()];
        create_hashes([&unit], &state, &mut hashes)?;
        // The unit's own validity: a NULL unit is no unit.
        let nulls = datafusion::arrow::buffer::NullBuffer::new(!is_null(unit.as_ref())?.values());
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        Ok(ColumnarValue::Array(Arc::new(UInt64Array::new(hashes.into(), nulls))))
    }
}

/// `sandbox_row_cap(x, n, cap) -> Int64`: one partial's sum `x` over `n`
/// values, limited to `k = min(n, cap)` of them: `x · k / n`, clamped to
/// `[floor · k, ceiling · k]` (what `k` grid values can reach, so the bound
/// holds even if an upstream sum wrapped). `cap` is R, or the rows a unit's
/// total-rows cap L left to this group, or `n` itself (no cap: only the
/// clamp applies). NULL inputs count as 0.
///
/// Computed in 128-bit integers: `x` is at most `n · 2^30` and `k < 2^32`,
/// so the product cannot overflow, and the result, at most `k · 2^30`,
/// fits in 64 bits.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RowCap {
    floor: i64,
    ceiling: i64,
    signature: Signature,
}

impl RowCap {
    /// A cap for sums of grid values in `[-max_abs, max_abs]`.
    pub fn sum(max_abs: i64) -> Self {
        Self::new(-max_abs, max_abs)
    }

    /// A cap for sums of squared grid values, in `[0, max_abs²]`.
    pub fn squares(max_abs: i64) -> Self {
        Self::new(0, max_abs.saturating_mul(max_abs))
    }

    /// The bounds per kept row, `(floor, ceiling)`.
    pub fn bounds(&self) -> (i64, i64) {
        (self.floor, self.ceiling)
    }

    /// The cap with bounds `floor ≤ ceiling` per kept row (as
    /// [`RowCap::bounds`] returns them).
    pub fn from_bounds(floor: i64, ceiling: i64) -> Self {
        Self::new(floor, ceiling)
    }

    fn new(floor: i64, ceiling: i64) -> Self {
        RowCap {
            floor,
            ceiling,
            signature: Signature::exact(vec![DataType::Int64; 3], Volatility::Immutable),
        }
    }

    /// The capped value of one partial (see the type's docs).
    pub fn apply(&self, x: i64, n: i64, cap: i64) -> i64 {
        let n = n.max(0) as i128;
        let kept = n.min(cap.max(0) as i128);
        let scaled = if n == 0 { 0 } else { x as i128 * kept / n };
        let clamped = scaled.clamp(self.floor as i128 * kept, self.ceiling as i128 * kept);
        clamped.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }
}

impl ScalarUDFImpl for RowCap {
    fn name(&self) -> &str {
        if self.floor == 0 {
            "sandbox_row_cap_squares"
        } else {
            "sandbox_row_cap"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays: Vec<ArrayRef> = ColumnarValue::values_to_arrays(&args.args)?;
        let [x, n, cap] = arrays.as_slice() else {
            return exec_err!("{}: expects three arguments", self.name());
        };
        let (x, n, cap) = (
            x.as_primitive::<Int64Type>(),
            n.as_primitive::<Int64Type>(),
            cap.as_primitive::<Int64Type>(),
        );
        let get = |a: &Int64Array, i: usize| if a.is_null(i) { 0 } else { a.value(i) };
        let out: Int64Array = (0..x.len())
            .map(|i| Some(self.apply(get(x, i), get(n, i), get(cap, i))))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::contribution::red_team_support::unit_hashes;

    /// A unit's hash depends on its value and the key only, whatever the
    /// array type; a NULL unit stays NULL (it is no unit, and
    /// `COUNT(DISTINCT)` skips it); another key gives other hashes.
    #[test]
    fn unit_hashes_are_keyed_per_value_and_keep_nulls() {
        use datafusion::arrow::array::{DictionaryArray, StringArray, StringViewArray};
        use datafusion::arrow::datatypes::Int32Type;
        let values = vec![Some("91310000A"), None, Some("91310000B"), Some("91310000A")];
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(values.clone())),
            Arc::new(StringViewArray::from(values.clone())),
            Arc::new(values.iter().copied().collect::<DictionaryArray<Int32Type>>()),
        ];
        for units in arrays {
            let h = unit_hashes(7, units.clone());
            assert_eq!((h.is_null(1), h.null_count()), (true, 1), "{:?}", units.data_type());
            assert_eq!(h.value(0), h.value(3), "one value, one hash");
            assert_ne!(h.value(0), h.value(2));
            let other = unit_hashes(8, units);
            assert_ne!(h.value(0), other.value(0), "the key changes the hash");
        }
        // 100 000 distinct units: no two share a hash under this key.
        let many: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..100_000).map(|i| format!("9131{i:014}")),
        ));
        let h = unit_hashes(7, many);
        let distinct: std::collections::HashSet<u64> = h.values().iter().copied().collect();
        assert_eq!(distinct.len(), 100_000);
    }

    /// Groups that differ only in where their NULLs are, or in the order
    /// of their values, get different priorities (before, `(NULL, x)` and
    /// `(x, NULL)`, `(x, y)` and `(y, x)` always tied, and only the
    /// tie-break decided which one a unit kept).
    #[test]
    fn null_positions_are_part_of_the_priority() {
        use datafusion::arrow::array::StringArray;
        use datafusion::arrow::datatypes::Field;
        use datafusion::logical_expr::ScalarFunctionArgs;
        let priority = ChoicePriority::new(0x1234_5678);
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["u", "u", "u", "u", "u"])),
            Arc::new(StringArray::from(vec![None, Some("x"), Some("x"), None, Some("y")])),
            Arc::new(StringArray::from(vec![Some("x"), None, Some("y"), None, Some("x")])),
        ];
        let fields = arrays
            .iter()
            .enumerate()
            .map(|(i, a)| Arc::new(Field::new(format!("c{i}"), a.data_type().clone(), true)))
            .collect();
        let out = priority
            .invoke_with_args(ScalarFunctionArgs {
                args: arrays.into_iter().map(ColumnarValue::Array).collect(),
                arg_fields: fields,
                number_rows: 5,
                return_field: Arc::new(Field::new("p", DataType::UInt64, false)),
                config_options: Arc::new(Default::default()),
            })
            .expect("priority")
            .into_array(5)
            .expect("array");
        let p: Vec<u64> = out
            .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
            .values()
            .to_vec();
        let distinct: std::collections::BTreeSet<u64> = p.iter().copied().collect();
        assert_eq!(distinct.len(), 5, "{p:?}");
    }

    #[test]
    fn a_row_cap_keeps_the_mean_and_the_bound() {
        let cap = RowCap::sum(10);
        // 1000 values of 7 capped to 5: 5 values of 7.
        assert_eq!(cap.apply(7_000, 1000, 5), 35);
        // A wrapped sum is clamped to what 5 grid values can reach.
        assert_eq!(cap.apply(i64::MAX, 1000, 5), 50);
        assert_eq!(cap.apply(i64::MIN, 1000, 5), -50);
        assert_eq!(cap.apply(123, 0, 5), 0);
        assert_eq!(cap.apply(-40, 4, 0), 0, "a group the total cap left nothing");
        // No cap: the count itself.
        assert_eq!(cap.apply(7_000, 1000, 1000), 7_000);
        assert_eq!(cap.apply(i64::MAX, 3, 3), 30);
        let squares = RowCap::squares(10);
        assert_eq!(squares.apply(-5, 4, 2), 0);
        assert_eq!(squares.apply(400, 4, 2), 200);
        assert_eq!(squares.apply(i64::MAX, 4, 2), 200);
    }
}
