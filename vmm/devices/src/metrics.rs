//! Per-device counters, shared between the device (which bumps them) and the vmm
//! (which reads a serializable snapshot for its metrics output).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters of one device. Cheap to bump from the device's event loop.
#[derive(Debug, Default)]
pub struct DeviceMetrics {
    /// Bytes the device read from the guest (block writes, net tx, vsock tx).
    pub bytes_from_guest: AtomicU64,
    /// Bytes the device wrote to the guest (block reads, net rx, vsock rx, rng).
    pub bytes_to_guest: AtomicU64,
    /// Requests / frames / packets the device handled successfully.
    pub ops: AtomicU64,
    /// Requests the device failed (bad chains, I/O errors, hostile input).
    pub errors: AtomicU64,
    /// Times a rate limiter held the device back.
    pub rate_limiter_throttled: AtomicU64,
    /// Queue notifications (ioeventfd kicks) received.
    pub queue_events: AtomicU64,
    /// Interrupts sent to the guest.
    pub interrupts: AtomicU64,
    /// Packets or connections the device discarded because a per-VM bound was reached
    /// (vsock: replies beyond the reply queue bound, host clients beyond the connection
    /// limit, connections reset for the buffered-bytes budget).
    pub dropped: AtomicU64,
}

/// A point-in-time copy of [`DeviceMetrics`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// See [`DeviceMetrics::bytes_from_guest`].
    pub bytes_from_guest: u64,
    /// See [`DeviceMetrics::bytes_to_guest`].
    pub bytes_to_guest: u64,
    /// See [`DeviceMetrics::ops`].
    pub ops: u64,
    /// See [`DeviceMetrics::errors`].
    pub errors: u64,
    /// See [`DeviceMetrics::rate_limiter_throttled`].
    pub rate_limiter_throttled: u64,
    /// See [`DeviceMetrics::queue_events`].
    pub queue_events: u64,
    /// See [`DeviceMetrics::interrupts`].
    pub interrupts: u64,
    /// See [`DeviceMetrics::dropped`].
    pub dropped: u64,
}

impl DeviceMetrics {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            bytes_from_guest: g(&self.bytes_from_guest),
            bytes_to_guest: g(&self.bytes_to_guest),
            ops: g(&self.ops),
            errors: g(&self.errors),
            rate_limiter_throttled: g(&self.rate_limiter_throttled),
            queue_events: g(&self.queue_events),
            interrupts: g(&self.interrupts),
            dropped: g(&self.dropped),
        }
    }
}
