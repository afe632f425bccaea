//! Versioned, length-delimited protocol between the host and the guest init over vsock.
