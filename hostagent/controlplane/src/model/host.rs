//! A registered host, as the control plane stores it.

use super::HostStatus;
use serde::{Deserialize, Serialize};

/// A registered host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    /// `h-<cell>-<uuid>`, given at registration.
    pub host_id: String,
    /// Name given at registration.
    pub hostname: String,
    /// The availability zone the host said it is in (placement spreads over these).
    pub availability_zone: String,
    /// CPU units offered.
    pub cpu: u32,
    /// Memory MiB offered.
    pub memory: u32,
    /// SHA-256 (hex) of the host credential.
    pub credential_sha256: String,
    /// Registration time.
    pub registered_at: f64,
    /// Active, draining, or lost.
    pub status: HostStatus,
    /// The id of the bootstrap token that registered it.
    #[serde(default)]
    pub token_id: String,
    /// When the current credential was issued (seconds since the epoch).
    #[serde(default)]
    pub credential_issued_at: f64,
    /// When the current credential expires (0, in a record of an older version:
    /// expired, the host registers again).
    #[serde(default)]
    pub credential_expires_at: f64,
    /// SHA-256 (hex) of the credential before the last rotation, accepted until
    /// `previous_valid_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_credential_sha256: Option<String>,
    /// End of the overlap of the previous credential.
    #[serde(default)]
    pub previous_valid_until: f64,
    /// When the operator revoked the host (its credentials are refused since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<f64>,
}
