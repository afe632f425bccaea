//! virtio-block backed by a host file, read-only or read-write.

pub mod request;

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_S_IOERR,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::Bytes;
use vmm_sys_util::eventfd::EventFd;

use crate::metrics::DeviceMetrics;
use crate::rate_limiter::{RateLimiter, RateLimiterConfig};
use crate::transport::device::{queue_eventfds, read_config_bytes};
use crate::transport::{register_events, ActivateContext, ActivateError, VirtioDevice};
use crate::virtq::{add_used, consume_event, signal_used, Active};
use request::{parse, Disk, RequestType, SECTOR_SIZE};

/// Queue size offered to the guest.
pub const QUEUE_SIZE: u16 = 256;
/// Most data segments per request the guest may use (VIRTIO_BLK_F_SEG_MAX); without it
/// Linux sends one segment per request.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
const EV_QUEUE: u32 = 0;
const EV_LIMITER: u32 = 1;

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
        Ok(Block {
            disk: Disk {
                file,
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
        })
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
        self.disk.file = file;
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

    /// Serves every pending request, until the queue is empty or the limiter blocks.
    pub fn process_queue(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let m = &*self.metrics;
        let mut used = false;
        while let Some(chain) = a.queues[0].pop_descriptor_chain(&a.mem) {
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
            if !self.limiter.consume(bytes, 1) {
                DeviceMetrics::inc(&m.rate_limiter_throttled);
                a.queues[0].go_to_previous_position();
                break;
            }
            let out = req.execute(&mut self.disk, &a.mem);
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
            used = true;
        }
        if used {
            signal_used(&a.interrupt, m);
        }
    }

    /// `struct virtio_blk_config` up to seg_max: capacity, size_max (unused), seg_max.
    fn config_bytes(&self) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[..8].copy_from_slice(&self.disk.sectors.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c
    }
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
        let mut f =
            (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_BLK_F_FLUSH) | (1 << VIRTIO_BLK_F_SEG_MAX);
        if self.disk.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
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

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        let evs = [
            Events::with_data(&self.queue_evts[0], EV_QUEUE, EventSet::IN),
            Events::with_data_raw(self.limiter.timer_fd(), EV_LIMITER, EventSet::IN),
        ];
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
            _ => return,
        }
        self.process_queue();
    }
}

#[cfg(test)]
mod tests;
