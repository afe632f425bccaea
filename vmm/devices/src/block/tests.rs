use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
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

fn fixture(mem: &GuestMemoryMmap, drv: &Driver, read_only: bool, rl: RateLimiterConfig) -> Fixture {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&disk_pattern(8)).unwrap();
    let dev = Arc::new(Mutex::new(
        Block::new(&BlockConfig {
            drive_id: "rootfs-drive-with-a-long-name".into(),
            path_on_host: file.path().to_path_buf(),
            is_read_only: read_only,
            rate_limiter: rl,
        })
        .unwrap(),
    ));
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

fn run(f: &Fixture) {
    f.dev.lock().unwrap().process_queue();
}

#[test]
fn read_sectors() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 16);
    let f = fixture(&mem, &drv, false, RateLimiterConfig::default());
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

#[test]
fn write_then_flush() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 16);
    let f = fixture(&mem, &drv, false, RateLimiterConfig::default());
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

#[test]
fn read_only_refuses_writes() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 16);
    let mut f = fixture(&mem, &drv, true, RateLimiterConfig::default());
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

#[test]
fn out_of_range_sectors_fail() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 16);
    let f = fixture(&mem, &drv, false, RateLimiterConfig::default());
    for sector in [8, 7, u64::MAX / 256, u64::MAX] {
        header(&mem, VIRTIO_BLK_T_IN, sector);
        drv.push(&[(HDR, 16, false), (DATA, 1024, true), (STATUS, 1, true)]);
        run(&f);
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR as u8, "sector {sector}");
    }
    assert_eq!(drv.used_idx(), 4);
}

#[test]
fn get_id_and_unsupported() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 16);
    let f = fixture(&mem, &drv, false, RateLimiterConfig::default());
    header(&mem, VIRTIO_BLK_T_GET_ID, 0);
    drv.push(&[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)]);
    run(&f);
    assert_eq!(status(&mem), VIRTIO_BLK_S_OK as u8);
    assert_eq!(read_mem(&mem, DATA, 20), b"rootfs-drive-with-a-".to_vec());
    header(&mem, VIRTIO_BLK_T_DISCARD, 0);
    drv.push(&[(HDR, 16, false), (STATUS, 1, true)]);
    run(&f);
    assert_eq!(status(&mem), VIRTIO_BLK_S_UNSUPP as u8);
}

#[test]
fn malformed_chains_fail_and_device_carries_on() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 32);
    let f = fixture(&mem, &drv, false, RateLimiterConfig::default());
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
    let past = RawDescriptor::from(SplitDescriptor::new(HDR, 16, VRING_DESC_F_NEXT as u16, 999));
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

#[test]
fn swap_backing_file_signals_config_change() {
    let mem = memory();
    let drv = Driver::new(&mem, 0, 16);
    let mut f = fixture(&mem, &drv, false, RateLimiterConfig::default());
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

#[test]
fn rate_limiter_throttles_and_resumes() {
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
    let f = fixture(&mem, &drv, false, rl);
    header(&mem, VIRTIO_BLK_T_IN, 0);
    drv.push(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
    drv.push(&[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
    run(&f);
    assert_eq!(drv.used_idx(), 1);
    let m = f.dev.lock().unwrap().metrics().snapshot();
    assert_eq!(m.rate_limiter_throttled, 1);
    // The timer fires after about 20 ms; the event handler resumes the queue.
    {
        let mut d = f.dev.lock().unwrap();
        d.limiter.on_timer();
        d.process_queue();
    }
    assert_eq!(drv.used_idx(), 2);
}

#[test]
fn multi_segment_read_through_event_loop() {
    use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 16);
    let mut f = fixture(&mem, &drv, false, RateLimiterConfig::default());
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
    em.run_with_timeout(1000).unwrap();
    assert_eq!(drv.used(0), (0, 2049));
    let disk = disk_pattern(8);
    assert_eq!(read_mem(&mem, DATA + 0x10000, 512), disk[1024..1536]);
    assert_eq!(read_mem(&mem, DATA, 1024), disk[1536..2560]);
    assert_eq!(read_mem(&mem, DATA + 0x20000, 512), disk[2560..3072]);
    assert_eq!(status(&mem), VIRTIO_BLK_S_OK as u8);
    let m = f.dev.lock().unwrap().metrics().snapshot();
    assert_eq!((m.queue_events, m.interrupts), (1, 1));
}
