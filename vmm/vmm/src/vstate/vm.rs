//! The KVM VM: in-kernel irqchip and PIT, guest memory slots.

use super::layout::KVM_TSS_ADDR;
use super::memory::GuestMemory;
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion};

/// Errors while creating the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm: {0}")]
    OpenKvm(kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("KVM {what} failed: {source}")]
    Ioctl {
        /// The operation.
        what: &'static str,
        /// The errno.
        source: kvm_ioctls::Error,
    },
    /// More vCPUs than KVM supports.
    #[error("{0} vCPUs requested but KVM supports at most {1}")]
    TooManyVcpus(u8, usize),
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Ioctl { what, source }
}

/// A KVM VM with its memory registered.
pub struct Vm {
    /// The KVM system handle (kept for CPUID and MSR queries).
    pub kvm: Kvm,
    /// The VM file descriptor; devices register irqfds and ioeventfds on it.
    pub fd: VmFd,
}

impl Vm {
    /// Opens /dev/kvm and creates a VM with an in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT.
    pub fn new(vcpus: u8) -> Result<Self, VmError> {
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        let max = kvm.get_max_vcpus();
        if usize::from(vcpus) > max {
            return Err(VmError::TooManyVcpus(vcpus, max));
        }
        let fd = kvm.create_vm().map_err(ioctl("CREATE_VM"))?;
        fd.set_tss_address(KVM_TSS_ADDR as usize)
            .map_err(ioctl("SET_TSS_ADDR"))?;
        fd.create_irq_chip().map_err(ioctl("CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(ioctl("CREATE_PIT2"))?;
        Ok(Vm { kvm, fd })
    }

    /// Registers every region of `mem` as a KVM memory slot.
    pub fn register_memory(&self, mem: &GuestMemory) -> Result<(), VmError> {
        for (slot, region) in mem.iter().enumerate() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|_| VmError::Ioctl {
                    what: "memory region host address",
                    source: kvm_ioctls::Error::new(libc::EINVAL),
                })?;
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live mmap owned by `mem`, which the caller keeps alive
            // (an Arc held by the vmm) for as long as the VM exists; the range is exactly the
            // region's length.
            unsafe { self.fd.set_user_memory_region(r) }
                .map_err(ioctl("SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }
}
