use super::*;
use datafusion::arrow::array::{Int32Array, LargeStringArray, StringArray, StringViewArray, UInt64Array};
use datafusion::arrow::datatypes::Field;

fn invoke_udf(f: &dyn ScalarUDFImpl, args: Vec<ColumnarValue>, n: usize, out: DataType) -> ColumnarValue {
    let arg_fields = args
        .iter()
        .map(|a| Arc::new(Field::new("k", a.data_type(), true)))
        .collect();
    let args = ScalarFunctionArgs {
        args,
        arg_fields,
        number_rows: n,
        return_field: Arc::new(Field::new("k", out, true)),
        config_options: Arc::new(Default::default()),
    };
    f.invoke_with_args(args).expect("invoke")
}

/// `keep_if(args[0], in_sets(args[1..]))`, as the engine plans it.
fn invoke(f: &InPublicSets, args: Vec<ColumnarValue>, n: usize) -> ColumnarValue {
    let t = args[0].data_type();
    let flag = invoke_udf(f, args[1..].to_vec(), n, DataType::Boolean);
    invoke_udf(&KeepIf::new(), vec![args[0].clone(), flag], n, t)
}

/// One key and its set, the key its own value.
fn one_key(strings: &[&str], ints: &[i64]) -> InPublicSets {
    InPublicSets::new(vec![KeySet::new(
        strings.iter().map(|s| s.to_string()),
        ints.iter().copied(),
    )])
}

/// The rows kept (non-NULL), after checking that every kept row holds
/// its key unchanged and the type is the key's.
fn kept(f: &InPublicSets, keys: ArrayRef) -> Vec<bool> {
    let n = keys.len();
    let ColumnarValue::Array(out) = invoke(f, vec![ColumnarValue::Array(keys.clone()); 2], n) else {
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
    let f = one_key(&set, &[7]);
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
    let f = one_key(&["1"], &[1, -5, 2024, i64::MAX]);
    let keys: ArrayRef = Arc::new(Int32Array::from(vec![
        Some(1),
        Some(2),
        None,
        Some(-5),
        Some(2024),
        Some(0),
    ]));
    assert_eq!(kept(&f, keys), vec![true, false, false, true, true, false]);
    let wide: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX, i64::MAX as u64, 1, 3]));
    assert_eq!(kept(&f, wide), vec![false, true, true, false]);
    // Another type lies in no set.
    let floats: ArrayRef = Arc::new(datafusion::arrow::array::Float64Array::from(vec![1.0, 2024.0]));
    assert_eq!(kept(&f, floats), vec![false, false]);
}

/// A scalar value gives itself or a NULL of its own type, by its key.
#[test]
fn a_scalar_is_kept_or_a_typed_null() {
    let f = one_key(&["a"], &[3]);
    let one = |s: ScalarValue| match invoke(&f, vec![ColumnarValue::Scalar(s.clone()); 2], 1) {
        ColumnarValue::Scalar(s) => s,
        ColumnarValue::Array(_) => panic!("a scalar"),
    };
    assert_eq!(
        one(ScalarValue::Utf8View(Some("a".into()))),
        ScalarValue::Utf8View(Some("a".into()))
    );
    assert_eq!(one(ScalarValue::Utf8(Some("b".into()))), ScalarValue::Utf8(None));
    assert_eq!(one(ScalarValue::Int16(Some(3))), ScalarValue::Int16(Some(3)));
    assert_eq!(one(ScalarValue::Int64(Some(4))), ScalarValue::Int64(None));
    assert_eq!(one(ScalarValue::Int64(None)), ScalarValue::Int64(None));
}

/// With several keys, a row's value is kept only where every key lies
/// in its set: every pattern of out-of-set columns gives the same all-
/// NULL row (one group), and a value that is not a key (the unit) is
/// nulled with them.
#[test]
fn a_row_is_kept_only_where_every_key_is_public() {
    let f = InPublicSets::new(vec![
        KeySet::new(["a".to_string()], []),
        KeySet::new([], [1]),
        KeySet::new(["x".to_string(), "y".to_string()], []),
    ]);
    let k0: ArrayRef = Arc::new(StringViewArray::from(vec![
        Some("a"),
        Some("b"),
        Some("a"),
        None,
        Some("a"),
    ]));
    let k1: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), Some(1), Some(2), Some(1), Some(1)]));
    let k2: ArrayRef = Arc::new(StringArray::from(vec![
        Some("y"),
        Some("x"),
        Some("x"),
        Some("x"),
        Some("z"),
    ]));
    let unit: ArrayRef = Arc::new(StringArray::from(vec!["u0", "u1", "u2", "u3", "u4"]));
    let args = |value: &ArrayRef| {
        [value, &k0, &k1, &k2]
            .into_iter()
            .map(|a| ColumnarValue::Array(a.clone()))
            .collect::<Vec<_>>()
    };
    for value in [&unit, &k0, &k1, &k2] {
        let ColumnarValue::Array(out) = invoke(&f, args(value), 5) else {
            panic!("an array")
        };
        assert_eq!(out.data_type(), value.data_type());
        let valid: Vec<bool> = (0..5).map(|i| out.is_valid(i)).collect();
        assert_eq!(valid, vec![true, false, false, false, false]);
        assert_eq!(out.slice(0, 1).to_data(), value.slice(0, 1).to_data());
    }
    // A scalar key outside its set nulls every row; inside, none.
    let with_scalar = |k1: ScalarValue| {
        let args = vec![
            ColumnarValue::Array(unit.clone()),
            ColumnarValue::Array(k0.clone()),
            ColumnarValue::Scalar(k1),
            ColumnarValue::Array(k2.clone()),
        ];
        let ColumnarValue::Array(out) = invoke(&f, args, 5) else {
            panic!("an array")
        };
        (0..5).map(|i| out.is_valid(i)).collect::<Vec<_>>()
    };
    assert_eq!(
        with_scalar(ScalarValue::Int64(Some(1))),
        vec![true, false, true, false, false]
    );
    assert_eq!(with_scalar(ScalarValue::Int64(Some(5))), vec![false; 5]);
}

/// The hash table answers as a set would, for sets of every size up to
/// a few hundred words (full of collisions in the small tables), on
/// members, near misses and random words.
#[test]
fn the_word_table_answers_as_a_set() {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for size in [0usize, 1, 2, 3, 7, 8, 9, 24, 100, 333] {
        let words: Vec<u128> = (0..size)
            .map(|_| (u128::from(next()) << 64 | u128::from(next())) & !(1u128 << 127))
            .collect();
        let table = WordSet::new(&words);
        let reference: std::collections::HashSet<u128> = words.iter().copied().collect();
        for &w in &words {
            assert!(table.contains(w));
            assert_eq!(table.contains(w ^ 1), reference.contains(&(w ^ 1)));
            assert_eq!(table.contains(w ^ (1 << 64)), reference.contains(&(w ^ (1 << 64))));
        }
        for _ in 0..2000 {
            let w = (u128::from(next()) << 64 | u128::from(next())) & !(1u128 << 127);
            assert_eq!(table.contains(w), reference.contains(&w));
        }
    }
    // Integers, including the extremes.
    let f = KeySet::new([], [i64::MIN, -1, 0, i64::MAX]);
    for v in [i64::MIN, -1, 0, i64::MAX] {
        assert!(f.int_words.contains(int_word(v)));
    }
    for v in [i64::MIN + 1, 1, -2, i64::MAX - 1] {
        assert!(!f.int_words.contains(int_word(v)));
    }
}

/// A view whose padding past the string is not zero (allowed to a
/// producer that does not follow the layout) is still a member.
#[test]
fn padding_past_the_string_never_decides_membership() {
    let f = KeySet::new(["ab".to_string()], []);
    let dirty = inline_view(b"ab") | (0xFFu128 << 120);
    assert_eq!(canonical_inline(dirty, 2), inline_view(b"ab"));
    assert!(f.inline_views.contains(canonical_inline(dirty, 2)));
}
