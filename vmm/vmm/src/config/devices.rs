//! Firecracker device sections: `/drives`, `/network-interfaces`, `/vsock`, `/entropy`.

use crate::unsupported::NotSupported;
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

/// A drive's I/O engine (`io_engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IoEngine {
    /// Blocking reads and writes on the event loop.
    Sync,
    /// io_uring: submitted without blocking the event loop; falls back to `Sync`, logged,
    /// where io_uring is unavailable.
    Async,
}

impl IoEngine {
    /// The device's engine for `io_engine` (absent: `Sync`).
    pub fn to_device(e: Option<IoEngine>) -> vmm_devices::block::IoEngine {
        match e {
            None | Some(IoEngine::Sync) => vmm_devices::block::IoEngine::Sync,
            Some(IoEngine::Async) => vmm_devices::block::IoEngine::Async,
        }
    }
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
    /// "Sync" (the default) or "Async" (io_uring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_engine: Option<IoEngine>,
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

/// A resource id that is malformed, or that the path and the body disagree on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IdError {
    /// Empty or longer than 64 characters.
    #[error("invalid {kind} {id:?}: must be 1 to 64 characters")]
    Length {
        /// The id's field name (`drive_id`, `iface_id`).
        kind: &'static str,
        /// The id as given.
        id: String,
    },
    /// A character other than ASCII letters, digits and `_`.
    #[error("invalid {kind} {id:?}: only ASCII letters, digits and '_' are allowed")]
    Characters {
        /// The id's field name.
        kind: &'static str,
        /// The id as given.
        id: String,
    },
    /// `PUT /drives/a` with `"drive_id": "b"`.
    #[error("the {kind} in the path ({path_id:?}) and in the body ({body_id:?}) differ")]
    Mismatch {
        /// The id's field name.
        kind: &'static str,
        /// The id in the URL path.
        path_id: String,
        /// The id in the JSON body.
        body_id: String,
    },
}

/// Checks a Firecracker resource id: 1 to 64 characters, ASCII letters, digits and `_`.
pub fn validate_id(kind: &'static str, id: &str) -> Result<(), IdError> {
    if id.is_empty() || id.len() > 64 {
        return Err(IdError::Length {
            kind,
            id: id.to_string(),
        });
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(IdError::Characters {
            kind,
            id: id.to_string(),
        });
    }
    Ok(())
}

/// Checks the id in the path and that the body names the same resource.
pub fn same_id(kind: &'static str, path_id: &str, body_id: &str) -> Result<(), IdError> {
    validate_id(kind, path_id)?;
    if path_id != body_id {
        return Err(IdError::Mismatch {
            kind,
            path_id: path_id.to_string(),
            body_id: body_id.to_string(),
        });
    }
    Ok(())
}

/// A `/drives` body this vmm does not serve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriveConfigError {
    /// `socket` (vhost-user) is set.
    #[error(transparent)]
    NotSupported(NotSupported),
    /// `cache_type` other than "Unsafe" or "Writeback".
    #[error("invalid cache_type {0:?} (\"Unsafe\" or \"Writeback\")")]
    CacheType(String),
    /// `path_on_host` absent or empty.
    #[error("drive {0}: path_on_host is required")]
    NoPath(String),
    /// A second drive with `is_root_device`.
    #[error("drive {id}: a root device is already configured ({other})")]
    SecondRoot {
        /// The drive being configured.
        id: String,
        /// The root drive already there.
        other: String,
    },
}

impl Drive {
    /// Checks the fields this vmm restricts; returns the backing file's path.
    pub fn validate(&self) -> Result<&str, DriveConfigError> {
        if self.socket.is_some() {
            return Err(DriveConfigError::NotSupported(NotSupported::new(
                "vhost-user block (the drive's socket)",
            )));
        }
        if let Some(c) = self.cache_type.as_deref() {
            if c != "Unsafe" && c != "Writeback" {
                return Err(DriveConfigError::CacheType(c.to_string()));
            }
        }
        self.path_on_host
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| DriveConfigError::NoPath(self.drive_id.clone()))
    }

    /// Checks that this drive is not a second root device among `configured` (a drive with
    /// the same id is the one being replaced and does not count).
    pub fn check_single_root<'a>(
        &self,
        configured: impl IntoIterator<Item = &'a Drive>,
    ) -> Result<(), DriveConfigError> {
        if !self.is_root_device {
            return Ok(());
        }
        match configured
            .into_iter()
            .find(|d| d.is_root_device && d.drive_id != self.drive_id)
        {
            Some(other) => Err(DriveConfigError::SecondRoot {
                id: self.drive_id.clone(),
                other: other.drive_id.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// A `/network-interfaces` body with a malformed field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NetConfigError {
    /// `guest_mac` is not six hex bytes separated by colons.
    #[error("invalid guest_mac {0:?}")]
    Mac(String),
}

impl NetworkInterface {
    /// The parsed `guest_mac` (None when absent).
    pub fn mac(&self) -> Result<Option<[u8; 6]>, NetConfigError> {
        match &self.guest_mac {
            Some(s) => vmm_devices::net::parse_mac(s)
                .map(Some)
                .ok_or_else(|| NetConfigError::Mac(s.clone())),
            None => Ok(None),
        }
    }
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
            .to_string()
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

    fn drive(id: &str, root: bool) -> Drive {
        Drive {
            drive_id: id.into(),
            path_on_host: Some("/r".into()),
            is_root_device: root,
            is_read_only: None,
            partuuid: None,
            cache_type: None,
            io_engine: None,
            rate_limiter: None,
            socket: None,
        }
    }

    #[test]
    fn drive_checks() {
        assert_eq!(drive("a", true).validate(), Ok("/r"));
        let mut d = drive("a", false);
        d.io_engine = Some(IoEngine::Async);
        assert_eq!(d.validate(), Ok("/r"));
        d.io_engine = Some(IoEngine::Sync);
        d.cache_type = Some("Fast".into());
        assert!(matches!(d.validate(), Err(DriveConfigError::CacheType(_))));
        d.cache_type = Some("Writeback".into());
        d.path_on_host = Some(String::new());
        assert_eq!(
            d.validate().unwrap_err().to_string(),
            "drive a: path_on_host is required"
        );
        let configured = [drive("rootfs", true), drive("data", false)];
        assert!(drive("rootfs", true).check_single_root(&configured).is_ok());
        assert!(drive("more", false).check_single_root(&configured).is_ok());
        assert_eq!(
            drive("second", true)
                .check_single_root(&configured)
                .unwrap_err()
                .to_string(),
            "drive second: a root device is already configured (rootfs)"
        );
        assert_eq!(
            same_id("drive_id", "a", "b").unwrap_err().to_string(),
            "the drive_id in the path (\"a\") and in the body (\"b\") differ"
        );
    }
}
