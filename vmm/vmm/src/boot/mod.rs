//! Linux boot: kernel, initrd, command line, zero page and MP table in guest memory.

pub mod loader;
pub mod mptable;
pub mod params;

use crate::vstate::layout::{CMDLINE, CMDLINE_MAX};
use crate::vstate::memory::GuestMemory;
use crate::vstate::regs;
use linux_loader::cmdline::Cmdline;
use std::path::PathBuf;

/// Errors preparing guest memory for boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Kernel or initrd loading failed.
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    /// The command line is invalid or too long.
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    /// Zero page.
    #[error(transparent)]
    Params(#[from] params::ParamsError),
    /// MP table.
    #[error(transparent)]
    MpTable(#[from] mptable::MpTableError),
    /// Page tables or GDT.
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// Kernel image (ELF vmlinux or bzImage).
    pub kernel: PathBuf,
    /// Optional initrd.
    pub initrd: Option<PathBuf>,
    /// Kernel command line as given by the user.
    pub cmdline: String,
    /// Extra command-line entries from devices (e.g. `virtio_mmio.device=...`).
    pub extra_cmdline: Vec<String>,
}

/// Builds the final command line: the user's, then device entries (before any `--`).
pub fn build_cmdline(user: &str, extra: &[String]) -> Result<Cmdline, BootError> {
    let err = |e: linux_loader::cmdline::Error| BootError::Cmdline(e.to_string());
    let mut c = Cmdline::try_from(user, CMDLINE_MAX).map_err(err)?;
    for e in extra {
        c.insert_str(e).map_err(err)?;
    }
    Ok(c)
}

/// Loads everything for a Linux boot into `mem`; returns the 64-bit entry point.
pub fn prepare(mem: &GuestMemory, spec: &BootSpec, vcpus: u8) -> Result<u64, BootError> {
    let kernel = loader::load_kernel(mem, &spec.kernel)?;
    let cmdline = build_cmdline(&spec.cmdline, &spec.extra_cmdline)?;
    linux_loader::loader::load_cmdline(mem, vm_memory::GuestAddress(CMDLINE), &cmdline)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    let cmdline_size = cmdline
        .as_cstring()
        .map(|c| c.as_bytes_with_nul().len())
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    let initrd = match &spec.initrd {
        Some(p) => {
            let max = kernel
                .setup_header
                .map(|h| u64::from(h.initrd_addr_max) + 1)
                .filter(|m| *m > 1)
                .unwrap_or(u64::MAX);
            Some(loader::load_initrd(mem, p, kernel.end, max)?)
        }
        None => None,
    };
    params::write(&params::ZeroPage {
        header: kernel.setup_header,
        cmdline_size,
        initrd,
        mem,
    })?;
    mptable::write(mem, vcpus)?;
    regs::write_boot_tables(mem)?;
    Ok(kernel.entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_with_device_entries_before_init_args() {
        let c = build_cmdline(
            "console=ttyS0 reboot=k -- init-arg",
            &["virtio_mmio.device=4K@0xc0001000:5".to_string()],
        )
        .unwrap();
        let s = c.as_cstring().unwrap().into_string().unwrap();
        assert_eq!(
            s,
            "console=ttyS0 reboot=k virtio_mmio.device=4K@0xc0001000:5 -- init-arg"
        );
        let long = "x".repeat(CMDLINE_MAX + 1);
        assert!(matches!(
            build_cmdline(&long, &[]),
            Err(BootError::Cmdline(_))
        ));
    }
}
