//! virtio-vsock with the host side on Unix sockets (Firecracker-compatible).
//!
//! Against a hostile guest every queue and buffer is bounded per VM ([`VsockLimits`]; the
//! semantics are in [`muxer`]'s header), and one tx kick handles at most
//! `VsockLimits::tx_batch` packets (a queue's worth) before the event loop runs again.

pub mod connection;
pub mod muxer;
pub mod packet;

use std::path::PathBuf;
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_queue::{QueueOwnedT, QueueT};
use vmm_sys_util::eventfd::EventFd;

use crate::metrics::DeviceMetrics;
use crate::transport::device::{queue_eventfds, read_config_bytes};
use crate::transport::{register_events, ActivateContext, ActivateError, VirtioDevice};
use crate::virtq::{add_used, consume_event, signal_used, Active};
use muxer::Muxer;
pub use muxer::VsockLimits;
use packet::{read_packet, rx_capacity, write_packet, HDR_LEN};

/// Queue size offered to the guest (rx, tx, event).
pub const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
const EVQ: usize = 2;
const EV_RX: u32 = 0;
const EV_TX: u32 = 1;
const EV_EVQ: u32 = 2;
const EV_LISTENER: u32 = 3;
const EV_STREAM: u32 = 4;
const EV_TIMER: u32 = 5;

/// Configuration (the Firecracker `/vsock` body).
#[derive(Debug, Clone)]
pub struct VsockConfig {
    /// The guest's CID (3 or more).
    pub guest_cid: u64,
    /// Host listener path; guest-initiated connections go to `<uds_path>_<port>`.
    pub uds_path: PathBuf,
}

/// Errors creating the device.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// CIDs 0-2 are reserved.
    #[error("invalid guest CID {0} (must be 3 or more)")]
    InvalidCid(u64),
    /// Binding the host listener or creating eventfds failed.
    #[error("vsock socket {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// The vsock device.
pub struct Vsock {
    guest_cid: u64,
    muxer: Muxer,
    queue_evts: Vec<EventFd>,
    active: Option<Active>,
    acked: u64,
    metrics: Arc<DeviceMetrics>,
}

impl Vsock {
    /// Binds `uds_path` and builds the device, with the default [`VsockLimits`].
    pub fn new(cfg: &VsockConfig) -> Result<Self, VsockError> {
        Self::with_limits(cfg, VsockLimits::default())
    }

    /// Like [`Vsock::new`], with the per-VM bounds given.
    pub fn with_limits(cfg: &VsockConfig, limits: VsockLimits) -> Result<Self, VsockError> {
        if cfg.guest_cid < 3 || cfg.guest_cid > u64::from(u32::MAX) {
            return Err(VsockError::InvalidCid(cfg.guest_cid));
        }
        let io = |e| VsockError::Io(cfg.uds_path.clone(), e);
        let metrics: Arc<DeviceMetrics> = Arc::default();
        Ok(Vsock {
            guest_cid: cfg.guest_cid,
            muxer: Muxer::new(cfg.guest_cid, &cfg.uds_path, limits, metrics.clone()).map_err(io)?,
            queue_evts: queue_eventfds(3).map_err(io)?,
            active: None,
            acked: 0,
            metrics,
        })
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<DeviceMetrics> {
        self.metrics.clone()
    }

    /// Live connections.
    pub fn connection_count(&self) -> usize {
        self.muxer.connection_count()
    }

    /// Host clients still sending their `CONNECT` line.
    pub fn handshake_count(&self) -> usize {
        self.muxer.handshake_count()
    }

    /// The bounds in force.
    pub fn limits(&self) -> VsockLimits {
        self.muxer.limits()
    }

    /// Replies for no connection (RSTs) waiting for the guest's rx buffers.
    pub fn queued_replies(&self) -> usize {
        self.muxer.queued_replies()
    }

    /// Control packets waiting for the guest's rx buffers (replies plus the connections').
    pub fn queued_packets(&self) -> usize {
        self.muxer.queued_packets()
    }

    /// Guest bytes held for host sockets that have not taken them yet.
    pub fn tx_buffered(&self) -> usize {
        self.muxer.tx_buffered()
    }

    /// Heap bytes held in the muxer's buffers and queues (allocations).
    pub fn heap_bytes(&self) -> usize {
        self.muxer.heap_bytes()
    }

    /// Handles every packet the guest queued for the host.
    pub fn process_tx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let m = &*self.metrics;
        let mut used = false;
        let batch = self.muxer.limits().tx_batch.max(1);
        let mut handled = 0;
        while let Some(chain) = a.queues[TX].pop_descriptor_chain(&a.mem) {
            handled += 1;
            if handled > batch {
                // A batch done: let the event loop run, and come back (the eventfd stays
                // readable until the next pass consumes it).
                a.queues[TX].go_to_previous_position();
                if let Err(e) = self.queue_evts[TX].write(1) {
                    tracing::warn!("vsock: cannot re-kick tx: {e}");
                }
                break;
            }
            let head = chain.head_index();
            match read_packet(chain, &a.mem) {
                Ok((h, data)) => {
                    DeviceMetrics::add(&m.bytes_from_guest, data.len() as u64);
                    DeviceMetrics::inc(&m.ops);
                    self.muxer.on_guest_packet(&h, &data);
                }
                Err(e) => {
                    tracing::debug!("vsock: bad tx packet: {e}");
                    DeviceMetrics::inc(&m.errors);
                }
            }
            add_used(&mut a.queues[TX], &a.mem, head, 0, m);
            used = true;
        }
        if used {
            signal_used(&a.interrupt, m);
        }
    }

    /// Delivers pending packets into the guest's rx buffers.
    pub fn process_rx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let m = &*self.metrics;
        let mut used = false;
        while self.muxer.has_rx() {
            let Some(chain) = a.queues[RX].pop_descriptor_chain(&a.mem) else {
                break;
            };
            let head = chain.head_index();
            let Some(cap) = rx_capacity(&chain, &a.mem) else {
                // Not even room for a header: give the buffer back unused.
                DeviceMetrics::inc(&m.errors);
                add_used(&mut a.queues[RX], &a.mem, head, 0, m);
                used = true;
                continue;
            };
            let Some((h, data)) = self.muxer.next_rx(cap) else {
                a.queues[RX].go_to_previous_position();
                break;
            };
            let len = write_packet(chain, &a.mem, &h, &data).unwrap_or(0);
            if len as usize >= HDR_LEN {
                DeviceMetrics::add(&m.bytes_to_guest, data.len() as u64);
            } else {
                DeviceMetrics::inc(&m.errors);
            }
            add_used(&mut a.queues[RX], &a.mem, head, len, m);
            used = true;
        }
        if used {
            signal_used(&a.interrupt, m);
        }
    }

    fn apply_fd_changes(&mut self, ops: &mut EventOps) {
        for fd in self.muxer.fd_changes.add.drain(..) {
            let set = EventSet::IN | EventSet::OUT | EventSet::EDGE_TRIGGERED;
            if let Err(e) = ops.add(Events::with_data_raw(fd, EV_STREAM, set)) {
                tracing::warn!("vsock: cannot watch stream: {e}");
            }
        }
        for s in self.muxer.fd_changes.remove.drain(..) {
            let _ = ops.remove(Events::empty(&s));
        }
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        crate::device_type::VSOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE]
    }
    fn queue_events(&self) -> &[EventFd] {
        &self.queue_evts
    }
    fn avail_features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1
    }
    fn set_acked_features(&mut self, features: u64) {
        self.acked = features;
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.guest_cid.to_le_bytes(), offset, data);
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        ctx.expect_queues(3)?;
        self.active = Some(ctx.into());
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
        self.muxer.reset();
    }
    fn is_activated(&self) -> bool {
        self.active.is_some()
    }
}

impl MutEventSubscriber for Vsock {
    fn init(&mut self, ops: &mut EventOps) {
        let evs = [
            Events::with_data(&self.queue_evts[RX], EV_RX, EventSet::IN),
            Events::with_data(&self.queue_evts[TX], EV_TX, EventSet::IN),
            Events::with_data(&self.queue_evts[EVQ], EV_EVQ, EventSet::IN),
            Events::with_data_raw(self.muxer.listener_fd(), EV_LISTENER, EventSet::IN),
            Events::with_data_raw(self.muxer.timer_fd(), EV_TIMER, EventSet::IN),
        ];
        register_events(ops, "vsock", &evs);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            EV_RX => consume_event(&self.queue_evts[RX], &self.metrics),
            EV_TX => {
                consume_event(&self.queue_evts[TX], &self.metrics);
                self.process_tx();
            }
            // The event queue is only used for transport resets, which we never send.
            EV_EVQ => consume_event(&self.queue_evts[EVQ], &self.metrics),
            EV_LISTENER => self.muxer.on_listener(),
            EV_STREAM => self.muxer.on_stream(events.fd()),
            EV_TIMER => self.muxer.on_timer(),
            _ => {}
        }
        self.process_rx();
        self.apply_fd_changes(ops);
    }
}

#[cfg(test)]
mod tests;
