//! i8042 keyboard controller (vm-superio): the guest's "reset CPU" command ends the vmm.

use crate::vstate::exit::ExitNotifier;
use vm_superio::I8042Device;
use vmm_devices::bus::BusDevice;

/// The i8042 on ports 0x60-0x64 (offset 4 is the command port).
pub struct I8042 {
    inner: I8042Device<ExitNotifier>,
}

impl I8042 {
    /// A controller whose reset command notifies `exit` with code 0.
    pub fn new(exit: ExitNotifier) -> Self {
        I8042 {
            inner: I8042Device::new(exit),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.inner.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(b), Ok(off)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.inner.write(off, *b) {
                tracing::error!("i8042 reset: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_exit_zero() {
        let exit = ExitNotifier::new().unwrap();
        let mut k = I8042::new(exit.clone());
        k.write(0, &[0xfe]);
        assert!(!exit.requested());
        k.write(4, &[0xfe]);
        assert!(exit.requested());
        assert_eq!(exit.code(), 0);
    }
}
