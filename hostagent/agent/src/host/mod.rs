//! The agent daemon's control-plane side: configuration, host identity, the task
//! registry, the task runtime seam, the agent channel and its reconnect policy.

pub mod agent;
pub mod backoff;
pub mod channel;
pub mod config;
pub mod identity;
pub mod runtime;
pub mod store;
