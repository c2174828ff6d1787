//! Assembling the engine's per-(unit, group) partials into the release
//! step's columns: dense group ids (public key sets, or observed keys
//! numbered in key order), exact unit ids, and each partial's statistics.

use super::{
    Contributions, GroupSet, GroupStatistics, HashMap, MeasureColumn, StdHashMap, key_json, public_groups, scalar_json,
};
use crate::SqlError;
use crate::query::CheckedQuery;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, UInt64Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use sandbox_dp::bounding::{MeasurePartials, Partials};
use sandbox_policy::PublicKey;
use std::hash::BuildHasher;

/// Column `i` of a batch as 64-bit integers, NULL read as 0 (the empty
/// count or sum), in one vectorised pass.
fn int_values(batch: &RecordBatch, i: usize) -> Result<Vec<i64>, SqlError> {
    let a = cast(batch.column(i), &DataType::Int64).map_err(|e| SqlError::Internal(e.to_string()))?;
    let a = a.as_primitive::<Int64Type>();
    if a.null_count() == 0 {
        return Ok(a.values().to_vec());
    }
    Ok((0..a.len())
        .map(|r| if a.is_null(r) { 0 } else { a.value(r) })
        .collect())
}

/// Maps a batch's group-key columns (from column 1 on) to dense group ids.
enum GroupIndex {
    /// Public key sets (see [`crate::contribution::PublicIndex`]).
    Public(crate::contribution::PublicIndex),
    /// Observed keys, hashed in Arrow's row format.
    Observed {
        converter: RowConverter,
        ids: HashMap<Box<[u8]>, u32>,
        keys: Vec<Vec<ScalarValue>>,
    },
}

impl GroupIndex {
    fn new(q: &CheckedQuery, public: Option<&Vec<Vec<PublicKey>>>, batches: &[RecordBatch]) -> Result<Self, SqlError> {
        let k = q.group_keys.len();
        if let Some(combos) = public {
            return Ok(GroupIndex::Public(crate::contribution::PublicIndex::new(
                q,
                combos.len(),
            )));
        }
        let fields: Vec<SortField> = match batches.first() {
            Some(b) => (0..k)
                .map(|i| SortField::new(b.schema().field(1 + i).data_type().clone()))
                .collect(),
            None => Vec::new(),
        };
        let converter = RowConverter::new(fields).map_err(|e| SqlError::Internal(e.to_string()))?;
        Ok(GroupIndex::Observed {
            converter,
            ids: HashMap::default(),
            keys: Vec::new(),
        })
    }

    /// Group ids for every row of a batch (`None`: not a released group).
    fn ids(&mut self, batch: &RecordBatch, k: usize) -> Result<Vec<Option<u32>>, SqlError> {
        let n = batch.num_rows();
        match self {
            GroupIndex::Public(index) => Ok(index
                .ids(batch, 1, k)?
                .into_iter()
                .map(|g| g.map(|g| g as u32))
                .collect()),
            GroupIndex::Observed { converter, ids, keys } => {
                let columns: Vec<ArrayRef> = (0..k).map(|i| batch.column(1 + i).clone()).collect();
                let rows = converter
                    .convert_columns(&columns)
                    .map_err(|e| SqlError::Internal(e.to_string()))?;
                let mut out = Vec::with_capacity(n);
                for r in 0..n {
                    let row = rows.row(r);
                    // Candidate groups are not capped here: a cap that fails
                    // the job would turn one unit's extra group into an
                    // oracle. The release caps the groups it shows.
                    let id = match ids.get(row.as_ref()) {
                        Some(id) => *id,
                        None => {
                            let key: Vec<ScalarValue> = (0..k)
                                .map(|i| ScalarValue::try_from_array(batch.column(1 + i), r))
                                .collect::<Result<_, _>>()
                                .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
                            let id = keys.len() as u32;
                            ids.insert(row.as_ref().into(), id);
                            keys.push(key);
                            id
                        }
                    };
                    out.push(Some(id));
                }
                Ok(out)
            }
        }
    }
    /// Renumbers observed groups in the order of their keys (ascending,
    /// NULL first: the order of Arrow's row format, which is the order the
    /// in-engine plan sorts them in) and returns the renumbering, old id →
    /// new id. Ids then depend on the key values only, not on the order the
    /// engine delivered the partials in (which depends on other units'
    /// rows), so a tie of two groups' keyed priorities within one unit is
    /// broken by public facts, and alike in both bounding places.
    ///
    /// `None` for public key sets: their ids follow the policy's declared
    /// order (also a public fact), where the in-engine window breaks a tie
    /// by key value. Public keys are never NULL and every key is hashed
    /// with its null mask, so the two places can differ only on a 64-bit
    /// collision of the keyed priority within one unit's groups.
    fn canonical_order(&mut self) -> Option<Vec<u32>> {
        let GroupIndex::Observed { ids, keys, .. } = self else {
            return None;
        };
        let mut by_key: Vec<(&[u8], u32)> = ids.iter().map(|(row, &id)| (row.as_ref(), id)).collect();
        by_key.sort_unstable();
        let mut renumber = vec![0u32; keys.len()];
        for (new, (_, old)) in by_key.iter().enumerate() {
            renumber[*old as usize] = new as u32;
        }
        let mut sorted: Vec<Option<Vec<ScalarValue>>> = vec![None; keys.len()];
        for (old, key) in keys.drain(..).enumerate() {
            sorted[renumber[old] as usize] = Some(key);
        }
        *keys = sorted.into_iter().flatten().collect();
        Some(renumber)
    }
}

/// Dense ids of the privacy units in a partials plan's output (the unit
/// in column 0 of every batch), exact: units are found by their hash and
/// told apart by their value (Arrow's row format, compared byte for byte),
/// so two units never share an id however their hashes fall.
struct UnitIdentity {
    /// Each batch's unit column in row format.
    rows: Vec<datafusion::arrow::row::Rows>,
    /// Hash → the first unit seen with it.
    first: HashMap<u64, u32>,
    /// Hash → further units with the same hash (a collision).
    collided: StdHashMap<u64, Vec<u32>>,
    /// Unit id → where its value was first seen (batch, row).
    seen_at: Vec<(u32, u32)>,
}

impl UnitIdentity {
    fn new(batches: &[RecordBatch]) -> Result<Self, SqlError> {
        let internal = |e: datafusion::arrow::error::ArrowError| SqlError::Internal(e.to_string());
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let rows = match batches.first() {
            None => Vec::new(),
            Some(first) => {
                let field = SortField::new(first.column(0).data_type().clone());
                let converter = RowConverter::new(vec![field]).map_err(internal)?;
                batches
                    .iter()
                    .map(|b| converter.convert_columns(&[b.column(0).clone()]))
                    .collect::<Result<_, _>>()
                    .map_err(internal)?
            }
        };
        Ok(UnitIdentity {
            rows,
            first: HashMap::with_capacity_and_hasher(total / 2, Default::default()),
            collided: StdHashMap::new(),
            seen_at: Vec::with_capacity(total / 2),
        })
    }

    /// The id of the unit at `(batch, row)`, whose hash is `hash`.
    fn id(&mut self, hash: u64, batch: usize, row: usize) -> u32 {
        let next = self.seen_at.len() as u32;
        let here = (batch as u32, row as u32);
        let first = *self.first.entry(hash).or_insert(next);
        if first == next {
            self.seen_at.push(here);
            return next;
        }
        if self.same(first, batch, row) {
            return first;
        }
        let others = self.collided.entry(hash).or_default();
        if let Some(&id) = others.iter().find(|&&id| {
            let (b, r) = self.seen_at[id as usize];
            self.rows[b as usize].row(r as usize) == self.rows[batch].row(row)
        }) {
            return id;
        }
        others.push(next);
        self.seen_at.push(here);
        next
    }

    fn same(&self, id: u32, batch: usize, row: usize) -> bool {
        let (b, r) = self.seen_at[id as usize];
        self.rows[b as usize].row(r as usize) == self.rows[batch].row(row)
    }
}

pub(super) fn assemble(
    q: &CheckedQuery,
    measures: &[MeasureColumn],
    batches: &[RecordBatch],
    max_groups: usize,
) -> Result<GroupStatistics, SqlError> {
    let k = q.group_keys.len();
    let public = public_groups(q, max_groups);
    let mut index = GroupIndex::new(q, public.as_ref(), batches)?;
    // Units are looked up by a 64-bit keyed hash of their value, computed
    // a batch at a time in the unit's own type (no cast to text, no
    // allocation per unit); the seed is random per job. A hash is only a
    // lookup key: two units whose hashes collide would be merged into one,
    // and a merged pair's bounded contribution can differ from one of them
    // alone by more than the sensitivity (sums of mixed signs, the choice
    // of G groups), so identity is settled exactly by `UnitIdentity`.
    let seed = foldhash::fast::RandomState::default().hash_one(0x5eed_u64);
    let unit_state = foldhash::quality::FixedState::with_seed(seed);
    let mut identity = UnitIdentity::new(batches)?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut p = Partials {
        unit: Vec::with_capacity(total),
        group: Vec::with_capacity(total),
        priority: Vec::with_capacity(total),
        rows: Vec::with_capacity(total),
        measures: measures
            .iter()
            .map(|m| MeasurePartials {
                count: Vec::with_capacity(total),
                sum: Vec::with_capacity(total),
                sumsq: m.squares.then(|| Vec::with_capacity(total)),
                max_abs: m.grid.max_abs,
            })
            .collect(),
    };
    let mut hashes = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let n = batch.num_rows();
        let unit_column = batch.column(0);
        hashes.clear();
        hashes.resize(n, 0u64);
        datafusion::common::hash_utils::create_hashes([unit_column], &unit_state, &mut hashes)
            .map_err(|e| SqlError::Internal(e.strip_backtrace()))?;
        let groups = index.ids(batch, k)?;
        let mut col_i = 1 + k;
        let rows = int_values(batch, col_i)?;
        col_i += 1;
        let mut mcols = Vec::with_capacity(measures.len());
        for m in measures {
            let c = int_values(batch, col_i)?;
            let s = int_values(batch, col_i + 1)?;
            let sq = if m.squares {
                Some(int_values(batch, col_i + 2)?)
            } else {
                None
            };
            col_i += if m.squares { 3 } else { 2 };
            mcols.push((c, s, sq));
        }
        let priority = cast(batch.column(col_i), &DataType::UInt64).map_err(|e| SqlError::Internal(e.to_string()))?;
        let priority = priority.as_primitive::<UInt64Type>().values();
        for (r, group) in groups.into_iter().enumerate() {
            let Some(group) = group else { continue };
            if unit_column.is_null(r) {
                continue;
            }
            let unit = identity.id(hashes[r], b, r);
            p.unit.push(unit);
            p.group.push(group);
            p.priority.push(priority[r]);
            p.rows.push(rows[r]);
            for (mp, (c, s, sq)) in p.measures.iter_mut().zip(&mcols) {
                mp.count.push(c[r]);
                mp.sum.push(s[r]);
                if let (Some(v), Some(sq)) = (mp.sumsq.as_mut(), sq) {
                    v.push(sq[r]);
                }
            }
        }
    }
    if let Some(renumber) = index.canonical_order() {
        p.group.iter_mut().for_each(|g| *g = renumber[*g as usize]);
    }
    let groups = match (public, index) {
        (Some(combos), _) => GroupSet {
            public: true,
            keys: combos.iter().map(|c| c.iter().map(key_json).collect()).collect(),
        },
        (None, GroupIndex::Observed { keys, .. }) => GroupSet {
            public: false,
            keys: keys.iter().map(|c| c.iter().map(scalar_json).collect()).collect(),
        },
        (None, GroupIndex::Public(_)) => return Err(SqlError::Internal("group index mismatch".into())),
    };
    Ok(GroupStatistics {
        groups,
        contributions: Contributions::Partials(p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use std::sync::Arc;

    fn units(values: &[&str]) -> RecordBatch {
        RecordBatch::try_from_iter([("__u", Arc::new(StringArray::from(values.to_vec())) as ArrayRef)])
            .expect("a batch")
    }

    #[test]
    fn observed_groups_are_numbered_in_key_order_whatever_the_delivery_order() {
        let batch = RecordBatch::try_from_iter([
            ("__u", Arc::new(StringArray::from(vec!["u"; 4])) as ArrayRef),
            (
                "__g0",
                Arc::new(StringArray::from(vec![Some("b"), Some("a"), None, Some("b")])) as ArrayRef,
            ),
        ])
        .expect("a batch");
        let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).expect("row format");
        let mut index = GroupIndex::Observed {
            converter,
            ids: HashMap::default(),
            keys: Vec::new(),
        };
        let delivered = index.ids(&batch, 1).expect("ids");
        assert_eq!(delivered, vec![Some(0), Some(1), Some(2), Some(0)]);
        // NULL first, then "a", then "b", as the engine's ORDER BY sorts.
        assert_eq!(index.canonical_order(), Some(vec![2, 1, 0]));
        let GroupIndex::Observed { keys, .. } = index else {
            panic!("observed groups")
        };
        assert_eq!(
            keys,
            vec![
                vec![ScalarValue::Utf8(None)],
                vec![ScalarValue::Utf8(Some("a".into()))],
                vec![ScalarValue::Utf8(Some("b".into()))],
            ]
        );
    }

    #[test]
    fn units_whose_hashes_collide_keep_their_own_ids() {
        let batches = [units(&["a", "b", "a"]), units(&["c", "b", "a"])];
        let mut identity = UnitIdentity::new(&batches).expect("row format");
        // Every unit given the same hash, as a collision would.
        let ids: Vec<u32> = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
            .into_iter()
            .map(|(b, r)| identity.id(42, b, r))
            .collect();
        assert_eq!(ids, vec![0, 1, 0, 2, 1, 0]);
        // Distinct hashes for the same value are the caller's contract
        // (one keyed hash per job), so only equal hashes are compared.
        assert_eq!(identity.id(7, 1, 0), 3);
    }
}

/// Red team 2026-12-01: the release step's canonical group order must be
/// the in-engine plan's `ORDER BY key ASC NULLS FIRST` for every key type
/// an analyst can group by, and the keyed priority has structural ties
/// (NULLs leave the hash unchanged), so that order really decides.
#[cfg(test)]
mod red_team_1201 {
    use super::*;
    use datafusion::arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, Float64Array, Int8Array, Int64Array, StringArray, StringViewArray,
    };
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::logical_expr::{Expr, col, lit};
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    async fn engine_order_matches_canonical_order(name: &str, keys: Vec<ArrayRef>) {
        let n = keys[0].len();
        let mut columns: Vec<(String, ArrayRef)> =
            vec![("__u".into(), Arc::new(StringArray::from(vec!["u"; n])) as ArrayRef)];
        for (i, k) in keys.iter().enumerate() {
            columns.push((format!("__g{i}"), k.clone()));
        }
        let batch = RecordBatch::try_from_iter(columns).expect("batch");
        let k = keys.len();
        let ctx = SessionContext::new();
        let key_cols: Vec<Expr> = (0..k).map(|i| col(format!("__g{i}"))).collect();
        // As in production, the release step sees the keys of the engine's
        // per-(unit, group) aggregate (which folds -0.0 into +0.0).
        let mut by_unit = vec![col("__u")];
        by_unit.extend(key_cols.clone());
        let partials = ctx
            .read_batch(batch)
            .expect("frame")
            .aggregate(by_unit, vec![count(lit(1i64))])
            .expect("aggregate");
        let fields: Vec<SortField> = keys.iter().map(|a| SortField::new(a.data_type().clone())).collect();
        let mut index = GroupIndex::Observed {
            converter: RowConverter::new(fields.clone()).expect("row format"),
            ids: HashMap::default(),
            keys: Vec::new(),
        };
        for b in partials.clone().collect().await.expect("partials") {
            index.ids(&b, k).expect("ids");
        }
        index.canonical_order().expect("observed groups are renumbered");
        let GroupIndex::Observed { keys: canonical, .. } = index else {
            panic!("observed groups")
        };
        // The engine: GROUP BY keys, ORDER BY keys ASC NULLS FIRST.
        let sorted = partials
            .aggregate(key_cols.clone(), vec![count(lit(1i64))])
            .expect("aggregate")
            .sort(key_cols.iter().map(|c| c.clone().sort(true, true)).collect())
            .expect("sort")
            .collect()
            .await
            .expect("collect");
        let mut engine: Vec<Vec<ScalarValue>> = Vec::new();
        for b in &sorted {
            for r in 0..b.num_rows() {
                engine.push(
                    (0..k)
                        .map(|i| ScalarValue::try_from_array(b.column(i), r).expect("scalar"))
                        .collect(),
                );
            }
        }
        // Compared in row format (bitwise: NaN payloads, -0.0).
        let converter = RowConverter::new(fields).expect("row format");
        let rows = |groups: &[Vec<ScalarValue>]| -> Vec<Vec<u8>> {
            groups
                .iter()
                .map(|g| {
                    let arrays: Vec<ArrayRef> = g.iter().map(|v| v.to_array().expect("array")).collect();
                    converter
                        .convert_columns(&arrays)
                        .expect("rows")
                        .row(0)
                        .as_ref()
                        .to_vec()
                })
                .collect()
        };
        assert_eq!(
            rows(&engine),
            rows(&canonical),
            "{name}: the engine sorts the groups {engine:?}, the release step numbers them {canonical:?}"
        );
    }

    #[tokio::test]
    async fn red_team_1201_canonical_group_order_is_the_engines_sort_order() {
        let floats = || {
            Arc::new(Float64Array::from(vec![
                Some(f64::NAN),
                Some(-f64::NAN),
                Some(-0.0),
                Some(0.0),
                Some(f64::NEG_INFINITY),
                Some(f64::INFINITY),
                Some(1.5),
                None,
                Some(-1.5),
            ])) as ArrayRef
        };
        let strings = vec![
            Some("b"),
            Some("a"),
            Some(""),
            Some("ä"),
            Some("Z"),
            None,
            Some("ab"),
            Some("a\u{0}"),
        ];
        engine_order_matches_canonical_order("Float64", vec![floats()]).await;
        engine_order_matches_canonical_order("Utf8", vec![Arc::new(StringArray::from(strings.clone()))]).await;
        engine_order_matches_canonical_order("Utf8View", vec![Arc::new(StringViewArray::from(strings))]).await;
        engine_order_matches_canonical_order(
            "Int8",
            vec![Arc::new(Int8Array::from(vec![
                Some(-128),
                Some(127),
                Some(-1),
                None,
                Some(0),
            ]))],
        )
        .await;
        engine_order_matches_canonical_order(
            "Boolean",
            vec![Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)]))],
        )
        .await;
        engine_order_matches_canonical_order(
            "Date32",
            vec![Arc::new(Date32Array::from(vec![Some(-1), Some(20000), None, Some(0)]))],
        )
        .await;
        engine_order_matches_canonical_order(
            "Decimal128",
            vec![Arc::new(
                Decimal128Array::from(vec![Some(-250), Some(100), None, Some(-1)])
                    .with_precision_and_scale(10, 2)
                    .expect("decimal"),
            )],
        )
        .await;
        // Two keys with NULLs swapped: the structural priority tie.
        engine_order_matches_canonical_order(
            "(Utf8, Utf8)",
            vec![
                Arc::new(StringArray::from(vec![None, Some("x"), None, Some("x"), Some("a")])),
                Arc::new(StringArray::from(vec![Some("x"), None, None, Some("x"), None])),
            ],
        )
        .await;
        engine_order_matches_canonical_order(
            "(Int64, Float64)",
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(1), Some(-3)])),
                Arc::new(Float64Array::from(vec![None, Some(1.0), Some(-0.0), Some(0.0)])),
            ],
        )
        .await;
    }
}
