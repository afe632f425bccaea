//! Guest RAM: one or two regions around the 32-bit MMIO gap, backed by anonymous memory
//! (normal pages, or 2 MiB huge pages from the host's hugetlbfs pool).

use super::layout::{MMIO_GAP_END, MMIO_GAP_START};
use vm_memory::mmap::{GuestRegionMmap, MmapRegionBuilder};
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
    /// The host has too few free 2 MiB huge pages (or none configured).
    #[error(
        "cannot allocate {mib} MiB of guest memory from 2 MiB huge pages: {source} \
         (the host needs that many free huge pages: /proc/sys/vm/nr_hugepages)"
    )]
    HugePages {
        /// Requested MiB.
        mib: usize,
        /// The mmap error.
        source: vm_memory::mmap::MmapRegionError,
    },
    /// The huge-page regions could not form guest memory (not expected).
    #[error("guest memory layout: {0}")]
    Layout(vm_memory::GuestRegionCollectionError),
}

/// How guest RAM is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backing {
    /// Anonymous memory in normal pages, touched lazily.
    #[default]
    Anonymous,
    /// Anonymous memory in 2 MiB huge pages (`MAP_HUGETLB`), reserved at allocation: the
    /// allocation fails at once when the host's pool has too few free pages.
    HugePages2M,
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
    create_backed_memory(mem_mib, Backing::Anonymous)
}

/// Allocates guest memory of `mem_mib` MiB with the given backing.
pub fn create_backed_memory(mem_mib: usize, backing: Backing) -> Result<GuestMemory, MemoryError> {
    let ranges = ram_ranges(mem_mib)?;
    let mem = match backing {
        Backing::Anonymous => {
            GuestMemoryMmap::from_ranges(&ranges).map_err(|source| MemoryError::Allocate {
                mib: mem_mib,
                source,
            })?
        }
        Backing::HugePages2M => huge_page_memory(&ranges, mem_mib)?,
    };
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

/// Maps each range from 2 MiB huge pages (no `MAP_NORESERVE`: the kernel reserves the pages
/// at mmap time, so a short pool fails here and not as a SIGBUS when the guest touches them).
fn huge_page_memory(
    ranges: &[(GuestAddress, usize)],
    mem_mib: usize,
) -> Result<GuestMemory, MemoryError> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB;
    let mut regions = Vec::with_capacity(ranges.len());
    for (addr, len) in ranges {
        let mapping = MmapRegionBuilder::new(*len)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(flags)
            .with_hugetlbfs(true)
            .build()
            .map_err(|source| MemoryError::HugePages {
                mib: mem_mib,
                source,
            })?;
        let region =
            GuestRegionMmap::new(mapping, *addr).ok_or(MemoryError::InvalidSize(mem_mib))?;
        regions.push(region);
    }
    GuestMemoryMmap::from_regions(regions).map_err(MemoryError::Layout)
}

/// Free 2 MiB huge pages on the host (`HugePages_Free` in /proc/meminfo, which counts the
/// default huge page size; 2 MiB on x86-64).
pub fn free_huge_pages() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("HugePages_Free:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
    fn huge_pages_fail_clearly_without_a_pool_and_map_with_one() {
        let free = free_huge_pages().unwrap_or(0);
        let r = create_backed_memory(64, Backing::HugePages2M);
        if free < 32 {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("huge pages") && e.contains("nr_hugepages"),
                "{e}"
            );
        } else {
            let m = r.unwrap();
            assert_eq!(m.last_addr(), GuestAddress((64 << 20) - 1));
        }
    }

    #[test]
    fn zero_is_rejected() {
        assert!(matches!(ram_ranges(0), Err(MemoryError::InvalidSize(0))));
    }
}
