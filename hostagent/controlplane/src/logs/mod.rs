//! Container logs: the per-cell log store, the agents' log batches going into it,
//! and the CloudWatch Logs API that reads it.

pub mod api;
pub mod filter;
pub mod ingest;
pub mod read;
pub mod store;

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
