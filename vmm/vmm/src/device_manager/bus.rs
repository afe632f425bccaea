//! Port-I/O and MMIO buses: ranges of guest addresses mapped to [`BusDevice`]s.

use crate::sync::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use vmm_devices::bus::BusDevice;

/// A device shared between the bus (vCPU threads) and its owner (event loop).
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors when inserting a device.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BusError {
    /// The range is empty or wraps around.
    #[error("invalid bus range {base:#x}+{len:#x}")]
    InvalidRange {
        /// Base address.
        base: u64,
        /// Length.
        len: u64,
    },
    /// The range overlaps a device already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap {
        /// Base address.
        base: u64,
        /// Length.
        len: u64,
    },
}

/// A bus: non-overlapping address ranges, each owned by one device.
#[derive(Default, Clone)]
pub struct Bus {
    devices: BTreeMap<u64, (u64, SharedDevice)>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `device` at `[base, base + len)`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        if let Some((b, (l, _))) = self.devices.range(..end).next_back() {
            if b + l > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        self.devices.insert(base, (len, device));
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let (base, (len, dev)) = self.devices.range(..=addr).next_back()?;
        (addr - base < *len).then_some((addr - base, dev))
    }

    /// Dispatches a guest read; returns false when no device covers `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((offset, dev)) => {
                // A poisoned lock means a device panicked earlier; keep serving the bus.
                lock(dev).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a guest write; returns false when no device covers `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((offset, dev)) => {
                lock(dev).write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_with_offsets() {
        let dev = Arc::new(Mutex::new(Echo(vec![])));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b, [2]);
        assert!(!bus.read(0x400, &mut b));
        assert!(!bus.read(0x3f7, &mut b));
        assert!(bus.write(0x3ff, &[9]));
        assert_eq!(dev.lock().unwrap().0, vec![(7, vec![9])]);
    }

    #[test]
    fn rejects_overlaps_and_empty_ranges() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Echo(vec![]))), 0x1000, 0x1000)
            .unwrap();
        let e = Arc::new(Mutex::new(Echo(vec![])));
        assert!(matches!(
            bus.insert(e.clone(), 0x1800, 0x1000),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(e.clone(), 0x800, 0x1000),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(e.clone(), 0x10, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(e.clone(), u64::MAX, 2),
            Err(BusError::InvalidRange { .. })
        ));
        bus.insert(e, 0x2000, 0x1000).unwrap();
    }
}
