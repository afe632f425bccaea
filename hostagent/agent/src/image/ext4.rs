//! Block devices for a task: the ext4 image root built from an unpacked root file system
//! (`mkfs.ext4 -d`), and empty ext4 devices (the 4 GiB volume, the scratch device).
//! Outputs are written to a temporary name and renamed when complete; nothing partial is
//! left behind on failure.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;
use tracing::{debug, info};

use super::cache::unique_name;
use super::error::{ErrorKind, Failure};

/// 1 GiB.
pub const GIB: u64 = 1 << 30;
/// Layer storage of a task (image roots plus the containers' writable layers).
pub const TASK_LAYER_STORAGE_BYTES: u64 = 10 * GIB;
/// Volume storage of a task.
pub const TASK_VOLUME_BYTES: u64 = 4 * GIB;

const BLOCK: u64 = 4096;
const INODE_SIZE: u64 = 256;
const MIB: u64 = 1 << 20;

/// What an unpacked tree needs on ext4.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    /// Number of inodes (files, directories, links, nodes).
    pub inodes: u64,
    /// Data blocks (4 KiB) for file content, directories and long symlinks.
    pub blocks: u64,
}

/// Walks `root` (without following symlinks) and counts inodes and data blocks.
pub fn measure_tree(root: &Path) -> std::io::Result<TreeUsage> {
    let mut u = TreeUsage::default();
    let mut seen_links = std::collections::HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        u.inodes += 1;
        let mut names = 0u64;
        for ent in std::fs::read_dir(&dir)? {
            let ent = ent?;
            let m = ent.metadata()?; // does not follow symlinks
            names += 1 + ent.file_name().len() as u64 / 8;
            if m.is_dir() {
                stack.push(ent.path());
                continue;
            }
            if m.nlink() > 1 && !seen_links.insert((m.dev(), m.ino())) {
                continue;
            }
            u.inodes += 1;
            if m.file_type().is_symlink() {
                if m.len() >= 60 {
                    u.blocks += 1;
                }
            } else if m.is_file() {
                u.blocks += m.len().div_ceil(BLOCK);
                // Extent tree blocks for large files.
                u.blocks += m.len() / (128 * MIB);
            }
        }
        // ~16 bytes per directory entry.
        u.blocks += (names * 16).div_ceil(BLOCK).max(1);
    }
    Ok(u)
}

/// Picks the ext4 size and inode count for a tree: content, inode tables, group metadata
/// and 10% + 16 MiB of headroom, rounded up to a MiB.
pub fn ext4_size_for(u: TreeUsage) -> (u64, u64) {
    let inodes = u.inodes + u.inodes / 10 + 256;
    let data = u.blocks * BLOCK;
    let tables = inodes * INODE_SIZE;
    // Bitmaps and descriptors: ~2 blocks per 128 MiB group plus superblock backups.
    let meta = (data + tables) / (128 * MIB) * 3 * BLOCK + MIB;
    let raw = data + tables + meta;
    let size = (raw + raw / 10 + 16 * MIB).div_ceil(MIB) * MIB;
    (size, inodes)
}

/// Result of building a device.
#[derive(Debug, Clone)]
pub struct BlockDevice {
    /// The image file.
    pub path: PathBuf,
    /// Its size in bytes (the device size the guest sees).
    pub size_bytes: u64,
}

/// Builds an ext4 image at `out` from the directory `rootfs`, sized from the content,
/// refusing images larger than `max_bytes`.
pub async fn build_image_root(
    rootfs: &Path,
    out: &Path,
    max_bytes: u64,
) -> Result<BlockDevice, Failure> {
    let r = rootfs.to_path_buf();
    let usage = tokio::task::spawn_blocking(move || measure_tree(&r))
        .await
        .map_err(|e| Failure::new(ErrorKind::Io, format!("measure task failed: {e}")))?
        .map_err(|e| Failure::io(format!("measure {}", rootfs.display()), e))?;
    let (mut size, inodes) = ext4_size_for(usage);
    debug!(?usage, size, inodes, "sizing image root");
    // The estimate is generous; if mke2fs still runs out of room, grow and retry.
    for attempt in 0..3 {
        if size > max_bytes {
            return Err(Failure::new(
                ErrorKind::TooLarge,
                format!(
                    "image root needs {} MiB, over the layer storage budget of {} MiB",
                    size / MIB,
                    max_bytes / MIB
                ),
            ));
        }
        let args = [
            "-q".to_string(),
            "-F".into(),
            "-t".into(),
            "ext4".into(),
            "-b".into(),
            "4096".into(),
            "-m".into(),
            "0".into(),
            "-N".into(),
            inodes.to_string(),
            "-O".into(),
            "^has_journal".into(),
            "-E".into(),
            "root_owner=0:0".into(),
            "-d".into(),
            rootfs.display().to_string(),
        ];
        match mkfs(&args, out, size).await {
            Ok(()) => {
                info!(path = %out.display(), size_mib = size / MIB, "image root built");
                return Ok(BlockDevice {
                    path: out.to_path_buf(),
                    size_bytes: size,
                });
            }
            Err(f) if f.reason.contains("Could not allocate") || f.reason.contains("No space") => {
                debug!(attempt, reason = %f.reason, "image root too small; growing");
                size = (size + size / 2).div_ceil(MIB) * MIB;
            }
            Err(f) => return Err(f),
        }
    }
    Err(Failure::new(
        ErrorKind::Io,
        "mkfs.ext4 kept running out of space",
    ))
}

/// Creates an empty ext4 device of `size` bytes at `out` (a sparse file): the task's
/// volume device, or a scratch device for writable layers.
pub async fn create_empty_ext4(out: &Path, size: u64, label: &str) -> Result<BlockDevice, Failure> {
    if size < 16 * MIB || size % BLOCK != 0 {
        return Err(Failure::new(
            ErrorKind::Io,
            format!("bad device size {size} (at least 16 MiB, 4 KiB multiple)"),
        ));
    }
    let args = [
        "-q".to_string(),
        "-F".into(),
        "-t".into(),
        "ext4".into(),
        "-m".into(),
        "0".into(),
        "-L".into(),
        label.to_string(),
        "-E".into(),
        "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0".into(),
    ];
    mkfs(&args, out, size).await?;
    Ok(BlockDevice {
        path: out.to_path_buf(),
        size_bytes: size,
    })
}

/// Runs mke2fs on a sparse temporary file next to `out`, renaming it into place on
/// success and removing it on failure.
async fn mkfs(args: &[String], out: &Path, size: u64) -> Result<(), Failure> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let tmp = dir.join(unique_name(&format!(".{name}.tmp")));
    let res = async {
        let f = std::fs::File::create(&tmp)
            .map_err(|e| Failure::io(format!("create {}", tmp.display()), e))?;
        f.set_len(size)
            .map_err(|e| Failure::io(format!("size {}", tmp.display()), e))?;
        drop(f);
        let output = Command::new("mkfs.ext4")
            .args(args)
            .arg(&tmp)
            .arg(format!("{}k", size / 1024))
            .env("MKE2FS_CONFIG", "/etc/mke2fs.conf")
            .output()
            .await
            .map_err(|e| Failure::io("run mkfs.ext4", e))?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            return Err(Failure::new(
                ErrorKind::Io,
                format!("mkfs.ext4 failed ({}): {}", output.status, err.trim()),
            ));
        }
        tokio::fs::rename(&tmp, out)
            .await
            .map_err(|e| Failure::io(format!("rename to {}", out.display()), e))
    }
    .await;
    if res.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_grow_with_content() {
        let small = ext4_size_for(TreeUsage {
            inodes: 10,
            blocks: 100,
        });
        let big = ext4_size_for(TreeUsage {
            inodes: 10_000,
            blocks: 1_000_000,
        });
        assert!(small.0 >= 16 * MIB && small.0 % MIB == 0);
        assert!(big.0 > 1_000_000 * BLOCK + 10_000 * INODE_SIZE);
        assert!(big.1 > 10_000);
    }
}
