//! Registers for a 64-bit Linux entry: GDT, identity page tables, segments, control
//! registers, general registers, FPU and the local APIC's LINT pins.

use super::layout::{BOOT_GDT, BOOT_IDT, BOOT_STACK, PDE, PDPTE, PML4, ZERO_PAGE};
use super::memory::GuestMemory;
use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress};

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// Errors while writing boot structures to guest memory.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {0} to guest memory (guest too small?)")]
pub struct RegsError(&'static str);

/// A GDT descriptor from flags (access byte in bits 0-7, G/DB/L/AVL in bits 12-15),
/// base and limit.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (u64::from(flags), u64::from(base), u64::from(limit));
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0xf_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// The KVM segment for GDT descriptor `entry` at index `index`.
pub fn segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    let access = (entry >> 40) as u8;
    let hi = (entry >> 52) as u8 & 0xf;
    let g = hi >> 3 & 1;
    let raw_limit = ((entry >> 32) & 0xf_0000) as u32 | (entry & 0xffff) as u32;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = access >> 7 & 1;
    kvm_segment {
        base: ((entry >> 32) & 0xff00_0000) | ((entry >> 16) & 0x00ff_ffff),
        limit,
        selector: u16::from(index) * 8,
        type_: access & 0xf,
        present,
        dpl: access >> 5 & 3,
        db: hi >> 2 & 1,
        s: access >> 4 & 1,
        l: hi >> 1 & 1,
        g,
        avl: hi & 1,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// The boot GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18).
pub fn boot_gdt() -> [u64; 4] {
    [
        0,
        gdt_entry(0xa09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0xfffff),
    ]
}

/// Writes the GDT, an empty IDT and identity page tables for the first 4 GiB (2 MiB pages,
/// so the MMIO gap is reachable before the kernel sets up its own tables).
pub fn write_boot_tables(mem: &GuestMemory) -> Result<(), RegsError> {
    for (i, e) in boot_gdt().iter().enumerate() {
        mem.write_obj(*e, GuestAddress(BOOT_GDT + i as u64 * 8))
            .map_err(|_| RegsError("GDT"))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT))
        .map_err(|_| RegsError("IDT"))?;
    mem.write_obj(PDPTE | 0x03, GuestAddress(PML4))
        .map_err(|_| RegsError("PML4"))?;
    for i in 0..4u64 {
        mem.write_obj((PDE + i * 0x1000) | 0x03, GuestAddress(PDPTE + i * 8))
            .map_err(|_| RegsError("PDPTE"))?;
    }
    for i in 0..2048u64 {
        mem.write_obj((i << 21) | 0x83, GuestAddress(PDE + i * 8))
            .map_err(|_| RegsError("PDE"))?;
    }
    Ok(())
}

/// Special registers for long mode with the boot GDT and page tables.
pub fn long_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    let gdt = boot_gdt();
    let code = segment_from_gdt(gdt[1], 1);
    let data = segment_from_gdt(gdt[2], 2);
    let tss = segment_from_gdt(gdt[3], 3);
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = (gdt.len() * 8 - 1) as u16;
    sregs.idt.base = BOOT_IDT;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr3 = PML4;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// General registers: entry point, boot stack, RSI = zero page (Linux 64-bit boot protocol).
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: ZERO_PAGE,
        ..Default::default()
    }
}

/// FPU in its reset state (x87 control word, MXCSR defaults).
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;

fn lapic_reg(l: &kvm_lapic_state, off: usize) -> u32 {
    let b = &l.regs[off..off + 4];
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

fn set_lapic_reg(l: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        l.regs[off + i] = *b as _;
    }
}

/// LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as a PC BIOS leaves them.
pub fn configure_lint(mut l: kvm_lapic_state) -> kvm_lapic_state {
    let set_mode = |v: u32, mode: u32| (v & !0x700) | (mode << 8);
    let lvt0 = lapic_reg(&l, APIC_LVT0);
    set_lapic_reg(&mut l, APIC_LVT0, set_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = lapic_reg(&l, APIC_LVT1);
    set_lapic_reg(&mut l, APIC_LVT1, set_mode(lvt1, APIC_MODE_NMI));
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::create_guest_memory;

    #[test]
    fn gdt_round_trips_into_segments() {
        let code = segment_from_gdt(gdt_entry(0xa09b, 0, 0xfffff), 1);
        assert_eq!((code.selector, code.type_, code.l, code.db), (8, 0xb, 1, 0));
        assert_eq!((code.present, code.s, code.g, code.unusable), (1, 1, 1, 0));
        assert_eq!(code.limit, 0xffff_ffff);
        let data = segment_from_gdt(gdt_entry(0xc093, 0x1234_5678, 0xfffff), 2);
        assert_eq!((data.type_, data.db, data.l), (3, 1, 0));
        assert_eq!(data.base, 0x1234_5678);
        assert_eq!(segment_from_gdt(0, 0).unusable, 1);
    }

    #[test]
    fn tables_and_sregs() {
        let mem = create_guest_memory(16).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4)).unwrap();
        assert_eq!(pml4, PDPTE | 3);
        let pde5: u64 = mem.read_obj(GuestAddress(PDE + 5 * 8)).unwrap();
        assert_eq!(pde5, (5 << 21) | 0x83);
        let gap: u64 = mem.read_obj(GuestAddress(PDE + 1536 * 8)).unwrap();
        assert_eq!(gap, 0xC000_0000 | 0x83);
        let pdpte3: u64 = mem.read_obj(GuestAddress(PDPTE + 3 * 8)).unwrap();
        assert_eq!(pdpte3, (PDE + 0x3000) | 3);
        let s = long_mode_sregs(kvm_sregs::default());
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, PML4);
        assert_eq!(s.cs.selector, 8);
        assert_eq!(s.tr.selector, 0x18);
    }

    #[test]
    fn lint_modes() {
        let l = configure_lint(kvm_lapic_state::default());
        assert_eq!(lapic_reg(&l, APIC_LVT0) >> 8 & 7, APIC_MODE_EXTINT);
        assert_eq!(lapic_reg(&l, APIC_LVT1) >> 8 & 7, APIC_MODE_NMI);
        assert_eq!(boot_regs(0x100_0000).rsi, ZERO_PAGE);
    }
}
