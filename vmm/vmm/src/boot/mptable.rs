//! Intel MultiProcessor Specification 1.4 table, so that Linux finds every vCPU's local APIC
//! and the IOAPIC's ISA interrupt assignments without ACPI.

use crate::vstate::layout::{EBDA_START, IOAPIC_ADDR, LAPIC_ADDR};
use crate::vstate::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// Number of IOAPIC pins (GSIs 0..24).
pub const IOAPIC_PINS: u8 = 24;
const SPEC_REV: u8 = 4;

/// Errors building the table.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MpTableError {
    /// Zero or too many vCPUs for one IOAPIC ID space.
    #[error("cannot describe {0} vCPUs in an MP table")]
    VcpuCount(u8),
    /// The table does not fit below 640 KiB or guest memory is too small.
    #[error("cannot write the MP table to guest memory")]
    Write,
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// The MP floating pointer and configuration table for `vcpus` vCPUs, to be placed at `base`.
pub fn build(vcpus: u8, base: u64) -> Result<Vec<u8>, MpTableError> {
    if vcpus == 0 || vcpus == u8::MAX {
        return Err(MpTableError::VcpuCount(vcpus));
    }
    let ioapic_id = vcpus;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for cpu in 0..vcpus {
        let flags = if cpu == 0 { 0b11 } else { 0b01 }; // enabled, bootstrap processor
        entries.extend_from_slice(&[0, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // CPU signature: family 6
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    count += 1;
    // I/O interrupts: the PIC's ExtINT on pin 0, ISA IRQ 0 (PIT) on pin 2, IRQ n on pin n.
    let mut io_int = |kind: u8, irq: u8, pin: u8| {
        entries.extend_from_slice(&[3, kind, 0, 0, 0, irq, ioapic_id, pin]);
        count += 1;
    };
    io_int(3, 0, 0);
    io_int(0, 0, 2);
    for irq in 1..IOAPIC_PINS {
        if irq != 2 {
            io_int(0, irq, irq);
        }
    }
    // Local interrupts: LINT0 ExtINT, LINT1 NMI, to all local APICs.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_len = 44 + entries.len();
    let mut table = Vec::with_capacity(table_len);
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.extend_from_slice(&[SPEC_REV, 0]);
    table.extend_from_slice(b"RUSTVMM ");
    table.extend_from_slice(b"MICROVM     ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(LAPIC_ADDR as u32).to_le_bytes());
    table.extend_from_slice(&[0, 0, 0, 0]); // extended length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16 + table.len());
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&((base + 16) as u32).to_le_bytes());
    fp.extend_from_slice(&[1, SPEC_REV, 0, 0, 0, 0, 0, 0]);
    fp[10] = checksum(&fp);
    fp.extend_from_slice(&table);
    Ok(fp)
}

/// Writes the MP table at the start of the EBDA (0x9fc00), where Linux scans for it.
pub fn write(mem: &GuestMemory, vcpus: u8) -> Result<(), MpTableError> {
    let bytes = build(vcpus, EBDA_START)?;
    if EBDA_START + bytes.len() as u64 > 0xa_0000 {
        return Err(MpTableError::Write);
    }
    mem.write_slice(&bytes, GuestAddress(EBDA_START))
        .map_err(|_| MpTableError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_and_counts() {
        for n in [1u8, 2, 32] {
            let b = build(n, EBDA_START).unwrap();
            assert_eq!(&b[0..4], b"_MP_");
            assert_eq!(sum(&b[..16]), 0);
            let ptr = u32::from_le_bytes(b[4..8].try_into().unwrap()) as u64;
            assert_eq!(ptr, EBDA_START + 16);
            let t = &b[16..];
            let len = u16::from_le_bytes([t[4], t[5]]) as usize;
            assert_eq!(len, t.len());
            assert_eq!(sum(t), 0);
            let count = u16::from_le_bytes([t[34], t[35]]);
            // CPUs + bus + IOAPIC + 24 I/O interrupts + 2 local interrupts.
            assert_eq!(count, n as u16 + 2 + 24 + 2);
            let cpus = t[44..]
                .chunks(20)
                .take(n as usize)
                .filter(|e| e[0] == 0)
                .count();
            assert_eq!(cpus, n as usize);
            assert!(16 + t.len() <= 1024);
        }
    }

    #[test]
    fn bad_counts() {
        assert_eq!(build(0, 0), Err(MpTableError::VcpuCount(0)));
        assert_eq!(build(255, 0), Err(MpTableError::VcpuCount(255)));
    }
}
