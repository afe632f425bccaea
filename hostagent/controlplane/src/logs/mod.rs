//! Container logs: the per-cell log store, the agents' log batches going into it,
//! and the CloudWatch Logs API over it.
//!
//! - [`api`]: the operation table, group and stream listings.
//! - [`write`]: CreateLogStream, PutLogEvents. [`admin`]: deletes, retention.
//! - [`tags`]: log group tags. [`read`]: GetLogEvents, FilterLogEvents ([`filter`]).
//! - [`store`]: the SQLite log store; [`manage`]: its delete, retention, sweep and
//!   tag side. [`ingest`]: agents' batches into it.

pub mod admin;
pub mod api;
pub mod common;
pub mod filter;
pub mod ingest;
pub mod manage;
pub mod read;
pub mod store;
pub mod tags;
pub mod write;
