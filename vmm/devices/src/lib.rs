//! virtio-mmio transport, virtio devices (block, net, vsock, rng) and rate limiters for the vmm.
//!
//! The vmm core owns the buses and the KVM VM; devices plug into it through [`bus::BusDevice`]
//! (the [`transport::MmioTransport`]) and into its event loop as
//! `event_manager::MutEventSubscriber`s. See the crate README for the wiring.
//!
//! Module map, devices first; a module uses only modules listed below it:
//! - `test_utils` (tests and feature `test-utils` only): guest memory, a split-queue
//!   driver, a seeded PRNG and the vsock bounds check, for the tests and the fuzz targets.
//! - [`block`]: virtio-block on a host file (`request.rs`: parsing and checking requests,
//!   the Sync engine; `uring.rs`: the Async engine on io_uring).
//! - [`net`]: virtio-net on a tap (`tap.rs`: opening and configuring the tap).
//! - [`vsock`]: virtio-vsock on Unix sockets (`packet`, `connection` with credit flow
//!   control, `muxer` for the host side).
//! - [`rng`]: virtio-rng (entropy from getrandom).
//! - [`virtq`]: helpers every device shares (used ring, interrupts, metrics).
//! - [`transport`]: the `VirtioDevice` trait and `Interrupt` (`device.rs`), the virtio-mmio
//!   register window `MmioTransport` (`mmio.rs`).
//! - [`rate_limiter`]: token buckets with a timerfd.
//! - [`metrics`]: per-device counters.
//! - [`bus`]: the `BusDevice` contract with the vmm's buses.
//!
//! Tests sit beside the code: inline `mod tests` in a one-file module, `<dir>/tests.rs` in a
//! folder module (`block/`, `net/`, `vsock/`, `transport/`); `tests/kvm_mmio.rs` runs a
//! transport on the real `/dev/kvm`.

pub mod block;
pub mod bus;
pub mod metrics;
pub mod net;
pub mod rate_limiter;
pub mod rng;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod transport;
pub mod virtq;
pub mod vsock;

/// The guest memory type every device works on.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<()>;

/// Virtio device IDs.
pub mod device_type {
    /// virtio-net.
    pub const NET: u32 = 1;
    /// virtio-block.
    pub const BLOCK: u32 = 2;
    /// virtio-rng (entropy).
    pub const RNG: u32 = 4;
    /// virtio-vsock.
    pub const VSOCK: u32 = 19;
}
