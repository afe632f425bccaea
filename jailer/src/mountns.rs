//! A new mount namespace whose root is the jail: no path of the host stays visible.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{chdir, pivot_root};

use crate::error::{Context, Result, Step};

/// Unshares the mount namespace, makes every mount private (nothing propagates to or from
/// the host), bind-mounts `root` onto itself and pivots into it; the old root is detached.
pub fn enter(root: &Path) -> Result<()> {
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
    // Stack the old root under the new one, then detach it: no directory is needed.
    pivot_root(".", ".").at(Step::PivotRoot, root.display())?;
    umount2(".", MntFlags::MNT_DETACH).at(Step::PivotRoot, "old root")?;
    chdir("/").at(Step::PivotRoot, "/")?;
    Ok(())
}
