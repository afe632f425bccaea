//! The hosts: their registration, the WebSocket channel of each host's agent, and
//! the heartbeat monitor. See the `agent-proto` crate for the protocol.

pub mod channel;
pub mod heartbeat;
pub mod registry;

pub use channel::channel;
pub use registry::register;
