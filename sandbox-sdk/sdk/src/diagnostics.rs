//! The last failure's message, for the host's trial calls: `sandbox_last_error`.
//!
//! Across the ABI a failed call is only an error code or a trap. So that a
//! developer sees *why* (the panic message and where it happened, or the
//! text of the [`SdkError`](crate::SdkError) a job returned), the SDK keeps
//! the message of the latest failure in a fixed buffer inside the guest and
//! exports `sandbox_last_error() -> i64`, the packed pointer/length of that
//! buffer. The host reads it only on trial calls (generated or sample
//! inputs, never real data): on real data what an analyst sees of a failure
//! is a differentially private count, never the text.
//!
//! The buffer is static and written without allocating, so a panic raised
//! by the allocator itself still leaves a message.

use core::fmt::{self, Write};
use std::sync::{Mutex, Once};

/// Capacity of the message buffer in bytes; longer messages are truncated.
pub const MAX_MESSAGE_BYTES: usize = 1024;

struct Message {
    bytes: [u8; MAX_MESSAGE_BYTES],
    len: usize,
}

impl Write for Message {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_MESSAGE_BYTES - self.len;
        // Cut on a character boundary so the buffer stays valid UTF-8.
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

static LAST: Mutex<Message> = Mutex::new(Message {
    bytes: [0; MAX_MESSAGE_BYTES],
    len: 0,
});
static HOOK: Once = Once::new();

/// Replaces the recorded message with `args` (truncated to
/// [`MAX_MESSAGE_BYTES`]). Never blocks: if the buffer is busy the message
/// is dropped.
pub fn record(args: fmt::Arguments<'_>) {
    if let Ok(mut last) = LAST.try_lock() {
        last.len = 0;
        let _ = last.write_fmt(args);
    }
}

/// The recorded message, if any (for host-side tests).
pub fn last_message() -> Option<String> {
    let last = LAST.lock().ok()?;
    (last.len > 0).then(|| String::from_utf8_lossy(&last.bytes[..last.len]).into_owned())
}

/// Clears the recorded message (the start of every call).
pub fn clear() {
    if let Ok(mut last) = LAST.try_lock() {
        last.len = 0;
    }
}

/// Installs (once) a panic hook that records the panic's message and
/// location before the guest aborts (guests are built with `panic =
/// "abort"`, so the host sees a trap and then reads the message).
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            record(format_args!("{info}"));
        }));
    });
}

/// `sandbox_last_error() -> i64`, compiled for the wasm guest only.
#[cfg(target_arch = "wasm32")]
mod exports {
    /// The packed pointer/length of the latest failure's UTF-8 message (a
    /// zero length when there is none). The buffer is static: the host
    /// reads it and never frees it.
    #[unsafe(no_mangle)]
    pub extern "C" fn sandbox_last_error() -> i64 {
        match super::LAST.try_lock() {
            Ok(last) => sandbox_abi::pack(last.bytes.as_ptr() as usize as u32, last.len as u32),
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_truncates_on_a_char_boundary_and_clears() {
        record(format_args!("missing column `{}`", "gas_m3"));
        assert_eq!(last_message().as_deref(), Some("missing column `gas_m3`"));
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        record(format_args!("{long}"));
        let m = last_message().unwrap_or_default();
        assert!(m.len() <= MAX_MESSAGE_BYTES && m.len() >= MAX_MESSAGE_BYTES - 1);
        assert!(m.chars().all(|c| c == 'é'));
        clear();
        assert_eq!(last_message(), None);
    }
}
