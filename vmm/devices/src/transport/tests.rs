use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::*;

use crate::bus::BusDevice;
use crate::rate_limiter::RateLimiterConfig;
use crate::rng::Rng;
use crate::test_utils::*;
use crate::transport::{MmioTransport, VirtioDevice};

fn w32(t: &mut MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

fn rng_transport() -> (crate::GuestMemoryMmap, Arc<Mutex<Rng>>, MmioTransport) {
    let mem = memory();
    let dev = Arc::new(Mutex::new(Rng::new(&RateLimiterConfig::default()).unwrap()));
    let t = MmioTransport::new(mem.clone(), dev.clone()).unwrap();
    (mem, dev, t)
}

#[test]
fn identity_registers() {
    let (_m, _d, mut t) = rng_transport();
    assert_eq!(r32(&mut t, 0x0), 0x7472_6976);
    assert_eq!(r32(&mut t, 0x4), 2);
    assert_eq!(r32(&mut t, 0x8), 4);
    w32(&mut t, 0x30, 0);
    // Queue 0 exists; max size readable.
    assert_eq!(r32(&mut t, 0x34), 256);
    w32(&mut t, 0x30, 5);
    assert_eq!(r32(&mut t, 0x34), 0);
    // Odd widths and offsets read zeros and never panic.
    let mut b = [0xffu8; 2];
    t.read(0x0, &mut b);
    assert_eq!(b, [0, 0]);
    let mut b = [0xffu8; 4];
    t.read(0x2, &mut b);
    assert_eq!(b, [0; 4]);
    t.read(0x5000, &mut b);
    assert_eq!(b, [0; 4]);
    t.write(0x70, &[1, 2]);
    t.write(u64::MAX, &[1; 8]);
    assert_eq!(r32(&mut t, 0x70), 0);
}

#[test]
fn features_without_version_1_refused() {
    let (_m, _d, mut t) = rng_transport();
    let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    w32(&mut t, 0x70, s);
    w32(&mut t, 0x24, 1);
    w32(&mut t, 0x20, 0);
    w32(&mut t, 0x70, s | VIRTIO_CONFIG_S_FEATURES_OK);
    assert_eq!(r32(&mut t, 0x70) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    // Features the device does not offer are refused too.
    w32(&mut t, 0x24, 1);
    w32(&mut t, 0x20, 1 | 0x100);
    w32(&mut t, 0x70, s | VIRTIO_CONFIG_S_FEATURES_OK);
    assert_eq!(r32(&mut t, 0x70) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    w32(&mut t, 0x20, 1);
    w32(&mut t, 0x70, s | VIRTIO_CONFIG_S_FEATURES_OK);
    assert_ne!(r32(&mut t, 0x70) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
}

#[test]
fn bad_queue_setup_is_refused() {
    let (_m, dev, mut t) = rng_transport();
    let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    w32(&mut t, 0x70, s);
    w32(&mut t, 0x24, 1);
    w32(&mut t, 0x20, 1);
    let s = s | VIRTIO_CONFIG_S_FEATURES_OK;
    w32(&mut t, 0x70, s);
    w32(&mut t, 0x30, 0);
    // Not a power of two, and too big: ignored (size stays at max).
    w32(&mut t, 0x38, 100);
    w32(&mut t, 0x38, 512);
    // Rings beyond guest memory.
    w32(&mut t, 0x80, 0);
    w32(&mut t, 0x84, 0x10);
    w32(&mut t, 0x44, 1);
    assert_eq!(r32(&mut t, 0x44), 0);
    // DRIVER_OK with a queue not ready: device needs reset, not activated.
    w32(&mut t, 0x70, s | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_eq!(r32(&mut t, 0x70) & VIRTIO_CONFIG_S_DRIVER_OK, 0);
    assert_ne!(r32(&mut t, 0x70) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    assert!(!dev.lock().unwrap().is_activated());
    // Reset clears everything.
    w32(&mut t, 0x70, 0);
    assert_eq!(r32(&mut t, 0x70), 0);
    assert_eq!(r32(&mut t, 0x60), 0);
}

#[test]
fn activation_notify_and_reset() {
    let mem = memory();
    let mut drv = Driver::new(&mem, 0, 16);
    let dev = Arc::new(Mutex::new(Rng::new(&RateLimiterConfig::default()).unwrap()));
    let mut t = activate(&mem, dev.clone(), &[&drv]);
    assert!(dev.lock().unwrap().is_activated());
    // A notify write without ioeventfd lands on the queue eventfd.
    w32(&mut t, 0x50, 0);
    assert_eq!(t.queue_evts()[0].read().unwrap(), 1);
    // Entropy request, served.
    drv.push(&[(BUF_BASE, 64, true), (BUF_BASE + 64, 64, true)]);
    dev.lock().unwrap().process_queue();
    assert_eq!(drv.used(0), (0, 128));
    assert_ne!(read_mem(&mem, BUF_BASE, 128), vec![0u8; 128]);
    assert_eq!(r32(&mut t, 0x60), 1);
    assert_eq!(t.irq_evt().read().unwrap(), 1);
    w32(&mut t, 0x64, 1);
    assert_eq!(r32(&mut t, 0x60), 0);
    // A read-only buffer gets nothing.
    drv.push(&[(BUF_BASE, 64, false)]);
    dev.lock().unwrap().process_queue();
    assert_eq!(drv.used(1).1, 0);
    let m = dev.lock().unwrap().metrics().snapshot();
    assert_eq!((m.bytes_to_guest, m.ops, m.errors), (128, 1, 1));
    w32(&mut t, 0x70, 0);
    assert!(!dev.lock().unwrap().is_activated());
}
