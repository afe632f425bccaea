//! The contract between the vmm's port-I/O and MMIO buses and the devices mapped on them.

/// A device that the vmm maps into a range of guest port-I/O or MMIO space.
///
/// The bus calls these from vCPU threads on every guest access that falls into the
/// device's range. `offset` is relative to the start of the range; `data.len()` is the
/// access width (1, 2, 4 or 8 bytes). Both values come from the guest: implementations
/// must treat them as untrusted (an offset past the registers, an odd width) and answer
/// such accesses harmlessly (reads return zeros, writes are ignored), never panic.
pub trait BusDevice: Send {
    /// A guest read of `data.len()` bytes at `offset`; fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write of `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}
