//! The data sandbox's WebAssembly guest ABI, version 1.
//!
//! This crate is the single source of truth shared by the host (which runs
//! guests under wasmtime, `crates/sandbox-wasm`) and by guests (through
//! `sandbox-sdk`). It has no dependencies and is `#![no_std]`.
//!
//! # Contract
//!
//! A guest is a `wasm32-unknown-unknown` module that
//!
//! * exports its linear memory as [`EXPORT_MEMORY`];
//! * exports [`EXPORT_ALLOC`] `(len: i32) -> i32` returning a pointer to `len`
//!   fresh bytes (0 = failure) and [`EXPORT_DEALLOC`] `(ptr: i32, len: i32)`
//!   freeing such a buffer;
//! * exports [`EXPORT_MANIFEST`] `() -> i64`, the [`pack`]ed pointer/length of
//!   a UTF-8 JSON manifest declaring its functions and output bounds;
//! * exports one `sandbox_udf_<name>(ptr: i32, len: i32) -> i64` per declared
//!   UDF (see [`UDF_PREFIX`]) and optionally [`EXPORT_ANALYZE`]
//!   `(ptr: i32, len: i32) -> i64`;
//! * may export, per declared UDF, the same function on one row's values:
//!   `sandbox_row_<name>(f64, …, f64) -> f64` (see [`ROW_PREFIX`]); the host
//!   uses it instead of the batch export when it can prove, from the code,
//!   that nothing the function writes outlives a call (only its own
//!   shadow-stack frame, which the host restores), so one instance can
//!   serve many rows without carrying anything from one to the next;
//! * imports nothing outside module [`IMPORT_MODULE`].
//!
//! Inputs are an Arrow IPC *stream* of one record batch that the host writes
//! into memory obtained from [`EXPORT_ALLOC`]. A UDF returns the packed
//! pointer/length of an Arrow IPC stream of one batch with a single Float64
//! column `result` with as many rows as the input; `sandbox_analyze` returns the
//! packed pointer/length of raw little-endian `f64` values, one per declared
//! output. Negative return values [`ERR_BAD_INPUT`], [`ERR_GUEST`] and
//! [`ERR_OUTPUT`] report failures instead.
#![no_std]

/// Version of this ABI, repeated as `"abi"` in the guest's manifest.
pub const ABI_VERSION: u32 = 1;

/// Name of the exported linear memory.
pub const EXPORT_MEMORY: &str = "memory";

/// `(len: i32) -> i32`: allocate `len` bytes in guest memory; returns the
/// pointer, or 0 on failure.
pub const EXPORT_ALLOC: &str = "sandbox_alloc";

/// `(ptr: i32, len: i32)`: free a buffer returned by [`EXPORT_ALLOC`] or
/// returned (packed) by a guest function.
pub const EXPORT_DEALLOC: &str = "sandbox_dealloc";

/// `() -> i64`: [`pack`]ed pointer/length of the UTF-8 JSON manifest.
pub const EXPORT_MANIFEST: &str = "sandbox_manifest";

/// Prefix of UDF exports: `sandbox_udf_<name>(ptr: i32, len: i32) -> i64`.
pub const UDF_PREFIX: &str = "sandbox_udf_";

/// Prefix of the optional per-row exports: `sandbox_row_<name>(f64, …) -> f64`,
/// one `f64` parameter per declared argument (a null arrives as NaN), the
/// UDF's value for that row. The host calls it only when the function is
/// provably stateless (no write reachable from it outlives the call);
/// otherwise it calls [`UDF_PREFIX`] exports.
pub const ROW_PREFIX: &str = "sandbox_row_";

/// `(ptr: i32, len: i32) -> i64`: run the guest's analysis on one batch.
pub const EXPORT_ANALYZE: &str = "sandbox_analyze";

/// `() -> i64` (optional): the [`pack`]ed pointer/length of the UTF-8
/// message of the guest's latest failure (a panic's message and location, or
/// the text behind an error code); a zero length when there is none. The
/// buffer belongs to the guest and is never freed by the host. The host
/// reads it only on trial calls (generated inputs, public sample data).
pub const EXPORT_LAST_ERROR: &str = "sandbox_last_error";

/// The only import module a guest may use.
pub const IMPORT_MODULE: &str = "sandbox";

/// Pack a 32-bit pointer and length into one `i64` (pointer in the high half).
pub fn pack(ptr: u32, len: u32) -> i64 {
    (((ptr as u64) << 32) | len as u64) as i64
}

/// Inverse of [`pack`]: returns `(ptr, len)`.
pub fn unpack(v: i64) -> (u32, u32) {
    ((v as u64 >> 32) as u32, v as u64 as u32)
}

/// The input could not be decoded or does not match the function's signature.
pub const ERR_BAD_INPUT: i64 = -1;
/// The guest's own code reported an error.
pub const ERR_GUEST: i64 = -2;
/// The guest could not produce a well-formed output.
pub const ERR_OUTPUT: i64 = -3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trip() {
        for &(p, l) in &[
            (0u32, 0u32),
            (8, 16),
            (0x0001_0000, 12345),
            (0x7fff_ffff, u32::MAX),
            (u32::MAX, 1),
        ] {
            assert_eq!(unpack(pack(p, l)), (p, l));
        }
        assert_eq!(pack(1, 2), (1i64 << 32) | 2);
        // Packed values of pointers below 2 GiB are never negative, so never
        // confused with the error codes.
        assert!(pack(0x7fff_ffff, u32::MAX) > 0);
        assert!(pack(0, 0) >= 0);
    }

    #[test]
    fn error_codes_are_distinct_and_negative() {
        const {
            assert!(ERR_BAD_INPUT < 0 && ERR_GUEST < 0 && ERR_OUTPUT < 0);
            assert!(ERR_BAD_INPUT != ERR_GUEST && ERR_GUEST != ERR_OUTPUT && ERR_BAD_INPUT != ERR_OUTPUT);
        }
        assert_eq!([ERR_BAD_INPUT, ERR_GUEST, ERR_OUTPUT], [-1, -2, -3]);
    }
}
