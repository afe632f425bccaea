//! Test helpers: guest memory, a driver that lays out descriptor chains with virtio-queue's
//! mock split queue, and a helper that brings a transport to DRIVER_OK like Linux does.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{GuestAddress, GuestMemoryBackend};

use crate::bus::BusDevice;
use crate::transport::{MmioTransport, VirtioDevice};
use crate::GuestMemoryMmap;

/// Guest memory size used by the tests.
pub const MEM_SIZE: usize = 16 << 20;
/// Where test buffers start (queues live below).
pub const BUF_BASE: u64 = 0x10_0000;

/// 16 MiB of guest memory at 0.
pub fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

/// A descriptor for [`Driver::push`]: address, length, device-writable.
pub type Desc = (u64, u32, bool);

/// Plays the guest driver for one queue.
pub struct Driver<'a> {
    /// The mock queue in guest memory.
    pub vq: MockSplitQueue<'a, GuestMemoryMmap>,
    next_desc: u16,
    size: u16,
}

impl<'a> Driver<'a> {
    /// A queue of `size` entries at `base`.
    pub fn new(mem: &'a GuestMemoryMmap, base: u64, size: u16) -> Self {
        Driver {
            vq: MockSplitQueue::create(mem, GuestAddress(base), size),
            next_desc: 0,
            size,
        }
    }

    /// Makes a chain of `descs` available; returns its head index.
    pub fn push(&mut self, descs: &[Desc]) -> u16 {
        let mut head = self.next_desc;
        if usize::from(head) + descs.len() > usize::from(self.size) {
            head = 0;
        }
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, write))| {
                let mut flags = if write { VRING_DESC_F_WRITE as u16 } else { 0 };
                let mut next = 0;
                if i + 1 < descs.len() {
                    flags |= VRING_DESC_F_NEXT as u16;
                    next = (head + i as u16 + 1) % self.size;
                }
                RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
            })
            .collect();
        self.vq.add_desc_chains(&raw, head).unwrap();
        self.next_desc = (head + descs.len() as u16) % self.size;
        head
    }

    /// Makes raw descriptors available as given (for hostile chains); `head` is where they go.
    pub fn push_raw(&mut self, descs: &[RawDescriptor], head: u16) {
        self.vq.add_desc_chains(descs, head).unwrap();
        self.next_desc = (head + descs.len() as u16) % self.size;
    }

    /// Number of used entries so far.
    pub fn used_idx(&self) -> u16 {
        self.vq.used().idx().load()
    }

    /// Used entry `i`: (head id, length).
    pub fn used(&self, i: u16) -> (u32, u32) {
        let e = self
            .vq
            .used()
            .ring()
            .ref_at(usize::from(i % self.size))
            .unwrap()
            .load();
        (e.id(), e.len())
    }
}

fn w32(t: &mut MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

/// Reads a 32-bit transport register.
pub fn r32(t: &mut MmioTransport, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

/// A transport over `dev`, brought to DRIVER_OK with one mock queue per driver, accepting
/// every offered feature.
pub fn activate<D: VirtioDevice + 'static>(
    mem: &GuestMemoryMmap,
    dev: Arc<Mutex<D>>,
    drivers: &[&Driver],
) -> MmioTransport {
    let mut t = MmioTransport::new(mem.clone(), dev).unwrap();
    let mut status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    w32(&mut t, 0x70, status);
    for sel in 0..2 {
        w32(&mut t, 0x14, sel);
        let f = r32(&mut t, 0x10);
        w32(&mut t, 0x24, sel);
        w32(&mut t, 0x20, f);
    }
    status |= VIRTIO_CONFIG_S_FEATURES_OK;
    w32(&mut t, 0x70, status);
    assert_eq!(r32(&mut t, 0x70), status, "features refused");
    for (i, d) in drivers.iter().enumerate() {
        w32(&mut t, 0x30, i as u32);
        w32(&mut t, 0x38, u32::from(d.size));
        let split = |a: GuestAddress| (a.0 as u32, (a.0 >> 32) as u32);
        let (lo, hi) = split(d.vq.desc_table_addr());
        w32(&mut t, 0x80, lo);
        w32(&mut t, 0x84, hi);
        let (lo, hi) = split(d.vq.avail_addr());
        w32(&mut t, 0x90, lo);
        w32(&mut t, 0x94, hi);
        let (lo, hi) = split(d.vq.used_addr());
        w32(&mut t, 0xa0, lo);
        w32(&mut t, 0xa4, hi);
        w32(&mut t, 0x44, 1);
        assert_eq!(r32(&mut t, 0x44), 1, "queue {i} refused");
    }
    status |= VIRTIO_CONFIG_S_DRIVER_OK;
    w32(&mut t, 0x70, status);
    assert_eq!(r32(&mut t, 0x70), status, "activation failed");
    t
}

/// Reads `len` bytes of guest memory.
pub fn read_mem(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    use vm_memory::Bytes;
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// Writes bytes into guest memory.
pub fn write_mem(mem: &GuestMemoryMmap, addr: u64, data: &[u8]) {
    use vm_memory::Bytes;
    assert!(mem.check_range(GuestAddress(addr), data.len()));
    mem.write_slice(data, GuestAddress(addr)).unwrap();
}
