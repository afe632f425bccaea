//! 8250 UART on COM1 (vm-superio), interrupting through an irqfd, output to a writer
//! (stdout, a file or a named pipe), input from stdin through the event loop.

use crate::metrics::METRICS;
use crate::output_limit::{self, Budget};
use crate::sync::lock;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use vm_superio::{Serial, Trigger};
use vmm_devices::bus::BusDevice;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

/// An eventfd registered as a KVM irqfd: writing it raises the guest interrupt.
pub struct IrqEvt(pub EventFd);

impl Trigger for IrqEvt {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Counts bytes sent by the guest and writes them within the console's byte budget.
struct Counting<W> {
    out: W,
    budget: &'static Budget,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.budget.write(&mut self.out, buf)?;
        METRICS
            .serial_tx_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Where the guest's serial output goes.
pub type SerialOut = Box<dyn Write + Send>;

/// The UART as a bus device.
pub struct SerialDevice {
    uart: Serial<IrqEvt, vm_superio::serial::NoEvents, Counting<SerialOut>>,
}

impl SerialDevice {
    /// A UART raising `irq` and writing to `out` within `--serial-out-limit`.
    pub fn new(irq: EventFd, out: SerialOut) -> Self {
        Self::with_budget(irq, out, &output_limit::SERIAL)
    }

    /// A UART raising `irq` and writing to `out` within `budget`.
    pub fn with_budget(irq: EventFd, out: SerialOut, budget: &'static Budget) -> Self {
        SerialDevice {
            uart: Serial::new(IrqEvt(irq), Counting { out, budget }),
        }
    }

    /// Queues bytes for the guest to read; returns how many fit in the receive FIFO.
    pub fn enqueue(&mut self, bytes: &[u8]) -> usize {
        let room = self.uart.fifo_capacity().min(bytes.len());
        if room == 0 {
            return 0;
        }
        match self.uart.enqueue_raw_bytes(&bytes[..room]) {
            Ok(n) => {
                METRICS
                    .serial_rx_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
                n
            }
            Err(e) => {
                tracing::debug!("serial input dropped: {e:?}");
                0
            }
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.uart.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(b), Ok(off)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.uart.write(off, *b) {
                tracing::debug!("serial write: {e:?}");
            }
        }
    }
}

/// Feeds stdin (or any readable fd) into the UART from the event loop.
pub struct SerialInput<R: Read + AsRawFd + Send> {
    serial: Arc<Mutex<SerialDevice>>,
    input: R,
}

impl<R: Read + AsRawFd + Send> SerialInput<R> {
    /// A subscriber reading `input` into `serial`.
    pub fn new(serial: Arc<Mutex<SerialDevice>>, input: R) -> Self {
        SerialInput { serial, input }
    }
}

impl<R: Read + AsRawFd + Send> MutEventSubscriber for SerialInput<R> {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let mut buf = [0u8; 64];
        let n = if events.event_set().contains(EventSet::IN) {
            self.input.read(&mut buf).unwrap_or(0)
        } else {
            0
        };
        if n == 0 {
            // EOF, error or hang-up: stop watching the input.
            let _ = ops.remove(Events::new(&self.input.as_raw_fd(), EventSet::IN));
            return;
        }
        let mut serial = lock(&self.serial);
        let taken = serial.enqueue(&buf[..n]);
        if taken < n {
            tracing::debug!(
                "serial receive FIFO full: {} input bytes dropped",
                n - taken
            );
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.input.as_raw_fd(), EventSet::IN)) {
            tracing::info!("serial input not watched (stdin cannot be polled): {e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmits_and_receives() {
        let out = Buf::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut s = SerialDevice::new(irq.try_clone().unwrap(), Box::new(out.clone()));
        s.write(0, b"h");
        s.write(0, b"i");
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi");
        // Enable the received-data interrupt, then queue input.
        s.write(1, &[1]);
        assert_eq!(s.enqueue(b"ok"), 2);
        assert!(irq.read().unwrap() >= 1);
        let mut b = [0u8; 1];
        s.read(0, &mut b);
        assert_eq!(&b, b"o");
        // Out-of-range offsets and empty accesses are harmless.
        s.read(0x1234, &mut b);
        s.write(0, &[]);
    }

    #[test]
    fn a_guest_past_the_console_limit_is_cut_off_but_its_uart_works() {
        let budget: &'static Budget =
            Box::leak(Box::new(Budget::unlimited("serial console output")));
        budget.set_limit(8);
        let out = Buf::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut s = SerialDevice::with_budget(irq, Box::new(out.clone()), budget);
        for b in b"0123456789".iter().cycle().take(1000) {
            s.write(0, &[*b]);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.starts_with("01234567\n[vmm: serial console output limit of 8 bytes"),
            "{text}"
        );
        assert!(text.ends_with("dropped]\n"), "{text}");
        assert_eq!(budget.dropped(), 992);
        // The transmitter still reports empty: the guest is not stalled.
        let mut lsr = [0u8; 1];
        s.read(5, &mut lsr);
        assert_eq!(lsr[0] & 0x20, 0x20, "THR empty");
    }
}
