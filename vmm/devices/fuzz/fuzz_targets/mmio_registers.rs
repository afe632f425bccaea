//! A hostile guest poking the virtio-mmio registers of an entropy device in any order,
//! width and offset, then kicking its queue.
#![no_main]

use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use vmm_devices::bus::BusDevice;
use vmm_devices::rng::Rng;
use vmm_devices::transport::MmioTransport;

mod common;

fuzz_target!(|data: &[u8]| {
    // The tail of the input doubles as guest memory for the rings the driver may set up.
    let mem = common::memory(data);
    let dev = Arc::new(Mutex::new(Rng::new(&Default::default()).expect("rng")));
    let mut t = MmioTransport::new(mem, dev.clone()).expect("transport");
    // Each access: 1 byte kind/width, 2 bytes offset, 4 bytes value.
    for op in data.chunks_exact(7) {
        let width = [1usize, 2, 4, 8][usize::from(op[0] & 3)];
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]])) & 0x1fff;
        let value = [op[3], op[4], op[5], op[6], 0, 0, 0, 0];
        if op[0] & 0x80 != 0 {
            let mut buf = [0u8; 8];
            t.read(offset, &mut buf[..width]);
        } else {
            t.write(offset, &value[..width]);
        }
        if op[0] & 0x40 != 0 {
            dev.lock().unwrap().process_queue();
        }
    }
});
