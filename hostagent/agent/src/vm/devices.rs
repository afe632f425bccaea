//! The task's block devices and boot files, built directly inside its jail root (so no
//! link or bind is needed for them; `jailer --cleanup` removes them with the jail):
//! one read-only ext4 image root per container (the image pipeline), the sparse ext4
//! scratch device (writable layers) and the 4 GiB volume device, both owned by the vmm's
//! uid. The guest kernel and initramfs are shared by all tasks: hard-linked into the jail
//! (root-owned, the vmm cannot change them), copied when the jail is on another file system.

use super::spec::{jail_paths, process_of};
use crate::host::runtime::LaunchFailure;
use crate::image::{create_scratch_device, create_volume_device, ImageStore, ProcessSpec};
use agent_proto::TaskSpec;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What the devices step made.
#[derive(Debug, Clone)]
pub struct Devices {
    /// The final process of each container (image config merged).
    pub procs: Vec<ProcessSpec>,
    /// Sum of the image roots' sizes.
    pub root_bytes: u64,
}

fn fail(step: &str, reason: impl std::fmt::Display) -> LaunchFailure {
    LaunchFailure {
        step: step.into(),
        reason: reason.to_string(),
    }
}

/// Host path of a jail path (`/x` -> `<root>/x`).
pub fn in_jail(root: &Path, jail_path: &str) -> PathBuf {
    root.join(jail_path.trim_start_matches('/'))
}

/// Hard-links `src` to `dst`, or copies it (mode 0444) when they are on different file
/// systems.
pub fn link_or_copy(src: &Path, dst: &Path) -> io::Result<()> {
    match std::fs::hard_link(src, dst) {
        Ok(()) => Ok(()),
        Err(e)
            if e.raw_os_error() == Some(libc::EXDEV) || e.raw_os_error() == Some(libc::EPERM) =>
        {
            std::fs::copy(src, dst)?;
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o444))
        }
        Err(e) => Err(e),
    }
}

fn chown_mode(p: &Path, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// Creates the jail root (it must not exist: a leftover jail is another task's or an
/// unreleased one). On failure nothing of the jail directory is left (the shared
/// `<base>/<exec-name>` may stay).
pub fn create_jail_root(root: &Path) -> Result<(), LaunchFailure> {
    let Some(parent) = root.parent() else {
        return Err(fail("devices", format!("{}: no parent", root.display())));
    };
    if parent.exists() {
        return Err(fail(
            "devices",
            format!("{}: already exists (unreleased jail?)", parent.display()),
        ));
    }
    if let Some(base) = parent.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(base)
            .map_err(|e| fail("devices", format!("{}: {e}", base.display())))?;
    }
    // Not recursive: a jail directory made at the same moment by someone else is refused.
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(parent)
        .map_err(|e| fail("devices", format!("{}: {e}", parent.display())))?;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(root)
        .map_err(|e| {
            let _ = std::fs::remove_dir(parent);
            fail("devices", format!("{}: {e}", root.display()))
        })
}

/// Builds every device of `spec` into `root` (which exists). `work_dir`: where image
/// layers are unpacked (outside the jail). On error the caller removes the jail directory.
pub async fn build(
    store: &ImageStore,
    spec: &TaskSpec,
    root: &Path,
    work_dir: &Path,
    kernel: &Path,
    initramfs: &Path,
    owner: (u32, u32),
) -> Result<Devices, LaunchFailure> {
    let (uid, gid) = owner;
    let mut procs = Vec::with_capacity(spec.containers.len());
    let mut root_bytes = 0u64;
    for (i, c) in spec.containers.iter().enumerate() {
        let out = in_jail(root, &jail_paths::root(i));
        let built = store
            .build_image_root(&c.image, None, work_dir, &out)
            .await
            .map_err(|e| fail("image", format!("container {}: {e}", c.name)))?;
        chown_mode(&out, uid, gid, 0o400)
            .map_err(|e| fail("devices", format!("{}: {e}", out.display())))?;
        root_bytes = root_bytes.saturating_add(built.device.size_bytes);
        procs.push(process_of(c, &built.image.config));
    }
    let scratch = in_jail(root, jail_paths::SCRATCH);
    create_scratch_device(&scratch, root_bytes)
        .await
        .map_err(|e| fail("devices", format!("scratch device: {e}")))?;
    let volume = in_jail(root, jail_paths::VOLUME);
    create_volume_device(&volume)
        .await
        .map_err(|e| fail("devices", format!("volume device: {e}")))?;
    for p in [&scratch, &volume] {
        chown_mode(p, uid, gid, 0o600)
            .map_err(|e| fail("devices", format!("{}: {e}", p.display())))?;
    }
    for (src, dst) in [
        (kernel, jail_paths::KERNEL),
        (initramfs, jail_paths::INITRAMFS),
    ] {
        let dst = in_jail(root, dst);
        link_or_copy(src, &dst).map_err(|e| {
            fail(
                "devices",
                format!("{} -> {}: {e}", src.display(), dst.display()),
            )
        })?;
    }
    Ok(Devices { procs, root_bytes })
}

/// Writes the vmm config file into the jail (root-owned, readable by the vmm).
pub fn write_vm_config(root: &Path, config: &serde_json::Value) -> Result<(), LaunchFailure> {
    let p = in_jail(root, jail_paths::CONFIG);
    let data = serde_json::to_vec_pretty(config).map_err(|e| fail("jail", e))?;
    std::fs::write(&p, data)
        .and_then(|()| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)))
        .map_err(|e| fail("jail", format!("{}: {e}", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jail_root_is_new_and_files_link() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("vmm/t1/root");
        create_jail_root(&root).unwrap();
        assert!(root.is_dir());
        let e = create_jail_root(&root).unwrap_err();
        assert_eq!(e.step, "devices");
        assert!(e.reason.contains("already exists"), "{e}");
        let src = d.path().join("k");
        std::fs::write(&src, b"kernel").unwrap();
        let dst = in_jail(&root, jail_paths::KERNEL);
        assert_eq!(dst, root.join("vmlinux"));
        link_or_copy(&src, &dst).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), b"kernel");
        assert!(link_or_copy(&d.path().join("missing"), &root.join("x")).is_err());
    }
}
