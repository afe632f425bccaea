//! The jail directory `<base>/<exec-name>/<id>/root`: the exec file, device nodes, /run.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{major, makedev, minor, mknod, Mode, SFlag};
use nix::unistd::{chown, Gid, Uid};

use crate::error::{Context, Error, Result, Step};
use crate::undo::Undo;
use crate::validate::Plan;

/// A device node the vmm needs: path in the jail, host path, fallback major:minor.
struct Device {
    jail_path: &'static str,
    host_path: &'static str,
    major: u64,
    minor: u64,
}

const DEVICES: [Device; 3] = [
    Device {
        jail_path: "dev/kvm",
        host_path: "/dev/kvm",
        major: 10,
        minor: 232,
    },
    Device {
        jail_path: "dev/net/tun",
        host_path: "/dev/net/tun",
        major: 10,
        minor: 200,
    },
    Device {
        jail_path: "dev/urandom",
        host_path: "/dev/urandom",
        major: 1,
        minor: 9,
    },
];

/// Creates a directory with exactly `mode`, or accepts an existing one (a jail the host
/// prepared). What it creates is recorded in `undo`.
fn mkdir(path: &Path, mode: u32, step: Step, undo: &mut Undo) -> Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => undo.remove_tree(path.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {
            return Ok(());
        }
        Err(e) => return Err(Error::new(step, path.display(), e)),
    }
    // The umask may have cut bits off.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).at(step, path.display())
}

/// Creates `dir` and its missing ancestors, recording the ones it made (shared: other jails
/// may be created in them concurrently).
fn mkdir_parents(dir: &Path, undo: &mut Undo) -> Result<()> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for p in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(0o755).create(&p) {
            Ok(()) => undo.rmdir_shared(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::new(Step::JailDir, p.display(), e)),
        }
    }
    if !dir.is_dir() {
        return Err(Error::new(
            Step::JailDir,
            dir.display(),
            "is not a directory",
        ));
    }
    Ok(())
}

/// Creates the jail directory (which must not exist yet), the root, copies the exec file
/// in, creates the device nodes and /run. Returns the exec file's path inside the jail.
pub fn create(plan: &Plan, undo: &mut Undo) -> Result<String> {
    let parent = plan
        .jail_dir
        .parent()
        .ok_or_else(|| Error::new(Step::JailDir, plan.jail_dir.display(), "has no parent"))?;
    mkdir_parents(parent, undo)?;
    // The jail directory may exist: the host may have put the guest's kernel, drives
    // and config file there beforehand. A jail in use (or not cleaned) is refused.
    mkdir(&plan.jail_dir, 0o755, Step::JailDir, undo)?;
    mkdir(&plan.root, 0o755, Step::JailDir, undo)?;
    let exec_dst = plan.root.join(&plan.exec_name);
    let pid_file = plan.root.join(format!("{}.pid", plan.exec_name));
    for ours in [&exec_dst, &pid_file] {
        if ours.symlink_metadata().is_ok() {
            return Err(Error::new(
                Step::JailDir,
                ours.display(),
                "already exists (is the id in use? run jailer --cleanup)",
            ));
        }
    }

    // The binary: root-owned, not writable by the vmm.
    undo.remove_file(exec_dst.clone());
    std::fs::copy(&plan.exec_src, &exec_dst).at(Step::CopyExec, exec_dst.display())?;
    std::fs::set_permissions(&exec_dst, std::fs::Permissions::from_mode(0o755))
        .at(Step::CopyExec, exec_dst.display())?;

    let uid = Some(Uid::from_raw(plan.uid));
    let gid = Some(Gid::from_raw(plan.gid));
    mkdir(&plan.root.join("dev"), 0o755, Step::Devices, undo)?;
    mkdir(&plan.root.join("dev/net"), 0o755, Step::Devices, undo)?;
    for dev in &DEVICES {
        let path = plan.root.join(dev.jail_path);
        let rdev = match std::fs::metadata(dev.host_path) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                makedev(major(m.rdev()), minor(m.rdev()))
            }
            Err(_) => makedev(dev.major, dev.minor),
        };
        mknod(&path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), rdev)
            .at(Step::Devices, path.display())?;
        undo.remove_file(path.clone());
        chown(&path, uid, gid).at(Step::Devices, path.display())?;
    }
    let run = plan.root.join("run");
    mkdir(&run, 0o700, Step::JailDir, undo)?;
    chown(&run, uid, gid).at(Step::JailDir, run.display())?;
    Ok(format!("/{}", plan.exec_name))
}
