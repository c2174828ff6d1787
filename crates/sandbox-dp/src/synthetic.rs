//! Differentially private synthetic samples (样本数据): a table with the
//! real data's schema, drawn from noisy one-way marginals of every column
//! and noisy two-way marginals of chosen (parent, child) column pairs.
//!
//! The mechanism, on a table whose columns the caller has encoded as
//! category codes:
//!
//! 1. **Contribution bounding.** Each privacy unit keeps at most `m` rows
//!    ([`SampleParams::max_rows_per_unit`]): those with the smallest keyed
//!    hash of the row's own content, under a key drawn from OpenDP's CSPRNG
//!    ([`crate::bounding::choice_key`]), ties broken by the rows' order
//!    within the unit. The kept rows of a unit depend on that unit's rows
//!    only, so removing a unit removes at most `m` rows and changes nothing
//!    else.
//! 2. **Partition selection** for columns whose values are not public
//!    ([`Domain::Private`]): a value becomes a category of the sample only if
//!    its noisy distinct-unit count passes [`PartitionSelector`] (a unit
//!    touches at most `m` values, so G = m); everything else becomes the
//!    category *withheld*. This is where δ is spent; with δ = 0 no private
//!    value is released.
//! 3. **Noisy marginals.** Every column's histogram over its categories, and
//!    every pair's two-way histogram, gets discrete Laplace noise
//!    ([`DiscreteLaplace`]) calibrated to L1 sensitivity `m`: removing one
//!    unit removes at most `m` rows, each from exactly one cell.
//!
//! ε is split equally over the parts (selections, one-way, two-way
//! marginals; basic composition), δ equally over the selections.
//! Everything after that is post-processing of the released marginals: the
//! sample's size is the mean of the noisy one-way totals (capped), roots
//! are drawn by largest-remainder allocation of their one-way marginal,
//! and each child column, given its parent, from the two-way table fitted
//! by iterative proportional fitting (Deming and Stephan 1940) to the
//! parent's sample counts and the child's own one-way marginal. Random
//! choices there (row order) come from a seeded ChaCha generator; no noise
//! is drawn outside OpenDP's samplers.
//!
//! [`fidelity`] releases, with a separate ε, fresh noisy one- and two-way
//! marginals of the same bounded data and compares the sample with them
//! (total variation distance).

use crate::DpError;
use crate::accounting::EpsilonSplit;
use crate::noise::DiscreteLaplace;
use crate::partition::PartitionSelector;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

/// The most cells a two-way marginal may have (parent × child categories).
pub const MAX_PAIR_CELLS: usize = 1 << 20;
/// The most candidate values a private column may have.
pub const MAX_CANDIDATES: u32 = 1 << 22;

/// The categories a column's codes range over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Domain {
    /// Codes `0..n`, known without looking at the data (public keys, bins
    /// of public bounds, booleans). The caller makes null one of them.
    Public(u32),
    /// Codes `0..=candidates`: a code below `candidates` is a value seen in
    /// the data, released only if partition selection keeps it; the code
    /// `candidates` is null (always a category).
    Private(u32),
}

/// One column of the input, encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct InputColumn {
    pub name: String,
    pub domain: Domain,
    /// One code per row.
    pub codes: Vec<u32>,
}

/// The input table, in columns. Row `i` belongs to privacy unit
/// `units[i]` (a dense id; with no privacy unit, each row its own).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub units: Vec<u32>,
    /// A hash of each row's own values, independent of every other row
    /// (not of dictionary codes, which depend on the whole table): it ranks
    /// a unit's rows for bounding.
    pub row_keys: Vec<u64>,
    pub columns: Vec<InputColumn>,
}

/// What the owner sets for one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleParams {
    /// ε of the model (selections and marginals), > 0.
    pub epsilon: f64,
    /// δ of the selections of private columns, in [0, 1).
    pub delta: f64,
    /// m: rows one privacy unit may contribute (≥ 1).
    pub max_rows_per_unit: u32,
    /// k: a private value needs at least this many (noisy) units.
    pub min_units: u64,
    /// `(parent, child)` column indices: the child is drawn given the
    /// parent. A column has at most one parent; no cycles.
    pub pairs: Vec<(usize, usize)>,
    /// The most rows the sample may have.
    pub max_sample_rows: u64,
}

/// A category of a released column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The caller's code (for a private column: a selected value, or null).
    Code(u32),
    /// Private values that partition selection did not release.
    Withheld,
}

/// One column's released marginal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleasedColumn {
    pub name: String,
    pub categories: Vec<Category>,
    /// Noisy counts of bounded rows per category.
    pub counts: Vec<i128>,
    /// The discrete Laplace scale on each count.
    pub scale: f64,
    /// For a private column: the noisy unit count a value needed.
    pub selection_threshold: Option<i128>,
}

/// One pair's released two-way marginal, parent-major.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleasedPair {
    pub parent: usize,
    pub child: usize,
    pub counts: Vec<i128>,
    pub scale: f64,
}

/// The released model: everything the sample is drawn from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marginals {
    pub columns: Vec<ReleasedColumn>,
    pub pairs: Vec<ReleasedPair>,
    pub split: EpsilonSplit,
    pub delta: f64,
    pub max_rows_per_unit: u32,
}

/// The exact (noiseless) statistics a release adds noise to: what
/// neighbouring-database tests compare.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statistics {
    /// Per column: distinct bounded units per candidate code (private
    /// columns; empty for public ones).
    pub unit_counts: Vec<Vec<i128>>,
    /// Per column: bounded rows per released category.
    pub one_way: Vec<Vec<i128>>,
    /// Per pair: bounded rows per (parent, child) category, parent-major.
    pub two_way: Vec<Vec<i128>>,
}

/// For each private column, the candidate codes selection kept (sorted);
/// `None` for public columns.
pub type Selection = Vec<Option<Vec<u32>>>;

/// A generated sample: category indices (into the released column's
/// `categories`) per column, all of one length.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub columns: Vec<Vec<u32>>,
    /// Per column, the error the release states for its one-way marginal:
    /// with probability ≥ 1 − α, every category's count in the sample is
    /// within this many rows of `scale` × its count in the bounded real
    /// data (the noise's union bound over the column's categories, the
    /// spread of the noisy totals, rounding, and for a child the fit's
    /// residual).
    pub stated_error_rows: Vec<f64>,
    /// f: sample rows / the mean noisy total (1 unless the sample is capped).
    pub scale: f64,
    pub alpha: f64,
}

impl Sample {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }
}

fn check(table: &Table, params: &SampleParams) -> Result<(), DpError> {
    let n = table.units.len();
    if table.row_keys.len() != n || table.columns.iter().any(|c| c.codes.len() != n) {
        return Err(DpError::Internal("sample input columns are not aligned"));
    }
    for c in &table.columns {
        let limit = match c.domain {
            Domain::Public(k) => k,
            Domain::Private(k) if k <= MAX_CANDIDATES => k + 1,
            Domain::Private(_) => return Err(DpError::Internal("a private column has too many candidate values")),
        };
        if limit == 0 || c.codes.iter().any(|&x| x >= limit) {
            return Err(DpError::Internal("a code is outside its column's domain"));
        }
    }
    if params.max_rows_per_unit == 0 {
        return Err(DpError::InvalidContributionBound {
            name: "max_rows_per_unit",
        });
    }
    if !(params.delta >= 0.0 && params.delta < 1.0) {
        return Err(DpError::InvalidDelta(params.delta));
    }
    topological_order(table.columns.len(), &params.pairs).map(|_| ())
}

/// Columns in an order where each parent comes before its child.
fn topological_order(columns: usize, pairs: &[(usize, usize)]) -> Result<Vec<usize>, DpError> {
    let mut parent = vec![None; columns];
    for &(p, c) in pairs {
        if p >= columns || c >= columns || p == c {
            return Err(DpError::Internal(
                "a sample pair names an unknown column or a column twice",
            ));
        }
        if parent[c].replace(p).is_some() {
            return Err(DpError::Internal("a sample column has two parents"));
        }
    }
    let mut order = Vec::with_capacity(columns);
    let mut placed = vec![false; columns];
    while order.len() < columns {
        let before = order.len();
        for c in 0..columns {
            if !placed[c] && parent[c].is_none_or(|p| placed[p]) {
                placed[c] = true;
                order.push(c);
            }
        }
        if order.len() == before {
            return Err(DpError::Internal("the sample pairs form a cycle"));
        }
    }
    Ok(order)
}

/// splitmix64: the keyed row priority (not a cryptographic PRF; the DP
/// guarantee needs only that it is a function of the row and the key).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Indices of the rows kept by bounding: per unit, the `m` rows with the
/// smallest `(mix(key ^ mix(row_key)), position)`.
fn bound_rows(table: &Table, m: u32, key: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..table.units.len()).collect();
    order.sort_unstable_by_key(|&i| (table.units[i], mix(key ^ mix(table.row_keys[i])), i));
    let mut kept = Vec::with_capacity(order.len());
    let mut run = 0u32;
    for (j, &i) in order.iter().enumerate() {
        if j == 0 || table.units[order[j - 1]] != table.units[i] {
            run = 0;
        }
        if run < m {
            kept.push(i);
        }
        run += 1;
    }
    kept.sort_unstable();
    kept
}

/// The released categories of each column and the map from codes to them.
struct Coding {
    categories: Vec<Vec<Category>>,
    /// Per column: code → category index.
    index: Vec<Vec<u32>>,
}

fn coding(table: &Table, selection: &Selection) -> Result<Coding, DpError> {
    let mut categories = Vec::with_capacity(table.columns.len());
    let mut index = Vec::with_capacity(table.columns.len());
    for (c, col) in table.columns.iter().enumerate() {
        match col.domain {
            Domain::Public(k) => {
                categories.push((0..k).map(Category::Code).collect());
                index.push((0..k).collect());
            }
            Domain::Private(k) => {
                let kept = selection
                    .get(c)
                    .and_then(Option::as_ref)
                    .ok_or(DpError::Internal("a private column has no selection"))?;
                let withheld = kept.len() as u32 + 1;
                let mut map = vec![withheld; k as usize + 1];
                let mut cats: Vec<Category> = Vec::with_capacity(kept.len() + 2);
                for (j, &code) in kept.iter().enumerate() {
                    if code >= k {
                        return Err(DpError::Internal("a selected code is outside its column's candidates"));
                    }
                    map[code as usize] = j as u32;
                    cats.push(Category::Code(code));
                }
                map[k as usize] = kept.len() as u32;
                cats.push(Category::Code(k));
                cats.push(Category::Withheld);
                categories.push(cats);
                index.push(map);
            }
        }
    }
    Ok(Coding { categories, index })
}

/// Distinct bounded units per candidate code of a private column.
fn unit_counts(table: &Table, kept: &[usize], column: usize) -> Vec<i128> {
    let col = &table.columns[column];
    let Domain::Private(k) = col.domain else {
        return Vec::new();
    };
    let mut pairs: Vec<(u32, u32)> = kept
        .iter()
        .map(|&i| (col.codes[i], table.units[i]))
        .filter(|&(code, _)| code < k)
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut counts = vec![0i128; k as usize];
    for (code, _) in pairs {
        counts[code as usize] += 1;
    }
    counts
}

fn histograms(
    table: &Table,
    kept: &[usize],
    coding: &Coding,
    pairs: &[(usize, usize)],
) -> (Vec<Vec<i128>>, Vec<Vec<i128>>) {
    let one_way = table
        .columns
        .iter()
        .enumerate()
        .map(|(c, col)| {
            let mut h = vec![0i128; coding.categories[c].len()];
            for &i in kept {
                h[coding.index[c][col.codes[i] as usize] as usize] += 1;
            }
            h
        })
        .collect();
    let two_way = pairs
        .iter()
        .map(|&(p, c)| {
            let width = coding.categories[c].len();
            let mut h = vec![0i128; coding.categories[p].len() * width];
            for &i in kept {
                let a = coding.index[p][table.columns[p].codes[i] as usize] as usize;
                let b = coding.index[c][table.columns[c].codes[i] as usize] as usize;
                h[a * width + b] += 1;
            }
            h
        })
        .collect();
    (one_way, two_way)
}

fn part_labels(table: &Table, pairs: &[(usize, usize)], with_selection: bool) -> Vec<String> {
    let mut labels = Vec::new();
    if with_selection {
        for c in &table.columns {
            if matches!(c.domain, Domain::Private(_)) {
                labels.push(format!("select values of {}", c.name));
            }
        }
    }
    for c in &table.columns {
        labels.push(format!("one-way marginal of {}", c.name));
    }
    for &(p, c) in pairs {
        labels.push(format!(
            "two-way marginal of {} × {}",
            table.columns[p].name, table.columns[c].name
        ));
    }
    labels
}

fn check_pair_sizes(coding: &Coding, pairs: &[(usize, usize)]) -> Result<(), DpError> {
    for &(p, c) in pairs {
        let cells = coding.categories[p].len().saturating_mul(coding.categories[c].len());
        if cells > MAX_PAIR_CELLS {
            return Err(DpError::Internal("a two-way marginal has too many cells"));
        }
    }
    Ok(())
}

/// The noiseless statistics a release with `params` computes, given the
/// selection (in a test, the one made on the larger database), under the
/// current bounding key (fixed when noise is off).
pub fn exact_statistics(table: &Table, params: &SampleParams, selection: &Selection) -> Result<Statistics, DpError> {
    check(table, params)?;
    let kept = bound_rows(table, params.max_rows_per_unit, crate::bounding::choice_key()?);
    let coding = coding(table, selection)?;
    check_pair_sizes(&coding, &params.pairs)?;
    let unit_counts = (0..table.columns.len()).map(|c| unit_counts(table, &kept, c)).collect();
    let (one_way, two_way) = histograms(table, &kept, &coding, &params.pairs);
    Ok(Statistics {
        unit_counts,
        one_way,
        two_way,
    })
}

/// A released model with what the fidelity report needs to see again
/// (the bounded rows; never released).
pub struct Fitted<'a> {
    pub marginals: Marginals,
    pub selection: Selection,
    table: &'a Table,
    kept: Vec<usize>,
}

/// Releases the marginals of `table` with `params` (ε, δ as documented in
/// the module). Errors name the rule broken, never a value.
pub fn release<'a>(table: &'a Table, params: &SampleParams) -> Result<Fitted<'a>, DpError> {
    check(table, params)?;
    let m = params.max_rows_per_unit;
    let kept = bound_rows(table, m, crate::bounding::choice_key()?);
    let private: Vec<usize> = (0..table.columns.len())
        .filter(|&c| matches!(table.columns[c].domain, Domain::Private(_)))
        .collect();
    let split = EpsilonSplit::equal(params.epsilon, part_labels(table, &params.pairs, true))?;
    let share = params.epsilon / split.parts.len() as f64;
    let mut selection: Selection = vec![None; table.columns.len()];
    let mut thresholds = vec![None; table.columns.len()];
    for &c in &private {
        let mut kept_codes = Vec::new();
        if params.delta > 0.0 {
            let selector =
                PartitionSelector::new(m as u64, share, params.delta / private.len() as f64, params.min_units)?;
            thresholds[c] = Some(selector.threshold());
            for (code, &units) in unit_counts(table, &kept, c).iter().enumerate() {
                if selector.keep(units)? {
                    kept_codes.push(code as u32);
                }
            }
        }
        selection[c] = Some(kept_codes);
    }
    let coding = coding(table, &selection)?;
    check_pair_sizes(&coding, &params.pairs)?;
    let (one_way, two_way) = histograms(table, &kept, &coding, &params.pairs);
    let mech = DiscreteLaplace::calibrated(m as u128, share)?;
    let noisy = |h: Vec<i128>| h.into_iter().map(|x| mech.privatize(x)).collect::<Result<Vec<_>, _>>();
    let mut columns = Vec::with_capacity(table.columns.len());
    for ((c, col), h) in table.columns.iter().enumerate().zip(one_way) {
        columns.push(ReleasedColumn {
            name: col.name.clone(),
            categories: coding.categories[c].clone(),
            counts: noisy(h)?,
            scale: mech.scale(),
            selection_threshold: thresholds[c],
        });
    }
    let mut pairs = Vec::with_capacity(params.pairs.len());
    for (&(parent, child), h) in params.pairs.iter().zip(two_way) {
        pairs.push(ReleasedPair {
            parent,
            child,
            counts: noisy(h)?,
            scale: mech.scale(),
        });
    }
    let delta = if private.is_empty() { 0.0 } else { params.delta };
    Ok(Fitted {
        marginals: Marginals {
            columns,
            pairs,
            split,
            delta,
            max_rows_per_unit: m,
        },
        selection,
        table,
        kept,
    })
}

/// Non-negative noisy counts as weights (uniform when all are ≤ 0).
fn weights(counts: &[i128]) -> Vec<f64> {
    let w: Vec<f64> = counts.iter().map(|&c| c.max(0) as f64).collect();
    if w.iter().sum::<f64>() > 0.0 {
        w
    } else {
        vec![1.0; counts.len()]
    }
}

/// Splits `total` into integers proportional to `weights` (Hamilton's
/// largest-remainder method): each part is within 1 of its exact share.
fn largest_remainder(weights: &[f64], total: u64) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut parts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let assigned: u64 = parts.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    for &i in order.iter().take(total.saturating_sub(assigned) as usize) {
        parts[i] += 1;
    }
    parts
}

/// Fits `table` (rows × cols, positive) to the row and column targets by
/// iterative proportional fitting; returns the largest column residual.
fn fit_two_way(table: &mut [f64], rows: &[f64], cols: &[f64]) -> f64 {
    const ROUNDS: usize = 500;
    let width = cols.len();
    let mut residual = f64::INFINITY;
    for round in 0..ROUNDS {
        // Rows last: the parent's counts must hold exactly.
        for (r, &target) in rows.iter().enumerate() {
            let row = &mut table[r * width..(r + 1) * width];
            let s: f64 = row.iter().sum();
            if s > 0.0 {
                row.iter_mut().for_each(|x| *x *= target / s);
            }
        }
        residual = 0.0;
        for (c, &target) in cols.iter().enumerate() {
            let s: f64 = (0..rows.len()).map(|r| table[r * width + c]).sum();
            residual = f64::max(residual, (s - target).abs());
        }
        if residual < 0.01 || round + 1 == ROUNDS {
            break;
        }
        for (c, &target) in cols.iter().enumerate() {
            let s: f64 = (0..rows.len()).map(|r| table[r * width + c]).sum();
            if s > 0.0 {
                (0..rows.len()).for_each(|r| table[r * width + c] *= target / s);
            }
        }
    }
    residual
}

/// Draws a sample from released marginals (post-processing only). `seed`
/// seeds the row order; `alpha` sets the confidence of the stated errors.
pub fn synthesize(marginals: &Marginals, max_rows: u64, seed: [u8; 32], alpha: f64) -> Result<Sample, DpError> {
    let columns = marginals.columns.len();
    let pairs: Vec<(usize, usize)> = marginals.pairs.iter().map(|p| (p.parent, p.child)).collect();
    let order = topological_order(columns, &pairs)?;
    if columns == 0 {
        return Ok(Sample {
            columns: Vec::new(),
            stated_error_rows: Vec::new(),
            scale: 1.0,
            alpha,
        });
    }
    let totals: Vec<f64> = marginals
        .columns
        .iter()
        .map(|c| c.counts.iter().map(|&x| x.max(0) as f64).sum())
        .collect();
    let mean_total = totals.iter().sum::<f64>() / columns as f64;
    let rows = (mean_total.round().max(0.0) as u64).min(max_rows);
    let scale = if mean_total > 0.0 {
        rows as f64 / mean_total
    } else {
        1.0
    };
    let mut rng = ChaCha20Rng::from_seed(seed);
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); columns];
    let mut stated = vec![0.0; columns];
    for &c in &order {
        let col = &marginals.columns[c];
        let k = col.categories.len();
        let w = DiscreteLaplace::calibrated(marginals.max_rows_per_unit as u128, epsilon_of(col.scale, marginals)?)?
            .half_width(alpha / k as f64) as f64;
        let target = weights(&col.counts);
        let target_sum: f64 = target.iter().sum();
        let col_targets: Vec<f64> = target.iter().map(|x| x / target_sum * rows as f64).collect();
        let pair = marginals.pairs.iter().find(|p| p.child == c);
        match pair {
            None => {
                let counts = largest_remainder(&target, rows);
                let mut values: Vec<u32> = Vec::with_capacity(rows as usize);
                for (j, &n) in counts.iter().enumerate() {
                    values.extend(std::iter::repeat_n(j as u32, n as usize));
                }
                values.shuffle(&mut rng);
                out[c] = values;
                // Each count is within 1 of rows · ĉ_k / S_c, which is within
                // f · (w + |mean − S_c|) of f · c_k.
                stated[c] = scale * (w + (mean_total - totals[c]).abs()) + 1.5;
            }
            Some(p) => {
                let parent = &out[p.parent];
                let pk = marginals.columns[p.parent].categories.len();
                let mut by_parent: Vec<Vec<usize>> = vec![Vec::new(); pk];
                for (row, &v) in parent.iter().enumerate() {
                    by_parent[v as usize].push(row);
                }
                let row_targets: Vec<f64> = by_parent.iter().map(|r| r.len() as f64).collect();
                let mut seed_table: Vec<f64> = p.counts.iter().map(|&x| x.max(0) as f64 + 0.5).collect();
                if seed_table.len() != pk * k {
                    return Err(DpError::Internal("a two-way marginal does not match its columns"));
                }
                let residual = fit_two_way(&mut seed_table, &row_targets, &col_targets);
                let mut values = vec![0u32; rows as usize];
                for (i, members) in by_parent.iter_mut().enumerate() {
                    let counts = largest_remainder(&seed_table[i * k..(i + 1) * k], members.len() as u64);
                    members.shuffle(&mut rng);
                    let mut next = members.iter();
                    for (j, &n) in counts.iter().enumerate() {
                        for row in next.by_ref().take(n as usize) {
                            values[*row] = j as u32;
                        }
                    }
                }
                out[c] = values;
                // As a root, plus the fit's column residual and < 1 row of
                // rounding per parent category.
                stated[c] = scale * (w + (mean_total - totals[c]).abs()) + 1.5 + pk as f64 + residual;
            }
        }
    }
    Ok(Sample {
        columns: out,
        stated_error_rows: stated,
        scale,
        alpha,
    })
}

/// The ε one part got, from the released scale (`m / ε`).
fn epsilon_of(scale: f64, marginals: &Marginals) -> Result<f64, DpError> {
    let eps = marginals.max_rows_per_unit as f64 / scale;
    if eps.is_finite() && eps > 0.0 {
        Ok(eps)
    } else {
        Err(DpError::Internal("a released marginal has no valid scale"))
    }
}

/// How close a sample's marginals are to the real data's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FidelityReport {
    pub split: EpsilonSplit,
    pub columns: Vec<ColumnFidelity>,
    pub pairs: Vec<PairFidelity>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnFidelity {
    pub name: String,
    /// Total variation distance between the sample's shares and the noisy
    /// real shares (0: identical, 1: disjoint).
    pub total_variation: f64,
    /// Per category: the sample's rows and the real data's noisy rows.
    pub sample_counts: Vec<u64>,
    pub real_counts_noisy: Vec<i128>,
    /// The discrete Laplace scale of the noisy real counts.
    pub scale: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairFidelity {
    pub parent: String,
    pub child: String,
    pub total_variation: f64,
    pub scale: f64,
}

fn total_variation(sample: &[u64], real: &[i128]) -> f64 {
    let s: f64 = sample.iter().sum::<u64>() as f64;
    let r = weights(real);
    let rs: f64 = r.iter().sum();
    if s == 0.0 {
        return 1.0;
    }
    0.5 * sample
        .iter()
        .zip(&r)
        .map(|(&a, &b)| (a as f64 / s - b / rs).abs())
        .sum::<f64>()
}

/// Releases, with `epsilon` (split equally over every column's one-way and
/// every pair's two-way marginal, sensitivity m each), fresh noisy
/// marginals of the same bounded rows the model saw, and compares the
/// sample with them. What it shows depends on the data only through those
/// noisy counts and the (already released) sample.
pub fn fidelity(fitted: &Fitted<'_>, sample: &Sample, epsilon: f64) -> Result<FidelityReport, DpError> {
    let table = fitted.table;
    let m = fitted.marginals.max_rows_per_unit;
    let pairs: Vec<(usize, usize)> = fitted.marginals.pairs.iter().map(|p| (p.parent, p.child)).collect();
    let split = EpsilonSplit::equal(epsilon, part_labels(table, &pairs, false))?;
    let share = epsilon / split.parts.len() as f64;
    let mech = DiscreteLaplace::calibrated(m as u128, share)?;
    let coding = coding(table, &fitted.selection)?;
    let (one_way, two_way) = histograms(table, &fitted.kept, &coding, &pairs);
    let sample_hist = |c: usize| {
        let mut h = vec![0u64; coding.categories[c].len()];
        for &v in sample.columns.get(c).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(x) = h.get_mut(v as usize) {
                *x += 1;
            }
        }
        h
    };
    let mut columns = Vec::new();
    for (c, exact) in one_way.into_iter().enumerate() {
        let noisy: Vec<i128> = exact.into_iter().map(|x| mech.privatize(x)).collect::<Result<_, _>>()?;
        let counts = sample_hist(c);
        columns.push(ColumnFidelity {
            name: table.columns[c].name.clone(),
            total_variation: total_variation(&counts, &noisy),
            sample_counts: counts,
            real_counts_noisy: noisy,
            scale: mech.scale(),
        });
    }
    let mut out_pairs = Vec::new();
    for (&(p, c), exact) in pairs.iter().zip(two_way) {
        let noisy: Vec<i128> = exact.into_iter().map(|x| mech.privatize(x)).collect::<Result<_, _>>()?;
        let width = coding.categories[c].len();
        let mut counts = vec![0u64; noisy.len()];
        for (a, b) in sample.columns[p].iter().zip(&sample.columns[c]) {
            if let Some(x) = counts.get_mut(*a as usize * width + *b as usize) {
                *x += 1;
            }
        }
        out_pairs.push(PairFidelity {
            parent: table.columns[p].name.clone(),
            child: table.columns[c].name.clone(),
            total_variation: total_variation(&counts, &noisy),
            scale: mech.scale(),
        });
    }
    Ok(FidelityReport {
        split,
        columns,
        pairs: out_pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of `units` units with 1..=3 rows each: a skewed 8-value
    /// public column, a 3-value public column depending on it, and a
    /// private column of 30 candidate values (one of them rare).
    pub(crate) fn table(units: u32) -> Table {
        let mut t = Table {
            columns: vec![
                InputColumn {
                    name: "district".into(),
                    domain: Domain::Public(8),
                    codes: Vec::new(),
                },
                InputColumn {
                    name: "outcome".into(),
                    domain: Domain::Public(3),
                    codes: Vec::new(),
                },
                InputColumn {
                    name: "month".into(),
                    domain: Domain::Private(30),
                    codes: Vec::new(),
                },
            ],
            ..Table::default()
        };
        let mut state = 12345u64;
        let mut next = |n: u64| {
            state = mix(state);
            state % n
        };
        for u in 0..units {
            for r in 0..=next(3) {
                let district = [0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7][next(11) as usize] as u32;
                let outcome = if district < 2 {
                    next(2) as u32
                } else {
                    (1 + next(2)) as u32
                };
                let month = if u == 0 { 29 } else { next(12) as u32 };
                t.units.push(u);
                t.row_keys.push(mix(((u as u64) << 8) | r));
                t.columns[0].codes.push(district);
                t.columns[1].codes.push(outcome);
                t.columns[2].codes.push(month);
            }
        }
        t
    }

    fn params(epsilon: f64) -> SampleParams {
        SampleParams {
            epsilon,
            delta: 1e-6,
            max_rows_per_unit: 3,
            min_units: 5,
            pairs: vec![(0, 1)],
            max_sample_rows: 1_000_000,
        }
    }

    /// Statistical test at fixed sizes (10 000 units, about 20 000 rows,
    /// no unit above the bound) and ε = 1: the stated error at α = 1e-6 per
    /// column is small (under 3% of the rows, where a sampler ignoring the
    /// data would be off by 10 points and more), and every category's
    /// count in the sample is within the error stated at α = 1e-10 per
    /// column (the same sample: α only sets the stated error).
    ///
    /// Failure probability per run, from the noise's scale (b = 3 / 0.2 =
    /// 15 rows on every count): the stated errors are the discrete
    /// Laplace's exact tail over each column's categories, so the counts
    /// miss them with probability ≤ 3 · 1e-10 (at α = 1e-6 it would be up to
    /// 3e-6, too often for CI); the rare month (one unit) is released with
    /// probability ≤ δ / 3 = 3.3e-11 at δ = 1e-10, the common months (about
    /// 1 600 units each) miss the threshold (about 350) only on noise beyond 80
    /// scales; the dependence check below fails with probability ≤ 5e-11.
    /// In all, below 1e-9.
    #[test]
    fn one_way_marginals_are_within_the_stated_error() {
        let t = table(10_000);
        let mut p = params(1.0);
        p.delta = 1e-10;
        let fitted = release(&t, &p).expect("release");
        let sample = synthesize(&fitted.marginals, p.max_sample_rows, [7; 32], 1e-6).expect("sample");
        let strict = synthesize(&fitted.marginals, p.max_sample_rows, [7; 32], 1e-10).expect("sample");
        assert_eq!(sample.columns, strict.columns, "α changes the stated error only");
        let coding = coding(&t, &fitted.selection).expect("coding");
        let (real, _) = histograms(&t, &(0..t.units.len()).collect::<Vec<_>>(), &coding, &[]);
        let n = t.units.len() as f64;
        for (c, real_counts) in real.iter().enumerate() {
            let mut counts = vec![0i128; coding.categories[c].len()];
            for &v in &sample.columns[c] {
                counts[v as usize] += 1;
            }
            let err = sample.stated_error_rows[c];
            assert!(err < 0.03 * n, "column {c}: stated error {err} of {n} rows");
            let err = strict.stated_error_rows[c];
            for (k, (&s, &r)) in counts.iter().zip(real_counts).enumerate() {
                assert!(
                    (s as f64 - sample.scale * r as f64).abs() <= err,
                    "column {c} category {k}: sample {s}, real {r}, stated ±{err}"
                );
            }
        }
        // The twelve common months are released, the rare one is not.
        let months = fitted.selection[2].as_ref().expect("selection");
        assert_eq!(months, &(0..12).collect::<Vec<u32>>());
        // The dependence of outcome on district is kept: outcome 0 only
        // appears (beyond noise) with districts 0 and 1 (about 4 500 rows).
        // Elsewhere its six cells are real zeros released as max(0, noise)
        // + 0.5 at scale b, scaled by the fit (a factor within a few % of 1
        // here) and rounded (< 1 row each): their sum is dominated by a
        // Gamma(6, b) and exceeds 35·b with probability e^-35 · Σ_{i<6}
        // 35^i / i! ≈ 3.2e-10 (exactly, for the discrete noise: 500 rows with
        // probability 4.6e-11), so 40·b (600 rows) leaves room for the
        // seeds, rounding and fit. A sampler ignoring the dependence puts
        // about 2 500 rows there. (Not `outside · 20 < inside`: six
        // positive noise parts pass 224 rows with probability 2e-4.)
        let mut with_zero = [0u64; 8];
        for (d, o) in sample.columns[0].iter().zip(&sample.columns[1]) {
            if *o == 0 {
                with_zero[*d as usize] += 1;
            }
        }
        let inside = with_zero[0] + with_zero[1];
        let outside: u64 = with_zero[2..].iter().sum();
        let b = fitted.marginals.pairs[0].scale;
        assert!((b - 15.0).abs() < 1e-9, "the pair's noise scale {b}");
        assert!(
            (outside as f64) < 40.0 * b && inside > 4_000,
            "outcome 0 with districts 0–1: {inside}, elsewhere: {outside}"
        );
        let report = fidelity(&fitted, &sample, 0.5).expect("fidelity");
        for c in &report.columns {
            assert!(c.total_variation < 0.05, "{}: TVD {}", c.name, c.total_variation);
        }
        assert!(report.pairs[0].total_variation < 0.1);
    }

    #[test]
    fn bounding_keeps_at_most_m_rows_per_unit_chosen_by_own_rows() {
        let t = table(200);
        let kept = bound_rows(&t, 1, 99);
        let mut per_unit = std::collections::HashMap::new();
        for &i in &kept {
            *per_unit.entry(t.units[i]).or_insert(0) += 1;
        }
        assert!(per_unit.values().all(|&n| n == 1));
        assert_eq!(per_unit.len(), 200);
        // Removing unit 17 leaves every other unit's kept rows as they were.
        let keep: Vec<usize> = (0..t.units.len()).filter(|&i| t.units[i] != 17).collect();
        let less = Table {
            units: keep.iter().map(|&i| t.units[i]).collect(),
            row_keys: keep.iter().map(|&i| t.row_keys[i]).collect(),
            columns: t
                .columns
                .iter()
                .map(|c| InputColumn {
                    codes: keep.iter().map(|&i| c.codes[i]).collect(),
                    ..c.clone()
                })
                .collect(),
        };
        let kept_less: Vec<u64> = bound_rows(&less, 1, 99).iter().map(|&i| less.row_keys[i]).collect();
        let kept_all: Vec<u64> = kept
            .iter()
            .filter(|&&i| t.units[i] != 17)
            .map(|&i| t.row_keys[i])
            .collect();
        assert_eq!(kept_less, kept_all);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let t = table(10);
        let mut p = params(1.0);
        p.pairs = vec![(0, 1), (1, 0)];
        assert!(release(&t, &p).is_err(), "a cycle");
        p.pairs = vec![(0, 1), (2, 1)];
        assert!(release(&t, &p).is_err(), "two parents");
        p.pairs = vec![(0, 5)];
        assert!(release(&t, &p).is_err(), "unknown column");
        let mut bad = t.clone();
        bad.columns[0].codes[0] = 8;
        assert!(release(&bad, &params(1.0)).is_err(), "code outside the domain");
        assert!(release(&t, &params(0.0)).is_err(), "ε = 0");
        let mut p = params(1.0);
        p.max_rows_per_unit = 0;
        assert!(release(&t, &p).is_err());
    }

    #[test]
    fn no_delta_releases_no_private_value_and_caps_hold() {
        let t = table(2_000);
        let mut p = params(1.0);
        p.delta = 0.0;
        p.max_sample_rows = 500;
        let fitted = release(&t, &p).expect("release");
        assert_eq!(fitted.selection[2], Some(Vec::new()));
        assert_eq!(
            fitted.marginals.columns[2].categories,
            [Category::Code(30), Category::Withheld]
        );
        let sample = synthesize(&fitted.marginals, p.max_sample_rows, [1; 32], 0.05).expect("sample");
        assert_eq!(sample.rows(), 500);
        assert!(sample.columns.iter().all(|c| c.len() == 500));
    }

    #[test]
    fn largest_remainder_sums_to_the_total_and_stays_within_one() {
        let w = [3.0, 1.0, 1.0, 0.0, 2.5];
        for total in [0u64, 1, 7, 100, 12_345] {
            let parts = largest_remainder(&w, total);
            assert_eq!(parts.iter().sum::<u64>(), total);
            for (p, x) in parts.iter().zip(w) {
                assert!((*p as f64 - x / 7.5 * total as f64).abs() < 1.0);
            }
        }
    }
}
