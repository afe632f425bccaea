//! Persisted state: one JSON file replaced atomically (write temp, fsync, rename, fsync dir),
//! so a kill -9 at any instant leaves either the old or the new state, never a torn one.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::State;

/// Loads the state file; a missing file is an empty state.
pub fn load(path: &Path) -> Result<State> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("state file {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e.into()),
    }
}

/// Writes the state durably and atomically.
pub fn save(path: &Path, state: &State) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let bytes =
        serde_json::to_vec(state).map_err(|e| Error::Invalid(format!("serializing state: {e}")))?;
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SecurityGroup, SecurityGroupSpec};

    #[test]
    fn roundtrip_and_missing() {
        let dir = std::env::temp_dir().join(format!("netd-state-{}", std::process::id()));
        let path = dir.join("state.json");
        assert!(load(&path).unwrap().tasks.is_empty());
        let mut s = State::default();
        s.security_groups.insert(
            "web".into(),
            SecurityGroup {
                name: "web".into(),
                spec: SecurityGroupSpec::default(),
            },
        );
        s.cursors.insert("svc".into(), 7);
        save(&path, &s).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.cursors["svc"], 7);
        assert!(back.security_groups.contains_key("web"));
        assert!(!path.with_extension("json.tmp").exists());
        fs::write(&path, b"{ torn").unwrap();
        assert!(load(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
