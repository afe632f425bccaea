//! netd: the host network daemon. Gives each task its own network namespace with one or two
//! ENIs (tap + MAC + private IPv4 from a subnet, routed /32 from the host), enforces security
//! groups with nftables, NATs outbound traffic and serves a JSON API on a Unix socket.
//!
//! Module map (each module uses only those listed below it):
//! - [`api`]: the HTTP/JSON routes on the Unix socket, each a call into the daemon.
//! - [`metrics`]: Prometheus metrics: API latency per route, errors per code, tasks,
//!   ENIs and groups (`GET /metrics` on the socket and on `--metrics-listen`).
//! - [`client`]: the Rust client of that API (host agent, tests, benchmark).
//! - [`daemon`]: the core: validate -> persist -> kernel -> nft for every change, with roll
//!   back, and the reconciliation at start.
//! - [`nft`]: security groups, NAT and host policy as nftables JSON transactions.
//! - [`conntrack`]: flushing a deleted ENI's connection-tracking entries (conntrack tool).
//! - [`link`]: veths, taps, bridges, addresses and routes through rtnetlink.
//! - [`ipam`]: addresses and MACs handed out from a subnet.
//! - [`state`]: the state file, replaced atomically.
//! - [`netns`]: named network namespaces, and running work inside one.
//! - [`config`]: the TOML config file and its validation.
//! - [`model`]: wire and state types (tasks, ENIs, groups, rules) and their checks.
//! - [`error`]: the one error type, with its HTTP status and code.

pub mod api;
pub mod client;
pub mod config;
pub mod conntrack;
pub mod daemon;
pub mod error;
pub mod ipam;
pub mod link;
pub mod metrics;
pub mod model;
pub mod netns;
pub mod nft;
pub mod state;

pub use client::Client;
pub use config::Config;
pub use model::{CreateTaskRequest, Eni, EniRequest, Rule, SecurityGroupSpec, Task};
