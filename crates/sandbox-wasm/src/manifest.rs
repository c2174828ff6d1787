//! The guest's manifest: what it declares (UDFs, an optional analysis) and
//! the public bounds of every output, parsed and checked at admission.
//!
//! ```json
//! {"abi":1,
//!  "udfs":[{"name":"risk_score","args":["float64","float64"],"returns":"float64","bounds":[0.0,1.0]}],
//!  "analysis":{"name":"default_model","outputs":[{"name":"intercept","lower":-10.0,"upper":10.0}]}}
//! ```

use crate::error::WasmError;
use arrow::datatypes::DataType;
use serde::Deserialize;
use std::collections::HashSet;

/// Most arguments a UDF may declare (a fixed rule of ABI version 1).
pub const MAX_UDF_ARGS: usize = 32;
/// Longest UDF, analysis or output name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The ABI version the guest was built for (always `sandbox_abi::ABI_VERSION`).
    pub abi: u32,
    /// Declared UDFs, in manifest order.
    pub udfs: Vec<UdfSpec>,
    /// The declared analysis, if any.
    pub analysis: Option<AnalysisSpec>,
}

impl Manifest {
    /// The UDF named `name`.
    pub fn udf(&self, name: &str) -> Option<&UdfSpec> {
        self.udfs.iter().find(|u| u.name == name)
    }
}

/// A row-level function: Arrow columns in, one Float64 per row out.
#[derive(Debug, Clone, PartialEq)]
pub struct UdfSpec {
    /// SQL name: lowercase ASCII letters, digits and `_`, not starting with a
    /// digit; the export is `sandbox_udf_<name>`.
    pub name: String,
    /// Argument types, in order.
    pub args: Vec<ArgType>,
    /// Public bounds of the result; the host clamps every value to them.
    pub bounds: Bounds,
}

/// An analysis block: a batch in, a fixed-size vector of f64 out.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisSpec {
    /// Name of the analysis.
    pub name: String,
    /// One entry per output coordinate; the dimension is `outputs.len()`.
    pub outputs: Vec<OutputSpec>,
}

/// One output coordinate of an analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    /// Name of the coordinate.
    pub name: String,
    /// Public bounds; the host clamps the value to them.
    pub bounds: Bounds,
}

/// Finite public bounds, `lower < upper`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Smallest value released.
    pub lower: f64,
    /// Largest value released.
    pub upper: f64,
}

impl Bounds {
    /// Clamps `v` into the bounds; NaN stays NaN (the caller decides what a
    /// NaN becomes) and infinities become the nearer bound.
    pub fn clamp(&self, v: f64) -> f64 {
        if v.is_nan() {
            v
        } else if v < self.lower {
            self.lower
        } else if v > self.upper {
            self.upper
        } else {
            v
        }
    }
}

/// A UDF argument type, spelled as in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgType {
    /// `"float64"`: Arrow Float64.
    Float64,
    /// `"float32"`: Arrow Float32.
    Float32,
    /// `"int64"`: Arrow Int64.
    Int64,
    /// `"int32"`: Arrow Int32.
    Int32,
    /// `"boolean"`: Arrow Boolean.
    Boolean,
    /// `"utf8"`: Arrow Utf8.
    Utf8,
}

impl ArgType {
    /// The Arrow type of a column passed for this argument.
    pub fn data_type(&self) -> DataType {
        match self {
            ArgType::Float64 => DataType::Float64,
            ArgType::Float32 => DataType::Float32,
            ArgType::Int64 => DataType::Int64,
            ArgType::Int32 => DataType::Int32,
            ArgType::Boolean => DataType::Boolean,
            ArgType::Utf8 => DataType::Utf8,
        }
    }
}

// Wire shapes: unknown fields are ignored so the SDK may add descriptive ones.
#[derive(Deserialize)]
struct RawManifest {
    abi: u32,
    #[serde(default)]
    udfs: Vec<RawUdf>,
    #[serde(default)]
    analysis: Option<RawAnalysis>,
}

#[derive(Deserialize)]
struct RawUdf {
    name: String,
    args: Vec<ArgType>,
    returns: String,
    bounds: (f64, f64),
}

#[derive(Deserialize)]
struct RawAnalysis {
    name: String,
    outputs: Vec<RawOutput>,
}

#[derive(Deserialize)]
struct RawOutput {
    name: String,
    lower: f64,
    upper: f64,
}

/// Parses and checks a manifest read from a guest.
pub(crate) fn parse(bytes: &[u8], max_analysis_outputs: usize) -> Result<Manifest, WasmError> {
    let bad = |msg: String| Err(WasmError::InvalidManifest(msg));
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return bad(format!("it is not UTF-8 ({e})")),
    };
    let raw: RawManifest = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return bad(format!("it is not the expected JSON ({e})")),
    };
    if raw.abi != sandbox_abi::ABI_VERSION {
        return bad(format!(
            "it declares ABI version {}, but this sandbox runs version {}; rebuild with a matching sandbox-sdk",
            raw.abi,
            sandbox_abi::ABI_VERSION
        ));
    }
    let mut names = HashSet::new();
    let mut udfs = Vec::with_capacity(raw.udfs.len());
    for udf in raw.udfs {
        check_udf_name(&udf.name)?;
        if !names.insert(udf.name.clone()) {
            return bad(format!("UDF `{}` is declared twice", udf.name));
        }
        if udf.args.is_empty() || udf.args.len() > MAX_UDF_ARGS {
            return bad(format!(
                "UDF `{}` has {} arguments; it must have between 1 and {MAX_UDF_ARGS}",
                udf.name,
                udf.args.len()
            ));
        }
        if udf.returns != "float64" {
            return bad(format!(
                "UDF `{}` returns `{}`; UDFs must return `float64`",
                udf.name, udf.returns
            ));
        }
        let bounds = check_bounds(&format!("UDF `{}`", udf.name), udf.bounds.0, udf.bounds.1)?;
        udfs.push(UdfSpec {
            name: udf.name,
            args: udf.args,
            bounds,
        });
    }
    let analysis = match raw.analysis {
        None => None,
        Some(a) => {
            check_label("analysis name", &a.name)?;
            if a.outputs.is_empty() || a.outputs.len() > max_analysis_outputs {
                return bad(format!(
                    "analysis `{}` declares {} outputs; it must declare between 1 and {max_analysis_outputs}",
                    a.name,
                    a.outputs.len()
                ));
            }
            let mut seen = HashSet::new();
            let mut outputs = Vec::with_capacity(a.outputs.len());
            for o in a.outputs {
                check_label("output name", &o.name)?;
                if !seen.insert(o.name.clone()) {
                    return bad(format!("output `{}` is declared twice", o.name));
                }
                let bounds = check_bounds(&format!("output `{}`", o.name), o.lower, o.upper)?;
                outputs.push(OutputSpec { name: o.name, bounds });
            }
            Some(AnalysisSpec { name: a.name, outputs })
        }
    };
    if udfs.is_empty() && analysis.is_none() {
        return bad("it declares neither a UDF nor an analysis".into());
    }
    Ok(Manifest {
        abi: raw.abi,
        udfs,
        analysis,
    })
}

fn check_bounds(what: &str, lower: f64, upper: f64) -> Result<Bounds, WasmError> {
    if !lower.is_finite() || !upper.is_finite() || lower >= upper {
        return Err(WasmError::InvalidManifest(format!(
            "{what} has bounds [{lower}, {upper}]; bounds must be finite with lower < upper"
        )));
    }
    Ok(Bounds { lower, upper })
}

// UDF names become SQL function names, which SQL folds to lowercase.
fn check_udf_name(name: &str) -> Result<(), WasmError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(WasmError::InvalidManifest(format!(
            "UDF name `{}` is not allowed: use 1 to {MAX_NAME_LEN} lowercase ASCII letters, digits or `_`, \
             not starting with a digit",
            name.escape_default()
        )))
    }
}

fn check_label(what: &str, name: &str) -> Result<(), WasmError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(WasmError::InvalidManifest(format!(
            "{what} `{}` is not allowed: use 1 to {MAX_NAME_LEN} ASCII letters, digits, `_`, `-` or `.`",
            name.escape_default()
        )))
    }
}
