//! The hosts: their registration, the WebSocket channel of each host's agent, and
//! the heartbeat monitor. See the `agent-proto` crate for the protocol.
//!
//! - [`registry`]: registration with a bootstrap token; channel authentication.
//! - [`mod@channel`]: one host's channel: its messages, checked against its identity.
//! - [`revoke`]: the leader's sweep of revocations and expired credentials.
//! - [`heartbeat`]: lost hosts.
//! - [`credentials`]: host credentials: issue, verify, rotate.

pub mod channel;
pub mod credentials;
pub mod heartbeat;
pub mod registry;
pub mod revoke;

pub use channel::channel;
pub use registry::register;
