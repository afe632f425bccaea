//! The host's identity: obtained once with the bootstrap token, then kept in
//! `<state-dir>/identity.json` (mode 0600) so a restarted agent is the same host.
//! The credential in it expires; the agent rotates it over the channel and stores
//! each new one here before it uses it.

use super::store::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A registered host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The control plane it registered with.
    pub controlplane: String,
    /// Host id.
    pub host_id: String,
    /// Secret host credential.
    pub host_credential: String,
    /// Cell.
    pub cell: u32,
    /// Heartbeat interval the control plane asked for.
    pub heartbeat_interval_secs: u64,
    /// When the credential was received (ms since the epoch, this host's clock).
    #[serde(default)]
    pub credential_issued_at_ms: u64,
    /// When the credential expires (ms since the epoch, this host's clock; 0: not
    /// known, rotated at the first connection).
    #[serde(default)]
    pub credential_expires_at_ms: u64,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Identity {
    /// Takes a credential valid for `ttl_ms` from `now_ms` (0: not said).
    pub fn set_credential(&mut self, credential: String, ttl_ms: u64, now_ms: u64) {
        self.host_credential = credential;
        self.credential_issued_at_ms = now_ms;
        self.credential_expires_at_ms = if ttl_ms == 0 {
            0
        } else {
            now_ms.saturating_add(ttl_ms)
        };
    }

    /// Whether the credential is past its expiry at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.credential_expires_at_ms != 0 && now_ms >= self.credential_expires_at_ms
    }

    /// Whether it is time to rotate the credential at `now_ms`: past half its
    /// lifetime, or its expiry is not known.
    pub fn rotation_due(&self, now_ms: u64) -> bool {
        if self.credential_expires_at_ms == 0 {
            return true;
        }
        let life = self
            .credential_expires_at_ms
            .saturating_sub(self.credential_issued_at_ms);
        now_ms >= self.credential_issued_at_ms.saturating_add(life / 2)
    }
}

/// Path of the identity file.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("identity.json")
}

/// The identity file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file holds no identity.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The identity does not serialize.
    #[error(transparent)]
    Encode(serde_json::Error),
}

/// The stored identity, if any.
pub fn load(state_dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let p = path(state_dir);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| IdentityError::Parse { path: p, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io { path: p, source }),
    }
}

/// Stores the identity (atomically, owner-only).
pub fn save(state_dir: &Path, id: &Identity) -> Result<(), IdentityError> {
    let bytes = serde_json::to_vec_pretty(id).map_err(IdentityError::Encode)?;
    let p = path(state_dir);
    write_atomic(&p, &bytes, 0o600).map_err(|source| IdentityError::Io { path: p, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rotation_is_due_at_half_life_and_expiry_is_known() {
        let mut id = Identity {
            controlplane: String::new(),
            host_id: "h".into(),
            host_credential: String::new(),
            cell: 0,
            heartbeat_interval_secs: 1,
            credential_issued_at_ms: 0,
            credential_expires_at_ms: 0,
        };
        assert!(
            id.rotation_due(5) && !id.expired(u64::MAX),
            "unknown expiry"
        );
        id.set_credential("c".into(), 1000, 10_000);
        assert!(!id.rotation_due(10_499));
        assert!(id.rotation_due(10_500));
        assert!(!id.expired(10_999));
        assert!(id.expired(11_000));
    }

    #[test]
    fn saved_identity_is_private_and_reloads() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(load(tmp.path()).unwrap(), None);
        let id = Identity {
            controlplane: "http://127.0.0.1:1".into(),
            host_id: "h-0-abc".into(),
            host_credential: "secret".into(),
            cell: 0,
            heartbeat_interval_secs: 10,
            credential_issued_at_ms: 0,
            credential_expires_at_ms: 0,
        };
        save(tmp.path(), &id).unwrap();
        assert_eq!(load(tmp.path()).unwrap(), Some(id));
        let mode = std::fs::metadata(path(tmp.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // An identity of an older version (no expiry) still loads.
        std::fs::write(
            path(tmp.path()),
            br#"{"controlplane":"x","hostId":"h","hostCredential":"c","cell":0,"heartbeatIntervalSecs":1}"#,
        )
        .unwrap();
        assert_eq!(
            load(tmp.path()).unwrap().unwrap().credential_expires_at_ms,
            0
        );
        std::fs::write(path(tmp.path()), b"garbage").unwrap();
        assert!(load(tmp.path())
            .unwrap_err()
            .to_string()
            .contains("identity.json"));
    }
}
