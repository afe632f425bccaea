//! `controlplane backup --out FILE` and `controlplane restore --from FILE`.
//!
//! A backup is one tar file of consistent copies: each SQLite file of the data
//! directory (`router.db`, `cell-N.db`, `logs-N.db`) taken with SQLite's online
//! backup API while the control plane runs, and over etcd a snapshot of the etcd
//! member (`etcd.snapshot`, the etcd maintenance API) instead of the cell files.
//!
//! Restore writes the SQLite files back into the data directory. It first takes the
//! data directory's lock (`DATA/lock`) exclusively; every running control plane
//! holds it shared ([`DataDirLock`]), so restore refuses to run under a live one.
//! An etcd snapshot is written to `DATA/etcd.snapshot` and restored into a new etcd
//! data directory with `etcdutl snapshot restore` (etcd's own tool): the etcd
//! client API cannot load a snapshot into a running member.

use crate::config::{StoreConfig, StoreSettings};
use nix::fcntl::{Flock, FlockArg};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name of the etcd snapshot in a backup.
pub const ETCD_SNAPSHOT: &str = "etcd.snapshot";
/// The lock file of a data directory.
pub const LOCK_FILE: &str = "lock";

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// SQLite refused a backup or a restore.
    #[error("{path}: {err}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        err: rusqlite::Error,
    },
    /// The etcd snapshot failed.
    #[error("etcd snapshot: {0}")]
    Etcd(String),
    /// A control plane runs over the data directory.
    #[error("{0} is in use by a running control plane: stop it before restoring")]
    Live(PathBuf),
    /// The output exists already.
    #[error("{0} exists already")]
    Exists(PathBuf),
    /// The backup holds a file that is not part of a data directory.
    #[error("unexpected entry in the backup: {0}")]
    Unexpected(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |err| BackupError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// The shared lock (`flock`) a running control plane holds on its data directory;
/// released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock(#[allow(dead_code)] Flock<File>);

impl DataDirLock {
    /// Takes the data directory's lock shared (several replicas may share a
    /// directory); fails while a restore holds it.
    pub fn shared(dir: &Path) -> std::io::Result<DataDirLock> {
        let f = lock_file(dir)?;
        let held = Flock::lock(f, FlockArg::LockSharedNonblock).map_err(|(_, e)| {
            std::io::Error::other(format!("{}: locked by a restore: {e}", dir.display()))
        })?;
        Ok(DataDirLock(held))
    }
}

fn lock_file(dir: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
}

/// Whether `name` is a file a backup may hold.
fn allowed(name: &str) -> bool {
    let numbered = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".db"))
            .is_some_and(|n| !n.is_empty() && n.len() <= 6 && n.bytes().all(|b| b.is_ascii_digit()))
    };
    name == "router.db" || name == ETCD_SNAPSHOT || numbered("cell-") || numbered("logs-")
}

/// The SQLite files of a data directory that exist.
fn sqlite_files(s: &StoreSettings) -> Vec<String> {
    let mut names = vec![];
    if matches!(s.store, StoreConfig::Sqlite) {
        names.push("router.db".to_string());
        names.extend((0..s.cells).map(|i| format!("cell-{i}.db")));
    }
    names.extend((0..s.cells).map(|i| format!("logs-{i}.db")));
    names.retain(|n| s.data_dir.join(n).exists());
    names
}

/// Copies a live SQLite database with the online backup API.
fn copy_db(src: &Path, dst: &Path) -> Result<(), BackupError> {
    let sq = |path: &Path| {
        let path = path.to_path_buf();
        move |err| BackupError::Sqlite { path, err }
    };
    let from =
        Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sq(src))?;
    from.busy_timeout(Duration::from_secs(10))
        .map_err(sq(src))?;
    let mut to = Connection::open(dst).map_err(sq(dst))?;
    let b = Backup::new(&from, &mut to).map_err(sq(dst))?;
    // All pages in one step (a consistent copy), retried while the source is busy.
    for _ in 0..200 {
        match b.step(-1).map_err(sq(src))? {
            StepResult::Done => return Ok(()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    Err(BackupError::Sqlite {
        path: src.to_path_buf(),
        err: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("busy for 10 s".into()),
        ),
    })
}

/// Writes the etcd member's snapshot to `dst` (over TLS with the store's client
/// certificate, as the control plane connects).
fn etcd_snapshot(
    endpoints: &[String],
    tls: &crate::store::etcd::EtcdTls,
    dst: &Path,
) -> Result<(), BackupError> {
    let mut c = crate::store::etcd::connect(endpoints, tls, Duration::from_secs(600))
        .map_err(|e| BackupError::Etcd(e.to_string()))?;
    let bytes = crate::store::etcd::block_on(async move {
        let mut stream = c.snapshot().await?;
        let mut out = vec![];
        while let Some(r) = stream.message().await? {
            out.extend_from_slice(r.blob());
        }
        Ok::<_, etcd_client::Error>(out)
    })
    .map_err(|e| BackupError::Etcd(e.to_string()))?;
    std::fs::write(dst, bytes).map_err(io(dst))
}

/// Backs up the state named by `s` into the tar file `out` (which must not exist).
/// Returns the names it holds.
pub fn backup(s: &StoreSettings, out: &Path) -> Result<Vec<String>, BackupError> {
    if out.exists() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    let staging = PathBuf::from(format!("{}.partial.d", out.display()));
    if staging.exists() {
        return Err(BackupError::Exists(staging));
    }
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let r = stage_and_pack(s, &staging, out);
    let _ = std::fs::remove_dir_all(&staging);
    r
}

fn stage_and_pack(
    s: &StoreSettings,
    staging: &Path,
    out: &Path,
) -> Result<Vec<String>, BackupError> {
    let mut names = sqlite_files(s);
    for n in &names {
        copy_db(&s.data_dir.join(n), &staging.join(n))?;
    }
    if let StoreConfig::Etcd { endpoints, tls, .. } = &s.store {
        etcd_snapshot(endpoints, tls, &staging.join(ETCD_SNAPSHOT))?;
        names.push(ETCD_SNAPSHOT.to_string());
    }
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let file = File::create(&partial).map_err(io(&partial))?;
    let mut tar = tar::Builder::new(file);
    for n in &names {
        let p = staging.join(n);
        tar.append_path_with_name(&p, n).map_err(io(&p))?;
    }
    let mut file = tar.into_inner().map_err(io(&partial))?;
    file.flush().map_err(io(&partial))?;
    file.sync_all().map_err(io(&partial))?;
    std::fs::rename(&partial, out).map_err(io(out))?;
    Ok(names)
}

/// Restores the backup `from` into the data directory of `s`, which no control
/// plane may be using. Returns the names it restored.
pub fn restore(s: &StoreSettings, from: &Path) -> Result<Vec<String>, BackupError> {
    let dir = &s.data_dir;
    let lock = lock_file(dir).map_err(io(dir))?;
    let Ok(lock) = Flock::lock(lock, FlockArg::LockExclusiveNonblock) else {
        return Err(BackupError::Live(dir.clone()));
    };
    let file = File::open(from).map_err(io(from))?;
    let mut tar = tar::Archive::new(file);
    let mut names = vec![];
    for entry in tar.entries().map_err(io(from))? {
        let mut entry = entry.map_err(io(from))?;
        let name = entry
            .path()
            .map_err(io(from))?
            .to_str()
            .map(str::to_string)
            .unwrap_or_default();
        if !allowed(&name) || !entry.header().entry_type().is_file() {
            return Err(BackupError::Unexpected(name));
        }
        let tmp = dir.join(format!("{name}.restoring"));
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        std::io::copy(&mut entry, &mut f).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        let dst = dir.join(&name);
        for suffix in ["-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}{suffix}")));
        }
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
        names.push(name);
    }
    drop(lock);
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_dir_names_are_allowed() {
        for ok in ["router.db", "cell-0.db", "logs-12.db", ETCD_SNAPSHOT] {
            assert!(allowed(ok), "{ok}");
        }
        for bad in [
            "../x.db",
            "cell-.db",
            "cell-a.db",
            "/etc/passwd",
            "lock",
            "cell-0.db-wal",
        ] {
            assert!(!allowed(bad), "{bad}");
        }
    }

    #[test]
    fn restore_refuses_a_locked_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let _live = DataDirLock::shared(tmp.path()).unwrap();
        let s = StoreSettings {
            data_dir: tmp.path().to_path_buf(),
            cells: 1,
            store: StoreConfig::Sqlite,
        };
        let e = restore(&s, &tmp.path().join("none.tar")).unwrap_err();
        assert!(matches!(e, BackupError::Live(_)), "{e}");
    }
}
