//! Guest memory shared with the host: `sandbox_alloc` / `sandbox_dealloc`.
//!
//! Every buffer that crosses the ABI — inputs the host writes, outputs and the
//! manifest the guest returns — is a `Box<[u8]>` built from a `Vec<u8>` and
//! leaked to a raw pointer, so it is freed by rebuilding the same box from
//! `(ptr, len)`. This goes through Rust's global allocator, whatever it is
//! (the default `dlmalloc` on `wasm32-unknown-unknown`, or a job's own
//! `#[global_allocator]`).
//!
//! Ownership rules (ABI version 1):
//!
//! * the host owns an input buffer it obtained from `sandbox_alloc`: the guest
//!   only reads it during the call and never frees it; the host may
//!   `sandbox_dealloc` it after the call;
//! * the host owns a buffer the guest returns (packed pointer/length): it frees
//!   it with `sandbox_dealloc(ptr, len)` once it has copied it out (or simply
//!   drops the instance);
//! * zero-length buffers are not allocated: their pointer is a non-null
//!   dangling one and freeing them is a no-op.

/// Allocate `len` zeroed bytes and leak them; `None` if the allocator refuses.
///
/// The returned pointer must be given back to [`free_buffer`] with the same
/// `len` (or leaked).
pub fn alloc_buffer(len: usize) -> Option<*mut u8> {
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, 0);
    Some(leak_buffer(v).0)
}

/// Leak `bytes` as an exact-size buffer, returning `(ptr, len)`; the buffer
/// must be given back to [`free_buffer`] (or leaked).
pub fn leak_buffer(bytes: Vec<u8>) -> (*mut u8, usize) {
    let boxed: Box<[u8]> = bytes.into_boxed_slice();
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<u8>(), len)
}

/// Free a buffer made by [`alloc_buffer`] or [`leak_buffer`].
///
/// A null pointer or a zero length is a no-op.
///
/// # Safety
///
/// `ptr` must come from [`alloc_buffer`] or [`leak_buffer`] with exactly this
/// `len`, and must not be used (or freed) again.
pub unsafe fn free_buffer(ptr: *mut u8, len: usize) {
    if ptr.is_null() || len == 0 {
        return;
    }
    let slice = core::ptr::slice_from_raw_parts_mut(ptr, len);
    // SAFETY: by the caller's contract `slice` is exactly the `Box<[u8]>`
    // leaked by `leak_buffer`, not yet freed.
    drop(unsafe { Box::from_raw(slice) });
}

/// The raw exports of the allocator, compiled for the wasm guest only.
#[cfg(target_arch = "wasm32")]
mod exports {
    /// `sandbox_alloc(len: i32) -> i32`: a fresh buffer of `len` bytes, or 0
    /// if `len` is negative or memory is exhausted.
    #[unsafe(no_mangle)]
    pub extern "C" fn sandbox_alloc(len: i32) -> i32 {
        let Ok(len) = usize::try_from(len) else {
            return 0;
        };
        match super::alloc_buffer(len) {
            Some(ptr) => ptr as usize as i32,
            None => 0,
        }
    }

    /// `sandbox_dealloc(ptr: i32, len: i32)`: free a buffer from
    /// `sandbox_alloc` or one returned by a guest function.
    #[unsafe(no_mangle)]
    pub extern "C" fn sandbox_dealloc(ptr: i32, len: i32) {
        let Ok(len) = usize::try_from(len) else {
            return;
        };
        let ptr = ptr as u32 as usize as *mut u8;
        // SAFETY: the ABI obliges the host to pass back only (ptr, len) pairs
        // that this guest handed out, once each.
        unsafe { super::free_buffer(ptr, len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_write_free() {
        for len in [0usize, 1, 7, 4096, 1 << 20] {
            let p = alloc_buffer(len).unwrap();
            assert!(!p.is_null());
            // SAFETY: `p` points to `len` bytes we own.
            let s = unsafe { core::slice::from_raw_parts_mut(p, len) };
            assert!(s.iter().all(|&b| b == 0));
            s.fill(0xAB);
            // SAFETY: allocated above with this length, freed once.
            unsafe { free_buffer(p, len) };
        }
    }

    #[test]
    fn leak_then_free_keeps_contents() {
        let mut v = Vec::with_capacity(100);
        v.extend_from_slice(b"hello");
        let (p, len) = leak_buffer(v);
        assert_eq!(len, 5);
        // SAFETY: leaked above with this length.
        assert_eq!(unsafe { core::slice::from_raw_parts(p, len) }, b"hello");
        // SAFETY: leaked above with this length, freed once.
        unsafe { free_buffer(p, len) };
    }

    #[test]
    fn absurd_sizes_fail_cleanly() {
        assert!(alloc_buffer(usize::MAX).is_none());
        // SAFETY: null / zero-length are documented no-ops.
        unsafe {
            free_buffer(core::ptr::null_mut(), 10);
            free_buffer(core::ptr::NonNull::<u8>::dangling().as_ptr(), 0);
        }
    }
}
