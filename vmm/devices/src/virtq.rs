//! Queue helpers shared by the devices.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};

use crate::metrics::DeviceMetrics;
use crate::transport::{ActivateContext, Interrupt};
use crate::GuestMemoryMmap;

/// What an activated device holds: memory, its queues and its interrupt line.
pub struct Active {
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// Queues in index order.
    pub queues: Vec<Queue>,
    /// Interrupt line.
    pub interrupt: Arc<Interrupt>,
}

impl From<ActivateContext> for Active {
    fn from(ctx: ActivateContext) -> Self {
        Active {
            mem: ctx.mem,
            queues: ctx.queues,
            interrupt: ctx.interrupt,
        }
    }
}

/// Returns a used buffer to the guest. A failure (a used ring the guest made unusable)
/// is counted and logged; the device carries on.
pub fn add_used(q: &mut Queue, mem: &GuestMemoryMmap, head: u16, len: u32, m: &DeviceMetrics) {
    if let Err(e) = q.add_used(mem, head, len) {
        tracing::warn!("virtio: add_used failed: {e}");
        DeviceMetrics::inc(&m.errors);
    }
}

/// Raises the used-ring interrupt and counts it.
pub fn signal_used(interrupt: &Interrupt, m: &DeviceMetrics) {
    interrupt.signal_used_queue();
    DeviceMetrics::inc(&m.interrupts);
}

/// Reads (and so clears) a queue eventfd; counts the kick.
pub fn consume_event(evt: &vmm_sys_util::eventfd::EventFd, m: &DeviceMetrics) {
    if evt.read().is_ok() {
        DeviceMetrics::inc(&m.queue_events);
    }
}
