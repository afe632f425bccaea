//! The boot-timer device: a guest write at offset 0 marks "guest reached init".

use crate::metrics::METRICS;
use std::sync::atomic::Ordering;
use std::time::Instant;
use vmm_devices::bus::BusDevice;

/// Records the time from InstanceStart to the guest's first marker write.
pub struct BootTimer {
    start: Instant,
}

impl BootTimer {
    /// A timer counting from `start` (the InstanceStart request).
    pub fn new(start: Instant) -> Self {
        BootTimer { start }
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, _data: &[u8]) {
        if offset != 0 {
            return;
        }
        let ms = self.start.elapsed().as_millis() as u64;
        METRICS.boot_marker_ms.store(ms, Ordering::Relaxed);
        tracing::info!("guest boot marker: {ms} ms since InstanceStart");
        crate::metrics::flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn marker_stores_elapsed_ms() {
        let start = Instant::now() - Duration::from_millis(1500);
        let mut t = BootTimer::new(start);
        t.write(8, &[1]);
        t.write(0, &[1]);
        let ms = METRICS.boot_marker_ms.load(Ordering::Relaxed);
        assert!((1500..10_000).contains(&ms), "{ms}");
        let mut b = [7u8; 4];
        t.read(0, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
