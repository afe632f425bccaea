//! virtio-net on a tap device.

pub mod tap;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::*;
use virtio_queue::{QueueOwnedT, QueueT};
use vmm_sys_util::eventfd::EventFd;

use crate::metrics::DeviceMetrics;
use crate::rate_limiter::{RateLimiter, RateLimiterConfig};
use crate::transport::device::{queue_eventfds, read_config_bytes};
use crate::transport::{register_events, ActivateContext, ActivateError, VirtioDevice};
use crate::virtq::{add_used, consume_event, signal_used, Active};
use tap::{offload, Tap, TapError};

/// Size of the virtio-net header in virtio 1.x (`virtio_net_hdr_v1`, with num_buffers).
pub const VNET_HDR_LEN: usize = 12;
/// Largest frame, header included: a 64 KiB GSO frame plus Ethernet and vnet headers.
pub const MAX_FRAME: usize = 65562 + VNET_HDR_LEN;
/// Queue size offered to the guest (rx and tx).
pub const QUEUE_SIZE: u16 = 256;

const RX: usize = 0;
const TX: usize = 1;
const EV_RX: u32 = 0;
const EV_TX: u32 = 1;
const EV_TAP: u32 = 2;
const EV_RX_LIMITER: u32 = 3;
const EV_TX_LIMITER: u32 = 4;

/// Configuration of one interface (the Firecracker `/network-interfaces/{id}` body).
#[derive(Debug, Clone, Default)]
pub struct NetConfig {
    /// Interface id (for metrics and logs).
    pub iface_id: String,
    /// Tap to attach to (created by netd, or created here when running as root).
    pub host_dev_name: String,
    /// MAC address the guest sees; none lets the guest pick one.
    pub guest_mac: Option<[u8; 6]>,
    /// Limits on frames from the tap to the guest.
    pub rx_rate_limiter: RateLimiterConfig,
    /// Limits on frames from the guest to the tap.
    pub tx_rate_limiter: RateLimiterConfig,
}

/// Parses "aa:bb:cc:dd:ee:ff".
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A virtio-net device.
pub struct Net {
    id: String,
    tap: Tap,
    mac: Option<[u8; 6]>,
    queue_evts: Vec<EventFd>,
    active: Option<Active>,
    acked: u64,
    rx_limiter: RateLimiter,
    tx_limiter: RateLimiter,
    rx_frame: Vec<u8>,
    rx_pending: usize,
    tap_readable: bool,
    tx_frame: Vec<u8>,
    metrics: Arc<DeviceMetrics>,
}

impl Net {
    /// Opens the tap and builds the device.
    pub fn new(cfg: &NetConfig) -> Result<Self, TapError> {
        let tap = Tap::open(&cfg.host_dev_name)?;
        let ev = |e| TapError::Ioctl("eventfd/timerfd", cfg.host_dev_name.clone(), e);
        Ok(Net {
            id: cfg.iface_id.clone(),
            tap,
            mac: cfg.guest_mac,
            queue_evts: queue_eventfds(2).map_err(ev)?,
            active: None,
            acked: 0,
            rx_limiter: RateLimiter::new(&cfg.rx_rate_limiter).map_err(ev)?,
            tx_limiter: RateLimiter::new(&cfg.tx_rate_limiter).map_err(ev)?,
            rx_frame: vec![0; MAX_FRAME],
            rx_pending: 0,
            tap_readable: true,
            tx_frame: vec![0; MAX_FRAME],
            metrics: Arc::default(),
        })
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<DeviceMetrics> {
        self.metrics.clone()
    }

    /// The tap's interface name.
    pub fn tap_name(&self) -> &str {
        self.tap.name()
    }

    /// Replaces the rate limiters live (PATCH /network-interfaces/{id}).
    pub fn update_rate_limiters(&mut self, rx: &RateLimiterConfig, tx: &RateLimiterConfig) {
        self.rx_limiter.update(rx);
        self.tx_limiter.update(tx);
        self.process_rx();
        self.process_tx();
    }

    fn tap_offloads(features: u64) -> u32 {
        let has = |bit: u32| features & (1u64 << bit) != 0;
        let mut flags = 0;
        if has(VIRTIO_NET_F_GUEST_CSUM) {
            flags |= offload::CSUM;
            if has(VIRTIO_NET_F_GUEST_TSO4) {
                flags |= offload::TSO4;
            }
            if has(VIRTIO_NET_F_GUEST_TSO6) {
                flags |= offload::TSO6;
            }
            if has(VIRTIO_NET_F_GUEST_UFO) {
                flags |= offload::UFO;
            }
        }
        flags
    }

    /// Moves frames from the tap into the guest's rx buffers while both have some.
    pub fn process_rx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let m = &*self.metrics;
        let mut used = false;
        loop {
            if self.rx_pending == 0 {
                if !self.tap_readable {
                    break;
                }
                match self.tap.read_frame(&mut self.rx_frame) {
                    Ok(n) if n > VNET_HDR_LEN => self.rx_pending = n,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        self.tap_readable = false;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!("virtio-net {}: tap read: {e}", self.id);
                        self.tap_readable = false;
                        break;
                    }
                }
            }
            let Some(chain) = a.queues[RX].pop_descriptor_chain(&a.mem) else {
                break;
            };
            if !self.rx_limiter.consume(self.rx_pending as u64, 1) {
                DeviceMetrics::inc(&m.rate_limiter_throttled);
                a.queues[RX].go_to_previous_position();
                break;
            }
            let head = chain.head_index();
            let frame = &mut self.rx_frame[..self.rx_pending];
            // virtio 1.x: num_buffers is 1 without VIRTIO_NET_F_MRG_RXBUF.
            frame[10..12].copy_from_slice(&1u16.to_le_bytes());
            let mut len = 0;
            match chain.writer(&a.mem) {
                Ok(mut w) if w.available_bytes() >= frame.len() => {
                    if w.write_all(frame).is_ok() {
                        len = frame.len() as u32;
                        DeviceMetrics::add(&m.bytes_to_guest, frame.len() as u64);
                        DeviceMetrics::inc(&m.ops);
                    } else {
                        DeviceMetrics::inc(&m.errors);
                    }
                }
                _ => {
                    // Buffers too small or outside guest memory: the frame is dropped.
                    DeviceMetrics::inc(&m.errors);
                }
            }
            self.rx_pending = 0;
            add_used(&mut a.queues[RX], &a.mem, head, len, m);
            used = true;
        }
        if used {
            signal_used(&a.interrupt, m);
        }
    }

    /// Sends the guest's tx frames to the tap.
    pub fn process_tx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let m = &*self.metrics;
        let mut used = false;
        while let Some(chain) = a.queues[TX].pop_descriptor_chain(&a.mem) {
            let head = chain.head_index();
            match chain.reader(&a.mem) {
                Ok(mut r) => {
                    let n = r.available_bytes();
                    if !(VNET_HDR_LEN..=MAX_FRAME).contains(&n) {
                        DeviceMetrics::inc(&m.errors);
                    } else if !self.tx_limiter.consume(n as u64, 1) {
                        DeviceMetrics::inc(&m.rate_limiter_throttled);
                        a.queues[TX].go_to_previous_position();
                        break;
                    } else if r.read_exact(&mut self.tx_frame[..n]).is_err() {
                        DeviceMetrics::inc(&m.errors);
                    } else {
                        match self.tap.write_frame(&self.tx_frame[..n]) {
                            Ok(_) => {
                                DeviceMetrics::add(&m.bytes_from_guest, n as u64);
                                DeviceMetrics::inc(&m.ops);
                            }
                            Err(e) => {
                                // A full or down tap drops the frame, as a NIC would.
                                tracing::debug!("virtio-net {}: tap write: {e}", self.id);
                                DeviceMetrics::inc(&m.errors);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("virtio-net {}: bad tx chain: {e}", self.id);
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
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        crate::device_type::NET
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }
    fn queue_events(&self) -> &[EventFd] {
        &self.queue_evts
    }
    fn avail_features(&self) -> u64 {
        let mut f = 1u64 << VIRTIO_F_VERSION_1;
        for bit in [
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_GUEST_TSO4,
            VIRTIO_NET_F_GUEST_TSO6,
            VIRTIO_NET_F_GUEST_UFO,
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_HOST_TSO6,
            VIRTIO_NET_F_HOST_UFO,
        ] {
            f |= 1u64 << bit;
        }
        if self.mac.is_some() {
            f |= 1u64 << VIRTIO_NET_F_MAC;
        }
        f
    }
    fn set_acked_features(&mut self, features: u64) {
        self.acked = features;
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.mac.unwrap_or_default(), offset, data);
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        ctx.expect_queues(2)?;
        self.tap
            .set_offload(Self::tap_offloads(self.acked))
            .map_err(|e| ActivateError::Device(e.to_string()))?;
        self.active = Some(ctx.into());
        self.tap_readable = true;
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
        self.rx_pending = 0;
    }
    fn is_activated(&self) -> bool {
        self.active.is_some()
    }
}

impl MutEventSubscriber for Net {
    fn init(&mut self, ops: &mut EventOps) {
        let evs = [
            Events::with_data(&self.queue_evts[RX], EV_RX, EventSet::IN),
            Events::with_data(&self.queue_evts[TX], EV_TX, EventSet::IN),
            Events::with_data_raw(
                self.tap.as_raw_fd(),
                EV_TAP,
                EventSet::IN | EventSet::EDGE_TRIGGERED,
            ),
            Events::with_data_raw(self.rx_limiter.timer_fd(), EV_RX_LIMITER, EventSet::IN),
            Events::with_data_raw(self.tx_limiter.timer_fd(), EV_TX_LIMITER, EventSet::IN),
        ];
        register_events(ops, &format!("virtio-net {}", self.id), &evs);
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            EV_RX => {
                consume_event(&self.queue_evts[RX], &self.metrics);
                self.process_rx();
            }
            EV_TAP => {
                self.tap_readable = true;
                self.process_rx();
            }
            EV_RX_LIMITER => {
                self.rx_limiter.on_timer();
                self.process_rx();
            }
            EV_TX => {
                consume_event(&self.queue_evts[TX], &self.metrics);
                self.process_tx();
            }
            EV_TX_LIMITER => {
                self.tx_limiter.on_timer();
                self.process_tx();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
