//! Static checks of a module's bytes before anything runs: imports, required
//! exports and their signatures, and declared memory and table sizes.
//!
//! Runs after `Module::validate` (so the bytes parse) and, except for
//! signature checks, before compilation (so a refused module costs no
//! compile time).

use crate::config::{RuntimeConfig, WASM_PAGE_BYTES};
use crate::error::WasmError;
use sandbox_abi::{EXPORT_ALLOC, EXPORT_DEALLOC, EXPORT_MANIFEST, EXPORT_MEMORY, IMPORT_MODULE, UDF_PREFIX};
use std::collections::HashMap;
use wasmtime::wasmparser::{ExternalKind, Parser, Payload};
use wasmtime::{ExternType, Module, ValType};

/// Host functions a guest may import from module `sandbox`. Empty in ABI
/// version 1: guests compute on their input and nothing else.
pub const ALLOWED_HOST_IMPORTS: &[&str] = &[];

/// What the static pass learned about the module.
pub(crate) struct Inspection {
    exports: HashMap<String, ExternalKind>,
}

impl Inspection {
    pub(crate) fn has_func(&self, name: &str) -> bool {
        matches!(
            self.exports.get(name),
            Some(ExternalKind::Func | ExternalKind::FuncExact)
        )
    }

    /// Exported names that look like UDFs (for the manifest cross-check).
    pub(crate) fn udf_exports(&self) -> impl Iterator<Item = &str> {
        self.exports.keys().filter_map(|n| n.strip_prefix(UDF_PREFIX))
    }
}

fn invalid(e: impl std::fmt::Display) -> WasmError {
    WasmError::InvalidModule(e.to_string())
}

/// Walks the module's sections; `bytes` must already have passed validation.
pub(crate) fn inspect(bytes: &[u8], config: &RuntimeConfig) -> Result<Inspection, WasmError> {
    let mut exports = HashMap::new();
    let mut memories = 0usize;
    let mut tables = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    check_import(import.module, import.name)?;
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(invalid)?;
                    memories += 1;
                    let initial = memory.initial.saturating_mul(WASM_PAGE_BYTES as u64);
                    if initial > config.max_memory_bytes() as u64 {
                        return Err(WasmError::ModuleLimits(format!(
                            "its memory starts at {initial} bytes, over the limit of {} bytes",
                            config.max_memory_bytes()
                        )));
                    }
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(invalid)?;
                    tables += 1;
                    if table.ty.initial > config.max_table_elements() as u64 {
                        return Err(WasmError::ModuleLimits(format!(
                            "its table starts with {} elements, over the limit of {}",
                            table.ty.initial,
                            config.max_table_elements()
                        )));
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    exports.insert(export.name.to_string(), export.kind);
                }
            }
            _ => {}
        }
    }
    // Multi-memory is disabled, so more than one is already invalid.
    if memories == 0 || !matches!(exports.get(EXPORT_MEMORY), Some(ExternalKind::Memory)) {
        return Err(WasmError::MissingExport {
            name: EXPORT_MEMORY.into(),
            expected: "its linear memory",
        });
    }
    if tables > 1 {
        return Err(WasmError::ModuleLimits(format!(
            "it defines {tables} tables; at most one is allowed"
        )));
    }
    let inspection = Inspection { exports };
    for (name, expected) in [
        (EXPORT_ALLOC, "a function (i32) -> i32"),
        (EXPORT_DEALLOC, "a function (i32, i32) -> ()"),
        (EXPORT_MANIFEST, "a function () -> i64"),
    ] {
        if !inspection.has_func(name) {
            return Err(WasmError::MissingExport {
                name: name.into(),
                expected,
            });
        }
    }
    Ok(inspection)
}

/// Why a module is large, from its sections, in words its author can act
/// on: debug information and names (custom sections) versus code and data.
/// Reads section headers only; malformed bytes are described as such.
pub(crate) fn size_cause(bytes: &[u8]) -> String {
    let mut debug = 0usize;
    let mut names = 0usize;
    let mut code = 0usize;
    let mut data = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else {
            return "it is not a well-formed WebAssembly module either".to_string();
        };
        match payload {
            Payload::CustomSection(section) => {
                let len = section.data().len();
                if section.name().starts_with(".debug") {
                    debug += len;
                } else {
                    names += len;
                }
            }
            Payload::CodeSectionStart { size, .. } => code += size as usize,
            Payload::DataSection(reader) => data += reader.range().len(),
            _ => {}
        }
    }
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    if debug + names > bytes.len() / 4 {
        format!(
            "{:.1} MiB of it is debug information and symbol names; build in release mode with `strip = true` and \
             `debug = false` in the profile",
            mib(debug + names)
        )
    } else {
        format!(
            "its code is {:.1} MiB and its data {:.1} MiB (little debug information); use `opt-level = \"s\"`, \
             `lto = true`, `codegen-units = 1`, and drop dependencies the job does not need",
            mib(code),
            mib(data)
        )
    }
}

fn check_import(module: &str, name: &str) -> Result<(), WasmError> {
    let reason = if module.starts_with("wasi") {
        "jobs get no files, clock, network, environment or randomness; build for wasm32-unknown-unknown, \
         not a WASI target"
            .to_string()
    } else if module.contains("wbindgen") || name.contains("getrandom") || name.contains("random") {
        "this is JavaScript glue (wasm-bindgen), usually pulled in by `getrandom` with its `wasm_js` feature \
         (through `rand`): a job has no source of randomness; use a seeded generator such as \
         `rand_chacha::ChaCha8Rng::seed_from_u64(SEED)` with `default-features = false`, its seed a constant of \
         the job"
            .to_string()
    } else if module == "env" {
        "the sandbox provides no `env` imports (no clock, files or C runtime); build for \
         wasm32-unknown-unknown without a C runtime or JavaScript glue (wasm-bindgen)"
            .to_string()
    } else if module == IMPORT_MODULE {
        if ALLOWED_HOST_IMPORTS.contains(&name) {
            return Ok(());
        }
        format!(
            "the sandbox provides no host function `{name}` in ABI version {}",
            sandbox_abi::ABI_VERSION
        )
    } else {
        format!("guests may import only from module `{IMPORT_MODULE}`")
    };
    Err(WasmError::ImportRefused {
        module: module.to_string(),
        name: name.to_string(),
        reason,
    })
}

/// Checks that export `name` is a function with exactly this signature.
pub(crate) fn check_func_type(
    module: &Module,
    name: &str,
    params: &[&str],
    results: &[&str],
    expected: &'static str,
) -> Result<(), WasmError> {
    let Some(ExternType::Func(ty)) = module.get_export(name) else {
        return Err(WasmError::MissingExport {
            name: name.into(),
            expected,
        });
    };
    let found_params: Vec<&str> = ty.params().map(|t| val_name(&t)).collect();
    let found_results: Vec<&str> = ty.results().map(|t| val_name(&t)).collect();
    if found_params == params && found_results == results {
        Ok(())
    } else {
        Err(WasmError::ExportType {
            name: name.into(),
            expected,
            found: format!(
                "a function ({}) -> ({})",
                found_params.join(", "),
                found_results.join(", ")
            ),
        })
    }
}

/// Signature checks of the ABI's fixed exports.
pub(crate) fn check_abi_signatures(module: &Module) -> Result<(), WasmError> {
    check_func_type(module, EXPORT_ALLOC, &["i32"], &["i32"], "a function (i32) -> i32")?;
    check_func_type(
        module,
        EXPORT_DEALLOC,
        &["i32", "i32"],
        &[],
        "a function (i32, i32) -> ()",
    )?;
    check_func_type(module, EXPORT_MANIFEST, &[], &["i64"], "a function () -> i64")
}

/// Signature of a per-row UDF export: `arity` f64 parameters, one f64 result.
pub(crate) fn check_row_export(module: &Module, name: &str, arity: usize) -> Result<(), WasmError> {
    let params = vec!["f64"; arity];
    check_func_type(
        module,
        name,
        &params,
        &["f64"],
        "a function (f64, …) -> f64, one f64 per declared argument",
    )
}

/// Signature of a UDF or of the analysis export.
pub(crate) fn check_entry_point(module: &Module, name: &str) -> Result<(), WasmError> {
    check_func_type(module, name, &["i32", "i32"], &["i64"], "a function (i32, i32) -> i64")
}

fn val_name(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "ref",
    }
}
