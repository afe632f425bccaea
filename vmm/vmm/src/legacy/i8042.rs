//! i8042 keyboard controller with an AT keyboard behind it: enough for Linux's i8042 and
//! atkbd drivers to probe, for `reboot=k` (command 0xFE ends the vmm with exit code 0) and
//! for the API's SendCtrlAltDel (types Ctrl+Alt+Del, raising IRQ 1).
//!
//! vm-superio's `I8042Device` only implements the reset command (its reads return 0 and it
//! has no output buffer), so the guest's driver probe and key injection need this one.

use crate::vstate::exit::ExitNotifier;
use std::collections::VecDeque;
use vmm_devices::bus::BusDevice;
use vmm_sys_util::eventfd::EventFd;

/// Offset of the status/command port (0x64) from the data port (0x60).
pub const COMMAND_OFFSET: u64 = 4;

const CTR_KBD_INT: u8 = 0x01;
const CTR_SYS_FLAG: u8 = 0x04;
const CTR_KBD_DISABLE: u8 = 0x10;
const CTR_XLATE: u8 = 0x40;
const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;
/// Keyboard not inhibited (the keylock is open).
const STATUS_UNLOCKED: u8 = 0x10;
const OUTBUF_MAX: usize = 16;

/// Ctrl, Alt, Del presses and releases in scan-code set 1 (what a translating controller
/// delivers) and set 2 (untranslated).
const CAD_SET1: &[u8] = &[0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d];
const CAD_SET2: &[u8] = &[
    0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14,
];

/// The i8042 on ports 0x60-0x64.
pub struct I8042 {
    ctr: u8,
    out: VecDeque<u8>,
    /// A controller command waiting for its data byte (0x60, 0xD1-0xD4).
    pending_cmd: Option<u8>,
    /// A keyboard command waiting for its parameter (0xED, 0xF3).
    pending_kbd: Option<u8>,
    last_was_cmd: bool,
    irq: EventFd,
    exit: ExitNotifier,
}

impl I8042 {
    /// A controller raising `irq` (GSI 1) and notifying `exit` on the reset command.
    pub fn new(irq: EventFd, exit: ExitNotifier) -> Self {
        I8042 {
            ctr: CTR_KBD_INT | CTR_SYS_FLAG,
            out: VecDeque::new(),
            pending_cmd: None,
            pending_kbd: None,
            last_was_cmd: false,
            irq,
            exit,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let was_empty = self.out.is_empty();
        for b in bytes {
            if self.out.len() < OUTBUF_MAX {
                self.out.push_back(*b);
            }
        }
        if was_empty && !self.out.is_empty() {
            self.raise();
        }
    }

    fn raise(&self) {
        if self.ctr & CTR_KBD_INT != 0 {
            if let Err(e) = self.irq.write(1) {
                tracing::warn!("i8042 interrupt: {e}");
            }
        }
    }

    /// Types Ctrl+Alt+Del on the keyboard.
    pub fn send_ctrl_alt_del(&mut self) {
        if self.ctr & CTR_XLATE != 0 {
            self.push(CAD_SET1);
        } else {
            self.push(CAD_SET2);
        }
    }

    fn command(&mut self, cmd: u8) {
        match cmd {
            0x20 => self.push(&[self.ctr]),
            0x60 | 0xd1..=0xd4 => self.pending_cmd = Some(cmd),
            0xaa => self.push(&[0x55]),
            0xab => self.push(&[0x00]),
            0xad => self.ctr |= CTR_KBD_DISABLE,
            0xae => self.ctr &= !CTR_KBD_DISABLE,
            0xfe => {
                tracing::info!("guest requested a reset through the i8042 controller");
                self.exit.notify(0);
            }
            _ => {}
        }
    }

    fn data(&mut self, v: u8) {
        if let Some(cmd) = self.pending_cmd.take() {
            match cmd {
                0x60 => self.ctr = v,
                0xd2 => self.push(&[v]),
                _ => {} // output port, aux port (absent)
            }
            return;
        }
        if self.pending_kbd.take().is_some() {
            self.push(&[0xfa]);
            return;
        }
        // A command to the keyboard itself.
        match v {
            0xff => self.push(&[0xfa, 0xaa]),
            0xf2 => {
                let id = if self.ctr & CTR_XLATE != 0 {
                    0x41
                } else {
                    0x83
                };
                self.push(&[0xfa, 0xab, id]);
            }
            0xed | 0xf3 => {
                self.pending_kbd = Some(v);
                self.push(&[0xfa]);
            }
            0xee => self.push(&[0xee]),
            _ => self.push(&[0xfa]),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(b) = data.first_mut() else { return };
        match offset {
            0 => {
                *b = self.out.pop_front().unwrap_or(0);
                if !self.out.is_empty() {
                    self.raise();
                }
            }
            COMMAND_OFFSET => {
                let obf = if self.out.is_empty() { 0 } else { STATUS_OBF };
                let cmd = if self.last_was_cmd { STATUS_CMD } else { 0 };
                *b = obf | STATUS_SYS | STATUS_UNLOCKED | cmd;
            }
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(v) = data.first().copied() else {
            return;
        };
        match offset {
            0 => {
                self.last_was_cmd = false;
                self.data(v);
            }
            COMMAND_OFFSET => {
                self.last_was_cmd = true;
                self.command(v);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> (I8042, EventFd, ExitNotifier) {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let exit = ExitNotifier::new().unwrap();
        (
            I8042::new(irq.try_clone().unwrap(), exit.clone()),
            irq,
            exit,
        )
    }

    fn rd(d: &mut I8042, off: u64) -> u8 {
        let mut b = [0u8];
        d.read(off, &mut b);
        b[0]
    }

    #[test]
    fn reset_command_requests_exit_zero() {
        let (mut k, _irq, exit) = dev();
        k.write(0, &[0xfe]);
        assert!(!exit.requested());
        k.write(COMMAND_OFFSET, &[0xfe]);
        assert!(exit.requested());
        assert_eq!(exit.code(), 0);
    }

    #[test]
    fn linux_probe_sequence() {
        let (mut k, _irq, _) = dev();
        assert_eq!(rd(&mut k, COMMAND_OFFSET) & STATUS_OBF, 0);
        k.write(COMMAND_OFFSET, &[0xaa]);
        assert_eq!(rd(&mut k, COMMAND_OFFSET) & STATUS_OBF, STATUS_OBF);
        assert_eq!(rd(&mut k, 0), 0x55);
        k.write(COMMAND_OFFSET, &[0x20]);
        let ctr = rd(&mut k, 0);
        assert_eq!(ctr, CTR_KBD_INT | CTR_SYS_FLAG);
        k.write(COMMAND_OFFSET, &[0x60]);
        k.write(0, &[ctr | CTR_XLATE]);
        k.write(COMMAND_OFFSET, &[0x20]);
        assert_eq!(rd(&mut k, 0), ctr | CTR_XLATE);
        k.write(0, &[0xff]);
        assert_eq!((rd(&mut k, 0), rd(&mut k, 0)), (0xfa, 0xaa));
        k.write(0, &[0xed]);
        k.write(0, &[0x07]);
        assert_eq!((rd(&mut k, 0), rd(&mut k, 0)), (0xfa, 0xfa));
        assert_eq!(rd(&mut k, COMMAND_OFFSET) & STATUS_OBF, 0);
    }

    #[test]
    fn ctrl_alt_del_scancodes_and_irq() {
        let (mut k, irq, _) = dev();
        k.send_ctrl_alt_del();
        assert_eq!(irq.read().unwrap(), 1);
        let got: Vec<u8> = (0..CAD_SET2.len()).map(|_| rd(&mut k, 0)).collect();
        assert_eq!(got, CAD_SET2);
        k.write(COMMAND_OFFSET, &[0x60]);
        k.write(0, &[CTR_KBD_INT | CTR_XLATE]);
        k.send_ctrl_alt_del();
        let got: Vec<u8> = (0..CAD_SET1.len()).map(|_| rd(&mut k, 0)).collect();
        assert_eq!(got, CAD_SET1);
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let (mut k, _, _) = dev();
        k.write(2, &[0xfe]);
        k.write(0, &[]);
        let mut empty: [u8; 0] = [];
        k.read(0, &mut empty);
        assert_eq!(rd(&mut k, 3), 0);
    }
}
