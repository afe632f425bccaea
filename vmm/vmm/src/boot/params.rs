//! The Linux zero page: setup header, command line pointer, initrd and the e820 map.

use crate::vstate::layout::{CMDLINE, EBDA_START, HIMEM_START, MMIO_GAP_START, ZERO_PAGE};
use crate::vstate::memory::GuestMemory;
use linux_loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::configurator::{linux::LinuxBootConfigurator, BootConfigurator, BootParams};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

const E820_RAM: u32 = 1;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;

/// Errors writing the zero page.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// More e820 entries than the zero page holds.
    #[error("too many e820 entries")]
    E820Full,
    /// Guest memory too small for the zero page.
    #[error("cannot write boot parameters: {0}")]
    Write(String),
}

/// The e820 RAM ranges: low memory below the EBDA, RAM from 1 MiB up to the gap, and RAM
/// above 4 GiB.
pub fn e820_ranges(mem: &GuestMemory) -> Vec<(u64, u64)> {
    let mut out = vec![(0, EBDA_START)];
    for r in mem.iter() {
        let start = r.start_addr().raw_value();
        let end = start + r.len();
        if start < MMIO_GAP_START {
            let lo = start.max(HIMEM_START);
            let hi = end.min(MMIO_GAP_START);
            if hi > lo {
                out.push((lo, hi - lo));
            }
        } else {
            out.push((start, r.len()));
        }
    }
    out
}

/// Inputs to the zero page.
pub struct ZeroPage<'a> {
    /// The bzImage's setup header, if the kernel was one.
    pub header: Option<setup_header>,
    /// Command line length including NUL.
    pub cmdline_size: usize,
    /// Initrd (address, size).
    pub initrd: Option<(u64, u64)>,
    /// Guest memory.
    pub mem: &'a GuestMemory,
}

/// Builds the zero page.
pub fn build(z: &ZeroPage) -> Result<boot_params, ParamsError> {
    let mut p = boot_params::default();
    match z.header {
        Some(h) => p.hdr = h,
        None => {
            p.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
            p.hdr.header = KERNEL_HDR_MAGIC;
            p.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
        }
    }
    p.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    p.hdr.cmd_line_ptr = CMDLINE as u32;
    p.hdr.cmdline_size = z.cmdline_size as u32;
    if let Some((addr, size)) = z.initrd {
        p.hdr.ramdisk_image = addr as u32;
        p.hdr.ramdisk_size = size as u32;
    }
    let ranges = e820_ranges(z.mem);
    if ranges.len() > p.e820_table.len() {
        return Err(ParamsError::E820Full);
    }
    for (i, (addr, size)) in ranges.iter().enumerate() {
        p.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: E820_RAM,
        };
    }
    p.e820_entries = ranges.len() as u8;
    Ok(p)
}

/// Writes the zero page at [`ZERO_PAGE`].
pub fn write(z: &ZeroPage) -> Result<(), ParamsError> {
    let p = build(z)?;
    LinuxBootConfigurator::write_bootparams::<GuestMemory>(
        &BootParams::new(&p, GuestAddress(ZERO_PAGE)),
        z.mem,
    )
    .map_err(|e| ParamsError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::create_guest_memory;
    use vm_memory::Bytes;

    #[test]
    fn e820_small_and_large() {
        let small = create_guest_memory(128).unwrap();
        assert_eq!(
            e820_ranges(&small),
            vec![(0, EBDA_START), (HIMEM_START, (128 << 20) - HIMEM_START)]
        );
        // Only compute the ranges for a large guest: the mapping is lazy.
        let big = create_guest_memory(4096).unwrap();
        let r = e820_ranges(&big);
        assert_eq!(r.len(), 3);
        assert_eq!(r[1], (HIMEM_START, MMIO_GAP_START - HIMEM_START));
        assert_eq!(r[2], (0x1_0000_0000, 1 << 30));
    }

    #[test]
    fn elf_zero_page_fields() {
        let mem = create_guest_memory(64).unwrap();
        let z = ZeroPage {
            header: None,
            cmdline_size: 12,
            initrd: Some((0x300_0000, 0x1000)),
            mem: &mem,
        };
        write(&z).unwrap();
        let p: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE)).unwrap();
        assert_eq!({ p.hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE as u32);
        assert_eq!({ p.hdr.ramdisk_image }, 0x300_0000);
        assert_eq!(p.e820_entries, 2);
        assert_eq!({ p.hdr.type_of_loader }, 0xff);
    }
}
