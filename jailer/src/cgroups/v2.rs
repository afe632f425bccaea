//! cgroup v2: one unified hierarchy; controllers must be offered by its root and enabled
//! in `cgroup.subtree_control` of every ancestor of the jail's cgroup.

use std::path::PathBuf;

use super::{cgroup_v2_mount, controllers, make_own, make_parent, write, CgroupSetting};
use crate::error::{Context, Error, Result, Step};
use crate::undo::Undo;

pub(super) fn create(
    parent: &str,
    id: &str,
    settings: &[CgroupSetting],
    undo: &mut Undo,
) -> Result<Vec<PathBuf>> {
    let mount = cgroup_v2_mount()?.ok_or_else(|| {
        Error::new(
            Step::Cgroup,
            "/sys/fs/cgroup",
            "no cgroup2 hierarchy is mounted",
        )
    })?;
    let offered_path = mount.point.join("cgroup.controllers");
    let offered =
        std::fs::read_to_string(&offered_path).at(Step::Cgroup, offered_path.display())?;
    let offered: Vec<&str> = offered.split_whitespace().collect();
    let wanted = controllers(settings);
    for ctrl in &wanted {
        if !offered.contains(ctrl) {
            return Err(Error::new(
                Step::Cgroup,
                offered_path.display(),
                format!(
                    "controller {ctrl:?} is not available in cgroup v2 here (offered: {})",
                    offered.join(" ")
                ),
            ));
        }
    }
    let levels = make_parent(&mount.point, parent, undo)?;
    for level in &levels {
        let control = level.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&control).at(Step::Cgroup, control.display())?;
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        for ctrl in &wanted {
            if !enabled.contains(ctrl) {
                write(&control, &format!("+{ctrl}"))?;
            }
        }
    }
    let own = mount.point.join(parent).join(id);
    make_own(&own, undo)?;
    for s in settings {
        write(&own.join(&s.file), &s.value)?;
    }
    Ok(vec![own])
}
