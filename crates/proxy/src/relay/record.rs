//! Test builds only (the `relay-record` feature, in a debug build): every
//! message the proxy relays, appended to the file `COCOON_RELAY_RECORD`
//! names, so a test can show what an operator who reads the proxy's memory
//! would see. Otherwise this is nothing at all.

/// Records the message `encode` gives, when recording.
#[cfg(not(all(feature = "relay-record", debug_assertions)))]
#[inline(always)]
pub(crate) fn relayed(_encode: impl FnOnce() -> Vec<u8>) {}

/// Records the message `encode` gives, when recording.
#[cfg(all(feature = "relay-record", debug_assertions))]
pub(crate) fn relayed(encode: impl FnOnce() -> Vec<u8>) {
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};
    static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let path = std::env::var_os("COCOON_RELAY_RECORD")?;
        tracing::warn!(path = %std::path::Path::new(&path).display(), "TEST BUILD: recording every relayed message");
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path).ok()?;
        Some(Mutex::new(f))
    });
    if let Some(f) = file {
        let bytes = encode();
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        let _ = f.write_all(&bytes);
    }
}
