//! cgroup v1: one hierarchy per controller (or per group of controllers mounted together).

use std::path::{Path, PathBuf};

use super::{cgroup_v1_mounts, controllers, make_own, make_parent, write, CgroupSetting};
use crate::error::{Context, Error, Result, Step};
use crate::undo::Undo;

/// A new cpuset cgroup has no cpus and mems; copies them from its parent when empty.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let current = std::fs::read_to_string(&own).at(Step::Cgroup, own.display())?;
        if current.trim().is_empty() {
            let from = parent.join(file);
            let value = std::fs::read_to_string(&from).at(Step::Cgroup, from.display())?;
            write(&own, value.trim())?;
        }
    }
    Ok(())
}

pub(super) fn create(
    parent: &str,
    id: &str,
    settings: &[CgroupSetting],
    undo: &mut Undo,
) -> Result<Vec<PathBuf>> {
    let mounts = cgroup_v1_mounts()?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for ctrl in controllers(settings) {
        let mount = mounts
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == ctrl))
            .ok_or_else(|| {
                Error::new(
                    Step::Cgroup,
                    format!("/sys/fs/cgroup/{ctrl}"),
                    format!("controller {ctrl:?} is not mounted as a cgroup v1 hierarchy"),
                )
            })?;
        let own = mount.point.join(parent).join(id);
        if dirs.contains(&own) {
            continue; // controllers mounted together (cpu,cpuacct)
        }
        let levels = make_parent(&mount.point, parent, undo)?;
        make_own(&own, undo)?;
        if mount.controllers.iter().any(|c| c == "cpuset") {
            for level in levels.iter().skip(1) {
                inherit_cpuset(level)?;
            }
            inherit_cpuset(&own)?;
        }
        dirs.push(own);
    }
    for s in settings {
        let dir = own_dir_for(&mounts, parent, id, &s.controller)?;
        write(&dir.join(&s.file), &s.value)?;
    }
    Ok(dirs)
}

fn own_dir_for(
    mounts: &[super::CgroupMount],
    parent: &str,
    id: &str,
    ctrl: &str,
) -> Result<PathBuf> {
    mounts
        .iter()
        .find(|m| m.controllers.iter().any(|c| c == ctrl))
        .map(|m| m.point.join(parent).join(id))
        .ok_or_else(|| Error::new(Step::Cgroup, ctrl, "controller not mounted"))
}
