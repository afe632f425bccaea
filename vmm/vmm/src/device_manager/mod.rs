//! The buses of a VM being built and what is placed on them: the legacy devices of
//! [`crate::legacy`] at their fixed ports and addresses, and virtio-mmio transports from
//! `vmm-devices` in numbered slots (irqfd, ioeventfds, kernel command-line entry).

pub mod bus;

use crate::legacy::{boot_timer, i8042, serial};
use crate::vstate::layout::{
    BOOT_TIMER_ADDR, I8042_IRQ, I8042_PORT, SERIAL_IRQ, SERIAL_PORT, VIRTIO_IRQ_FIRST,
    VIRTIO_IRQ_LAST, VIRTIO_MMIO_SIZE, VIRTIO_MMIO_START,
};
use bus::{Bus, BusError, SharedDevice};
use event_manager::MutEventSubscriber;
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// An event-loop subscriber shared with the event manager.
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Errors registering devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Bus insertion.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// No more virtio-mmio slots/IRQs (GSIs 5..=23).
    #[error("no free virtio-mmio slot: at most {} devices", VIRTIO_IRQ_LAST - VIRTIO_IRQ_FIRST + 1)]
    NoSlot,
    /// eventfd creation.
    #[error("cannot create eventfd: {0}")]
    EventFd(std::io::Error),
    /// irqfd/ioeventfd registration.
    #[error("KVM {what} failed: {source}")]
    Kvm {
        /// The operation.
        what: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
}

/// Where a virtio-mmio device was placed.
pub struct MmioSlot {
    /// Guest physical base of its 4 KiB register window.
    pub base: u64,
    /// Its GSI.
    pub irq: u32,
    /// Writing 1 to this eventfd raises the device's interrupt (it is a KVM irqfd).
    pub irq_evt: EventFd,
}

/// Offset of the QueueNotify register in a virtio-mmio register window.
pub const VIRTIO_MMIO_QUEUE_NOTIFY: u64 = 0x50;

impl MmioSlot {
    /// Makes a guest write of `queue` to QueueNotify signal `evt` inside KVM (no vCPU exit).
    pub fn register_queue_notify(
        &self,
        vm: &VmFd,
        evt: &EventFd,
        queue: u32,
    ) -> Result<(), DeviceError> {
        let addr = IoEventAddress::Mmio(self.base + VIRTIO_MMIO_QUEUE_NOTIFY);
        vm.register_ioevent(evt, &addr, queue)
            .map_err(|source| DeviceError::Kvm {
                what: "IOEVENTFD",
                source,
            })
    }

    /// Like [`Self::register_queue_notify`] for any value written (single-queue devices).
    pub fn register_any_notify(&self, vm: &VmFd, evt: &EventFd) -> Result<(), DeviceError> {
        let addr = IoEventAddress::Mmio(self.base + VIRTIO_MMIO_QUEUE_NOTIFY);
        vm.register_ioevent(evt, &addr, NoDatamatch)
            .map_err(|source| DeviceError::Kvm {
                what: "IOEVENTFD",
                source,
            })
    }
}

/// The buses, the kernel command-line additions and the event-loop subscribers of a VM
/// being built.
#[derive(Default)]
pub struct DeviceManager {
    /// Port-I/O bus.
    pub pio: Bus,
    /// MMIO bus.
    pub mmio: Bus,
    /// Command-line entries announcing devices.
    pub cmdline: Vec<String>,
    /// Subscribers to add to the event manager when the VM starts.
    pub subscribers: Vec<Subscriber>,
    next_virtio: u32,
}

impl DeviceManager {
    /// An empty device manager.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_slot(&self) -> Result<(u64, u32), DeviceError> {
        let irq = VIRTIO_IRQ_FIRST + self.next_virtio;
        if irq > VIRTIO_IRQ_LAST {
            return Err(DeviceError::NoSlot);
        }
        Ok((
            VIRTIO_MMIO_START + u64::from(self.next_virtio) * VIRTIO_MMIO_SIZE,
            irq,
        ))
    }

    fn place(
        &mut self,
        device: SharedDevice,
        base: u64,
        irq: u32,
        subscriber: Option<Subscriber>,
    ) -> Result<(), DeviceError> {
        self.mmio.insert(device, base, VIRTIO_MMIO_SIZE)?;
        self.cmdline
            .push(format!("virtio_mmio.device=4K@{base:#x}:{irq}"));
        if let Some(s) = subscriber {
            self.subscribers.push(s);
        }
        self.next_virtio += 1;
        Ok(())
    }

    /// Places a virtio-mmio transport that owns its interrupt and queue eventfds (the
    /// `vmm_devices::transport::MmioTransport` way): next 4 KiB slot from 0xC000_1000 and
    /// next GSI from 5; `irq_evt` becomes the KVM irqfd of that GSI; queue `i`'s eventfd an
    /// ioeventfd on `base + 0x50` matching a 4-byte write of `i`; the transport goes on the
    /// MMIO bus; `virtio_mmio.device=4K@<base>:<gsi>` goes on the kernel command line; the
    /// subscriber (the device: queue, tap, socket events) goes to the event loop when the VM
    /// starts. Returns (base, gsi).
    pub fn register_virtio_mmio(
        &mut self,
        vm: &VmFd,
        transport: SharedDevice,
        irq_evt: &EventFd,
        queue_evts: &[EventFd],
        subscriber: Option<Subscriber>,
    ) -> Result<(u64, u32), DeviceError> {
        let (base, irq) = self.next_slot()?;
        let kvm = |what| move |source| DeviceError::Kvm { what, source };
        vm.register_irqfd(irq_evt, irq).map_err(kvm("IRQFD"))?;
        let notify = IoEventAddress::Mmio(base + VIRTIO_MMIO_QUEUE_NOTIFY);
        for (i, evt) in queue_evts.iter().enumerate() {
            vm.register_ioevent(evt, &notify, i as u32)
                .map_err(kvm("IOEVENTFD"))?;
        }
        self.place(transport, base, irq, subscriber)?;
        Ok((base, irq))
    }

    /// Like [`Self::register_virtio_mmio`] for a device without eventfds of its own: creates
    /// the irqfd eventfd and returns it in the slot; queue notifications are registered
    /// afterwards with [`MmioSlot::register_queue_notify`].
    pub fn register_mmio_device(
        &mut self,
        vm: &VmFd,
        device: SharedDevice,
        subscriber: Option<Subscriber>,
    ) -> Result<MmioSlot, DeviceError> {
        let (base, irq) = self.next_slot()?;
        let irq_evt = EventFd::new(libc::EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
        vm.register_irqfd(&irq_evt, irq)
            .map_err(|source| DeviceError::Kvm {
                what: "IRQFD",
                source,
            })?;
        self.place(device, base, irq, subscriber)?;
        Ok(MmioSlot { base, irq, irq_evt })
    }

    /// Adds the legacy devices: serial (COM1, IRQ 4), i8042 (IRQ 1), both through irqfds,
    /// and the boot timer.
    pub fn add_legacy(
        &mut self,
        vm: &VmFd,
        serial: Arc<Mutex<serial::SerialDevice>>,
        serial_irq: &EventFd,
        i8042: Arc<Mutex<i8042::I8042>>,
        i8042_irq: &EventFd,
        boot_timer: boot_timer::BootTimer,
    ) -> Result<(), DeviceError> {
        for (evt, gsi) in [(serial_irq, SERIAL_IRQ), (i8042_irq, I8042_IRQ)] {
            vm.register_irqfd(evt, gsi)
                .map_err(|source| DeviceError::Kvm {
                    what: "IRQFD",
                    source,
                })?;
        }
        self.pio.insert(serial, u64::from(SERIAL_PORT), 8)?;
        self.pio.insert(i8042, u64::from(I8042_PORT), 5)?;
        self.mmio
            .insert(Arc::new(Mutex::new(boot_timer)), BOOT_TIMER_ADDR, 0x1000)?;
        Ok(())
    }
}
