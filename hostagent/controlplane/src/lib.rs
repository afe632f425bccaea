//! The thin bundled control plane: ECS-compatible API, cells, placement, agent channel.
//!
//! See README.md beside this crate for the design.

pub mod agent;
pub mod api;
pub mod cells;
pub mod client;
pub mod config;
pub mod frontend;
pub mod leader;
pub mod lifecycle;
pub mod logs;
pub mod model;
pub mod placement;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod testagent;
pub mod validate;
