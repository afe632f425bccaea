//! What a virtio device offers its transport.

use std::sync::atomic::{AtomicU32, Ordering};

use virtio_queue::Queue;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::GuestMemoryMmap;

/// Bit in the interrupt status register: a used ring was updated.
pub const VIRTIO_MMIO_INT_VRING: u32 = 0x01;
/// Bit in the interrupt status register: the device configuration changed.
pub const VIRTIO_MMIO_INT_CONFIG: u32 = 0x02;

/// The device's interrupt line: the interrupt status register and the irqfd behind it.
///
/// Created by the transport, shared with the device once it is activated.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    evt: EventFd,
}

impl Interrupt {
    /// A fresh interrupt line with a non-blocking eventfd.
    pub fn new() -> std::io::Result<Self> {
        Ok(Interrupt {
            status: AtomicU32::new(0),
            evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// The eventfd the vmm registers as irqfd for the device's GSI.
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }

    /// Current interrupt status register value.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// Guest acknowledged the bits in `mask`.
    pub fn ack(&self, mask: u32) {
        self.status.fetch_and(!mask, Ordering::SeqCst);
    }

    /// Clears the status (device reset).
    pub fn clear(&self) {
        self.status.store(0, Ordering::SeqCst);
    }

    fn trigger(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        if let Err(e) = self.evt.write(1) {
            tracing::error!("virtio: failed to signal interrupt: {e}");
        }
    }

    /// Tells the guest that a used ring was updated.
    pub fn signal_used_queue(&self) {
        self.trigger(VIRTIO_MMIO_INT_VRING);
    }

    /// Tells the guest that the device configuration changed.
    pub fn signal_config_change(&self) {
        self.trigger(VIRTIO_MMIO_INT_CONFIG);
    }
}

/// Everything a device needs once the driver set DRIVER_OK.
pub struct ActivateContext {
    /// Guest memory, for the queues and the buffers they point to.
    pub mem: GuestMemoryMmap,
    /// The queues, validated by the transport, in queue-index order.
    pub queues: Vec<Queue>,
    /// The interrupt line to signal used buffers and config changes.
    pub interrupt: std::sync::Arc<Interrupt>,
}

impl ActivateContext {
    /// Refuses an activation whose driver did not set up exactly `expected` queues.
    pub fn expect_queues(&self, expected: usize) -> Result<(), ActivateError> {
        match self.queues.len() {
            got if got == expected => Ok(()),
            got => Err(ActivateError::QueueCount { expected, got }),
        }
    }
}

/// Registers a device's events with the event loop, logging (not failing on) the ones the
/// loop refuses: the device then simply never sees that event, as with a guest that never
/// kicks its queue.
pub fn register_events(
    ops: &mut event_manager::EventOps,
    device: &str,
    events: &[event_manager::Events],
) {
    for ev in events {
        if let Err(e) = ops.add(*ev) {
            tracing::error!("{device}: cannot register event: {e}");
        }
    }
}

/// Why a device refused to activate.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver did not set up the number of queues the device needs.
    #[error("expected {expected} queues, got {got}")]
    QueueCount {
        /// Queues the device needs.
        expected: usize,
        /// Queues the transport gave.
        got: usize,
    },
    /// Something device-specific failed (e.g. tap offload negotiation).
    #[error("activation failed: {0}")]
    Device(String),
}

/// A virtio device behind a virtio-mmio transport.
///
/// Devices also implement `event_manager::MutEventSubscriber`: the vmm adds the same
/// `Arc<Mutex<Device>>` to its event manager so queue notifications, tap and socket events
/// drive it.
///
/// Everything but the event handling runs on a vCPU thread (the guest's MMIO accesses),
/// under the vCPU seccomp filter, which allows no file, socket, epoll or timer calls:
/// `activate` and `reset` in particular must only move state and leave system calls to
/// the event loop (the vmm's test `vcpu_thread_device_calls_pass_the_vcpu_filter` checks).
pub trait VirtioDevice: Send {
    /// The virtio device ID (block = 2, net = 1, rng = 4, vsock = 19).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The eventfds the guest's queue notifications land on, one per queue.
    fn queue_events(&self) -> &[EventFd];
    /// The feature bits the device offers (VIRTIO_F_VERSION_1 included).
    fn avail_features(&self) -> u64;
    /// The driver accepted `features` (a subset of `avail_features`, VERSION_1 included).
    fn set_acked_features(&mut self, features: u64);
    /// Reads from the device configuration space at `offset`. Out-of-range reads give zeros.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes to the device configuration space. Most devices ignore it.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Generation counter of the configuration space; bumped on every change.
    fn config_generation(&self) -> u32 {
        0
    }
    /// Starts the device with its queues.
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;
    /// Stops the device and drops the queues (driver wrote 0 to the status register).
    fn reset(&mut self);
    /// Whether the device is activated.
    fn is_activated(&self) -> bool;
}

/// Reads `data.len()` bytes at `offset` of a config space held as bytes; zeros past its end.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

/// Makes `count` non-blocking queue eventfds.
pub fn queue_eventfds(count: usize) -> std::io::Result<Vec<EventFd>> {
    (0..count).map(|_| EventFd::new(EFD_NONBLOCK)).collect()
}
