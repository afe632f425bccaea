//! virtio-mmio transport, virtio devices (block, net, vsock, rng) and rate limiters for the vmm.
//!
//! The vmm core owns the buses and the KVM VM; devices plug into it through [`bus::BusDevice`].

pub mod bus;
