//! virtio-vsock with the host side on Unix sockets.
