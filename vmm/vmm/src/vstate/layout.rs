//! Fixed guest physical addresses used to boot a 64-bit Linux guest (x86_64).

/// Global descriptor table built by the vmm for the 64-bit entry.
pub const BOOT_GDT: u64 = 0x500;
/// Interrupt descriptor table (empty) loaded before the kernel sets its own.
pub const BOOT_IDT: u64 = 0x520;
/// Linux "zero page" (`struct boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Identity-mapping page tables: PML4, PDPT, then one page directory.
pub const PML4: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE: u64 = 0xa000;
/// Four page directories (0xb000-0xefff) mapping the first 4 GiB with 2 MiB pages.
pub const PDE: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Maximum command line length including the terminating NUL.
pub const CMDLINE_MAX: usize = 4096;
/// Start of the extended BIOS data area: end of low RAM in the e820 map; the MP table lives here.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of RAM above the legacy hole; kernels load here or above.
pub const HIMEM_START: u64 = 0x10_0000;
/// The 32-bit MMIO gap: no RAM from here up to 4 GiB.
pub const MMIO_GAP_START: u64 = 0xC000_0000;
/// End of the 32-bit MMIO gap; RAM continues here for guests larger than 3 GiB.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// Boot-timer device (4 KiB), first page of the gap.
pub const BOOT_TIMER_ADDR: u64 = MMIO_GAP_START;
/// First virtio-mmio device slot.
pub const VIRTIO_MMIO_START: u64 = MMIO_GAP_START + 0x1000;
/// Size of one virtio-mmio slot.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// First and last GSI handed to virtio-mmio devices.
pub const VIRTIO_IRQ_FIRST: u32 = 5;
/// Last GSI handed to virtio-mmio devices.
pub const VIRTIO_IRQ_LAST: u32 = 23;
/// IOAPIC base address (in-kernel irqchip).
pub const IOAPIC_ADDR: u64 = 0xFEC0_0000;
/// Local APIC base address.
pub const LAPIC_ADDR: u64 = 0xFEE0_0000;
/// Serial port (COM1) base and IRQ.
pub const SERIAL_PORT: u16 = 0x3f8;
/// IRQ line of the serial port.
pub const SERIAL_IRQ: u32 = 4;
/// i8042 data and command ports.
pub const I8042_PORT: u16 = 0x60;
/// IRQ line of the i8042 keyboard.
pub const I8042_IRQ: u32 = 1;
/// KVM's TSS (3 pages) and identity map page, placed just below the IOAPIC-free top of the gap.
pub const KVM_TSS_ADDR: u64 = 0xFFFB_D000;
