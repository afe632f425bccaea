//! The transport on real KVM: a tiny 64-bit guest kicks queue 0 of a virtio-rng transport
//! mapped at the first virtio-mmio slot (0xC000_1000). The kick must land on the queue
//! eventfd through the ioeventfd (no exit to us), the irqfd must be accepted for GSI 5, and
//! ordinary register reads must reach the transport through MMIO exits.
//!
//! Guest ring-0 code may be emulated (PVM here), so the guest is a handful of instructions.
//! Skipped (passes with a note) where /dev/kvm cannot be opened.

use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_segment, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{IoEventAddress, Kvm, VcpuExit};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_devices::bus::BusDevice;
use vmm_devices::rng::Rng;
use vmm_devices::transport::{MmioTransport, QUEUE_NOTIFY_OFFSET};
use vmm_devices::GuestMemoryMmap;

const BASE: u64 = 0xC000_1000;
const GSI: u32 = 5;
const CODE: u64 = 0x10_0000;
const GDT: u64 = 0x500;
const PML4: u64 = 0x9000;
const PDPT: u64 = 0xA000;
const PD: u64 = 0xB000;

fn segment(selector: u16, type_: u8, l: u8, db: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db,
        s: 1,
        l,
        g: 1,
        ..Default::default()
    }
}

fn write_tables(mem: &GuestMemoryMmap) {
    let gdt: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(GDT + 8 * i as u64)).unwrap();
    }
    mem.write_obj(PDPT | 3, GuestAddress(PML4)).unwrap();
    // Identity-map 4 GiB with 2 MiB pages so the MMIO gap is reachable.
    for i in 0..4u64 {
        mem.write_obj((PD + i * 0x1000) | 3, GuestAddress(PDPT + i * 8))
            .unwrap();
    }
    for i in 0..2048u64 {
        mem.write_obj((i << 21) | 0x83, GuestAddress(PD + i * 8))
            .unwrap();
    }
}

#[test]
fn queue_notify_through_ioeventfd_and_register_reads() {
    let Ok(kvm) = Kvm::new() else {
        eprintln!("skipped: /dev/kvm not available");
        return;
    };
    let vm = kvm.create_vm().unwrap();
    vm.set_tss_address(0xfffb_d000).unwrap();
    vm.create_irq_chip().unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    for (slot, region) in mem.iter().enumerate() {
        let host = mem.get_host_address(region.start_addr()).unwrap();
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which outlives the VM.
        unsafe { vm.set_user_memory_region(r).unwrap() };
    }
    write_tables(&mem);
    // mov ebx, BASE; mov dword [rbx+0x50], 0; mov edx, [rbx]; mov ecx, [rbx+8];
    // mov al, 0; out 0xf4, al
    let mut code = vec![0xbb];
    code.extend_from_slice(&(BASE as u32).to_le_bytes());
    code.extend_from_slice(&[0xc7, 0x43, 0x50, 0, 0, 0, 0]);
    code.extend_from_slice(&[0x8b, 0x13]);
    code.extend_from_slice(&[0x8b, 0x4b, 0x08]);
    code.extend_from_slice(&[0xb0, 0x00, 0xe6, 0xf4]);
    mem.write_slice(&code, GuestAddress(CODE)).unwrap();

    let dev = Arc::new(Mutex::new(Rng::new(&Default::default()).unwrap()));
    let mut transport = MmioTransport::new(mem.clone(), dev).unwrap();
    vm.register_irqfd(transport.irq_evt(), GSI).unwrap();
    let notify = IoEventAddress::Mmio(BASE + QUEUE_NOTIFY_OFFSET);
    vm.register_ioevent(&transport.queue_evts()[0], &notify, 0u32)
        .unwrap();
    // The ioeventfd fires whatever the device state (the device ignores kicks until it is
    // activated), so the transport needs no set-up for this.

    let mut vcpu = vm.create_vcpu(0).unwrap();
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    vcpu.set_cpuid2(&cpuid).unwrap();
    let mut sregs = vcpu.get_sregs().unwrap();
    sregs.cs = segment(0x8, 0xb, 1, 0);
    let data = segment(0x10, 0x3, 0, 1);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.gdt.base = GDT;
    sregs.gdt.limit = 23;
    sregs.cr3 = PML4;
    sregs.cr4 |= 0x20; // PAE
    sregs.cr0 |= 0x8000_0001; // PG | PE
    sregs.efer |= 0x500; // LME | LMA
    vcpu.set_sregs(&sregs).unwrap();
    let mut regs = vcpu.get_regs().unwrap();
    regs.rip = CODE;
    regs.rflags = 2;
    regs.rsp = 0x8000;
    vcpu.set_regs(&regs).unwrap();

    let mut mmio_writes = Vec::new();
    let mut mmio_reads = Vec::new();
    for _ in 0..100 {
        match vcpu.run().unwrap() {
            VcpuExit::MmioRead(addr, data) => {
                mmio_reads.push(addr);
                transport.read(addr - BASE, data);
            }
            VcpuExit::MmioWrite(addr, data) => {
                mmio_writes.push(addr);
                transport.write(addr - BASE, data);
            }
            VcpuExit::IoOut(0xf4, _) => break,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    let regs = vcpu.get_regs().unwrap();
    assert_eq!(
        regs.rdx & 0xffff_ffff,
        0x7472_6976,
        "magic read through the transport"
    );
    assert_eq!(regs.rcx & 0xffff_ffff, 4, "device id 4 (rng)");
    assert_eq!(mmio_reads, [BASE, BASE + 8]);
    assert!(
        mmio_writes.is_empty(),
        "the kick went through the ioeventfd"
    );
    assert_eq!(transport.queue_evts()[0].read().unwrap(), 1);
}
