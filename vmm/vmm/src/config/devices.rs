//! Firecracker device sections (parsed now, wired when the virtio devices land).

use serde::{Deserialize, Serialize};

/// A token bucket of a rate limiter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucket {
    /// Bucket size (bytes or operations).
    pub size: u64,
    /// Initial extra budget.
    #[serde(default)]
    pub one_time_burst: Option<u64>,
    /// Milliseconds to refill the bucket.
    pub refill_time: u64,
}

/// A rate limiter (bandwidth and/or operations).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimiter {
    /// Bytes.
    #[serde(default)]
    pub bandwidth: Option<TokenBucket>,
    /// Operations.
    #[serde(default)]
    pub ops: Option<TokenBucket>,
}

/// `/drives/{drive_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drive {
    /// Identifier.
    pub drive_id: String,
    /// Backing file.
    #[serde(default)]
    pub path_on_host: Option<String>,
    /// Root device (`root=/dev/vda`).
    pub is_root_device: bool,
    /// Read-only.
    #[serde(default)]
    pub is_read_only: Option<bool>,
    /// Root partition UUID.
    #[serde(default)]
    pub partuuid: Option<String>,
    /// "Unsafe" or "Writeback".
    #[serde(default)]
    pub cache_type: Option<String>,
    /// "Sync" or "Async".
    #[serde(default)]
    pub io_engine: Option<String>,
    /// Rate limiter.
    #[serde(default)]
    pub rate_limiter: Option<RateLimiter>,
    /// vhost-user socket (not supported).
    #[serde(default)]
    pub socket: Option<String>,
}

/// `/network-interfaces/{iface_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    /// Identifier.
    pub iface_id: String,
    /// Host tap device.
    pub host_dev_name: String,
    /// Guest MAC address.
    #[serde(default)]
    pub guest_mac: Option<String>,
    /// Receive limiter.
    #[serde(default)]
    pub rx_rate_limiter: Option<RateLimiter>,
    /// Transmit limiter.
    #[serde(default)]
    pub tx_rate_limiter: Option<RateLimiter>,
}

/// `/vsock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vsock {
    /// Deprecated identifier.
    #[serde(default)]
    pub vsock_id: Option<String>,
    /// Guest context ID (>= 3).
    pub guest_cid: u32,
    /// Host Unix socket path.
    pub uds_path: String,
}

/// `/entropy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entropy {
    /// Rate limiter.
    #[serde(default)]
    pub rate_limiter: Option<RateLimiter>,
}
