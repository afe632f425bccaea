//! Shared set-up: the fuzz input becomes the first bytes of a small guest memory that holds
//! the queues (descriptor tables, rings, avail indexes) and the buffers, so every field the
//! device reads comes from the fuzzer.
#![allow(dead_code)]

use vm_memory::{Bytes, GuestAddress};
use vmm_devices::test_utils::QueueLayout;
use vmm_devices::GuestMemoryMmap;

pub const MEM: usize = 256 * 1024;
pub const QSIZE: u16 = 16;

/// Queue `i`'s rings: table at i * 0x400, rings right after it.
pub fn layout(i: u64) -> QueueLayout {
    let base = i * 0x400;
    (base, base + 0x100, base + 0x200, QSIZE)
}

pub fn memory(data: &[u8]) -> GuestMemoryMmap {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).expect("memory");
    let n = data.len().min(MEM);
    mem.write_slice(&data[..n], GuestAddress(0)).expect("write");
    mem
}
