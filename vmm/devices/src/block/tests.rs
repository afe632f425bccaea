use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};

use super::*;
use crate::bus::BusDevice;
use crate::rate_limiter::TokenBucketConfig;
use crate::test_utils::*;
use crate::transport::MmioTransport;
use crate::GuestMemoryMmap;

const HDR: u64 = BUF_BASE;
const DATA: u64 = BUF_BASE + 0x1000;
const STATUS: u64 = BUF_BASE + 0x80_0000;

struct Fixture {
    file: tempfile::NamedTempFile,
    dev: Arc<Mutex<Block>>,
    transport: MmioTransport,
}

fn disk_pattern(sectors: usize) -> Vec<u8> {
    (0..sectors * 512)
        .map(|i| (i / 512) as u8 ^ (i as u8))
        .collect()
}

const ENGINES: [IoEngine; 2] = [IoEngine::Sync, IoEngine::Async];

fn fixture_with(
    mem: &GuestMemoryMmap,
    drv: &Driver,
    read_only: bool,
    rl: RateLimiterConfig,
    engine: IoEngine,
) -> Fixture {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&disk_pattern(8)).unwrap();
    let dev = Arc::new(Mutex::new(
        Block::new(&BlockConfig {
            drive_id: "rootfs-drive-with-a-long-name".into(),
            path_on_host: file.path().to_path_buf(),
            is_read_only: read_only,
            rate_limiter: rl,
            io_engine: engine,
        })
        .unwrap(),
    ));
    assert_eq!(
        dev.lock().unwrap().io_engine(),
        engine,
        "io_uring unavailable here"
    );
    let transport = activate(mem, dev.clone(), &[drv]);
    Fixture {
        file,
        dev,
        transport,
    }
}

fn header(mem: &GuestMemoryMmap, t: u32, sector: u64) {
    let mut h = Vec::new();
    h.extend_from_slice(&t.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&sector.to_le_bytes());
    write_mem(mem, HDR, &h);
    write_mem(mem, STATUS, &[0xff]);
}

fn status(mem: &GuestMemoryMmap) -> u8 {
    read_mem(mem, STATUS, 1)[0]
}

/// Serves the queue and, on the Async engine, waits for every request in flight to
/// complete (as the event loop would, on the completion eventfd).
fn run(f: &Fixture) {
    f.dev.lock().unwrap().process_queue();
    drain(&f.dev);
}

fn drain(dev: &Mutex<Block>) {
    for _ in 0..1000 {
        let mut d = dev.lock().unwrap();
        let fd = match &d.engine {
            Engine::Async(u) if u.in_flight() > 0 => u.event().as_raw_fd(),
            _ => return,
        };
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 100) };
        d.complete();
    }
    panic!("requests still in flight");
}

#[test]
fn read_sectors() {
    for engine in ENGINES {
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 16);
        let f = fixture_with(&mem, &drv, false, RateLimiterConfig::default(), engine);
        header(&mem, VIRTIO_BLK_T_IN, 1);
        drv.push(&[(HDR, 16, false), (DATA, 1024, true), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(drv.used_idx(), 1);
        assert_eq!(drv.used(0), (0, 1025));
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK as u8);
        assert_eq!(read_mem(&mem, DATA, 1024), disk_pattern(8)[512..1536]);
        let m = f.dev.lock().unwrap().metrics().snapshot();
        assert_eq!((m.ops, m.bytes_to_guest, m.errors), (1, 1024, 0));
        // Capacity is in the config space.
        let mut t = f.transport;
        let mut cap = [0u8; 8];
        t.read(0x100, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);
        let mut seg_max = [0u8; 4];
        t.read(0x10c, &mut seg_max);
        assert_eq!(u32::from_le_bytes(seg_max), SEG_MAX);
    }
}

#[test]
fn write_then_flush() {
    for engine in ENGINES {
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 16);
        let f = fixture_with(&mem, &drv, false, RateLimiterConfig::default(), engine);
        header(&mem, VIRTIO_BLK_T_OUT, 2);
        write_mem(&mem, DATA, &[0xab; 512]);
        drv.push(&[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(drv.used(0), (0, 1));
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK as u8);
        let mut contents = Vec::new();
        let mut file = f.file.reopen().unwrap();
        file.read_to_end(&mut contents).unwrap();
        assert_eq!(&contents[1024..1536], &[0xab; 512]);
        assert_eq!(&contents[..1024], &disk_pattern(8)[..1024]);

        header(&mem, VIRTIO_BLK_T_FLUSH, 0);
        drv.push(&[(HDR, 16, false), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(drv.used_idx(), 2);
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK as u8);
    }
}

#[test]
fn read_only_refuses_writes() {
    for engine in ENGINES {
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 16);
        let mut f = fixture_with(&mem, &drv, true, RateLimiterConfig::default(), engine);
        f.transport.write(0x14, &0u32.to_le_bytes());
        assert_ne!(r32(&mut f.transport, 0x10) & (1 << VIRTIO_BLK_F_RO), 0);
        header(&mem, VIRTIO_BLK_T_OUT, 0);
        drv.push(&[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR as u8);
        let mut first = vec![0u8; 512];
        let mut file = f.file.reopen().unwrap();
        file.read_exact(&mut first).unwrap();
        assert_eq!(first, disk_pattern(8)[..512]);
        assert_eq!(f.dev.lock().unwrap().metrics().snapshot().errors, 1);
    }
}

#[test]
fn out_of_range_sectors_fail() {
    for engine in ENGINES {
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 16);
        let f = fixture_with(&mem, &drv, false, RateLimiterConfig::default(), engine);
        for sector in [8, 7, u64::MAX / 256, u64::MAX] {
            header(&mem, VIRTIO_BLK_T_IN, sector);
            drv.push(&[(HDR, 16, false), (DATA, 1024, true), (STATUS, 1, true)]);
            run(&f);
            assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR as u8, "sector {sector}");
        }
        assert_eq!(drv.used_idx(), 4);
    }
}

#[test]
fn get_id_and_unsupported() {
    for engine in ENGINES {
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 16);
        let f = fixture_with(&mem, &drv, false, RateLimiterConfig::default(), engine);
        header(&mem, VIRTIO_BLK_T_GET_ID, 0);
        drv.push(&[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK as u8);
        assert_eq!(read_mem(&mem, DATA, 20), b"rootfs-drive-with-a-".to_vec());
        header(&mem, VIRTIO_BLK_T_WRITE_ZEROES, 0);
        drv.push(&[(HDR, 16, false), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(status(&mem), VIRTIO_BLK_S_UNSUPP as u8);
    }
}

#[test]
fn malformed_chains_fail_and_device_carries_on() {
    for engine in ENGINES {
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 32);
        let f = fixture_with(&mem, &drv, false, RateLimiterConfig::default(), engine);
        header(&mem, VIRTIO_BLK_T_IN, 0);
        let outside = MEM_SIZE as u64 - 100;
        let bad: [&[Desc]; 6] = [
            // Data outside guest memory.
            &[(HDR, 16, false), (outside, 512, true), (STATUS, 1, true)],
            // Wrong direction for a read.
            &[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)],
            // Header writable and short.
            &[(HDR, 8, true), (DATA, 512, true), (STATUS, 1, true)],
            // Length not a multiple of the sector.
            &[(HDR, 16, false), (DATA, 100, true), (STATUS, 1, true)],
            // Absurd length.
            &[(HDR, 16, false), (DATA, u32::MAX, true), (STATUS, 1, true)],
            // Status read-only: no status can be written.
            &[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, false)],
        ];
        for descs in bad {
            drv.push(descs);
        }
        run(&f);
        assert_eq!(drv.used_idx(), 6);
        let lens: Vec<u32> = (0..6).map(|i| drv.used(i).1).collect();
        // The absurd length makes the chain longer than 2^32 bytes: the chain iterator stops
        // early, no status descriptor is reachable.
        assert_eq!(lens, [1, 1, 1, 1, 0, 0]);
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR as u8);

        // A chain that loops on itself: bounded by the queue size, then refused (its header
        // is writable).
        let flags = VRING_DESC_F_NEXT as u16 | VRING_DESC_F_WRITE as u16;
        let looping = RawDescriptor::from(SplitDescriptor::new(DATA, 512, flags, 31));
        drv.push_raw(&[looping], 31);
        // A chain whose next index is past the queue.
        let past =
            RawDescriptor::from(SplitDescriptor::new(HDR, 16, VRING_DESC_F_NEXT as u16, 999));
        drv.push_raw(&[past], 30);
        run(&f);
        assert_eq!(drv.used_idx(), 8);
        // A good request still works.
        drv.push(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(drv.used_idx(), 9);
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK as u8);
        assert_eq!(f.dev.lock().unwrap().metrics().snapshot().errors, 8);
    }
}

#[test]
fn swap_backing_file_signals_config_change() {
    for engine in ENGINES {
        let mem = memory();
        let drv = Driver::new(&mem, 0, 16);
        let mut f = fixture_with(&mem, &drv, false, RateLimiterConfig::default(), engine);
        let gen0 = r32(&mut f.transport, 0xfc);
        let mut other = tempfile::NamedTempFile::new().unwrap();
        other.write_all(&[7u8; 512 * 20]).unwrap();
        f.dev
            .lock()
            .unwrap()
            .update_backing_file(other.path())
            .unwrap();
        assert_eq!(f.dev.lock().unwrap().capacity(), 20);
        assert_ne!(r32(&mut f.transport, 0xfc), gen0);
        assert_eq!(r32(&mut f.transport, 0x60) & 2, 2);
        assert_eq!(f.transport.irq_evt().read().unwrap(), 1);
        let missing = f.file.path().with_extension("missing");
        assert!(f.dev.lock().unwrap().update_backing_file(&missing).is_err());
        assert_eq!(f.dev.lock().unwrap().capacity(), 20);
    }
}

#[test]
fn rate_limiter_throttles_and_resumes() {
    for engine in ENGINES {
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 16);
        let rl = RateLimiterConfig {
            bandwidth: None,
            ops: Some(TokenBucketConfig {
                size: 1,
                one_time_burst: 0,
                refill_time: 20,
            }),
        };
        let f = fixture_with(&mem, &drv, false, rl, engine);
        header(&mem, VIRTIO_BLK_T_IN, 0);
        drv.push(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
        drv.push(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(drv.used_idx(), 1);
        let m = f.dev.lock().unwrap().metrics().snapshot();
        assert_eq!(m.rate_limiter_throttled, 1);
        // The timer fires after about 20 ms; the event handler resumes the queue.
        {
            f.dev.lock().unwrap().limiter.on_timer();
        }
        run(&f);
        assert_eq!(drv.used_idx(), 2);
    }
}

#[test]
fn multi_segment_read_through_event_loop() {
    for engine in ENGINES {
        use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 16);
        let mut f = fixture_with(&mem, &drv, false, RateLimiterConfig::default(), engine);
        let mut em: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> =
            EventManager::new().unwrap();
        em.add_subscriber(f.dev.clone());
        header(&mem, VIRTIO_BLK_T_IN, 2);
        // Three segments of different sizes, scattered in guest memory.
        drv.push(&[
            (HDR, 16, false),
            (DATA + 0x10000, 512, true),
            (DATA, 1024, true),
            (DATA + 0x20000, 512, true),
            (STATUS, 1, true),
        ]);
        // The guest's QueueNotify write; with KVM the ioeventfd does this.
        f.transport.write(0x50, &0u32.to_le_bytes());
        for _ in 0..10 {
            if drv.used_idx() == 1 {
                break;
            }
            em.run_with_timeout(1000).unwrap();
        }
        assert_eq!(drv.used(0), (0, 2049));
        let disk = disk_pattern(8);
        assert_eq!(read_mem(&mem, DATA + 0x10000, 512), disk[1024..1536]);
        assert_eq!(read_mem(&mem, DATA, 1024), disk[1536..2560]);
        assert_eq!(read_mem(&mem, DATA + 0x20000, 512), disk[2560..3072]);
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK as u8);
        let m = f.dev.lock().unwrap().metrics().snapshot();
        assert_eq!((m.queue_events, m.interrupts), (1, 1));
    }
}

fn file_contents(f: &Fixture) -> Vec<u8> {
    let mut contents = Vec::new();
    f.file.reopen().unwrap().read_to_end(&mut contents).unwrap();
    contents
}

fn discard_segment(mem: &GuestMemoryMmap, sector: u64, num: u32, flags: u32) {
    let mut seg = sector.to_le_bytes().to_vec();
    seg.extend_from_slice(&num.to_le_bytes());
    seg.extend_from_slice(&flags.to_le_bytes());
    write_mem(mem, DATA, &seg);
}

#[test]
fn discard_punches_a_hole_and_is_bounded() {
    for engine in ENGINES {
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 32);
        let mut f = fixture_with(&mem, &drv, false, RateLimiterConfig::default(), engine);
        f.transport.write(0x14, &0u32.to_le_bytes());
        assert_ne!(r32(&mut f.transport, 0x10) & (1 << VIRTIO_BLK_F_DISCARD), 0);
        // max_discard_sectors, max_discard_seg, discard_sector_alignment.
        let fields: Vec<u32> = [0x124, 0x128, 0x12c]
            .iter()
            .map(|&o| r32(&mut f.transport, o))
            .collect();
        assert_eq!(fields, [MAX_DISCARD_SECTORS, 1, 1]);
        let seg = (DATA, 16, false);
        header(&mem, VIRTIO_BLK_T_DISCARD, 0);
        discard_segment(&mem, 2, 3, 0);
        drv.push(&[(HDR, 16, false), seg, (STATUS, 1, true)]);
        run(&f);
        assert_eq!(drv.used(0), (0, 1));
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK as u8, "{engine:?}");
        let c = file_contents(&f);
        assert_eq!(c.len(), 8 * 512, "the file keeps its size");
        assert_eq!(&c[1024..2560], &[0u8; 1536][..]);
        assert_eq!(&c[..1024], &disk_pattern(8)[..1024]);
        assert_eq!(&c[2560..], &disk_pattern(8)[2560..]);
        // Past the end, overflowing, with the unmap flag, two segments: refused, file intact.
        let cases: [(u64, u32, u32, u8); 4] = [
            (7, 2, 0, VIRTIO_BLK_S_IOERR as u8),
            (u64::MAX / 256, 1, 0, VIRTIO_BLK_S_IOERR as u8),
            (u64::MAX, u32::MAX, 0, VIRTIO_BLK_S_IOERR as u8),
            (
                0,
                1,
                VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
                VIRTIO_BLK_S_UNSUPP as u8,
            ),
        ];
        for (sector, num, flags, want) in cases {
            discard_segment(&mem, sector, num, flags);
            drv.push(&[(HDR, 16, false), seg, (STATUS, 1, true)]);
            run(&f);
            assert_eq!(status(&mem), want, "{engine:?} {sector} {num} {flags}");
        }
        drv.push(&[(HDR, 16, false), (DATA, 32, false), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(drv.used_idx(), 6);
        assert_eq!(&file_contents(&f)[..1024], &disk_pattern(8)[..1024]);
    }
}

#[test]
fn read_only_disk_refuses_discard() {
    for engine in ENGINES {
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 16);
        let mut f = fixture_with(&mem, &drv, true, RateLimiterConfig::default(), engine);
        f.transport.write(0x14, &0u32.to_le_bytes());
        assert_eq!(r32(&mut f.transport, 0x10) & (1 << VIRTIO_BLK_F_DISCARD), 0);
        header(&mem, VIRTIO_BLK_T_DISCARD, 0);
        discard_segment(&mem, 0, 1, 0);
        drv.push(&[(HDR, 16, false), (DATA, 16, false), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(file_contents(&f), disk_pattern(8));
    }
}

/// A 1 MiB disk, `n` reads of one sector each (sector i into its own buffer and status).
fn push_reads(mem: &GuestMemoryMmap, drv: &mut Driver, n: u64) {
    for i in 0..n {
        let hdr = HDR + 16 * i;
        let mut h = VIRTIO_BLK_T_IN.to_le_bytes().to_vec();
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&(i % 8).to_le_bytes());
        write_mem(mem, hdr, &h);
        write_mem(mem, STATUS + i, &[0xff]);
        drv.push(&[
            (hdr, 16, false),
            (DATA + 512 * i, 512, true),
            (STATUS + i, 1, true),
        ]);
    }
}

fn check_reads(mem: &GuestMemoryMmap, n: u64) {
    let disk = disk_pattern(8);
    for i in 0..n {
        let s = (i % 8) as usize * 512;
        assert_eq!(
            read_mem(mem, STATUS + i, 1)[0],
            VIRTIO_BLK_S_OK as u8,
            "req {i}"
        );
        assert_eq!(
            read_mem(mem, DATA + 512 * i, 512),
            disk[s..s + 512],
            "req {i}"
        );
    }
}

#[test]
fn many_requests_in_flight_complete() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 256);
    let f = fixture_with(
        &mem,
        &drv,
        false,
        RateLimiterConfig::default(),
        IoEngine::Async,
    );
    push_reads(&mem, &mut drv, 80);
    f.dev.lock().unwrap().process_queue();
    // Nothing completes before the event loop reaps the ring.
    assert_eq!(f.dev.lock().unwrap().in_flight(), 80);
    assert_eq!(drv.used_idx(), 0);
    drain(&f.dev);
    assert_eq!(drv.used_idx(), 80);
    check_reads(&mem, 80);
    let m = f.dev.lock().unwrap().metrics().snapshot();
    assert_eq!((m.ops, m.bytes_to_guest, m.errors), (80, 80 * 512, 0));
}

#[test]
fn in_flight_requests_are_bounded() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 256);
    let f = fixture_with(
        &mem,
        &drv,
        false,
        RateLimiterConfig::default(),
        IoEngine::Async,
    );
    f.dev.lock().unwrap().engine = Engine::Async(Box::new(Uring::new(4).unwrap()));
    push_reads(&mem, &mut drv, 30);
    f.dev.lock().unwrap().process_queue();
    assert_eq!(f.dev.lock().unwrap().in_flight(), 4);
    // Each batch of completions admits the next requests, never more than 4 at once.
    let mut rounds = 0;
    while drv.used_idx() < 30 {
        rounds += 1;
        assert!(rounds < 1000, "stuck at {}", drv.used_idx());
        drain(&f.dev);
        assert!(f.dev.lock().unwrap().in_flight() <= 4);
    }
    check_reads(&mem, 30);
}

#[test]
fn reset_with_requests_in_flight_writes_nothing_after() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 256);
    let mut f = fixture_with(
        &mem,
        &drv,
        false,
        RateLimiterConfig::default(),
        IoEngine::Async,
    );
    push_reads(&mem, &mut drv, 40);
    f.dev.lock().unwrap().process_queue();
    assert_eq!(f.dev.lock().unwrap().in_flight(), 40);
    reset(&mut f.transport);
    assert!(!f.dev.lock().unwrap().is_activated());
    // The driver brings the device up again on fresh rings before the old requests
    // complete: their completions must not land there (nor in the old status bytes).
    let mut drv2 = Driver::new(&mem, 0x8000, 64);
    assert!(bring_up(&mut f.transport, &[drv2.layout()]));
    drain(&f.dev);
    assert_eq!(f.dev.lock().unwrap().in_flight(), 0);
    assert_eq!((drv.used_idx(), drv2.used_idx()), (0, 0));
    for i in 0..40 {
        assert_eq!(read_mem(&mem, STATUS + i, 1)[0], 0xff, "req {i}");
    }
    push_reads(&mem, &mut drv2, 5);
    run(&f);
    assert_eq!(drv2.used_idx(), 5);
    check_reads(&mem, 5);
}

#[test]
fn rate_limiter_charges_async_requests_at_admission() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 64);
    let rl = RateLimiterConfig {
        bandwidth: Some(TokenBucketConfig {
            size: 2048,
            one_time_burst: 0,
            refill_time: 1000,
        }),
        ops: None,
    };
    let f = fixture_with(&mem, &drv, false, rl, IoEngine::Async);
    push_reads(&mem, &mut drv, 10);
    f.dev.lock().unwrap().process_queue();
    // 2048 bytes of budget: four 512-byte reads admitted, the fifth waits.
    assert_eq!(f.dev.lock().unwrap().in_flight(), 4);
    drain(&f.dev);
    assert_eq!(drv.used_idx(), 4);
    let m = f.dev.lock().unwrap().metrics().snapshot();
    assert_eq!(m.rate_limiter_throttled, 1);
}

#[test]
fn event_idx_publishes_avail_event_and_suppresses_interrupts() {
    for engine in ENGINES {
        let mem = memory();
        let size = 256u64;
        let mut drv = Driver::new(&mem, 0, size as u16);
        let mut f = fixture_with(&mem, &drv, false, RateLimiterConfig::default(), engine);
        f.transport.write(0x14, &0u32.to_le_bytes());
        assert_ne!(
            r32(&mut f.transport, 0x10) & (1 << VIRTIO_RING_F_EVENT_IDX),
            0
        );
        let used_event = drv.avail_addr().0 + 4 + 2 * size;
        let avail_event = drv.used_addr().0 + 4 + 8 * size;
        let interrupts = |f: &Fixture| f.dev.lock().unwrap().metrics().snapshot().interrupts;
        // The driver wants an interrupt only once the used index passes 5.
        write_mem(&mem, used_event, &5u16.to_le_bytes());
        push_reads(&mem, &mut drv, 3);
        run(&f);
        assert_eq!(drv.used_idx(), 3);
        assert_eq!(interrupts(&f), 0, "{engine:?}: used_event 5 not reached");
        // The device asks for a kick at the next request (avail_event = next avail index).
        assert_eq!(read_mem(&mem, avail_event, 2), 3u16.to_le_bytes());
        push_reads(&mem, &mut drv, 3);
        run(&f);
        assert_eq!(drv.used_idx(), 6);
        assert_eq!(interrupts(&f), 1, "{engine:?}: used index passed 5");
        assert_eq!(read_mem(&mem, avail_event, 2), 6u16.to_le_bytes());
        // Without EVENT_IDX every batch interrupts.
        if let Some(a) = f.dev.lock().unwrap().active.as_mut() {
            a.queues[0].set_event_idx(false);
        }
        push_reads(&mem, &mut drv, 2);
        run(&f);
        assert_eq!(interrupts(&f), 2);
    }
}

/// Seeded hostile rings on both engines: raw descriptors with any address, length, flags
/// and next index, headers of any type and sector, several chains per kick. The device never
/// panics, never holds more than the queue size in flight, returns at most what was made
/// available, and the file keeps its size.
#[test]
fn fuzz_hostile_rings_both_engines() {
    for engine in ENGINES {
        let (mut ok, mut failed) = (0, 0);
        for seed in 0..60u64 {
            let mut r = crate::test_utils::Rng::new(seed);
            let mem = memory();
            let mut drv = Driver::new(&mem, 0, 64);
            let f = fixture_with(
                &mem,
                &drv,
                r.chance(20),
                RateLimiterConfig::default(),
                engine,
            );
            let mut pushed = 0u16;
            for _ in 0..8 {
                let any = r.next_u64();
                let t = r.pick(&[
                    VIRTIO_BLK_T_IN,
                    VIRTIO_BLK_T_OUT,
                    VIRTIO_BLK_T_FLUSH,
                    VIRTIO_BLK_T_DISCARD,
                    VIRTIO_BLK_T_GET_ID,
                    any as u32,
                ]);
                header(&mem, t, r.pick(&[0, 1, 7, 8, any]));
                discard_segment(&mem, r.below(10), r.below(10) as u32, r.pick(&[0, 0, 1]));
                let good = r.chance(60);
                let n = if good { 3 } else { 1 + r.below(5) as u16 };
                let head = r.below(64 - u64::from(n)) as u16;
                let write = u16::from(matches!(t, VIRTIO_BLK_T_IN | VIRTIO_BLK_T_GET_ID)) * 2;
                let descs: Vec<RawDescriptor> = (0..n)
                    .map(|i| {
                        let any = r.next_u64();
                        let next = head + i + 1;
                        let more = if i + 1 < n { 1 } else { 0 };
                        let (mut addr, mut len, mut flags) = match i {
                            0 => (HDR, 16, more),
                            1 if n == 3 => (DATA, r.pick(&[16, 512, 1024]), more | write),
                            _ => (STATUS, 1, more | 2),
                        };
                        let mut next = next;
                        if !good || r.chance(10) {
                            addr = r.pick(&[HDR, DATA, STATUS, MEM_SIZE as u64 - 8, any]);
                            len = r.pick(&[1, 16, 512, 4096, 100, u32::MAX, any as u32]);
                            flags = r.below(8) as u16;
                            if r.chance(20) {
                                next = r.below(100) as u16;
                            }
                        }
                        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
                    })
                    .collect();
                drv.push_raw(&descs, head);
                pushed += 1;
                f.dev.lock().unwrap().process_queue();
                assert!(f.dev.lock().unwrap().in_flight() <= usize::from(QUEUE_SIZE));
            }
            drain(&f.dev);
            assert_eq!(drv.used_idx(), pushed, "{engine:?} seed {seed}");
            assert_eq!(file_contents(&f).len(), 8 * 512, "{engine:?} seed {seed}");
            let m = f.dev.lock().unwrap().metrics().snapshot();
            (ok, failed) = (ok + m.ops, failed + m.errors);
        }
        // The seeds reach both the I/O paths and the refusals.
        assert!(
            ok > 10 && failed > 10,
            "{engine:?}: {ok} served, {failed} refused"
        );
    }
}

#[test]
fn invalid_avail_index_does_not_spin_the_loop() {
    for engine in ENGINES {
        let mem = memory();
        let mut drv = Driver::new(&mem, 0, 16);
        let f = fixture_with(&mem, &drv, false, RateLimiterConfig::default(), engine);
        header(&mem, VIRTIO_BLK_T_IN, 0);
        drv.push(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(drv.used_idx(), 1);
        // The avail index jumps 1000 ahead of a 16-entry queue: refused, and the call returns.
        write_mem(&mem, drv.avail_addr().0 + 2, &1001u16.to_le_bytes());
        run(&f);
        assert_eq!(drv.used_idx(), 1, "{engine:?}");
    }
}
