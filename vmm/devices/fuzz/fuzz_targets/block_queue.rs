//! A hostile guest driving virtio-block: arbitrary descriptor tables, rings and requests,
//! on the Sync or the Async (io_uring) engine.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use vmm_devices::block::{Block, BlockConfig, IoEngine};
use vmm_devices::test_utils::activate_at;

mod common;

fn disk() -> &'static std::path::PathBuf {
    static DISK: OnceLock<std::path::PathBuf> = OnceLock::new();
    DISK.get_or_init(|| {
        let p = std::env::temp_dir().join(format!("vmm-devices-fuzz-{}.img", std::process::id()));
        std::fs::write(&p, vec![0x5a; 64 * 1024]).expect("disk image");
        p
    })
}

fuzz_target!(|data: &[u8]| {
    let mem = common::memory(data);
    let dev = Block::new(&BlockConfig {
        drive_id: "fuzz".into(),
        path_on_host: disk().clone(),
        is_read_only: data.first().is_some_and(|b| b & 1 == 1),
        rate_limiter: Default::default(),
        io_engine: if data.first().is_some_and(|b| b & 2 == 2) {
            IoEngine::Async
        } else {
            IoEngine::Sync
        },
    })
    .expect("block");
    let dev = Arc::new(Mutex::new(dev));
    let (_t, ok) = activate_at(&mem, dev.clone(), &[common::layout(0)]);
    if ok {
        dev.lock().unwrap().process_queue();
        dev.lock().unwrap().process_queue();
        // Async: wait for the ring's completions (the event loop's part).
        for _ in 0..100 {
            let mut d = dev.lock().unwrap();
            if d.in_flight() == 0 {
                break;
            }
            if let Some(e) = d.completion_event() {
                let mut p = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(e),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 100) };
            }
            d.complete();
        }
        assert!(dev.lock().unwrap().in_flight() <= usize::from(vmm_devices::block::QUEUE_SIZE));
    }
});
