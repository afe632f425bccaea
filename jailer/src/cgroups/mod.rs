//! Cgroups of a jail: `<mount>/<parent-cgroup>/<id>` in each hierarchy that a `--cgroup`
//! setting needs (v1: one per controller; v2: the unified hierarchy).

mod mountinfo;
pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result, Step};
use crate::undo::Undo;

pub use mountinfo::{cgroup_v1_mounts, cgroup_v2_mount, mount_points, CgroupMount};

/// Which cgroup hierarchy the jail uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// One `--cgroup FILE=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupSetting {
    /// The controller: the file name up to its first '.'.
    pub controller: String,
    pub file: String,
    pub value: String,
}

impl CgroupSetting {
    /// Parses `controller.key=value`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::new(Step::Validate, format!("--cgroup {s:?}"), why);
        let (file, value) = s
            .split_once('=')
            .ok_or_else(|| bad("expected FILE=VALUE"))?;
        let (controller, key) = file
            .split_once('.')
            .ok_or_else(|| bad("FILE must be <controller>.<key>"))?;
        let name_ok = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        };
        if !name_ok(controller) || controller.contains('.') || !name_ok(key) || key.contains("..") {
            return Err(bad("FILE must be <controller>.<key> of [A-Za-z0-9_.]"));
        }
        if controller == "cgroup" {
            return Err(bad("the cgroup core files are managed by the jailer"));
        }
        if value.is_empty() || value.contains('\n') {
            return Err(bad("VALUE must be one non-empty line"));
        }
        Ok(CgroupSetting {
            controller: controller.to_string(),
            file: file.to_string(),
            value: value.to_string(),
        })
    }
}

/// CFS period used for task CPU limits, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The `--cgroup` settings that give a task its CPU units (1024 = 1 vCPU) and memory (MiB).
pub fn task_limits(version: CgroupVersion, cpu_units: u32, memory_mib: u64) -> Vec<String> {
    let quota = (u64::from(cpu_units) * CPU_PERIOD_US / 1024).max(1000);
    let bytes = memory_mib.saturating_mul(1024 * 1024);
    match version {
        CgroupVersion::V1 => vec![
            format!("cpu.cfs_period_us={CPU_PERIOD_US}"),
            format!("cpu.cfs_quota_us={quota}"),
            format!("memory.limit_in_bytes={bytes}"),
        ],
        CgroupVersion::V2 => vec![
            format!("cpu.max={quota} {CPU_PERIOD_US}"),
            format!("memory.max={bytes}"),
        ],
    }
}

/// The distinct controllers of the settings, in order of first use.
pub(crate) fn controllers(settings: &[CgroupSetting]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for s in settings {
        if !out.contains(&s.controller.as_str()) {
            out.push(&s.controller);
        }
    }
    out
}

/// Creates the jail's cgroups and writes the settings. Returns the cgroup directories
/// the vmm must join. Everything created is recorded in `undo`.
pub fn create(
    version: CgroupVersion,
    parent: &str,
    id: &str,
    settings: &[CgroupSetting],
    undo: &mut Undo,
) -> Result<Vec<PathBuf>> {
    if settings.is_empty() {
        return Ok(Vec::new());
    }
    match version {
        CgroupVersion::V1 => v1::create(parent, id, settings, undo),
        CgroupVersion::V2 => v2::create(parent, id, settings, undo),
    }
}

/// Creates `<root>/<parent>` level by level; records the levels it made (shared: other
/// jails may use them too). Returns the levels from `root` down to `<root>/<parent>`.
pub(crate) fn make_parent(root: &Path, parent: &str, undo: &mut Undo) -> Result<Vec<PathBuf>> {
    let mut levels = vec![root.to_path_buf()];
    let mut dir = root.to_path_buf();
    for comp in parent.split('/') {
        dir.push(comp);
        match std::fs::create_dir(&dir) {
            Ok(()) => undo.rmdir_shared(dir.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::new(Step::Cgroup, dir.display(), e)),
        }
        levels.push(dir.clone());
    }
    Ok(levels)
}

/// Creates the jail's own cgroup `<dir>`: it must not exist yet (the id is in use otherwise).
pub(crate) fn make_own(dir: &Path, undo: &mut Undo) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            undo.rmdir(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::new(
            Step::Cgroup,
            dir.display(),
            "already exists (is the id in use? run jailer --cleanup)",
        )),
        Err(e) => Err(Error::new(Step::Cgroup, dir.display(), e)),
    }
}

/// Writes one value into a cgroup file.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).at(Step::Cgroup, path.display())
}

/// Moves the calling process into each cgroup (writes "0" to its cgroup.procs).
pub fn join(dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        write(&dir.join("cgroup.procs"), "0")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_settings() {
        let s = CgroupSetting::parse("cpu.max=25000 100000").unwrap();
        assert_eq!(s.controller, "cpu");
        assert_eq!(s.file, "cpu.max");
        assert_eq!(s.value, "25000 100000");
        let s = CgroupSetting::parse("hugetlb.2MB.max=0").unwrap();
        assert_eq!(s.controller, "hugetlb");
        for bad in [
            "cpu.max",
            "cpumax=1",
            "cpu.=1",
            ".max=1",
            "cpu.max=",
            "cpu.max=1\n2",
            "cpu/../x.max=1",
            "cpu.../x=1",
            "cgroup.procs=1",
        ] {
            assert!(CgroupSetting::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn task_mapping() {
        assert_eq!(
            task_limits(CgroupVersion::V2, 256, 512),
            vec!["cpu.max=25000 100000", "memory.max=536870912"]
        );
        assert_eq!(
            task_limits(CgroupVersion::V1, 4096, 30 * 1024),
            vec![
                "cpu.cfs_period_us=100000",
                "cpu.cfs_quota_us=400000",
                "memory.limit_in_bytes=32212254720"
            ]
        );
        for s in task_limits(CgroupVersion::V1, 1024, 2048) {
            assert!(CgroupSetting::parse(&s).is_ok(), "{s}");
        }
    }
}
