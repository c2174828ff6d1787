//! The sandbox's scalar functions as portable descriptions, so that a
//! finished physical plan can be executed in another process (the
//! distributed mode's executors) with exactly the functions it was
//! planned with.
//!
//! Every function in a job's plan is described by *what it is*: its kind
//! and its parameters (the per-job choice key, the row cap's bounds, a
//! desensitization rule). A function is never rebuilt from its name alone:
//! a name-based lookup on an executor would turn `TotalFunction(abs)`
//! (which gives NULL where `abs` fails) into DataFusion's `abs` (which
//! fails the job on data), a data-dependent failure. DataFusion's own
//! functions are described as `builtin` and rebuilt from this crate's
//! fixed list of functions a session registers ([`crate::session::scalar_functions`]),
//! the same code on both sides.
//!
//! A job's WebAssembly row function has no portable description: its
//! module lives in the coordinator's memory, and [`describe`] refuses it
//! with the rule `distributed-row-function`.

use crate::SqlError;
use crate::contribution::functions::{ChoicePriority, RowCap, UnitHash};
use crate::contribution::public_set::{InPublicSets, KeepIf, KeySet};
use crate::desensitize::function::Desensitize;
use crate::grid::GridValue;
use crate::guest::GuestRaw;
use crate::total::{CapStrings, SafeArithmetic, TotalFunction};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{Operator, ScalarUDF};
use sandbox_dp::fixed_point::Quantizer;
use sandbox_policy::Desensitization;
use sandbox_policy::desensitize::DateUnit;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU64;
use std::sync::Arc;

/// What a scalar function of a job's plan is, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PortableFunction {
    /// One of the functions a session registers, by its name.
    Builtin { name: String },
    /// [`ChoicePriority`] under the job's choice key.
    ChoicePriority { key: u64 },
    /// [`UnitHash`] under the job's unit-hash key.
    UnitHash { key: u64 },
    /// [`RowCap`] with its bounds per kept row.
    RowCap { floor: i64, ceiling: i64 },
    /// The total arithmetic operator (`None`: unary minus).
    SafeArithmetic { op: Option<ArithmeticOp> },
    /// String capping around `||`.
    CapStrings,
    /// A function made total (NULL where it would fail).
    Total { inner: Box<PortableFunction> },
    /// The integer grid of a bounded measure ([`crate::grid`]); the
    /// bounds, centre and quantum travel as IEEE 754 bit patterns.
    Grid {
        lower_bits: u64,
        upper_bits: u64,
        center_bits: u64,
        quantum_bits: u64,
        max_abs: i64,
    },
    /// Whether every group key lies in its public key set (each set: its
    /// strings and its integers).
    InPublicSets { sets: Vec<(Vec<String>, Vec<i64>)> },
    /// A value kept where a flag is true, NULL elsewhere.
    KeepIf,
    /// One column's desensitization rule on a column of `column_type`.
    Desensitize {
        rule: PortableRule,
        column_type: ColumnType,
    },
}

/// The operators [`SafeArithmetic`] evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArithmeticOp {
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
}

/// The column types a desensitization rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Int64,
    Float64,
    Date32,
    Utf8,
}

/// A [`Desensitization`] rule, field for field. Band edges travel as
/// their IEEE 754 bit patterns: a decimal rendering can come back one
/// step off (red team 2026-12-01: `99.99999999999999` read back as
/// `100.0` moved rows between bands on the executors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortableRule {
    Band(u64),
    BandsBits(Vec<u64>),
    TruncateToMonth,
    TruncateToYear,
    TruncateChars(u32),
    MaskKeepFirst(u32),
    MaskKeepLast(u32),
}

fn unportable(what: &str) -> SqlError {
    SqlError::refused(
        "distributed-row-function",
        format!(
            "`{what}` cannot run on the cluster's executors: WebAssembly row functions run only in the embedded mode \
             (run the job on a sandbox without `--ballista`)"
        ),
    )
}

/// Describes `udf`. Errors: a WebAssembly row function or any function
/// this crate does not know is refused (`distributed-row-function`).
pub fn describe(udf: &ScalarUDF) -> Result<PortableFunction, SqlError> {
    let inner = udf.inner().as_ref();
    if let Some(f) = inner.downcast_ref::<ChoicePriority>() {
        return Ok(PortableFunction::ChoicePriority { key: f.key() });
    }
    if let Some(f) = inner.downcast_ref::<UnitHash>() {
        return Ok(PortableFunction::UnitHash { key: f.key() });
    }
    if let Some(f) = inner.downcast_ref::<RowCap>() {
        let (floor, ceiling) = f.bounds();
        return Ok(PortableFunction::RowCap { floor, ceiling });
    }
    if let Some(f) = inner.downcast_ref::<SafeArithmetic>() {
        let op = match f.operator() {
            None => None,
            Some(Operator::Plus) => Some(ArithmeticOp::Plus),
            Some(Operator::Minus) => Some(ArithmeticOp::Minus),
            Some(Operator::Multiply) => Some(ArithmeticOp::Multiply),
            Some(Operator::Divide) => Some(ArithmeticOp::Divide),
            Some(Operator::Modulo) => Some(ArithmeticOp::Modulo),
            Some(other) => return Err(SqlError::Internal(format!("total arithmetic with operator {other}"))),
        };
        return Ok(PortableFunction::SafeArithmetic { op });
    }
    if let Some(f) = inner.downcast_ref::<GuestRaw>() {
        return Err(unportable(f.function().name()));
    }
    if inner.is::<KeepIf>() {
        return Ok(PortableFunction::KeepIf);
    }
    if let Some(f) = inner.downcast_ref::<InPublicSets>() {
        return Ok(PortableFunction::InPublicSets {
            sets: f
                .sets()
                .iter()
                .map(|s| (s.strings().to_vec(), s.ints().to_vec()))
                .collect(),
        });
    }
    if let Some(f) = inner.downcast_ref::<GridValue>() {
        let g = f.quantizer();
        return Ok(PortableFunction::Grid {
            lower_bits: g.lower.to_bits(),
            upper_bits: g.upper.to_bits(),
            center_bits: g.center.to_bits(),
            quantum_bits: g.quantum.to_bits(),
            max_abs: g.max_abs,
        });
    }
    if inner.downcast_ref::<CapStrings>().is_some() {
        return Ok(PortableFunction::CapStrings);
    }
    if let Some(f) = inner.downcast_ref::<TotalFunction>() {
        return Ok(PortableFunction::Total {
            inner: Box::new(describe(f.inner())?),
        });
    }
    if let Some(f) = inner.downcast_ref::<Desensitize>() {
        let (rule, data_type) = f.parts();
        let column_type = match data_type {
            DataType::Int64 => ColumnType::Int64,
            DataType::Float64 => ColumnType::Float64,
            DataType::Date32 => ColumnType::Date32,
            DataType::Utf8 => ColumnType::Utf8,
            other => return Err(SqlError::Internal(format!("desensitization of a {other} column"))),
        };
        let rule = match rule.clone() {
            Desensitization::Band(w) => PortableRule::Band(w.get()),
            Desensitization::Bands(edges) => PortableRule::BandsBits(edges.iter().map(|e| e.to_bits()).collect()),
            Desensitization::TruncateDate(DateUnit::Month) => PortableRule::TruncateToMonth,
            Desensitization::TruncateDate(DateUnit::Year) => PortableRule::TruncateToYear,
            Desensitization::TruncateChars(n) => PortableRule::TruncateChars(n),
            Desensitization::MaskKeepFirst(n) => PortableRule::MaskKeepFirst(n),
            Desensitization::MaskKeepLast(n) => PortableRule::MaskKeepLast(n),
        };
        return Ok(PortableFunction::Desensitize { rule, column_type });
    }
    // A built-in only if it is the very function a session registers
    // under that name (a job function could share a name with nothing
    // registered, but never with a built-in: registration refuses that).
    match crate::session::scalar_function(udf.name()) {
        Some(b) if b.as_ref() == udf => Ok(PortableFunction::Builtin {
            name: udf.name().to_string(),
        }),
        _ => Err(unportable(udf.name())),
    }
}

/// Rebuilds the function `f` describes. Errors: an unknown built-in name
/// or a rule that does not apply to its column type.
pub fn rebuild(f: &PortableFunction) -> Result<Arc<ScalarUDF>, SqlError> {
    let bad = |what: String| SqlError::Internal(format!("cannot rebuild a plan's function: {what}"));
    Ok(match f {
        PortableFunction::Builtin { name } => {
            crate::session::scalar_function(name).ok_or_else(|| bad(format!("no built-in `{name}`")))?
        }
        PortableFunction::ChoicePriority { key } => Arc::new(ScalarUDF::new_from_impl(ChoicePriority::new(*key))),
        PortableFunction::UnitHash { key } => Arc::new(ScalarUDF::new_from_impl(UnitHash::new(*key))),
        PortableFunction::RowCap { floor, ceiling } => {
            if floor > ceiling {
                return Err(bad(format!("row cap with floor {floor} above ceiling {ceiling}")));
            }
            Arc::new(ScalarUDF::new_from_impl(RowCap::from_bounds(*floor, *ceiling)))
        }
        PortableFunction::SafeArithmetic { op } => {
            let op = op.map(|op| match op {
                ArithmeticOp::Plus => Operator::Plus,
                ArithmeticOp::Minus => Operator::Minus,
                ArithmeticOp::Multiply => Operator::Multiply,
                ArithmeticOp::Divide => Operator::Divide,
                ArithmeticOp::Modulo => Operator::Modulo,
            });
            Arc::new(ScalarUDF::new_from_impl(SafeArithmetic::for_operator(op)))
        }
        PortableFunction::Grid {
            lower_bits,
            upper_bits,
            center_bits,
            quantum_bits,
            max_abs,
        } => {
            let grid = Quantizer {
                lower: f64::from_bits(*lower_bits),
                upper: f64::from_bits(*upper_bits),
                center: f64::from_bits(*center_bits),
                quantum: f64::from_bits(*quantum_bits),
                max_abs: *max_abs,
            };
            let valid = grid.lower.is_finite()
                && grid.upper.is_finite()
                && grid.lower < grid.upper
                && grid.center.is_finite()
                && grid.quantum.is_finite()
                && grid.quantum > 0.0
                && grid.max_abs > 0;
            if !valid {
                return Err(bad(format!("grid {grid:?}")));
            }
            Arc::new(ScalarUDF::new_from_impl(GridValue::new(grid)))
        }
        PortableFunction::KeepIf => Arc::new(ScalarUDF::new_from_impl(KeepIf::new())),
        PortableFunction::InPublicSets { sets } => Arc::new(ScalarUDF::new_from_impl(InPublicSets::new(
            sets.iter()
                .map(|(strings, ints)| KeySet::new(strings.iter().cloned(), ints.iter().copied()))
                .collect(),
        ))),
        PortableFunction::CapStrings => Arc::new(ScalarUDF::new_from_impl(CapStrings::new())),
        PortableFunction::Total { inner } => Arc::new(ScalarUDF::new_from_impl(TotalFunction::new(rebuild(inner)?))),
        PortableFunction::Desensitize { rule, column_type } => {
            let rule = match rule {
                PortableRule::Band(w) => {
                    Desensitization::Band(NonZeroU64::new(*w).ok_or_else(|| bad("band 0".into()))?)
                }
                PortableRule::BandsBits(bits) => {
                    Desensitization::Bands(bits.iter().map(|b| f64::from_bits(*b)).collect())
                }
                PortableRule::TruncateToMonth => Desensitization::TruncateDate(DateUnit::Month),
                PortableRule::TruncateToYear => Desensitization::TruncateDate(DateUnit::Year),
                PortableRule::TruncateChars(n) => Desensitization::TruncateChars(*n),
                PortableRule::MaskKeepFirst(n) => Desensitization::MaskKeepFirst(*n),
                PortableRule::MaskKeepLast(n) => Desensitization::MaskKeepLast(*n),
            };
            let data_type = match column_type {
                ColumnType::Int64 => DataType::Int64,
                ColumnType::Float64 => DataType::Float64,
                ColumnType::Date32 => DataType::Date32,
                ColumnType::Utf8 => DataType::Utf8,
            };
            let f = Desensitize::new(&rule, &data_type)
                .ok_or_else(|| bad(format!("rule {rule} on a {data_type} column")))?;
            Arc::new(ScalarUDF::new_from_impl(f))
        }
    })
}

/// [`describe`] as bytes (JSON), for a plan codec. The bytes are decoded
/// again here and must rebuild exactly `udf` (same kind, same parameters
/// bit for bit): a description that would not survive the trip is an
/// error before anything runs, never a different function on an executor.
pub fn encode(udf: &ScalarUDF) -> Result<Vec<u8>, SqlError> {
    let bytes = serde_json::to_vec(&describe(udf)?).map_err(|e| SqlError::Internal(e.to_string()))?;
    if decode(&bytes)?.as_ref() != udf {
        return Err(SqlError::Internal(format!(
            "`{}` does not rebuild from its description as the same function",
            udf.name()
        )));
    }
    Ok(bytes)
}

/// [`rebuild`] from [`encode`]'s bytes.
pub fn decode(bytes: &[u8]) -> Result<Arc<ScalarUDF>, SqlError> {
    let f: PortableFunction =
        serde_json::from_slice(bytes).map_err(|e| SqlError::Internal(format!("cannot read a plan's function: {e}")))?;
    rebuild(&f)
}

#[cfg(test)]
mod tests;
