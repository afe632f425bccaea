//! The agent daemon's control-plane side: configuration, host identity, the task
//! registry, the task runtime seam, the agent channel and its reconnect policy.
//!
//! Modules, in dependency order:
//! - `budget`: per-task budgets (flags), the token bucket, the guest ingest gate.
//! - `outbox`: the bounded runtime-to-agent queue ([`outbox::TaskEvents`]).
//! - `tls`: TLS to the control plane (the `--controlplane-ca` trust, wss://).
//! - `config`, `identity`, `store`, `backoff`: flags, host identity, task registry,
//!   reconnect delays.
//! - `metrics`: the Prometheus metrics (message timings, channel state, agent counts).
//! - `runtime`: the [`runtime::TaskRuntime`] seam.
//! - `agent`: the task side (launch, stop, the event pump).
//! - `channel`: the agent channel.

pub mod agent;
pub mod backoff;
pub mod budget;
pub mod channel;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod outbox;
pub mod runtime;
pub mod store;
pub mod tls;
