//! An admitted module: compiled, checked, with its manifest and digest.

use crate::limiter::CallState;
use crate::manifest::Manifest;
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
}

impl ModuleHandle {
    pub(crate) fn new(
        digest_hex: String,
        size: usize,
        manifest: Manifest,
        module: Module,
        pre: InstancePre<CallState>,
    ) -> Self {
        ModuleHandle {
            inner: Arc::new(Inner {
                digest_hex,
                size,
                manifest,
                module,
                pre,
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
