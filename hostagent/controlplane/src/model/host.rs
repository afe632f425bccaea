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
}
