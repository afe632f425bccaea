//! The agent communication service: host registration, the WebSocket channel, and
//! the heartbeat monitor. See the `agent-proto` crate for the protocol.

pub mod channel;
pub mod heartbeat;
pub mod registry;

pub use channel::channel;
pub use registry::register;
