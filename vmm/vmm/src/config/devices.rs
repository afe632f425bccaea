//! Firecracker device sections: `/drives`, `/network-interfaces`, `/vsock`, `/entropy`.

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

/// `PATCH /drives/{drive_id}`: a new backing file and/or rate limiter for a running VM.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriveUpdate {
    /// Identifier (must match the path).
    pub drive_id: String,
    /// New backing file.
    #[serde(default)]
    pub path_on_host: Option<String>,
    /// New rate limiter.
    #[serde(default)]
    pub rate_limiter: Option<RateLimiter>,
}

/// `PATCH /network-interfaces/{iface_id}`: new rate limiters for a running VM.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterfaceUpdate {
    /// Identifier (must match the path).
    pub iface_id: String,
    /// New receive limiter.
    #[serde(default)]
    pub rx_rate_limiter: Option<RateLimiter>,
    /// New transmit limiter.
    #[serde(default)]
    pub tx_rate_limiter: Option<RateLimiter>,
}

impl RateLimiter {
    /// The device crate's form (a missing bucket or limiter is no limit).
    pub fn to_device(rl: Option<&RateLimiter>) -> vmm_devices::rate_limiter::RateLimiterConfig {
        use vmm_devices::rate_limiter::{RateLimiterConfig, TokenBucketConfig};
        let bucket = |b: &Option<TokenBucket>| {
            b.as_ref().map(|b| TokenBucketConfig {
                size: b.size,
                one_time_burst: b.one_time_burst.unwrap_or(0),
                refill_time: b.refill_time,
            })
        };
        match rl {
            Some(r) => RateLimiterConfig {
                bandwidth: bucket(&r.bandwidth),
                ops: bucket(&r.ops),
            },
            None => RateLimiterConfig::default(),
        }
    }
}

/// Checks a Firecracker resource id: 1 to 64 characters, ASCII letters, digits and `_`.
pub fn validate_id(kind: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("invalid {kind} {id:?}: must be 1 to 64 characters"));
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "invalid {kind} {id:?}: only ASCII letters, digits and '_' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_rate_limiter_conversion() {
        assert!(validate_id("drive_id", "rootfs_1").is_ok());
        assert!(validate_id("drive_id", "").is_err());
        assert!(validate_id("drive_id", "../x")
            .unwrap_err()
            .contains("letters"));
        assert!(validate_id("drive_id", &"a".repeat(65)).is_err());
        let rl: RateLimiter = serde_json::from_str(
            r#"{"bandwidth": {"size": 1000, "one_time_burst": null, "refill_time": 100},
                "ops": {"size": 10, "one_time_burst": 5, "refill_time": 1000}}"#,
        )
        .unwrap();
        let d = RateLimiter::to_device(Some(&rl));
        assert_eq!(d.bandwidth.unwrap().size, 1000);
        assert_eq!(d.bandwidth.unwrap().one_time_burst, 0);
        assert_eq!(d.ops.unwrap().one_time_burst, 5);
        assert_eq!(RateLimiter::to_device(None), Default::default());
    }
}
