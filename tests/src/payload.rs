//! The test payload: built once per test binary by `tests/nested/payload`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Why the payload or its disk image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot run {}: {source}", script.display())]
    Spawn { script: PathBuf, source: io::Error },
    #[error("{} failed ({status}):\n{output}", script.display())]
    Script {
        script: PathBuf,
        status: ExitStatus,
        /// Its standard output, then its standard error.
        output: String,
    },
    #[error("cannot run mkfs.ext4: {0}")]
    MkfsSpawn(#[source] io::Error),
    #[error("mkfs.ext4 -d {} failed: {stderr}", dir.display())]
    Mkfs { dir: PathBuf, stderr: String },
}

/// The repository root (this crate lives in `<repo>/tests`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory of the running test binary
/// (`<target>/<profile>/deps/<binary>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Where the workspace's release binaries are: `KVM_TESTS_RELEASE_DIR`, else
/// `<target>/release` (run-tests builds them before `cargo test`).
pub fn release_dir() -> PathBuf {
    std::env::var_os("KVM_TESTS_RELEASE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release"))
}

/// A directory for this process's payload and host files: `<target>/kvm-tests/<pid>`.
/// Directories of processes that no longer run are removed.
pub fn work_dir() -> Result<PathBuf, PayloadError> {
    let base = target_dir().join("kvm-tests");
    if let Ok(entries) = fs::read_dir(&base) {
        for entry in entries.flatten() {
            let stale = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if stale {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(std::process::id().to_string());
    fs::create_dir_all(&dir).map_err(|source| PayloadError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Builds the standard payload into `out` (see `tests/nested/payload`).
pub fn build(out: &Path) -> Result<(), PayloadError> {
    let script = repo_root().join("tests/nested/payload");
    let result = match Command::new(&script).arg(out).arg(release_dir()).output() {
        Ok(result) => result,
        Err(source) => return Err(PayloadError::Spawn { script, source }),
    };
    if !result.status.success() {
        return Err(PayloadError::Script {
            script,
            status: result.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&result.stdout),
                String::from_utf8_lossy(&result.stderr)
            ),
        });
    }
    Ok(())
}

/// Makes an ext4 image of `dir` (the nested host's payload disk), with free room for
/// scenarios that write into the payload.
pub fn ext4_image(dir: &Path, image: &Path) -> Result<(), PayloadError> {
    let used = dir_size(dir);
    let size_mib = used * 5 / 4 / (1 << 20) + 256;
    let result = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
        .arg(dir)
        .arg(image)
        .arg(format!("{size_mib}M"))
        .output()
        .map_err(PayloadError::MkfsSpawn)?;
    if !result.status.success() {
        return Err(PayloadError::Mkfs {
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&result.stderr).into_owned(),
        });
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
