//! Tiny hand-assembled 64-bit guests on the real /dev/kvm: serial output, an unhandled port
//! write that is ignored, and the i8042 reset that ends the VM with exit code 0.
//!
//! Guest ring-0 code may be emulated (PVM), so each guest is a handful of instructions.

mod common;

use common::require_kvm;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};
use vmm::device_manager::DeviceManager;
use vmm::legacy::boot_timer::BootTimer;
use vmm::legacy::i8042::I8042;
use vmm::legacy::serial::SerialDevice;
use vmm::vstate::exit::{ExitNotifier, UnhandledLog};
use vmm::vstate::memory::create_guest_memory;
use vmm::vstate::vm::Vm;
use vmm_sys_util::eventfd::EventFd;

const CODE: u64 = 0x10_0000;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);
impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `code` at 1 MiB in long mode on `vcpus` vCPUs (APs wait for INIT/SIPI); returns
/// (exit code, serial output, unhandled-exit log).
fn run_guest(code: &[u8], vcpus: u8) -> (i32, String, Arc<UnhandledLog>) {
    run_guest_mem(code, vcpus, 16)
}

fn run_guest_mem(code: &[u8], vcpus: u8, mib: usize) -> (i32, String, Arc<UnhandledLog>) {
    let _ = vmm::logger::init(3, None);
    let mem = create_guest_memory(mib).unwrap();
    mem.write_slice(code, GuestAddress(CODE)).unwrap();
    vmm::vstate::regs::write_boot_tables(&mem).unwrap();
    let vm = Vm::new(vcpus).unwrap();
    vm.register_memory(&mem).unwrap();
    let exit = ExitNotifier::new().unwrap();
    let out = Capture::default();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        irq.try_clone().unwrap(),
        Box::new(out.clone()),
    )));
    let mut dm = DeviceManager::new();
    let kbd_irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let i8042 = I8042::new(kbd_irq.try_clone().unwrap(), exit.clone());
    dm.add_legacy(
        &vm.fd,
        serial,
        &irq,
        Arc::new(Mutex::new(i8042)),
        &kbd_irq,
        BootTimer::new(Instant::now() - Duration::from_millis(40)),
    )
    .unwrap();
    let log = Arc::new(UnhandledLog::default());
    let _threads =
        vmm::builder::start_vcpus(&vm, &mem, vcpus, CODE, &dm, &exit, log.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exit.requested() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(exit.requested(), "guest did not finish in time");
    let s = String::from_utf8_lossy(&out.0.lock().unwrap()).to_string();
    (exit.code(), s, log)
}

/// mov dx, port; mov al, byte; out dx, al for each byte.
fn out_bytes(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut c = vec![0x66, 0xba];
    c.extend_from_slice(&port.to_le_bytes());
    for b in bytes {
        c.extend_from_slice(&[0xb0, *b, 0xee]);
    }
    c
}

/// mov al, 0xfe; out 0x64, al; then hlt in a loop.
const RESET: &[u8] = &[0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd];

#[test]
fn serial_output_then_i8042_reset_exits_zero() {
    require_kvm!();
    let mut code = out_bytes(0x3f8, b"hello\n");
    code.extend_from_slice(RESET);
    let (rc, out, log) = run_guest(&code, 1);
    assert_eq!(rc, 0);
    assert_eq!(out, "hello\n");
    assert!(!log.seen("port write", 0x64));
}

#[test]
fn unhandled_port_read_returns_zero() {
    require_kvm!();
    // mov dx, 0x1235; in al, dx; add al, '0'; mov dx, 0x3f8; out dx, al
    let mut code = vec![
        0x66, 0xba, 0x35, 0x12, 0xec, 0x04, b'0', 0x66, 0xba, 0xf8, 0x03, 0xee,
    ];
    code.extend_from_slice(RESET);
    let (rc, out, log) = run_guest(&code, 1);
    assert_eq!((rc, out.as_str()), (0, "0"));
    assert!(log.seen("port read", 0x1235));
}

#[test]
fn guest_larger_than_the_gap_gets_two_memory_slots() {
    require_kvm!();
    let mut code = out_bytes(0x3f8, b"big\n");
    code.extend_from_slice(RESET);
    let (rc, out, _) = run_guest_mem(&code, 1, 4096 + 512);
    assert_eq!((rc, out.as_str()), (0, "big\n"));
}

#[test]
fn two_vcpus_only_the_bootstrap_processor_runs() {
    require_kvm!();
    let mut code = out_bytes(0x3f8, b"once\n");
    code.extend_from_slice(RESET);
    let (rc, out, _) = run_guest(&code, 2);
    assert_eq!(rc, 0);
    assert_eq!(out, "once\n");
}

#[test]
fn boot_timer_and_unhandled_mmio() {
    require_kvm!();
    // mov eax, 1; mov rbx, 0xc0000000; mov [rbx], eax (boot timer);
    // mov rbx, 0xd0000000; mov [rbx], eax (nothing mapped there)
    let mut code = vec![0xb8, 1, 0, 0, 0];
    for addr in [0xc000_0000u64, 0xd000_0000] {
        code.extend_from_slice(&[0x48, 0xbb]);
        code.extend_from_slice(&addr.to_le_bytes());
        code.extend_from_slice(&[0x89, 0x03]);
    }
    code.extend(out_bytes(0x3f8, b"ok"));
    code.extend_from_slice(RESET);
    let (rc, out, log) = run_guest(&code, 1);
    assert_eq!((rc, out.as_str()), (0, "ok"));
    let ms = vmm::metrics::METRICS
        .boot_marker_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(ms >= 40, "boot marker {ms} ms");
    assert!(log.seen("mmio write", 0xd000_0000));
    assert!(!log.seen("mmio write", 0xc000_0000));
}

#[test]
fn unhandled_port_write_is_ignored() {
    require_kvm!();
    let mut code = out_bytes(0x1234, b"x");
    code.extend(out_bytes(0x3f8, b"after\n"));
    code.extend_from_slice(RESET);
    let (rc, out, log) = run_guest(&code, 1);
    assert_eq!(rc, 0);
    assert_eq!(out, "after\n");
    assert!(log.seen("port write", 0x1234));
}

/// A stand-in virtio-mmio transport: records register writes.
type Writes = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;
struct Recorder(Writes);
impl vmm_devices::bus::BusDevice for Recorder {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.0.lock().unwrap().push((offset, data.to_vec()));
    }
}

#[test]
fn virtio_mmio_registration_wires_bus_ioeventfds_and_cmdline() {
    require_kvm!();
    let mem = create_guest_memory(16).unwrap();
    vmm::vstate::regs::write_boot_tables(&mem).unwrap();
    let vm = Vm::new(1).unwrap();
    vm.register_memory(&mem).unwrap();
    let exit = ExitNotifier::new().unwrap();
    let mut dm = DeviceManager::new();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let kbd_irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    dm.add_legacy(
        &vm.fd,
        Arc::new(Mutex::new(SerialDevice::new(
            irq.try_clone().unwrap(),
            Box::new(std::io::sink()),
        ))),
        &irq,
        Arc::new(Mutex::new(I8042::new(
            kbd_irq.try_clone().unwrap(),
            exit.clone(),
        ))),
        &kbd_irq,
        BootTimer::new(Instant::now()),
    )
    .unwrap();
    let writes = Arc::new(Mutex::new(Vec::new()));
    let dev_irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let queues: Vec<EventFd> = (0..2)
        .map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap())
        .collect();
    let (base, gsi) = dm
        .register_virtio_mmio(
            &vm.fd,
            Arc::new(Mutex::new(Recorder(writes.clone()))),
            &dev_irq,
            &queues,
            None,
        )
        .unwrap();
    assert_eq!((base, gsi), (0xc000_1000, 5));
    let slot2 = dm
        .register_mmio_device(&vm.fd, Arc::new(Mutex::new(Recorder(writes.clone()))), None)
        .unwrap();
    assert_eq!((slot2.base, slot2.irq), (0xc000_2000, 6));
    assert_eq!(
        dm.cmdline,
        vec![
            "virtio_mmio.device=4K@0xc0001000:5".to_string(),
            "virtio_mmio.device=4K@0xc0002000:6".to_string()
        ]
    );
    // mov rbx, base; mov dword [rbx+0x50], 1 (queue 1 notify: ioeventfd, no exit);
    // mov dword [rbx+0x70], 0xab (a register write: the bus); reset.
    let mut code = vec![0x48, 0xbb];
    code.extend_from_slice(&base.to_le_bytes());
    code.extend_from_slice(&[0xc7, 0x43, 0x50, 1, 0, 0, 0]);
    code.extend_from_slice(&[0xc7, 0x43, 0x70, 0xab, 0, 0, 0]);
    code.extend_from_slice(RESET);
    mem.write_slice(&code, GuestAddress(CODE)).unwrap();
    let log = Arc::new(UnhandledLog::default());
    let _t = vmm::builder::start_vcpus(&vm, &mem, 1, CODE, &dm, &exit, log).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exit.requested() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(exit.requested());
    assert_eq!(queues[1].read().unwrap(), 1, "queue 1 notification");
    assert!(queues[0].read().is_err(), "queue 0 must not fire");
    assert_eq!(
        writes.lock().unwrap().as_slice(),
        &[(0x70, vec![0xab, 0, 0, 0])]
    );
}
