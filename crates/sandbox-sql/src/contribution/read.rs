//! Reading the engine's per-group totals into the release step's
//! columns: dense ids of public key groups ([`PublicIndex`]) or observed
//! keys, and exact 128-bit counts and sums.

use super::*;

pub(super) fn read_totals(
    q: &CheckedQuery,
    measures: &[MeasureColumn],
    batches: &[RecordBatch],
    public: Option<Vec<Vec<PublicKey>>>,
    bounding: Bounding,
    units_counted: bool,
) -> Result<GroupStatistics, SqlError> {
    let k = q.group_keys.len();
    let internal = |e: &dyn std::fmt::Display| SqlError::Internal(e.to_string());
    let (mut index, mut observed) = match &public {
        Some(combos) => (Some(PublicIndex::new(q, combos.len())), None),
        None => (None, Some(Vec::<Vec<serde_json::Value>>::new())),
    };
    let groups = public.as_ref().map_or(0, |c| c.len());
    let mut totals = GroupTotals::zeros(groups, measures.len());
    for batch in batches {
        let column = |i: usize| -> Result<Vec<i128>, SqlError> { exact_column(batch.column(i)) };
        let units = column(k)?;
        let rows = column(k + 1)?;
        let mut measure_columns = Vec::with_capacity(measures.len());
        let mut next = k + 2;
        for m in measures {
            let c = column(next)?;
            let s = column(next + 1)?;
            let sq = if m.squares { Some(column(next + 2)?) } else { None };
            next += if m.squares { 3 } else { 2 };
            measure_columns.push((c, s, sq));
        }
        let ids: Vec<Option<usize>> = match (&mut index, &mut observed) {
            (Some(index), _) => index.ids(batch, 0, k)?,
            (None, Some(keys)) => (0..batch.num_rows())
                .map(|r| {
                    let key = (0..k)
                        .map(|i| {
                            ScalarValue::try_from_array(batch.column(i), r).map(|v| crate::partials::scalar_json(&v))
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| internal(&e))?;
                    keys.push(key);
                    totals.push_group();
                    Ok(Some(keys.len() - 1))
                })
                .collect::<Result<_, SqlError>>()?,
            (None, None) => return Err(SqlError::Internal("group index mismatch".into())),
        };
        for (r, id) in ids.into_iter().enumerate() {
            let Some(g) = id else { continue };
            totals.rows[g] += rows[r];
            totals.units[g] += units[r];
            for (t, (c, s, sq)) in totals.measures.iter_mut().zip(&measure_columns) {
                t.count[g] += c[r];
                t.sum[g] += s[r];
                if let Some(sq) = sq {
                    t.sumsq[g] += sq[r];
                }
            }
        }
    }
    if !units_counted {
        totals.units.iter_mut().for_each(|u| *u = 0);
    }
    let groups = match (public, observed) {
        (Some(combos), _) => GroupSet {
            public: true,
            keys: combos
                .iter()
                .map(|c| c.iter().map(crate::partials::key_json).collect())
                .collect(),
        },
        (None, Some(keys)) => GroupSet { public: false, keys },
        (None, None) => return Err(SqlError::Internal("group index mismatch".into())),
    };
    Ok(GroupStatistics {
        groups,
        contributions: Contributions::Totals {
            totals,
            bounding,
            units_counted,
        },
    })
}

/// An integer or exact-decimal column as i128 (NULL: 0, the empty sum).
pub(super) fn exact_column(a: &ArrayRef) -> Result<Vec<i128>, SqlError> {
    match a.data_type() {
        DataType::Decimal128(_, 0) => {
            let a = a.as_primitive::<Decimal128Type>();
            Ok((0..a.len())
                .map(|i| if a.is_null(i) { 0 } else { a.value(i) })
                .collect())
        }
        _ => {
            let a = cast(a, &DataType::Int64).map_err(|e| SqlError::Internal(e.to_string()))?;
            let a = a.as_primitive::<Int64Type>();
            Ok((0..a.len())
                .map(|i| if a.is_null(i) { 0 } else { a.value(i) as i128 })
                .collect())
        }
    }
}

/// Dense ids of the groups of public key sets: one lookup per key column,
/// combined in mixed radix (row-major order of the cross product, the last
/// key fastest), matching [`crate::partials::public_groups`].
pub struct PublicIndex {
    strings: Vec<std::collections::HashMap<String, usize>>,
    ints: Vec<std::collections::HashMap<i64, usize>>,
    strides: Vec<usize>,
    groups: usize,
}

impl PublicIndex {
    /// The index of `q`'s key sets, whose cross product has `groups` groups.
    pub fn new(q: &CheckedQuery, groups: usize) -> Self {
        let k = q.group_keys.len();
        let mut strings = Vec::with_capacity(k);
        let mut ints = Vec::with_capacity(k);
        for g in &q.group_keys {
            let mut sm = std::collections::HashMap::new();
            let mut im = std::collections::HashMap::new();
            for (j, key) in g.public_keys.as_deref().unwrap_or_default().iter().enumerate() {
                match key {
                    PublicKey::Str(s) => sm.insert(s.clone(), j),
                    PublicKey::Int(v) => im.insert(*v, j),
                };
            }
            strings.push(sm);
            ints.push(im);
        }
        let mut strides = vec![1usize; k];
        for i in (0..k.saturating_sub(1)).rev() {
            let next = q.group_keys[i + 1].public_keys.as_ref().map_or(1, |v| v.len());
            strides[i] = strides[i + 1] * next;
        }
        PublicIndex {
            strings,
            ints,
            strides,
            groups,
        }
    }

    /// The group id of every row of `batch`, whose key columns are
    /// `offset..offset + k` (`None`: a key outside its public set).
    pub fn ids(&self, batch: &RecordBatch, offset: usize, k: usize) -> Result<Vec<Option<usize>>, SqlError> {
        let n = batch.num_rows();
        let mut out: Vec<Option<usize>> = vec![Some(0); n];
        for i in 0..k {
            let column = batch.column(offset + i);
            let idx: Vec<Option<usize>> = match column.data_type() {
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
                    let a = cast(column, &DataType::Utf8).map_err(|e| SqlError::Internal(e.to_string()))?;
                    let a = a.as_string::<i32>();
                    (0..n)
                        .map(|r| {
                            if a.is_null(r) {
                                None
                            } else {
                                self.strings[i].get(a.value(r)).copied()
                            }
                        })
                        .collect()
                }
                t if t.is_integer() => {
                    let a = cast(column, &DataType::Int64).map_err(|e| SqlError::Internal(e.to_string()))?;
                    let a = a.as_primitive::<Int64Type>();
                    (0..n)
                        .map(|r| {
                            if a.is_null(r) {
                                None
                            } else {
                                self.ints[i].get(&a.value(r)).copied()
                            }
                        })
                        .collect()
                }
                _ => vec![None; n],
            };
            for (o, x) in out.iter_mut().zip(idx) {
                *o = match (*o, x) {
                    (Some(acc), Some(x)) => Some(acc + x * self.strides[i]),
                    _ => None,
                };
            }
        }
        Ok(out.into_iter().map(|g| g.filter(|&g| g < self.groups)).collect())
    }
}
