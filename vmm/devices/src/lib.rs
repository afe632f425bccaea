//! virtio-mmio transport, virtio devices (block, net, vsock, rng) and rate limiters for the vmm.
//!
//! The vmm core owns the buses and the KVM VM; devices plug into it through [`bus::BusDevice`]
//! (the [`transport::MmioTransport`]) and into its event loop as
//! `event_manager::MutEventSubscriber`s. See the crate README for the wiring.

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
