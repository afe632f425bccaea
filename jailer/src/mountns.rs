//! A new mount namespace whose root is the jail: no path of the host stays visible.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{chdir, chroot, pivot_root};

use crate::error::{Context, Error, Result, Step};

/// Unshares the mount namespace, makes every mount private (nothing propagates to or from
/// the host), bind-mounts `root` onto itself and pivots into it; the old root is detached.
/// When `/` is an initramfs (which pivot_root refuses), or with `no_pivot`, the jail is
/// moved over `/` instead (see [`move_root`]).
pub fn enter(root: &Path, no_pivot: bool) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).at(Step::MountNs, "unshare(CLONE_NEWNS)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .at(Step::MountNs, "/ (make private)")?;
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(root),
        root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .at(Step::MountNs, root.display())?;
    chdir(root).at(Step::PivotRoot, root.display())?;
    if !no_pivot {
        // Stack the old root under the new one, then detach it: no directory is needed.
        match pivot_root(".", ".") {
            Ok(()) => {
                umount2(".", MntFlags::MNT_DETACH).at(Step::PivotRoot, "old root")?;
                chdir("/").at(Step::PivotRoot, "/")?;
                return Ok(());
            }
            Err(Errno::EINVAL) => {} // the current root is the initramfs
            Err(e) => return Err(Error::new(Step::PivotRoot, root.display(), e)),
        }
    }
    move_root(root)
}

/// The fallback for an initramfs root: detaches every mount that is neither the jail nor
/// on the path to it, moves the jail's mount over `/` and chroots into it. The mounts left
/// below (the initramfs, the jail's ancestors) have no path from inside; leaving the
/// chroot would need CAP_SYS_CHROOT, which the vmm never has.
fn move_root(root: &Path) -> Result<()> {
    let points = crate::cgroups::mount_points().map_err(|e| match e {
        Error::Step { detail, .. } => Error::new(Step::PivotRoot, "/proc/self/mountinfo", detail),
        other => other,
    })?;
    for mp in points.iter().rev() {
        if mp == Path::new("/") || root.starts_with(mp) || mp.starts_with(root) {
            continue;
        }
        // Fails harmlessly for mounts already detached with a parent.
        let _ = umount2(mp, MntFlags::MNT_DETACH);
    }
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .at(Step::PivotRoot, format!("{} (move to /)", root.display()))?;
    chroot(".").at(Step::PivotRoot, root.display())?;
    chdir("/").at(Step::PivotRoot, "/")?;
    Ok(())
}
