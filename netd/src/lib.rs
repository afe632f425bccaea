//! netd: the host network daemon. Gives each task its own network namespace with one or two
//! ENIs (tap + MAC + private IPv4 from a subnet, routed /32 from the host), enforces security
//! groups with nftables, NATs outbound traffic and serves a JSON API on a Unix socket.

pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod error;
pub mod ipam;
pub mod link;
pub mod model;
pub mod netns;
pub mod nft;
pub mod state;

pub use client::Client;
pub use config::Config;
pub use model::{CreateTaskRequest, Eni, EniRequest, Rule, SecurityGroupSpec, Task};
