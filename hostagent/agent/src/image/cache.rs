//! The layer cache: blobs stored by digest under `<root>/blobs/sha256/<hex>` (the OCI
//! layout's blob naming), verified (size and sha256) every time before use. A blob is
//! written to `<root>/tmp/` first, verified, then renamed into place, so readers never see
//! a partial blob and concurrent pulls of one digest cannot corrupt it. The cache's
//! directories are 0700 and its files 0600: image content is tenant data.

use std::collections::HashMap;
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tracing::{debug, warn};

use super::digest::{hash_file, Digest};
use super::error::{ErrorKind, Failure};

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Names a unique temporary path next to `base` (process id, counter and time).
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}.{}.{}.{nanos}",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Digest-addressed blob store.
#[derive(Debug)]
pub struct BlobCache {
    root: PathBuf,
    locks: Mutex<HashMap<Digest, Weak<tokio::sync::Mutex<()>>>>,
}

impl BlobCache {
    /// Opens (creating if needed) a cache rooted at `root`; its directories are made
    /// 0700 (also when they existed with a wider mode).
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<BlobCache> {
        let root = root.into();
        for d in [
            root.clone(),
            root.join("blobs"),
            root.join("blobs/sha256"),
            root.join("tmp"),
        ] {
            create_private_dir_all(&d)?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
        }
        remove_stale_temps(&root.join("tmp"));
        Ok(BlobCache {
            root,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with digest `d` lives once cached.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// A fresh temporary path inside the cache (same file system as the blobs).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        self.root.join("tmp").join(unique_name(what))
    }

    /// Serialises work on one digest inside this process.
    async fn lock(&self, d: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = crate::util::lock(&self.locks);
            locks.retain(|_, w| w.strong_count() > 0);
            match locks.get(d).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(d.clone(), Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }

    /// Returns the cached blob's path if present and intact (size and digest match);
    /// a corrupt copy is removed and `None` returned.
    pub async fn verified(&self, d: &Digest, size: u64) -> Result<Option<PathBuf>, Failure> {
        let path = self.blob_path(d);
        if tokio::fs::symlink_metadata(&path).await.is_err() {
            return Ok(None);
        }
        match check_blob(&path, d, size).await {
            Ok(()) => Ok(Some(path)),
            Err(why) => {
                warn!(digest = %d, %why, "cached blob is corrupt; removing it");
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(None),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Failure::io(format!("remove corrupt {}", path.display()), e)),
                }
            }
        }
    }

    /// Returns a verified cached copy of blob `d`, calling `fetch(tmp)` to write it to a
    /// temporary file first when it is missing or corrupt. The fetched file must match
    /// `size` and `d`, or it is discarded and the fetch fails.
    pub async fn ensure<F, Fut>(&self, d: &Digest, size: u64, fetch: F) -> Result<PathBuf, Failure>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let _guard = self.lock(d).await;
        if let Some(p) = self.verified(d, size).await? {
            debug!(digest = %d, "blob cache hit");
            return Ok(p);
        }
        let tmp = self.temp_path(d.hex());
        let res = async {
            fetch(tmp.clone()).await?;
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                .await
                .map_err(|e| Failure::io(format!("chmod {}", tmp.display()), e))?;
            check_blob(&tmp, d, size)
                .await
                .map_err(|why| Failure::new(ErrorKind::BadContent, why.to_string()))?;
            let dest = self.blob_path(d);
            tokio::fs::rename(&tmp, &dest)
                .await
                .map_err(|e| Failure::io(format!("rename into {}", dest.display()), e))?;
            Ok(dest)
        }
        .await;
        if res.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        res
    }
}

impl BlobCache {
    /// Removes every cached blob whose digest is not in `keep` (the configs and layers of
    /// the images still in use, see `PulledImage::digests`); returns (blobs, bytes) removed.
    /// Call it when no pull is running: a blob removed under a running pull makes that
    /// pull's unpack fail cleanly ("cached layer vanished").
    pub fn prune(&self, keep: &std::collections::HashSet<Digest>) -> std::io::Result<(u64, u64)> {
        let (mut n, mut bytes) = (0, 0);
        for e in std::fs::read_dir(self.root.join("blobs/sha256"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let known = Digest::parse(&format!("sha256:{name}")).is_ok_and(|d| keep.contains(&d));
            if !known {
                let len = e.metadata().map_or(0, |m| m.len());
                std::fs::remove_file(e.path())?;
                n += 1;
                bytes += len;
            }
        }
        Ok((n, bytes))
    }
}

/// Creates `dir` and its missing parents with mode 0700.
pub(crate) fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates a new file readable and writable by the owner only.
pub(crate) async fn create_private(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
}

/// Removes temporary downloads left by processes that no longer run (a crash mid-pull).
/// Names are `<what>.<pid>.<seq>.<nanos>` (see `unique_name`).
fn remove_stale_temps(tmp: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit('.').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            debug!(file = %name, "removing stale temporary download");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Why a blob file is not the blob its descriptor names.
#[derive(Debug, thiserror::Error)]
enum BlobMismatch {
    /// The hashing task died.
    #[error("hash task failed: {0}")]
    HashTask(#[source] tokio::task::JoinError),
    /// The file cannot be read.
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Wrong size.
    #[error("size {got} does not match the descriptor's {want}")]
    Size { got: u64, want: u64 },
    /// Wrong content.
    #[error("content digest {got} does not match {want}")]
    Digest { got: Digest, want: Digest },
}

/// Checks a blob file's size and sha256.
async fn check_blob(path: &Path, d: &Digest, size: u64) -> Result<(), BlobMismatch> {
    let p = path.to_path_buf();
    let (got, n) = tokio::task::spawn_blocking(move || hash_file(&p))
        .await
        .map_err(BlobMismatch::HashTask)?
        .map_err(|source| BlobMismatch::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if n != size {
        return Err(BlobMismatch::Size { got: n, want: size });
    }
    if &got != d {
        return Err(BlobMismatch::Digest {
            got,
            want: d.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_tightens_an_existing_cache() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("c");
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        for d in ["", "blobs", "blobs/sha256"] {
            std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        BlobCache::open(&root).unwrap();
        for d in ["", "blobs", "blobs/sha256", "tmp"] {
            let m = std::fs::metadata(root.join(d))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, 0o700, "{d}");
        }
    }

    #[tokio::test]
    async fn stores_verifies_and_replaces_corrupt_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(dir.path()).unwrap();
        let data = b"hello layer".to_vec();
        let d = Digest::of_bytes(&data);
        let size = data.len() as u64;
        let write = |data: Vec<u8>| {
            move |tmp: PathBuf| async move {
                tokio::fs::write(&tmp, &data)
                    .await
                    .map_err(|e| Failure::io("write", e))
            }
        };
        let p = cache.ensure(&d, size, write(data.clone())).await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), data);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(&p),
            0o600,
            "blob written with the umask's mode is made private"
        );
        for d in ["", "blobs", "blobs/sha256", "tmp"] {
            assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
        }
        // Corrupt it: the next ensure re-fetches.
        std::fs::write(&p, b"hello LAYER").unwrap();
        assert!(cache.verified(&d, size).await.unwrap().is_none());
        std::fs::write(&p, b"hello LAYER").unwrap();
        let p2 = cache.ensure(&d, size, write(data.clone())).await.unwrap();
        assert_eq!(std::fs::read(&p2).unwrap(), data);
        // A fetch that delivers the wrong bytes fails and leaves nothing behind.
        let other = Digest::of_bytes(b"other");
        let err = cache
            .ensure(&other, 5, write(b"wrong".to_vec()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadContent);
        assert!(!cache.blob_path(&other).exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
