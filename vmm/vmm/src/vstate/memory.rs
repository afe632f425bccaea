//! Guest RAM: one or two regions around the 32-bit MMIO gap, backed by anonymous memory.

use super::layout::{MMIO_GAP_END, MMIO_GAP_START};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// The guest memory type used across the vmm.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Errors while creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The size is zero or not representable.
    #[error("invalid guest memory size {0} MiB")]
    InvalidSize(usize),
    /// mmap failed (typically the host cannot provide that much address space).
    #[error("cannot allocate {mib} MiB of guest memory: {source}")]
    Allocate {
        /// Requested MiB.
        mib: usize,
        /// Underlying error.
        source: vm_memory::mmap::FromRangesError,
    },
}

/// The guest physical RAM ranges for `mem_mib` MiB of RAM: below the gap and, if larger than
/// the gap start, continuing at 4 GiB.
pub fn ram_ranges(mem_mib: usize) -> Result<Vec<(GuestAddress, usize)>, MemoryError> {
    let size = (mem_mib as u64)
        .checked_mul(1 << 20)
        .filter(|s| *s > 0)
        .ok_or(MemoryError::InvalidSize(mem_mib))?;
    if size <= MMIO_GAP_START {
        return Ok(vec![(GuestAddress(0), size as usize)]);
    }
    Ok(vec![
        (GuestAddress(0), MMIO_GAP_START as usize),
        (GuestAddress(MMIO_GAP_END), (size - MMIO_GAP_START) as usize),
    ])
}

/// Allocates guest memory of `mem_mib` MiB (pages are touched lazily). The mappings are
/// excluded from core dumps (which also keeps them apart from neighbouring mappings in
/// /proc/PID/smaps, flag `dd`).
pub fn create_guest_memory(mem_mib: usize) -> Result<GuestMemory, MemoryError> {
    let ranges = ram_ranges(mem_mib)?;
    let mem = GuestMemoryMmap::from_ranges(&ranges).map_err(|source| MemoryError::Allocate {
        mib: mem_mib,
        source,
    })?;
    for r in mem.iter() {
        if let Ok(host) = r.get_host_address(vm_memory::MemoryRegionAddress(0)) {
            // SAFETY: the range is exactly one live mapping owned by `mem`; MADV_DONTDUMP
            // only changes how the kernel dumps it.
            let rc = unsafe { libc::madvise(host.cast(), r.len() as usize, libc::MADV_DONTDUMP) };
            if rc != 0 {
                tracing::debug!("madvise(MADV_DONTDUMP) on guest memory failed");
            }
        }
    }
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_is_one_region() {
        let r = ram_ranges(128).unwrap();
        assert_eq!(r, vec![(GuestAddress(0), 128 << 20)]);
        let m = create_guest_memory(128).unwrap();
        assert_eq!(m.num_regions(), 1);
        assert_eq!(m.last_addr(), GuestAddress((128 << 20) - 1));
    }

    #[test]
    fn large_guest_skips_the_gap() {
        let r = ram_ranges(4096).unwrap();
        assert_eq!(
            r,
            vec![
                (GuestAddress(0), 0xC000_0000),
                (GuestAddress(0x1_0000_0000), 0x4000_0000)
            ]
        );
        let exactly_gap = ram_ranges(3072).unwrap();
        assert_eq!(exactly_gap.len(), 1);
    }

    #[test]
    fn zero_is_rejected() {
        assert!(matches!(ram_ranges(0), Err(MemoryError::InvalidSize(0))));
    }
}
