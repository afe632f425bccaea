//! Test helpers: guest memory, a driver that lays out split-queue descriptor chains in it,
//! a helper that brings a transport to DRIVER_OK like Linux does, a seeded PRNG for the
//! fuzz loops that run inside `cargo test`, and the vsock bounds those loops assert.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::bus::BusDevice;
use crate::transport::{MmioTransport, VirtioDevice};
use crate::vsock::connection::MAX_PENDING;
use crate::vsock::Vsock;
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

/// Plays the guest driver for one split queue laid out at `base`: descriptor table, then
/// the available ring, then the used ring (4-byte aligned).
///
/// (virtio-queue 0.18's `MockSplitQueue` places its used ring only `len` bytes after the
/// available ring's entries, so more than `len / 2` available entries overwrite the used
/// ring; this driver computes the layout itself.)
pub struct Driver<'a> {
    mem: &'a GuestMemoryMmap,
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    size: u16,
}

impl<'a> Driver<'a> {
    /// A queue of `size` entries at `base`.
    pub fn new(mem: &'a GuestMemoryMmap, base: u64, size: u16) -> Self {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        let end = used + 6 + 8 * u64::from(size);
        write_mem(mem, base, &vec![0u8; (end - base) as usize]);
        Driver {
            mem,
            desc,
            avail,
            used,
            next_desc: 0,
            avail_idx: 0,
            size,
        }
    }

    /// This queue's rings, for [`activate_at`] and [`bring_up`].
    pub fn layout(&self) -> QueueLayout {
        (self.desc, self.avail, self.used, self.size)
    }

    /// Descriptor table address.
    pub fn desc_addr(&self) -> GuestAddress {
        GuestAddress(self.desc)
    }

    /// Available ring address.
    pub fn avail_addr(&self) -> GuestAddress {
        GuestAddress(self.avail)
    }

    /// Used ring address.
    pub fn used_addr(&self) -> GuestAddress {
        GuestAddress(self.used)
    }

    fn make_available(&mut self, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// Makes a chain of `descs` available; returns its head index.
    pub fn push(&mut self, descs: &[Desc]) -> u16 {
        let mut head = self.next_desc;
        if usize::from(head) + descs.len() > usize::from(self.size) {
            head = 0;
        }
        for (i, &(addr, len, write)) in descs.iter().enumerate() {
            let mut flags = if write { VRING_DESC_F_WRITE as u16 } else { 0 };
            let mut next = 0;
            if i + 1 < descs.len() {
                flags |= VRING_DESC_F_NEXT as u16;
                next = head + i as u16 + 1;
            }
            let d = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next));
            self.store(head + i as u16, d);
        }
        self.next_desc = (head + descs.len() as u16) % self.size;
        self.make_available(head);
        head
    }

    fn store(&self, index: u16, d: RawDescriptor) {
        let addr = GuestAddress(self.desc + 16 * u64::from(index));
        self.mem.write_obj(d, addr).unwrap();
    }

    /// Stores raw descriptors as given from table index `head` (for hostile chains) and
    /// makes `head` available.
    pub fn push_raw(&mut self, descs: &[RawDescriptor], head: u16) {
        for (i, d) in descs.iter().enumerate() {
            self.store(head + i as u16, *d);
        }
        self.next_desc = (head + descs.len() as u16) % self.size;
        self.make_available(head);
    }

    /// Number of used entries so far.
    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// Used entry `i`: (head id, length).
    pub fn used(&self, i: u16) -> (u32, u32) {
        let e = self.used + 4 + 8 * u64::from(i % self.size);
        let id: u32 = self.mem.read_obj(GuestAddress(e)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(e + 4)).unwrap();
        (id, len)
    }
}

/// Writes a 32-bit transport register.
pub fn w32(t: &mut MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

/// Reads a 32-bit transport register.
pub fn r32(t: &mut MmioTransport, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

/// Rings of one queue for [`activate_at`]: descriptor table, available ring, used ring, size.
pub type QueueLayout = (u64, u64, u64, u16);

/// A transport over `dev`, brought to DRIVER_OK with one mock queue per driver, accepting
/// every offered feature. Panics if the transport refuses (tests only).
pub fn activate<D: VirtioDevice + 'static>(
    mem: &GuestMemoryMmap,
    dev: Arc<Mutex<D>>,
    drivers: &[&Driver],
) -> MmioTransport {
    let layouts: Vec<QueueLayout> = drivers.iter().map(|d| d.layout()).collect();
    let (t, ok) = activate_at(mem, dev, &layouts);
    assert!(ok, "activation failed");
    t
}

/// Like [`activate`], with queue addresses given; returns whether DRIVER_OK stuck.
pub fn activate_at<D: VirtioDevice + 'static>(
    mem: &GuestMemoryMmap,
    dev: Arc<Mutex<D>>,
    queues: &[QueueLayout],
) -> (MmioTransport, bool) {
    let mut t = MmioTransport::new(mem.clone(), dev).expect("transport");
    let ok = bring_up(&mut t, queues);
    (t, ok)
}

/// Drives `t` from reset to DRIVER_OK like Linux's probe does (status writes, every
/// offered feature accepted, the queues at `queues`); returns whether DRIVER_OK stuck.
pub fn bring_up(t: &mut MmioTransport, queues: &[QueueLayout]) -> bool {
    let mut status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    w32(t, 0x70, status);
    for sel in 0..2 {
        w32(t, 0x14, sel);
        let f = r32(t, 0x10);
        w32(t, 0x24, sel);
        w32(t, 0x20, f);
    }
    status |= VIRTIO_CONFIG_S_FEATURES_OK;
    w32(t, 0x70, status);
    for (i, &(desc, avail, used, size)) in queues.iter().enumerate() {
        w32(t, 0x30, i as u32);
        w32(t, 0x38, u32::from(size));
        for (reg, addr) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
            w32(t, reg, addr as u32);
            w32(t, reg + 4, (addr >> 32) as u32);
        }
        w32(t, 0x44, 1);
    }
    status |= VIRTIO_CONFIG_S_DRIVER_OK;
    w32(t, 0x70, status);
    r32(t, 0x70) == status
}

/// Resets the device the way a driver does: 0 to the status register.
pub fn reset(t: &mut MmioTransport) {
    w32(t, 0x70, 0);
}

/// Reads `len` bytes of guest memory.
pub fn read_mem(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// Writes bytes into guest memory.
pub fn write_mem(mem: &GuestMemoryMmap, addr: u64, data: &[u8]) {
    assert!(mem.check_range(GuestAddress(addr), data.len()));
    mem.write_slice(data, GuestAddress(addr)).unwrap();
}

/// A small seeded PRNG (splitmix64): the same seed gives the same inputs on every run, so
/// a failure in CI replays exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Panics unless every per-VM bound of the vsock device holds (see `vsock::muxer`).
pub fn assert_vsock_bounds(dev: &Vsock) {
    let l = dev.limits();
    let (conns, shakes) = (dev.connection_count(), dev.handshake_count());
    assert!(
        conns + shakes <= l.max_connections,
        "{conns} connections + {shakes} handshakes > {}",
        l.max_connections
    );
    assert!(
        dev.queued_replies() <= l.max_replies,
        "{} replies queued > {}",
        dev.queued_replies(),
        l.max_replies
    );
    let packets = dev.queued_packets();
    assert!(
        packets <= l.max_replies + conns * MAX_PENDING,
        "{packets} control packets queued for {conns} connections"
    );
    assert!(
        dev.tx_buffered() <= l.max_tx_buffered,
        "{} guest bytes held > {}",
        dev.tx_buffered(),
        l.max_tx_buffered
    );
    assert!(
        dev.heap_bytes() <= l.heap_bound(),
        "{} heap bytes > {}",
        dev.heap_bytes(),
        l.heap_bound()
    );
}
