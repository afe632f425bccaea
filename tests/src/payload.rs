//! The test payload: built once per test binary by `tests/nested/payload`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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
pub fn work_dir() -> Result<PathBuf, String> {
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
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Builds the standard payload into `out` (see `tests/nested/payload`).
pub fn build(out: &Path) -> Result<(), String> {
    let script = repo_root().join("tests/nested/payload");
    let result = Command::new(&script)
        .arg(out)
        .arg(release_dir())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !result.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}{}",
            script.display(),
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    Ok(())
}

/// Makes an ext4 image of `dir` (the nested host's payload disk), with free room for
/// scenarios that write into the payload.
pub fn ext4_image(dir: &Path, image: &Path) -> Result<(), String> {
    let used = dir_size(dir);
    let size_mib = used * 5 / 4 / (1 << 20) + 256;
    let result = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
        .arg(dir)
        .arg(image)
        .arg(format!("{size_mib}M"))
        .output()
        .map_err(|e| format!("cannot run mkfs.ext4: {e}"))?;
    if !result.status.success() {
        return Err(format!(
            "mkfs.ext4 -d {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&result.stderr)
        ));
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
