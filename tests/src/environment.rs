//! Which kind of KVM host the scenarios get on this machine.

use std::fmt;
use std::fs;
use std::path::Path;

/// Where scenarios run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    /// On this machine: `/dev/kvm` has hardware virtualization.
    Direct,
    /// Inside a nested KVM host (QEMU TCG + emulated SVM) started by the harness.
    Nested,
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Environment::Direct => write!(f, "direct KVM (hardware virtualization)"),
            Environment::Nested => {
                write!(f, "nested KVM host (QEMU TCG with emulated SVM)")
            }
        }
    }
}

/// Decides where scenarios run. `KVM_TESTS_MODE=direct|nested` overrides the detection.
pub fn detect() -> Environment {
    match std::env::var("KVM_TESTS_MODE").as_deref() {
        Ok("direct") => return Environment::Direct,
        Ok("nested") => return Environment::Nested,
        _ => {}
    }
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if hardware_kvm(
        Path::new("/dev/kvm").exists(),
        Path::new("/sys/module/kvm_pvm").exists(),
        &cpuinfo,
    ) {
        Environment::Direct
    } else {
        Environment::Nested
    }
}

/// True when `/dev/kvm` exists, is not PVM (software virtualization that cannot boot
/// stock Linux guests), and the CPU has VT-x or SVM.
fn hardware_kvm(dev_kvm: bool, pvm_loaded: bool, cpuinfo: &str) -> bool {
    if !dev_kvm || pvm_loaded {
        return false;
    }
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split_whitespace())
        .any(|flag| flag == "vmx" || flag == "svm")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMX: &str = "processor\t: 0\nflags\t\t: fpu vme vmx sse\n";
    const PLAIN: &str = "processor\t: 0\nflags\t\t: fpu vme sse hypervisor\n";

    #[test]
    fn hardware_virtualization_needs_dev_kvm_cpu_flag_and_no_pvm() {
        assert!(hardware_kvm(true, false, VMX));
        assert!(hardware_kvm(true, false, &VMX.replace("vmx", "svm")));
        assert!(!hardware_kvm(false, false, VMX), "no /dev/kvm");
        assert!(!hardware_kvm(true, true, VMX), "PVM");
        assert!(!hardware_kvm(true, false, PLAIN), "no vmx/svm flag");
        assert!(
            !hardware_kvm(true, false, "flags: vmxnet\n"),
            "whole words only"
        );
    }
}
