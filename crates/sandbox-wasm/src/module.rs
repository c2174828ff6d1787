//! An admitted module: compiled, checked, with its manifest and digest.

use crate::limiter::CallState;
use crate::manifest::Manifest;
use crate::stateless::{RowExport, StackWindow};
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::{InstancePre, Module};

/// A module that passed admission. Cheap to clone; calls go through the
/// [`SandboxEngine`](crate::SandboxEngine) that admitted it.
#[derive(Clone)]
pub struct ModuleHandle {
    inner: Arc<Inner>,
}

struct Inner {
    digest_hex: String,
    size: usize,
    manifest: Manifest,
    module: Module,
    pre: InstancePre<CallState>,
    /// Per declared UDF, how its rows are evaluated.
    row_exports: HashMap<String, RowExport>,
    /// Per stateless UDF, the memory to restore after each row's call.
    row_windows: HashMap<String, StackWindow>,
}

impl ModuleHandle {
    pub(crate) fn new(
        digest_hex: String,
        size: usize,
        manifest: Manifest,
        module: Module,
        pre: InstancePre<CallState>,
        row_exports: HashMap<String, RowExport>,
        row_windows: HashMap<String, StackWindow>,
    ) -> Self {
        ModuleHandle {
            inner: Arc::new(Inner {
                digest_hex,
                size,
                manifest,
                module,
                pre,
                row_exports,
                row_windows,
            }),
        }
    }

    /// SHA-256 of the module's bytes, lowercase hex: the identity to put in
    /// audit records.
    pub fn digest_hex(&self) -> &str {
        &self.inner.digest_hex
    }

    /// Size of the module's bytes.
    pub fn size_bytes(&self) -> usize {
        self.inner.size
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// How UDF `name`'s rows are evaluated: [`RowExport::Stateless`] means
    /// one instance per batch and one call per row
    /// ([`SandboxEngine::call_udf_rows`](crate::SandboxEngine::call_udf_rows));
    /// anything else, one instance per row. [`RowExport::Absent`] for an
    /// unknown name.
    pub fn row_export(&self, name: &str) -> &RowExport {
        self.inner.row_exports.get(name).unwrap_or(&RowExport::Absent)
    }

    /// The shadow-stack window a stateless UDF's calls may write.
    pub(crate) fn row_window(&self, name: &str) -> Option<StackWindow> {
        self.inner.row_windows.get(name).copied()
    }

    /// True when both handles share one compiled module (a cache hit).
    pub fn same_compiled(&self, other: &ModuleHandle) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn module(&self) -> &Module {
        &self.inner.module
    }

    pub(crate) fn pre(&self) -> &InstancePre<CallState> {
        &self.inner.pre
    }
}

impl std::fmt::Debug for ModuleHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleHandle")
            .field("digest", &self.inner.digest_hex)
            .field("size", &self.inner.size)
            .field("manifest", &self.inner.manifest)
            .finish_non_exhaustive()
    }
}
