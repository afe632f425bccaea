//! Builds and starts a microVM: memory, KVM VM, devices, boot structures, vCPU threads.

use crate::boot::{self, BootSpec};
use crate::device_manager::{DeviceError, DeviceManager};
use crate::legacy::boot_timer::BootTimer;
use crate::legacy::i8042::I8042;
use crate::legacy::serial::{SerialDevice, SerialOut};
use crate::vstate::exit::{ExitNotifier, UnhandledLog};
use crate::vstate::memory::{create_backed_memory, Backing, GuestMemory, MemoryError};
use crate::vstate::vcpu::{supported_cpuid, Buses, Topology, Vcpu};
use crate::vstate::vm::{Vm, VmError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use vmm_sys_util::eventfd::EventFd;

/// Errors building the microVM.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// KVM.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// Devices.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Boot.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// Thread spawn or eventfd.
    #[error("cannot start vCPU: {0}")]
    Io(#[from] std::io::Error),
}

/// What the builder needs.
pub struct VmSpec {
    /// vCPUs.
    pub vcpus: u8,
    /// MiB of RAM.
    pub mem_mib: usize,
    /// How guest RAM is backed (normal or huge pages).
    pub backing: Backing,
    /// Two hardware threads per core in the guest's CPU topology (`smt`).
    pub smt: bool,
    /// Kernel and command line.
    pub boot: BootSpec,
}

/// A started microVM.
pub struct RunningVm {
    /// KVM VM.
    pub vm: Vm,
    /// Guest memory.
    pub mem: GuestMemory,
    /// The UART (shared with the stdin subscriber).
    pub serial: Arc<Mutex<SerialDevice>>,
    /// The keyboard controller (SendCtrlAltDel).
    pub i8042: Arc<Mutex<I8042>>,
    /// vCPU threads.
    pub vcpu_threads: Vec<JoinHandle<()>>,
    /// Subscribers to add to the event loop (device queues, ...).
    pub subscribers: Vec<crate::device_manager::Subscriber>,
}

/// Hook for adding devices (virtio-mmio) between VM creation and boot.
pub type DeviceHook<'a> =
    &'a mut dyn FnMut(&Vm, &GuestMemory, &mut DeviceManager) -> Result<(), DeviceError>;

/// Creates the VM and starts its vCPUs. `start` is the InstanceStart time (for the boot
/// timer); `entry_override` skips Linux loading and enters at that address (tests with
/// hand-assembled guests that already wrote their code into memory through `prepare_mem`).
pub fn build_and_start(
    spec: &VmSpec,
    serial_out: SerialOut,
    exit: &ExitNotifier,
    start: Instant,
    add_devices: DeviceHook,
) -> Result<RunningVm, BuildError> {
    let mem = create_backed_memory(spec.mem_mib, spec.backing)?;
    let vm = Vm::new(spec.vcpus)?;
    vm.register_memory(&mem)?;
    let mut dm = DeviceManager::new();
    let serial_irq = EventFd::new(libc::EFD_NONBLOCK)?;
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        serial_irq.try_clone()?,
        serial_out,
    )));
    let kbd_irq = EventFd::new(libc::EFD_NONBLOCK)?;
    let i8042 = Arc::new(Mutex::new(I8042::new(kbd_irq.try_clone()?, exit.clone())));
    dm.add_legacy(
        &vm.fd,
        serial.clone(),
        &serial_irq,
        i8042.clone(),
        &kbd_irq,
        BootTimer::new(start),
    )?;
    add_devices(&vm, &mem, &mut dm)?;
    let mut boot = spec.boot.clone();
    boot.extra_cmdline.extend(dm.cmdline.iter().cloned());
    let entry = boot::prepare(&mem, &boot, spec.vcpus)?;
    let log = Arc::new(UnhandledLog::default());
    let topology = Topology {
        vcpus: spec.vcpus,
        smt: spec.smt,
    };
    let vcpu_threads = start_vcpus(&vm, &mem, topology, entry, &dm, exit, log)?;
    Ok(RunningVm {
        vm,
        mem,
        serial,
        i8042,
        vcpu_threads,
        subscribers: dm.subscribers,
    })
}

/// Creates `topology.vcpus` vCPUs entering at `entry` and starts their threads.
pub fn start_vcpus(
    vm: &Vm,
    mem: &GuestMemory,
    topology: impl Into<Topology>,
    entry: u64,
    dm: &DeviceManager,
    exit: &ExitNotifier,
    log: Arc<UnhandledLog>,
) -> Result<Vec<JoinHandle<()>>, BuildError> {
    let topology = topology.into();
    let count = topology.vcpus;
    let supported = supported_cpuid(vm)?;
    let vcpus = (0..count)
        .map(|i| Vcpu::new(vm, &supported, i, topology, entry))
        .collect::<Result<Vec<_>, _>>()?;
    let buses = Buses {
        pio: Arc::new(dm.pio.clone()),
        mmio: Arc::new(dm.mmio.clone()),
    };
    let mut threads = Vec::new();
    for v in vcpus {
        threads.push(v.start(buses.clone(), exit.clone(), log.clone(), mem.clone())?);
    }
    Ok(threads)
}
