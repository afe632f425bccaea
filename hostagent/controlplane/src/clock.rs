//! The wall clock, in the units each protocol uses: ECS timestamps (seconds, with
//! milliseconds), CloudWatch Logs timestamps (milliseconds) and SigV4 dates (seconds).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Seconds since the epoch, as the ECS JSON protocol sends timestamps.
pub fn now() -> f64 {
    (since_epoch().as_millis() as f64) / 1000.0
}

/// Milliseconds since the epoch (CloudWatch Logs timestamps).
pub fn now_ms() -> i64 {
    since_epoch().as_millis() as i64
}

/// Whole seconds since the epoch (request signing).
pub fn now_unix() -> i64 {
    since_epoch().as_secs() as i64
}
