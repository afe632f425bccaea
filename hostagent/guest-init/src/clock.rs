//! The crate's one wall clock: milliseconds since the Unix epoch, for the timestamps of the
//! messages sent to the host. The VM's clock is set from the task's `hostTimeMs` first.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
