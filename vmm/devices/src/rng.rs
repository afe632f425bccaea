//! virtio-rng (entropy device), fed from the host's getrandom(2).

use std::io::Write;
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_queue::{QueueOwnedT, QueueT};
use vmm_sys_util::eventfd::EventFd;

use crate::metrics::DeviceMetrics;
use crate::rate_limiter::{RateLimiter, RateLimiterConfig};
use crate::transport::device::queue_eventfds;
use crate::transport::{register_events, ActivateContext, ActivateError, VirtioDevice};
use crate::virtq::{add_used, consume_event, signal_used, Active};

const QUEUE_SIZE: u16 = 256;
/// Most bytes handed out per request, however large the guest's buffers.
const MAX_REQUEST: usize = 64 * 1024;
const EV_QUEUE: u32 = 0;
const EV_LIMITER: u32 = 1;

/// The entropy device.
pub struct Rng {
    queue_evts: Vec<EventFd>,
    active: Option<Active>,
    acked: u64,
    limiter: RateLimiter,
    metrics: Arc<DeviceMetrics>,
}

impl Rng {
    /// A new entropy device; `rate_limiter` (bytes and requests) may be unlimited.
    pub fn new(rate_limiter: &RateLimiterConfig) -> std::io::Result<Self> {
        Ok(Rng {
            queue_evts: queue_eventfds(1)?,
            active: None,
            acked: 0,
            limiter: RateLimiter::new(rate_limiter)?,
            metrics: Arc::default(),
        })
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<DeviceMetrics> {
        self.metrics.clone()
    }

    /// Serves every pending request.
    pub fn process_queue(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let m = &*self.metrics;
        let mut used = false;
        let mut buf = vec![0u8; MAX_REQUEST];
        while let Some(chain) = a.queues[0].pop_descriptor_chain(&a.mem) {
            let head = chain.head_index();
            let mut len = 0u32;
            match chain.writer(&a.mem) {
                Ok(mut w) => {
                    let n = w.available_bytes().min(MAX_REQUEST);
                    if !self.limiter.consume(n as u64, 1) {
                        DeviceMetrics::inc(&m.rate_limiter_throttled);
                        a.queues[0].go_to_previous_position();
                        break;
                    }
                    match getrandom::fill(&mut buf[..n]) {
                        Ok(()) if n > 0 && w.write_all(&buf[..n]).is_ok() => {
                            len = n as u32;
                            DeviceMetrics::add(&m.bytes_to_guest, n as u64);
                            DeviceMetrics::inc(&m.ops);
                        }
                        _ => DeviceMetrics::inc(&m.errors),
                    }
                }
                Err(e) => {
                    tracing::warn!("virtio-rng: bad chain: {e}");
                    DeviceMetrics::inc(&m.errors);
                }
            }
            add_used(&mut a.queues[0], &a.mem, head, len, m);
            used = true;
        }
        if used {
            signal_used(&a.interrupt, m);
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        crate::device_type::RNG
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
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
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        ctx.expect_queues(1)?;
        self.active = Some(ctx.into());
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
    }
    fn is_activated(&self) -> bool {
        self.active.is_some()
    }
}

impl MutEventSubscriber for Rng {
    fn init(&mut self, ops: &mut EventOps) {
        let evs = [
            Events::with_data(&self.queue_evts[0], EV_QUEUE, EventSet::IN),
            Events::with_data_raw(self.limiter.timer_fd(), EV_LIMITER, EventSet::IN),
        ];
        register_events(ops, "virtio-rng", &evs);
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            EV_QUEUE => consume_event(&self.queue_evts[0], &self.metrics),
            EV_LIMITER => self.limiter.on_timer(),
            _ => return,
        }
        self.process_queue();
    }
}
