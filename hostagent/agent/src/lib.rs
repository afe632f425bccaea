//! The host agent library: everything the `hostagent` binary runs (its command line is
//! `src/cmd/`).
//!
//! Modules, in dependency order (each uses only those above it):
//! - `util`: one copy of the small helpers (poison-tolerant lock and wait, clock in ms).
//! - `image`: OCI image pull, digest-verified layer cache, unpack, the ext4 block
//!   devices a task's microVM gets.
//! - `host`: the daemon's control-plane side: flags, per-task budgets
//!   (`host::budget`), the bounded runtime-to-agent queue (`host::outbox`), host
//!   identity, task registry, the [`host::runtime::TaskRuntime`] seam, the agent (`host::agent`, with its event pump
//!   in `host::agent::events`), the agent channel with heartbeats and reconnect.
//! - `vm`: the microVM runtime behind the `TaskRuntime` seam (netd ENIs, devices,
//!   jailer + vmm, the guest init over vsock, the per-task relay); `vm/mod.rs` maps it.
//!
//! Tests: each module's unit tests are its `mod tests` (inline, or `tests.rs` in a
//! module folder such as `host/agent/`); integration tests are in `tests/`.

pub mod host;
pub mod image;
mod util;
pub mod vm;
