//! The host's identity: obtained once with the bootstrap token, then kept in
//! `<state-dir>/identity.json` (mode 0600) so a restarted agent is the same host.

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
    fn saved_identity_is_private_and_reloads() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(load(tmp.path()).unwrap(), None);
        let id = Identity {
            controlplane: "http://127.0.0.1:1".into(),
            host_id: "h-0-abc".into(),
            host_credential: "secret".into(),
            cell: 0,
            heartbeat_interval_secs: 10,
        };
        save(tmp.path(), &id).unwrap();
        assert_eq!(load(tmp.path()).unwrap(), Some(id));
        let mode = std::fs::metadata(path(tmp.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(path(tmp.path()), b"garbage").unwrap();
        assert!(load(tmp.path())
            .unwrap_err()
            .to_string()
            .contains("identity.json"));
    }
}
