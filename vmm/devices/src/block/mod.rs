//! virtio-block backed by a host file, read-only or read-write, with two engines:
//! synchronous (blocking I/O on the event loop, the default) and asynchronous (io_uring,
//! [`uring`]). Both serve read, write, flush, discard (hole punching) and GET_ID.

pub mod request;
pub mod uring;

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_S_IOERR,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::Bytes;
use vmm_sys_util::eventfd::EventFd;

use crate::metrics::DeviceMetrics;
use crate::rate_limiter::{RateLimiter, RateLimiterConfig};
use crate::transport::device::{queue_eventfds, read_config_bytes};
use crate::transport::{register_events, ActivateContext, ActivateError, VirtioDevice};
use crate::virtq::{add_used, consume_event, signal_used, Active};
use request::{
    parse, Disk, Outcome, Request, RequestType, IOERR, MAX_DISCARD_SECTORS, MAX_DISCARD_SEG,
    SECTOR_SIZE,
};
use uring::{SubmitError, Uring};

/// Queue size offered to the guest.
pub const QUEUE_SIZE: u16 = 256;
/// Most data segments per request the guest may use (VIRTIO_BLK_F_SEG_MAX); without it
/// Linux sends one segment per request.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
const EV_QUEUE: u32 = 0;
const EV_LIMITER: u32 = 1;
const EV_COMPLETION: u32 = 2;

/// How requests reach the backing file (`io_engine`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IoEngine {
    /// Blocking I/O on the event loop.
    #[default]
    Sync,
    /// io_uring: submitted without blocking, completed through an eventfd.
    Async,
}

/// Errors opening or swapping the backing file.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The backing file cannot be opened or sized.
    #[error("backing file {0}: {1}")]
    Backing(PathBuf, std::io::Error),
    /// Creating an eventfd or timerfd failed.
    #[error("cannot create event: {0}")]
    Event(std::io::Error),
}

/// Configuration of one drive (the Firecracker `/drives/{id}` body, device part).
#[derive(Debug, Clone, Default)]
pub struct BlockConfig {
    /// Drive id; also the serial returned to GET_ID (first 20 bytes).
    pub drive_id: String,
    /// Backing file.
    pub path_on_host: PathBuf,
    /// Refuse guest writes.
    pub is_read_only: bool,
    /// Rate limiter (unlimited by default).
    pub rate_limiter: RateLimiterConfig,
    /// I/O engine asked for; `Async` falls back to `Sync` (logged) where io_uring cannot
    /// be set up.
    pub io_engine: IoEngine,
}

enum Engine {
    Sync,
    Async(Box<Uring>),
}

/// A virtio-block device.
pub struct Block {
    disk: Disk,
    path: PathBuf,
    queue_evts: Vec<EventFd>,
    active: Option<Active>,
    acked: u64,
    config_generation: u32,
    limiter: RateLimiter,
    metrics: Arc<DeviceMetrics>,
    engine: Engine,
}

fn open_disk(path: &Path, read_only: bool) -> Result<(File, u64), BlockError> {
    let err = |e| BlockError::Backing(path.to_path_buf(), e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(err)?;
    let len = file.seek(SeekFrom::End(0)).map_err(err)?;
    Ok((file, len / SECTOR_SIZE))
}

impl Block {
    /// Opens the backing file and builds the device.
    pub fn new(cfg: &BlockConfig) -> Result<Self, BlockError> {
        let (file, sectors) = open_disk(&cfg.path_on_host, cfg.is_read_only)?;
        let serial = cfg.drive_id.as_bytes().iter().take(20).copied().collect();
        let engine = match cfg.io_engine {
            IoEngine::Sync => Engine::Sync,
            IoEngine::Async => match Uring::new(QUEUE_SIZE) {
                Ok(u) => Engine::Async(Box::new(u)),
                Err(e) => {
                    tracing::warn!(
                        "virtio-block {}: io_uring unavailable ({e}); using the Sync engine",
                        cfg.drive_id
                    );
                    Engine::Sync
                }
            },
        };
        Ok(Block {
            disk: Disk {
                file: Arc::new(file),
                sectors,
                read_only: cfg.is_read_only,
                serial,
            },
            path: cfg.path_on_host.clone(),
            queue_evts: queue_eventfds(1).map_err(BlockError::Event)?,
            active: None,
            acked: 0,
            config_generation: 0,
            limiter: RateLimiter::new(&cfg.rate_limiter).map_err(BlockError::Event)?,
            metrics: Arc::default(),
            engine,
        })
    }

    /// The engine in use (`Sync` when `Async` was asked for but io_uring is unavailable).
    pub fn io_engine(&self) -> IoEngine {
        match self.engine {
            Engine::Sync => IoEngine::Sync,
            Engine::Async(_) => IoEngine::Async,
        }
    }

    /// Requests submitted to io_uring and not yet completed (0 on the Sync engine).
    pub fn in_flight(&self) -> usize {
        match &self.engine {
            Engine::Sync => 0,
            Engine::Async(u) => u.in_flight(),
        }
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<DeviceMetrics> {
        self.metrics.clone()
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.disk.sectors
    }

    /// The current backing file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Swaps the backing file of a running VM (PATCH /drives/{id}): the new capacity shows
    /// in the config space and the guest gets a config-change interrupt.
    pub fn update_backing_file(&mut self, path: &Path) -> Result<(), BlockError> {
        let (file, sectors) = open_disk(path, self.disk.read_only)?;
        self.disk.file = Arc::new(file);
        self.disk.sectors = sectors;
        self.path = path.to_path_buf();
        self.config_generation = self.config_generation.wrapping_add(1);
        if let Some(a) = &self.active {
            a.interrupt.signal_config_change();
            DeviceMetrics::inc(&self.metrics.interrupts);
        }
        Ok(())
    }

    /// Replaces the rate limiter configuration live (PATCH) and resumes the queue.
    pub fn update_rate_limiter(&mut self, cfg: &RateLimiterConfig) {
        self.limiter.update(cfg);
        self.process_queue();
    }

    /// Serves every pending request, until the queue is empty, the limiter blocks or (on
    /// the Async engine) the ring holds as many requests as the queue.
    pub fn process_queue(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let m = &*self.metrics;
        let mut used = false;
        // Set once the ring was re-checked with nothing popped since: a guest whose avail
        // index is invalid (more than the queue size ahead) would otherwise keep the loop
        // spinning, as the pop refuses it while the index differs.
        let mut rechecked = false;
        loop {
            if let Engine::Async(u) = &self.engine {
                if u.is_full() {
                    break;
                }
            }
            let Some(chain) = a.queues[0].pop_descriptor_chain(&a.mem) else {
                // Drained: with EVENT_IDX this publishes avail_event (kick me at the next
                // request); either way, go on if the guest added requests meanwhile.
                match a.queues[0].enable_notification(&a.mem) {
                    Ok(true) if !rechecked => {
                        rechecked = true;
                        continue;
                    }
                    _ => break,
                }
            };
            rechecked = false;
            let head = chain.head_index();
            let parsed = parse(chain, &a.mem);
            let req = match parsed.request {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("virtio-block: malformed request: {e}");
                    DeviceMetrics::inc(&m.errors);
                    let mut len = 0;
                    if let Some(s) = parsed.status {
                        if a.mem.write_obj(VIRTIO_BLK_S_IOERR as u8, s).is_ok() {
                            len = 1;
                        }
                    }
                    add_used(&mut a.queues[0], &a.mem, head, len, m);
                    used = true;
                    continue;
                }
            };
            let bytes = match req.kind {
                RequestType::In | RequestType::Out => req.data_len,
                _ => 0,
            };
            // Charged when admitted, whichever engine then runs it.
            if !self.limiter.consume(bytes, 1) {
                DeviceMetrics::inc(&m.rate_limiter_throttled);
                a.queues[0].go_to_previous_position();
                break;
            }
            let out = match &mut self.engine {
                Engine::Sync => req.execute(&mut self.disk, &a.mem),
                Engine::Async(u) => match req.prepare(&self.disk, &a.mem) {
                    Err(out) => out,
                    Ok(op) => match u.push(head, req.clone(), op, &self.disk.file, &a.mem) {
                        Ok(()) => continue,
                        // Full is not reached: room was checked before the pop, and the
                        // submission queue is as large as the slots.
                        Err(SubmitError::BadBuffers | SubmitError::Full) => IOERR,
                    },
                },
            };
            finish(a, m, head, &req, out);
            used = true;
        }
        if let Engine::Async(u) = &mut self.engine {
            u.submit();
        }
        if used {
            notify(a, m);
        }
    }

    /// The eventfd the io_uring signals completions on (None on the Sync engine); the
    /// device registers it with the event loop itself.
    pub fn completion_event(&self) -> Option<&EventFd> {
        match &self.engine {
            Engine::Sync => None,
            Engine::Async(u) => Some(u.event()),
        }
    }

    /// Takes the io_uring's completions (its eventfd fired), reports them to the guest and
    /// resumes the queue if it waited for room in the ring.
    pub fn complete(&mut self) {
        let Engine::Async(u) = &mut self.engine else {
            return;
        };
        let done = u.reap();
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let m = &*self.metrics;
        let any = !done.is_empty();
        for c in done {
            let whole = match c.request.kind {
                RequestType::In | RequestType::Out => {
                    u64::try_from(c.result).ok() == Some(c.request.data_len)
                }
                _ => c.result >= 0,
            };
            let out = if whole {
                c.request.success()
            } else {
                if c.result < 0 {
                    let e = std::io::Error::from_raw_os_error(-c.result);
                    tracing::warn!("virtio-block: I/O error: {e}");
                }
                IOERR
            };
            finish(a, m, c.head, &c.request, out);
        }
        if any {
            notify(a, m);
        }
        if !self.limiter.is_blocked() {
            self.process_queue();
        }
    }

    /// `struct virtio_blk_config` up to the discard fields: capacity, size_max (unused),
    /// seg_max, then max_discard_sectors, max_discard_seg and discard_sector_alignment.
    fn config_bytes(&self) -> [u8; 48] {
        let mut c = [0u8; 48];
        c[..8].copy_from_slice(&self.disk.sectors.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[40..44].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
        c[44..48].copy_from_slice(&1u32.to_le_bytes());
        c
    }
}

/// Interrupts the guest for the used entries just added, unless it asked not to be (with
/// EVENT_IDX: only when the used index passed the driver's `used_event`).
fn notify(a: &mut Active, m: &DeviceMetrics) {
    if a.queues[0].needs_notification(&a.mem).unwrap_or(true) {
        signal_used(&a.interrupt, m);
    }
}

/// Writes a request's status, returns its chain and counts it.
fn finish(a: &mut Active, m: &DeviceMetrics, head: u16, req: &Request, out: Outcome) {
    if out.status == 0 {
        DeviceMetrics::inc(&m.ops);
        match req.kind {
            RequestType::In => DeviceMetrics::add(&m.bytes_to_guest, req.data_len),
            RequestType::Out => DeviceMetrics::add(&m.bytes_from_guest, req.data_len),
            _ => {}
        }
    } else {
        DeviceMetrics::inc(&m.errors);
    }
    let len = match a.mem.write_obj(out.status, req.status) {
        Ok(()) => out.written + 1,
        Err(_) => out.written,
    };
    add_used(&mut a.queues[0], &a.mem, head, len, m);
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        crate::device_type::BLOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }
    fn queue_events(&self) -> &[EventFd] {
        &self.queue_evts
    }
    fn avail_features(&self) -> u64 {
        let mut f = (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | (1 << VIRTIO_BLK_F_FLUSH)
            | (1 << VIRTIO_BLK_F_SEG_MAX);
        if self.disk.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
        } else {
            f |= 1 << VIRTIO_BLK_F_DISCARD;
        }
        f
    }
    fn set_acked_features(&mut self, features: u64) {
        self.acked = features;
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_bytes(), offset, data);
    }
    fn config_generation(&self) -> u32 {
        self.config_generation
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        ctx.expect_queues(1)?;
        let mut active: Active = ctx.into();
        let event_idx = self.acked & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        active.queues[0].set_event_idx(event_idx);
        self.active = Some(active);
        Ok(())
    }
    fn reset(&mut self) {
        // Runs on a vCPU thread: no syscalls beyond the vCPU filter. Requests still in the
        // ring complete later and are dropped by the event loop (see `uring`).
        self.active = None;
        if let Engine::Async(u) = &mut self.engine {
            u.reset();
        }
    }
    fn is_activated(&self) -> bool {
        self.active.is_some()
    }
}

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        let mut evs = vec![
            Events::with_data(&self.queue_evts[0], EV_QUEUE, EventSet::IN),
            Events::with_data_raw(self.limiter.timer_fd(), EV_LIMITER, EventSet::IN),
        ];
        if let Engine::Async(u) = &self.engine {
            evs.push(Events::with_data(u.event(), EV_COMPLETION, EventSet::IN));
        }
        register_events(ops, "virtio-block", &evs);
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            EV_QUEUE => {
                consume_event(&self.queue_evts[0], &self.metrics);
                if self.limiter.is_blocked() {
                    return;
                }
            }
            EV_LIMITER => self.limiter.on_timer(),
            EV_COMPLETION => return self.complete(),
            _ => return,
        }
        self.process_queue();
    }
}

#[cfg(test)]
mod tests;
