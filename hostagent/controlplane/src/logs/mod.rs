//! Container logs: the per-cell log store, the agents' log batches going into it,
//! and the CloudWatch Logs API that reads it.

pub mod api;
pub mod common;
pub mod filter;
pub mod ingest;
pub mod read;
pub mod store;
