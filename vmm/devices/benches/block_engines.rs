//! Benchmark (prints figures, asserts nothing): the block device's Sync and Async (io_uring)
//! engines against a 256 MiB temporary file, through the real device and split queue
//! (`test_utils::Driver`), 64 requests in flight per batch. For each engine and workload:
//! throughput, and the event loop's time inside the device per request (for Sync that is
//! the whole I/O; for Async, submitting and completing). The cold runs drop the file's page
//! cache first (`posix_fadvise(DONTNEED)`, this file only).
//! Run with `cargo bench -p vmm-devices --features test-utils --bench block_engines`.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use virtio_bindings::virtio_blk::{VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use vmm_devices::block::{Block, BlockConfig, IoEngine};
use vmm_devices::test_utils::{activate, memory, write_mem, Driver, BUF_BASE};

const FILE_MIB: u64 = 256;
const DEPTH: u64 = 64;
const HDR: u64 = BUF_BASE;
const STATUS: u64 = BUF_BASE + 0x1000;
const DATA: u64 = BUF_BASE + 0x2000;

struct Workload {
    name: &'static str,
    write: bool,
    req_len: u32,
    random: bool,
    cold: bool,
    total_mib: u64,
}

fn drop_cache(f: &std::fs::File) {
    // SAFETY: fadvise on our own file descriptor; no memory is passed.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Returns (MiB/s, device µs per request).
fn run(path: &std::path::Path, engine: IoEngine, w: &Workload) -> (f64, f64) {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 256);
    let dev = Arc::new(Mutex::new(
        Block::new(&BlockConfig {
            drive_id: "bench".into(),
            path_on_host: path.to_path_buf(),
            io_engine: engine,
            ..Default::default()
        })
        .expect("block"),
    ));
    assert_eq!(
        dev.lock().unwrap().io_engine(),
        engine,
        "io_uring unavailable"
    );
    let _t = activate(&mem, dev.clone(), &[&drv]);
    let file = std::fs::File::open(path).expect("file");
    if w.cold {
        drop_cache(&file);
    }
    let sectors_per_req = u64::from(w.req_len) / 512;
    let slots = FILE_MIB * 2048 / sectors_per_req;
    let requests = w.total_mib * (1 << 20) / u64::from(w.req_len);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut in_device = Duration::ZERO;
    let start = Instant::now();
    let mut done = 0u64;
    while done < requests {
        let batch = DEPTH.min(requests - done);
        for i in 0..batch {
            let n = done + i;
            let slot = if w.random {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % slots
            } else {
                n % slots
            };
            let t = if w.write {
                VIRTIO_BLK_T_OUT
            } else {
                VIRTIO_BLK_T_IN
            };
            let mut h = t.to_le_bytes().to_vec();
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&(slot * sectors_per_req).to_le_bytes());
            write_mem(&mem, HDR + 16 * i, &h);
            drv.push(&[
                (HDR + 16 * i, 16, false),
                (DATA + u64::from(w.req_len) * i, w.req_len, !w.write),
                (STATUS + i, 1, true),
            ]);
        }
        let target = (done + batch) as u16;
        let t0 = Instant::now();
        dev.lock().unwrap().process_queue();
        in_device += t0.elapsed();
        while drv.used_idx() != target {
            let mut d = dev.lock().unwrap();
            if let Some(e) = d.completion_event() {
                let mut p = libc::pollfd {
                    fd: e.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 1000) };
            }
            let t0 = Instant::now();
            d.complete();
            in_device += t0.elapsed();
        }
        done += batch;
    }
    let secs = start.elapsed().as_secs_f64();
    let mib = requests as f64 * f64::from(w.req_len) / f64::from(1 << 20);
    (mib / secs, in_device.as_secs_f64() * 1e6 / requests as f64)
}

fn main() {
    let mut file = tempfile::NamedTempFile::new_in(std::env::temp_dir()).expect("temp file");
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..FILE_MIB {
        file.write_all(&chunk).expect("fill");
    }
    file.as_file().sync_all().expect("sync");
    let workloads = [
        Workload {
            name: "seq read 64 KiB, cached",
            write: false,
            req_len: 64 << 10,
            random: false,
            cold: false,
            total_mib: 1024,
        },
        Workload {
            name: "rand read 4 KiB, cached",
            write: false,
            req_len: 4096,
            random: true,
            cold: false,
            total_mib: 128,
        },
        Workload {
            name: "rand read 4 KiB, cold",
            write: false,
            req_len: 4096,
            random: true,
            cold: true,
            total_mib: 32,
        },
        Workload {
            name: "seq read 64 KiB, cold",
            write: false,
            req_len: 64 << 10,
            random: false,
            cold: true,
            total_mib: 256,
        },
        Workload {
            name: "rand write 4 KiB",
            write: true,
            req_len: 4096,
            random: true,
            cold: false,
            total_mib: 128,
        },
    ];
    println!(
        "block engines, {FILE_MIB} MiB file in {:?}, {DEPTH} requests per batch",
        std::env::temp_dir()
    );
    println!(
        "{:<26} {:>14} {:>14} {:>16} {:>16}",
        "workload", "Sync MiB/s", "Async MiB/s", "Sync µs/req", "Async µs/req"
    );
    for w in &workloads {
        let (s_mib, s_us) = run(file.path(), IoEngine::Sync, w);
        let (a_mib, a_us) = run(file.path(), IoEngine::Async, w);
        println!(
            "{:<26} {:>14.0} {:>14.0} {:>16.1} {:>16.1}",
            w.name, s_mib, a_mib, s_us, a_us
        );
    }
}
