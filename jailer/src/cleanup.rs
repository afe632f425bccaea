//! `jailer --cleanup`: removes a jail's directory and cgroups once its vmm has exited.
//! Idempotent: what is already gone is skipped.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::cgroups::{cgroup_v1_mounts, cgroup_v2_mount, CgroupVersion};
use crate::cli::Cli;
use crate::error::{Context, Error, Result, Step};
use crate::validate;

/// Finds `<base>/<exec-name>/<id>`: with the exec name given, or by looking at every
/// exec-name directory under the base.
fn find_jail_dir(base: &Path, exec_name: Option<&str>, id: &str) -> Result<Option<PathBuf>> {
    if let Some(name) = exec_name {
        let dir = base.join(name).join(id);
        return Ok(dir.is_dir().then_some(dir));
    }
    let entries = match std::fs::read_dir(base) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::new(Step::Cleanup, base.display(), e)),
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(id))
        .filter(|p| p.is_dir())
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::new(
            Step::Cleanup,
            base.display(),
            format!("several jails have id {id:?}: pass --exec-file"),
        )),
    }
}

/// The jail's cgroups that exist, in the hierarchies of `versions`. Without a known parent
/// cgroup, every top-level cgroup of each hierarchy is looked at.
fn find_cgroups(
    versions: &[CgroupVersion],
    parent: Option<&str>,
    id: &str,
) -> Result<Vec<PathBuf>> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if versions.contains(&CgroupVersion::V1) {
        roots.extend(cgroup_v1_mounts()?.into_iter().map(|m| m.point));
    }
    if versions.contains(&CgroupVersion::V2) {
        roots.extend(cgroup_v2_mount()?.map(|m| m.point));
    }
    let mut found = Vec::new();
    for root in roots {
        match parent {
            Some(p) => found.push(root.join(p).join(id)),
            None => {
                if let Ok(entries) = std::fs::read_dir(&root) {
                    found.extend(entries.filter_map(|e| e.ok()).map(|e| e.path().join(id)));
                }
            }
        }
    }
    found.retain(|p| p.is_dir());
    Ok(found)
}

/// Refuses to clean a jail whose vmm still runs: its cgroups hold processes, or the pid
/// in its pid file is alive and runs the jail's binary.
fn ensure_stopped(
    jail_dir: Option<&Path>,
    exec_name: Option<&str>,
    cgroups: &[PathBuf],
) -> Result<()> {
    for cg in cgroups {
        let procs = cg.join("cgroup.procs");
        let pids = std::fs::read_to_string(&procs).at(Step::Cleanup, procs.display())?;
        if !pids.trim().is_empty() {
            return Err(Error::new(
                Step::Cleanup,
                cg.display(),
                format!(
                    "cgroup still has processes ({}): stop the vmm first",
                    pids.split_whitespace().collect::<Vec<_>>().join(" ")
                ),
            ));
        }
    }
    if let (Some(dir), Some(name)) = (jail_dir, exec_name) {
        let pid_file = dir.join("root").join(format!("{name}.pid"));
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let exe = std::fs::read_link(format!("/proc/{}/exe", pid.trim()));
            // Seen from the host, the jailed binary is `/<name>` (outside the reader's
            // mount tree) or its full host path.
            let jailed =
                |p: &Path| p == Path::new("/").join(name) || p == dir.join("root").join(name);
            if exe.is_ok_and(|p| jailed(&p)) {
                return Err(Error::new(
                    Step::Cleanup,
                    pid_file.display(),
                    format!("the vmm (pid {}) is still running", pid.trim()),
                ));
            }
        }
    }
    Ok(())
}

/// Removes the jail of `cli.id`. Returns what it removed (empty when nothing was left).
pub fn run(cli: &Cli) -> Result<Vec<PathBuf>> {
    validate::id(&cli.id)?;
    validate::base_dir(&cli.chroot_base_dir)?;
    let given_name = cli
        .exec_file
        .as_deref()
        .map(validate::exec_name)
        .transpose()?;
    if let Some(p) = &cli.parent_cgroup {
        validate::parent_cgroup(p)?;
    }
    let jail_dir = find_jail_dir(&cli.chroot_base_dir, given_name.as_deref(), &cli.id)?;
    let exec_name = given_name.or_else(|| {
        jail_dir
            .as_deref()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .map(str::to_string)
    });
    let parent = cli.parent_cgroup.clone().or_else(|| exec_name.clone());
    let versions = match cli.cgroup_version {
        Some(1) => vec![CgroupVersion::V1],
        Some(_) => vec![CgroupVersion::V2],
        None => vec![CgroupVersion::V1, CgroupVersion::V2],
    };
    let cgroups = find_cgroups(&versions, parent.as_deref(), &cli.id)?;
    ensure_stopped(jail_dir.as_deref(), exec_name.as_deref(), &cgroups)?;

    let mut removed = Vec::new();
    for cg in cgroups {
        match std::fs::remove_dir(&cg) {
            Ok(()) => removed.push(cg),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::new(Step::Cleanup, cg.display(), e)),
        }
    }
    if let Some(dir) = jail_dir {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(dir),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::new(Step::Cleanup, dir.display(), e)),
        }
    }
    Ok(removed)
}
