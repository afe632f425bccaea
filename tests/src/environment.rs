//! Which kind of KVM host the scenarios get on this machine: the answer of
//! `scripts/kvm-kind` (the one copy of the rule), unless `KVM_TESTS_MODE` says.

use crate::payload;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

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

/// Why `scripts/kvm-kind` gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("cannot run {}: {source}", script.display())]
    Run { script: PathBuf, source: io::Error },
    #[error("{} failed ({status}): {stderr}", script.display())]
    Failed {
        script: PathBuf,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{} printed {kind:?}, not direct or nested", script.display())]
    Unknown { script: PathBuf, kind: String },
}

/// Decides where scenarios run. `KVM_TESTS_MODE=direct|nested` overrides the detection;
/// else `scripts/kvm-kind` decides, the one copy of the rule (`/dev/kvm` present, not
/// PVM, `vmx` or `svm` among the CPU flags), which the shell side uses too.
pub fn detect() -> Result<Environment, EnvironmentError> {
    match std::env::var("KVM_TESTS_MODE").as_deref() {
        Ok("direct") => return Ok(Environment::Direct),
        Ok("nested") => return Ok(Environment::Nested),
        _ => {}
    }
    kvm_kind(None)
}

/// Runs `scripts/kvm-kind`, on this machine or (tests) with `root` in place of `/`.
fn kvm_kind(root: Option<&Path>) -> Result<Environment, EnvironmentError> {
    let script = payload::repo_root().join("scripts/kvm-kind");
    let mut command = Command::new(&script);
    match root {
        Some(root) => command.env("KVM_KIND_ROOT", root),
        None => command.env_remove("KVM_KIND_ROOT"),
    };
    let result = match command.output() {
        Ok(result) => result,
        Err(source) => return Err(EnvironmentError::Run { script, source }),
    };
    if !result.status.success() {
        return Err(EnvironmentError::Failed {
            script,
            status: result.status,
            stderr: String::from_utf8_lossy(&result.stderr).into_owned(),
        });
    }
    match String::from_utf8_lossy(&result.stdout).trim() {
        "direct" => Ok(Environment::Direct),
        "nested" => Ok(Environment::Nested),
        kind => Err(EnvironmentError::Unknown {
            script,
            kind: kind.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicU32, Ordering};

    const VMX: &str = "processor\t: 0\nflags\t\t: fpu vme vmx sse\n";
    const PLAIN: &str = "processor\t: 0\nflags\t\t: fpu vme sse hypervisor\n";

    /// `scripts/kvm-kind`'s answer for a machine with or without `/dev/kvm`, with or
    /// without PVM, and `cpuinfo` as its `/proc/cpuinfo`.
    fn kind(dev_kvm: bool, pvm_loaded: bool, cpuinfo: &str) -> Environment {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "kvm-kind-test.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(root.join("dev")).unwrap();
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::create_dir_all(root.join("sys/module")).unwrap();
        if dev_kvm {
            fs::write(root.join("dev/kvm"), "").unwrap();
        }
        if pvm_loaded {
            fs::create_dir_all(root.join("sys/module/kvm_pvm")).unwrap();
        }
        fs::write(root.join("proc/cpuinfo"), cpuinfo).unwrap();
        let kind = kvm_kind(Some(&root));
        fs::remove_dir_all(&root).unwrap();
        kind.unwrap()
    }

    #[test]
    fn hardware_virtualization_needs_dev_kvm_cpu_flag_and_no_pvm() {
        use Environment::{Direct, Nested};
        assert_eq!(kind(true, false, VMX), Direct);
        assert_eq!(kind(true, false, &VMX.replace("vmx", "svm")), Direct);
        assert_eq!(kind(false, false, VMX), Nested, "no /dev/kvm");
        assert_eq!(kind(true, true, VMX), Nested, "PVM");
        assert_eq!(kind(true, false, PLAIN), Nested, "no vmx/svm flag");
        assert_eq!(
            kind(true, false, "flags: vmxnet\n"),
            Nested,
            "whole words only"
        );
    }
}
