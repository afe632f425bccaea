//! virtio-mmio transport, virtio devices (block, net, vsock, rng) and rate limiters for the vmm.
