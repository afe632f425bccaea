//! Metrics: process-wide counters written as one JSON object per line to the metrics file,
//! periodically and on exit.

use crate::sync::lock;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use vmm_devices::metrics::DeviceMetrics;

/// Counters updated from every thread.
#[derive(Default)]
pub struct Metrics {
    /// API requests received.
    pub api_requests: AtomicU64,
    /// API requests answered with an error.
    pub api_errors: AtomicU64,
    /// vCPU exits for port I/O.
    pub vcpu_exits_io: AtomicU64,
    /// vCPU exits for MMIO.
    pub vcpu_exits_mmio: AtomicU64,
    /// Other vCPU exits.
    pub vcpu_exits_other: AtomicU64,
    /// vCPU exits no device handled (ignored).
    pub vcpu_exits_unhandled: AtomicU64,
    /// Bytes the guest wrote to the serial port.
    pub serial_tx_bytes: AtomicU64,
    /// Bytes delivered to the guest's serial port.
    pub serial_rx_bytes: AtomicU64,
    /// Milliseconds from InstanceStart to the guest's boot marker (0 until it arrives).
    pub boot_marker_ms: AtomicU64,
    /// Milliseconds InstanceStart took in the vmm (VM build and vCPU start).
    pub instance_start_ms: AtomicU64,
}

/// The process-wide metrics.
pub static METRICS: Metrics = Metrics {
    api_requests: AtomicU64::new(0),
    api_errors: AtomicU64::new(0),
    vcpu_exits_io: AtomicU64::new(0),
    vcpu_exits_mmio: AtomicU64::new(0),
    vcpu_exits_other: AtomicU64::new(0),
    vcpu_exits_unhandled: AtomicU64::new(0),
    serial_tx_bytes: AtomicU64::new(0),
    serial_rx_bytes: AtomicU64::new(0),
    boot_marker_ms: AtomicU64::new(0),
    instance_start_ms: AtomicU64::new(0),
};

static SINK: Mutex<Option<File>> = Mutex::new(None);

type DeviceList = Vec<(String, Arc<DeviceMetrics>)>;

/// Per-device counters of the attached virtio devices, by key (`block_<drive_id>`,
/// `net_<iface_id>`, `vsock`, `entropy`).
static DEVICES: Mutex<DeviceList> = Mutex::new(Vec::new());

/// Adds a virtio device's counters to every metrics line (under `key`; a key registered
/// again replaces the old counters).
pub fn register_device(key: String, m: Arc<DeviceMetrics>) {
    let mut d = lock(&DEVICES);
    d.retain(|(k, _)| *k != key);
    d.push((key, m));
}

impl Metrics {
    /// The counters as one JSON object (with a UTC timestamp in ms).
    pub fn to_json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut v = serde_json::json!({
            "utc_timestamp_ms": ts,
            "api": {"requests": g(&self.api_requests), "errors": g(&self.api_errors)},
            "vcpu": {
                "exits_io": g(&self.vcpu_exits_io),
                "exits_mmio": g(&self.vcpu_exits_mmio),
                "exits_other": g(&self.vcpu_exits_other),
                "exits_unhandled": g(&self.vcpu_exits_unhandled),
            },
            "serial": {
                "tx_bytes": g(&self.serial_tx_bytes),
                "rx_bytes": g(&self.serial_rx_bytes),
                "tx_dropped_bytes": crate::output_limit::SERIAL.dropped(),
            },
            "logger": {"dropped_bytes": crate::output_limit::LOG.dropped()},
            "boot_marker_ms": g(&self.boot_marker_ms),
            "instance_start_ms": g(&self.instance_start_ms),
        });
        let devices = lock(&DEVICES);
        for (key, m) in devices.iter() {
            if let Ok(snap) = serde_json::to_value(m.snapshot()) {
                v[key.as_str()] = snap;
            }
        }
        v
    }
}

/// Errors configuring metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Metrics were already configured.
    #[error("metrics are already configured")]
    AlreadyConfigured,
    /// The file cannot be opened.
    #[error("cannot open metrics file {path}: {source}")]
    Open {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Sends metrics to `path` (a file or named pipe, opened for appending). Only once.
pub fn init(path: &Path) -> Result<(), MetricsError> {
    let mut sink = lock(&SINK);
    if sink.is_some() {
        return Err(MetricsError::AlreadyConfigured);
    }
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| MetricsError::Open {
            path: path.display().to_string(),
            source,
        })?;
    *sink = Some(f);
    Ok(())
}

/// Writes one line of metrics if a sink is configured; returns whether it wrote.
pub fn flush() -> bool {
    let mut sink = lock(&SINK);
    let Some(f) = sink.as_mut() else {
        return false;
    };
    let line = METRICS.to_json().to_string();
    if let Err(e) = writeln!(f, "{line}").and_then(|_| f.flush()) {
        tracing::warn!("cannot write metrics: {e}");
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_and_file_lines() {
        METRICS.api_requests.fetch_add(1, Ordering::Relaxed);
        let v = METRICS.to_json();
        assert!(v["api"]["requests"].as_u64().unwrap() >= 1);
        assert!(!flush() || SINK.lock().unwrap().is_some());
        let dir = std::env::temp_dir().join(format!("vmm-metrics-{}", std::process::id()));
        init(&dir).unwrap();
        assert!(matches!(init(&dir), Err(MetricsError::AlreadyConfigured)));
        assert!(flush());
        assert!(flush());
        let text = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(text.lines().count(), 2);
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["vcpu"]["exits_io"].is_u64());
        }
        let m = Arc::new(DeviceMetrics::default());
        DeviceMetrics::add(&m.bytes_to_guest, 4096);
        register_device("block_test".into(), m);
        assert_eq!(METRICS.to_json()["block_test"]["bytes_to_guest"], 4096);
    }
}
