//! vCPUs: configuration for a 64-bit entry and the run loop on a thread of its own.

use super::cpuid::{vcpu_cpuid, Features};
use super::memory::GuestMemory;
use super::msrs::boot_msrs;
use super::regs;
use super::vm::{Vm, VmError};
use crate::device_manager::bus::Bus;
use crate::metrics::METRICS;
use crate::vstate::exit::{ExitNotifier, UnhandledLog};
use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Ioctl { what, source }
}

/// The buses a vCPU dispatches exits to.
#[derive(Clone)]
pub struct Buses {
    /// Port I/O.
    pub pio: Arc<Bus>,
    /// MMIO.
    pub mmio: Arc<Bus>,
}

/// A configured vCPU, ready to run on its own thread.
pub struct Vcpu {
    fd: VcpuFd,
    index: u8,
}

/// KVM's supported CPUID set.
pub fn supported_cpuid(vm: &Vm) -> Result<CpuId, VmError> {
    vm.kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(ioctl("GET_SUPPORTED_CPUID"))
}

/// How many vCPUs a VM has and how they are grouped into cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// vCPUs.
    pub vcpus: u8,
    /// Two threads per core (`smt`).
    pub smt: bool,
}

impl From<u8> for Topology {
    fn from(vcpus: u8) -> Self {
        Topology { vcpus, smt: false }
    }
}

impl Vcpu {
    /// Creates vCPU `index` of `count` and sets CPUID, MSRs, registers, FPU and LAPIC for a
    /// 64-bit entry at `entry` (boot structures must already be in guest memory).
    pub fn new(
        vm: &Vm,
        supported: &CpuId,
        index: u8,
        topology: Topology,
        entry: u64,
    ) -> Result<Self, VmError> {
        let count = topology.vcpus;
        let fd = vm
            .fd
            .create_vcpu(u64::from(index))
            .map_err(ioctl("CREATE_VCPU"))?;
        let features = Features {
            tsc_deadline: vm.kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer),
            smt: topology.smt,
        };
        fd.set_cpuid2(&vcpu_cpuid(supported, index, count, features))
            .map_err(ioctl("SET_CPUID2"))?;
        let msrs = boot_msrs().map_err(|_| VmError::Ioctl {
            what: "MSR list",
            source: kvm_ioctls::Error::new(libc::E2BIG),
        })?;
        let set = fd.set_msrs(&msrs).map_err(ioctl("SET_MSRS"))?;
        if set != msrs.as_slice().len() {
            tracing::debug!(
                "vCPU {index}: KVM accepted {set} of {} boot MSRs",
                msrs.as_slice().len()
            );
        }
        let sregs = fd.get_sregs().map_err(ioctl("GET_SREGS"))?;
        fd.set_sregs(&regs::long_mode_sregs(sregs))
            .map_err(ioctl("SET_SREGS"))?;
        fd.set_regs(&regs::boot_regs(entry))
            .map_err(ioctl("SET_REGS"))?;
        fd.set_fpu(&regs::boot_fpu()).map_err(ioctl("SET_FPU"))?;
        let lapic = fd.get_lapic().map_err(ioctl("GET_LAPIC"))?;
        fd.set_lapic(&regs::configure_lint(lapic))
            .map_err(ioctl("SET_LAPIC"))?;
        Ok(Vcpu { fd, index })
    }

    /// Starts the run loop on a thread named `vcpu<N>`.
    pub fn start(
        self,
        buses: Buses,
        exit: ExitNotifier,
        log: Arc<UnhandledLog>,
        _mem: GuestMemory,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("vcpu{}", self.index))
            .stack_size(256 << 10)
            .spawn(move || {
                // Before the first KVM_RUN: the guest never runs unfiltered.
                if let Err(e) = crate::seccomp::apply(crate::seccomp::ThreadKind::Vcpu) {
                    tracing::error!("vCPU {}: {e}", self.index);
                    exit.notify(1);
                    return;
                }
                self.run(&buses, &exit, &log)
            })
    }

    fn run(mut self, buses: &Buses, exit: &ExitNotifier, log: &UnhandledLog) {
        let index = self.index;
        loop {
            if exit.requested() {
                return;
            }
            match self.fd.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    METRICS.vcpu_exits_io.fetch_add(1, Ordering::Relaxed);
                    if !buses.pio.read(u64::from(port), data) {
                        data.fill(0);
                        log.once("port read", u64::from(port), data.len());
                    }
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    METRICS.vcpu_exits_io.fetch_add(1, Ordering::Relaxed);
                    if !buses.pio.write(u64::from(port), data) {
                        log.once("port write", u64::from(port), data.len());
                    }
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    METRICS.vcpu_exits_mmio.fetch_add(1, Ordering::Relaxed);
                    if !buses.mmio.read(addr, data) {
                        data.fill(0);
                        log.once("mmio read", addr, data.len());
                    }
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    METRICS.vcpu_exits_mmio.fetch_add(1, Ordering::Relaxed);
                    if !buses.mmio.write(addr, data) {
                        log.once("mmio write", addr, data.len());
                    }
                }
                Ok(VcpuExit::Shutdown) => {
                    tracing::info!("vCPU {index}: guest shut down (triple fault or reset)");
                    exit.notify(0);
                    return;
                }
                Ok(VcpuExit::Hlt) => {
                    tracing::info!("vCPU {index}: halted with interrupts off");
                    exit.notify(0);
                    return;
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    tracing::error!(
                        "vCPU {index}: KVM entry failed (reason {reason:#x}, cpu {cpu})"
                    );
                    exit.notify(1);
                    return;
                }
                Ok(VcpuExit::InternalError) => {
                    tracing::error!("vCPU {index}: KVM internal error");
                    exit.notify(1);
                    return;
                }
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    tracing::info!("vCPU {index}: system event {kind}");
                    exit.notify(0);
                    return;
                }
                Ok(other) => {
                    METRICS.vcpu_exits_other.fetch_add(1, Ordering::Relaxed);
                    log.once(&format!("{other:?}"), 0, 0);
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => {
                    tracing::error!("vCPU {index}: KVM_RUN failed: {e}");
                    exit.notify(1);
                    return;
                }
            }
        }
    }
}
