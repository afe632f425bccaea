//! Kernel and initrd loading: ELF `vmlinux` or `bzImage` through linux-loader.

use crate::vstate::layout::HIMEM_START;
use crate::vstate::memory::GuestMemory;
use linux_loader::bootparam::setup_header;
use linux_loader::loader::{bzimage::BzImage, elf::Elf, KernelLoader};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

/// Offset of the 64-bit entry point in a bzImage's protected-mode kernel.
const BZIMAGE_ENTRY64_OFFSET: u64 = 0x200;

/// Errors loading the kernel or initrd.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be opened or read.
    #[error("cannot read {what} {path}: {source}")]
    Io {
        /// "kernel image" or "initrd".
        what: &'static str,
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Neither format.
    #[error("kernel image {0} is neither an ELF vmlinux nor a bzImage")]
    UnknownFormat(String),
    /// linux-loader rejected the image.
    #[error("cannot load kernel image {path}: {source}")]
    Kernel {
        /// The path.
        path: String,
        /// The loader error.
        source: linux_loader::loader::Error,
    },
    /// The initrd does not fit in guest RAM.
    #[error("initrd {path} ({size} bytes) does not fit in guest memory")]
    InitrdTooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
    },
}

/// Where the kernel was loaded and how to enter it.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    /// 64-bit entry point.
    pub entry: u64,
    /// First byte after the kernel image.
    pub end: u64,
    /// The bzImage setup header (None for ELF).
    pub setup_header: Option<setup_header>,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LoadError + 'a {
    move |source| LoadError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Loads `path` (ELF vmlinux or bzImage) into `mem`.
pub fn load_kernel(mem: &GuestMemory, path: &Path) -> Result<LoadedKernel, LoadError> {
    let mut f = File::open(path).map_err(io("kernel image", path))?;
    let mut magic = [0u8; 4];
    let is_elf = f.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF";
    let mut hdrs = [0u8; 4];
    let is_bzimage = !is_elf
        && f.seek(SeekFrom::Start(0x202)).is_ok()
        && f.read_exact(&mut hdrs).is_ok()
        && hdrs == *b"HdrS";
    f.seek(SeekFrom::Start(0))
        .map_err(io("kernel image", path))?;
    let kerr = |source| LoadError::Kernel {
        path: path.display().to_string(),
        source,
    };
    let himem = Some(GuestAddress(HIMEM_START));
    if is_elf {
        let r = Elf::load(mem, None, &mut f, himem).map_err(kerr)?;
        Ok(LoadedKernel {
            entry: r.kernel_load.raw_value(),
            end: r.kernel_end,
            setup_header: None,
        })
    } else if is_bzimage {
        let r = BzImage::load(mem, None, &mut f, himem).map_err(kerr)?;
        Ok(LoadedKernel {
            entry: r.kernel_load.raw_value() + BZIMAGE_ENTRY64_OFFSET,
            end: r.kernel_end,
            setup_header: r.setup_header,
        })
    } else {
        Err(LoadError::UnknownFormat(path.display().to_string()))
    }
}

/// Loads the initrd at the highest page-aligned address below `max_end` (and the end of the
/// first RAM region) that stays above `kernel_end`; returns (address, size).
pub fn load_initrd(
    mem: &GuestMemory,
    path: &Path,
    kernel_end: u64,
    max_end: u64,
) -> Result<(u64, u64), LoadError> {
    let mut f = File::open(path).map_err(io("initrd", path))?;
    let size = f
        .seek(SeekFrom::End(0))
        .and_then(|s| f.seek(SeekFrom::Start(0)).map(|_| s))
        .map_err(io("initrd", path))?;
    let too_large = || LoadError::InitrdTooLarge {
        path: path.display().to_string(),
        size,
    };
    let low_end = mem
        .iter()
        .next()
        .map(|r| r.start_addr().raw_value() + r.len())
        .unwrap_or(0);
    let top = low_end.min(max_end);
    let addr = top.checked_sub(size).ok_or_else(too_large)? & !0xfff;
    if size == 0 || addr < kernel_end {
        return Err(too_large());
    }
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, size as usize)
        .map_err(|e| LoadError::Io {
            what: "initrd",
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::create_guest_memory;
    use std::io::Write;

    fn tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("vmm-loader-{}-{name}", std::process::id()));
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn rejects_garbage_and_missing_files() {
        let mem = create_guest_memory(16).unwrap();
        let p = tmp("garbage", &[0x55; 4096]);
        assert!(matches!(
            load_kernel(&mem, &p),
            Err(LoadError::UnknownFormat(_))
        ));
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(
            load_kernel(&mem, Path::new("/nonexistent/vmlinux")),
            Err(LoadError::Io { .. })
        ));
        let bad_elf = tmp("badelf", b"\x7fELF\x02\x01\x01\0");
        assert!(matches!(
            load_kernel(&mem, &bad_elf),
            Err(LoadError::Kernel { .. })
        ));
        std::fs::remove_file(&bad_elf).unwrap();
    }

    #[test]
    fn initrd_goes_high_and_page_aligned() {
        let mem = create_guest_memory(16).unwrap();
        let p = tmp("initrd", &[7u8; 5000]);
        let (addr, size) = load_initrd(&mem, &p, 0x20_0000, u64::MAX).unwrap();
        assert_eq!(size, 5000);
        assert_eq!(addr & 0xfff, 0);
        assert!(addr + size <= 16 << 20);
        let b: u8 = mem.read_obj(GuestAddress(addr + 4999)).unwrap();
        assert_eq!(b, 7);
        assert!(matches!(
            load_initrd(&mem, &p, 16 << 20, u64::MAX),
            Err(LoadError::InitrdTooLarge { .. })
        ));
        std::fs::remove_file(&p).unwrap();
    }
}
