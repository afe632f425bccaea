//! A hostile guest driving virtio-vsock: arbitrary rx/tx rings and packets. After every
//! pass the device's per-VM bounds must hold (`test_utils::assert_vsock_bounds`).
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use vmm_devices::test_utils::{activate_at, assert_vsock_bounds};
use vmm_devices::vsock::{Vsock, VsockConfig, VsockLimits};

mod common;

static N: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let mem = common::memory(data);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let uds = std::env::temp_dir().join(format!("vmm-fuzz-vsock-{}-{n}", std::process::id()));
    // Small bounds, so that short inputs reach them.
    let limits = VsockLimits {
        max_connections: 4,
        max_replies: 4,
        max_tx_buffered: 16 * 1024,
        ..VsockLimits::default()
    };
    let dev = Vsock::with_limits(
        &VsockConfig {
            guest_cid: 3,
            uds_path: uds,
        },
        limits,
    )
    .expect("vsock");
    let dev = Arc::new(Mutex::new(dev));
    let layouts = [common::layout(0), common::layout(1), common::layout(2)];
    let (_t, ok) = activate_at(&mem, dev.clone(), &layouts);
    if ok {
        let mut d = dev.lock().unwrap();
        for _ in 0..2 {
            d.process_tx();
            d.process_rx();
            assert_vsock_bounds(&d);
        }
    }
});
