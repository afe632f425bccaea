//! The thin bundled control plane: ECS-compatible API, cells, placement, agent channel.
//!
//! See README.md beside this crate for the design.

pub mod api;
pub mod app;
pub mod cells;
#[cfg(any(test, feature = "test-utils"))]
pub mod client;
pub mod clock;
pub mod config;
pub mod ctx;
pub mod domain;
pub mod error;
pub mod frontend;
pub mod hosts;
pub mod leader;
pub mod lifecycle;
pub mod logs;
pub mod model;
pub mod placement;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod sync;
#[cfg(any(test, feature = "test-utils"))]
pub mod testagent;
pub mod throttle;
pub mod validate;
