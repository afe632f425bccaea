//! virtio-net on a tap device.
