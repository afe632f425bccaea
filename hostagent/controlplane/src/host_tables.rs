//! The host-identity tables of a cell's store: the operator's bootstrap tokens
//! (stored by hash, never the token) and the revoked hosts. Like [`crate::tables`],
//! each table sits behind one typed accessor that builds its keys.

use crate::store::{Store, StoreError, StoreExt, Write};
use serde::{Deserialize, Serialize};

/// Store table names.
pub mod names {
    /// `{sha256 of the token, hex}` -> BootstrapToken.
    pub const BOOTSTRAP_TOKEN: &str = "bootstrap_token";
    /// `{host id}` -> Revocation, until the cell's leader has applied it (then the
    /// host record carries it).
    pub const REVOKED_HOST: &str = "revoked_host";
}

use names::*;

type Result<T> = std::result::Result<T, StoreError>;

/// A bootstrap token as stored: what it allows, and how much of it is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapToken {
    /// The first 12 hex digits of the token's SHA-256: how operators name it.
    pub token_id: String,
    /// The only cell it registers hosts in.
    pub cell: u32,
    /// Most hosts it may register.
    pub max_hosts: u32,
    /// Hosts it registered so far.
    pub hosts_registered: u32,
    /// Most CPU units a host registered with it may offer.
    pub max_cpu: u32,
    /// Most memory (MiB) a host registered with it may offer.
    pub max_memory: u32,
    /// When it was created (seconds since the epoch).
    pub created_at: f64,
    /// When it stops registering hosts (seconds since the epoch).
    pub expires_at: f64,
}

/// An operator's revocation of a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// When (seconds since the epoch).
    pub revoked_at: f64,
}

/// The bootstrap tokens: [`BootstrapToken`]s by the token's SHA-256 (hex).
pub struct BootstrapTokens<'a>(pub &'a dyn Store);

impl BootstrapTokens<'_> {
    /// The token whose SHA-256 is `hash`.
    pub fn get(&self, hash: &str) -> Result<Option<BootstrapToken>> {
        self.0.get_json(BOOTSTRAP_TOKEN, hash)
    }

    /// Stores a new token; false (and nothing written) if one with this hash exists.
    pub fn create(&self, hash: &str, t: &BootstrapToken) -> Result<bool> {
        let v = serde_json::to_string(t)?;
        Ok(self.0.insert_new(BOOTSTRAP_TOKEN, hash, v.clone())? == v)
    }

    /// The write that stores `t` (in a batch with the host it registers).
    pub fn put_write(hash: &str, t: &BootstrapToken) -> Result<Write> {
        Write::put(BOOTSTRAP_TOKEN, hash, t)
    }

    /// Every token of the cell, by hash.
    pub fn all(&self) -> Result<Vec<(String, BootstrapToken)>> {
        self.0.scan_json(BOOTSTRAP_TOKEN, "")
    }

    /// Removes the token whose SHA-256 is `hash`.
    pub fn delete(&self, hash: &str) -> Result<()> {
        self.0.write(vec![Write::Delete {
            table: BOOTSTRAP_TOKEN,
            key: hash.to_string(),
        }])
    }
}

/// The revoked hosts: [`Revocation`]s by host id.
pub struct RevokedHosts<'a>(pub &'a dyn Store);

impl RevokedHosts<'_> {
    /// The revocation of `host`, if it was revoked.
    pub fn get(&self, host: &str) -> Result<Option<Revocation>> {
        self.0.get_json(REVOKED_HOST, host)
    }

    /// Records a revocation.
    pub fn put(&self, host: &str, r: &Revocation) -> Result<()> {
        self.0.put_json(REVOKED_HOST, host, r)
    }

    /// The revocations the leader has not applied yet.
    pub fn all(&self) -> Result<Vec<(String, Revocation)>> {
        self.0.scan_json(REVOKED_HOST, "")
    }

    /// The write that removes the revocation of `host` (once applied).
    pub fn delete_write(host: &str) -> Write {
        Write::Delete {
            table: REVOKED_HOST,
            key: host.to_string(),
        }
    }
}
