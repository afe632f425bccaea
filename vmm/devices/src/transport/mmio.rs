//! virtio-mmio transport, version 2 (virtio 1.x, modern) registers.

use std::sync::{Arc, Mutex, MutexGuard};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_F_VERSION_1,
};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::device::{ActivateContext, Interrupt, VirtioDevice};
use crate::bus::BusDevice;
use crate::GuestMemoryMmap;

const MMIO_MAGIC: u32 = 0x7472_6976; // "virt"
const MMIO_VERSION: u32 = 2;
const VENDOR_ID: u32 = 0;

/// Offset of the QueueNotify register: the vmm registers each queue's ioeventfd here,
/// with the queue index as datamatch.
pub const QUEUE_NOTIFY_OFFSET: u64 = 0x50;
/// Size of one virtio-mmio device window.
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;
const CONFIG_OFFSET: u64 = 0x100;

/// A virtio-mmio transport wrapping one device. Map it on the MMIO bus with
/// `Arc<Mutex<MmioTransport>>` at the device's 4 KiB window.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
}

impl MmioTransport {
    /// Wraps `device`; guest memory is needed to validate queue addresses.
    pub fn new(
        mem: GuestMemoryMmap,
        device: Arc<Mutex<dyn VirtioDevice>>,
    ) -> std::io::Result<Self> {
        let (queues, queue_evts) = {
            let d = lock(&device);
            let mut queues = Vec::new();
            for &max in d.queue_max_sizes() {
                queues.push(Queue::new(max).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
                })?);
            }
            let evts = d
                .queue_events()
                .iter()
                .map(|e| e.try_clone())
                .collect::<std::io::Result<Vec<_>>>()?;
            (queues, evts)
        };
        Ok(MmioTransport {
            device,
            mem,
            interrupt: Arc::new(Interrupt::new()?),
            queues,
            queue_evts,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
        })
    }

    /// The eventfd to register as irqfd for the device's GSI.
    pub fn irq_evt(&self) -> &EventFd {
        self.interrupt.eventfd()
    }

    /// The per-queue eventfds to register as ioeventfds at `base + QUEUE_NOTIFY_OFFSET`,
    /// datamatch = the index in this slice (a 4-byte write of the queue index).
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// The device behind this transport.
    pub fn device(&self) -> Arc<Mutex<dyn VirtioDevice>> {
        self.device.clone()
    }

    /// The device status register (for tests and diagnostics).
    pub fn status(&self) -> u32 {
        self.status
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn with_queue<F: FnOnce(&mut Queue)>(&mut self, f: F) {
        // Queue configuration is only allowed between FEATURES_OK and DRIVER_OK.
        if self.status & VIRTIO_CONFIG_S_FEATURES_OK == 0
            || self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0
        {
            tracing::warn!("virtio-mmio: queue setup outside FEATURES_OK..DRIVER_OK ignored");
            return;
        }
        if let Some(q) = self.selected_queue() {
            if !q.ready() {
                f(q);
            }
        }
    }

    fn reset(&mut self) {
        lock(&self.device).reset();
        for q in self.queues.iter_mut() {
            q.reset();
        }
        self.interrupt.clear();
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let new_bits = value & !self.status;
        if value & self.status != self.status {
            // Clearing bits other than by a reset is not allowed.
            tracing::warn!(
                "virtio-mmio: status {value:#x} clears bits of {:#x}",
                self.status
            );
            return;
        }
        if new_bits & VIRTIO_CONFIG_S_FAILED != 0 {
            self.status |= VIRTIO_CONFIG_S_FAILED;
            return;
        }
        if new_bits & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            let avail = lock(&self.device).avail_features();
            let version_1 = 1u64 << VIRTIO_F_VERSION_1;
            if self.driver_features & version_1 == 0 || self.driver_features & !avail != 0 {
                tracing::warn!(
                    "virtio-mmio: driver features {:#x} refused (offered {avail:#x})",
                    self.driver_features
                );
                // Leave FEATURES_OK unset: the driver reads it back and gives up.
                self.status |= value & !(VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
                return;
            }
            lock(&self.device).set_acked_features(self.driver_features);
        }
        if new_bits & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            let ok = value & VIRTIO_CONFIG_S_FEATURES_OK != 0
                && value & VIRTIO_CONFIG_S_DRIVER != 0
                && value & VIRTIO_CONFIG_S_ACKNOWLEDGE != 0;
            if !ok || !self.activate() {
                self.status |= (value & !VIRTIO_CONFIG_S_DRIVER_OK) | VIRTIO_CONFIG_S_NEEDS_RESET;
                self.interrupt.signal_config_change();
                return;
            }
        }
        self.status = value;
    }

    fn activate(&mut self) -> bool {
        let mut queues = Vec::with_capacity(self.queues.len());
        for (i, q) in self.queues.iter().enumerate() {
            if !q.ready() || !q.is_valid(&self.mem) {
                tracing::warn!("virtio-mmio: queue {i} not ready or invalid at DRIVER_OK");
                return false;
            }
            match Queue::try_from(q.state()) {
                Ok(q) => queues.push(q),
                Err(e) => {
                    tracing::warn!("virtio-mmio: queue {i} invalid: {e}");
                    return false;
                }
            }
        }
        let ctx = ActivateContext {
            mem: self.mem.clone(),
            queues,
            interrupt: self.interrupt.clone(),
        };
        match lock(&self.device).activate(ctx) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("virtio-mmio: device activation failed: {e}");
                false
            }
        }
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            0x00 => MMIO_MAGIC,
            0x04 => MMIO_VERSION,
            0x08 => lock(&self.device).device_type(),
            0x0c => VENDOR_ID,
            0x10 => {
                let f = lock(&self.device).avail_features();
                match self.device_features_sel {
                    0 => f as u32,
                    1 => (f >> 32) as u32,
                    _ => 0,
                }
            }
            0x34 => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            0x44 => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            0x60 => self.interrupt.status(),
            0x70 => self.status,
            0xfc => lock(&self.device).config_generation(),
            _ => {
                tracing::debug!("virtio-mmio: read of unknown register {offset:#x}");
                0
            }
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        let lo = |old: u64| (old & !0xffff_ffff) | u64::from(v);
        let hi = |old: u64| (old & 0xffff_ffff) | (u64::from(v) << 32);
        match offset {
            0x14 => self.device_features_sel = v,
            0x20 => {
                if self.status & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
                    match self.driver_features_sel {
                        0 => self.driver_features = lo(self.driver_features),
                        1 => self.driver_features = hi(self.driver_features),
                        _ => {}
                    }
                }
            }
            0x24 => self.driver_features_sel = v,
            0x30 => self.queue_sel = v,
            0x38 => self.with_queue(|q| {
                if q.try_set_size(v.min(u32::from(u16::MAX)) as u16).is_err() {
                    tracing::warn!("virtio-mmio: invalid queue size {v}");
                }
            }),
            0x44 => {
                let mem = self.mem.clone();
                self.with_queue(|q| {
                    if v == 1 {
                        q.set_ready(true);
                        if !q.is_valid(&mem) {
                            tracing::warn!("virtio-mmio: queue rings outside guest memory");
                            q.set_ready(false);
                        }
                    }
                })
            }
            0x50 => {
                if self.status & VIRTIO_CONFIG_S_DRIVER_OK == 0 {
                    return;
                }
                // Reached only when the vmm did not register an ioeventfd for this queue.
                if let Some(evt) = self.queue_evts.get(v as usize) {
                    let _ = evt.write(1);
                }
            }
            0x64 => self.interrupt.ack(v),
            0x70 => self.set_status(v),
            0x80 => self.with_queue(|q| q.set_desc_table_address(Some(v), None)),
            0x84 => self.with_queue(|q| q.set_desc_table_address(None, Some(v))),
            0x90 => self.with_queue(|q| q.set_avail_ring_address(Some(v), None)),
            0x94 => self.with_queue(|q| q.set_avail_ring_address(None, Some(v))),
            0xa0 => self.with_queue(|q| q.set_used_ring_address(Some(v), None)),
            0xa4 => self.with_queue(|q| q.set_used_ring_address(None, Some(v))),
            _ => tracing::debug!("virtio-mmio: write of unknown register {offset:#x}"),
        }
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a device thread panicked; keep serving the guest.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_OFFSET {
            if offset >= MMIO_WINDOW_SIZE {
                data.fill(0);
                return;
            }
            lock(&self.device).read_config(offset - CONFIG_OFFSET, data);
            return;
        }
        if data.len() != 4 || offset % 4 != 0 {
            data.fill(0);
            return;
        }
        let v = self.read_reg(offset);
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            if offset < MMIO_WINDOW_SIZE {
                lock(&self.device).write_config(offset - CONFIG_OFFSET, data);
            }
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if offset % 4 != 0 {
            return;
        }
        self.write_reg(offset, u32::from_le_bytes(bytes));
    }
}
