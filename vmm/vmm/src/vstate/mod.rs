//! KVM state: the VM, vCPUs, CPUID, registers, MSRs and the guest memory layout.

pub mod cpuid;
pub mod exit;
pub mod layout;
pub mod memory;
pub mod msrs;
pub mod regs;
pub mod vcpu;
pub mod vm;
