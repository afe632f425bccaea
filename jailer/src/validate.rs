//! Validation of the command line into a [`Plan`]: nothing is created before all of it passed.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cgroups::{CgroupSetting, CgroupVersion};
use crate::cli::Cli;
use crate::error::{Error, Result, Step};
use crate::rlimits::Rlimit;

/// Longest accepted jail id.
pub const MAX_ID_LEN: usize = 64;

/// Everything the jailer will do, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    /// The exec file on the host (canonical path).
    pub exec_src: PathBuf,
    /// Its file name: the jail's `<exec-name>` directory and the binary's name in the jail.
    pub exec_name: String,
    pub uid: u32,
    pub gid: u32,
    /// `<base>/<exec-name>/<id>`.
    pub jail_dir: PathBuf,
    /// `<base>/<exec-name>/<id>/root`.
    pub root: PathBuf,
    pub base: PathBuf,
    pub netns: Option<PathBuf>,
    pub cgroup_version: CgroupVersion,
    pub cgroups: Vec<CgroupSetting>,
    pub parent_cgroup: String,
    pub rlimits: Vec<Rlimit>,
    pub daemonize: bool,
    pub new_pid_ns: bool,
    pub no_pivot: bool,
    pub vmm_args: Vec<String>,
}

fn invalid(what: impl std::fmt::Display, detail: impl std::fmt::Display) -> Error {
    Error::new(Step::Validate, what, detail)
}

/// A jail id: 1 to 64 characters, ASCII letters, digits and '-'.
pub fn id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(invalid(
            format!("--id {id:?}"),
            format!("must be 1 to {MAX_ID_LEN} characters long"),
        ));
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(invalid(
            format!("--id {id:?}"),
            "only ASCII letters, digits and '-' are allowed",
        ));
    }
    Ok(())
}

/// A directory argument: absolute, normalised (no `.`/`..`), not `/` itself.
pub fn base_dir(dir: &Path) -> Result<()> {
    if !dir.is_absolute() {
        return Err(invalid(dir.display(), "--chroot-base-dir must be absolute"));
    }
    if dir
        .as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .any(|c| c == b"." || c == b"..")
    {
        return Err(invalid(
            dir.display(),
            "--chroot-base-dir must not contain '.' or '..'",
        ));
    }
    if dir.parent().is_none() {
        return Err(invalid(dir.display(), "--chroot-base-dir must not be /"));
    }
    Ok(())
}

/// The exec file: an existing, executable regular file. Returns its canonical path and name.
pub fn exec_file(path: &Path) -> Result<(PathBuf, String)> {
    let canon = path
        .canonicalize()
        .map_err(|e| invalid(path.display(), format!("--exec-file: {e}")))?;
    let meta = std::fs::metadata(&canon).map_err(|e| invalid(canon.display(), e))?;
    if !meta.is_file() {
        return Err(invalid(
            canon.display(),
            "--exec-file is not a regular file",
        ));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(invalid(canon.display(), "--exec-file is not executable"));
    }
    let name = exec_name(&canon)?;
    Ok((canon, name))
}

/// The name a jail uses for an exec file (its file name), checked like a path component.
pub fn exec_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| invalid(path.display(), "--exec-file has no UTF-8 file name"))?;
    if name.starts_with('.') || name.contains(['/', '\n']) {
        return Err(invalid(
            path.display(),
            "--exec-file name is not usable in a path",
        ));
    }
    Ok(name.to_string())
}

/// A parent cgroup: a relative path of plain components.
pub fn parent_cgroup(parent: &str) -> Result<()> {
    let ok = !parent.is_empty()
        && parent.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("--parent-cgroup {parent:?}"),
            "must be a relative path of [A-Za-z0-9._-] components",
        ))
    }
}

/// A uid or gid: `-1` (u32::MAX) means "unchanged" to the kernel, so it is refused.
fn ugid(what: &str, v: u32) -> Result<()> {
    if v == u32::MAX {
        return Err(invalid(format!("--{what} {v}"), "is not a valid id"));
    }
    Ok(())
}

/// Checks every argument of a jail run and computes its paths.
pub fn plan(cli: &Cli) -> Result<Plan> {
    id(&cli.id)?;
    base_dir(&cli.chroot_base_dir)?;
    let exec = cli
        .exec_file
        .as_deref()
        .ok_or_else(|| invalid("--exec-file", "is required"))?;
    let (exec_src, exec_name) = exec_file(exec)?;
    let uid = cli.uid.ok_or_else(|| invalid("--uid", "is required"))?;
    let gid = cli.gid.ok_or_else(|| invalid("--gid", "is required"))?;
    ugid("uid", uid)?;
    ugid("gid", gid)?;
    if let Some(ns) = &cli.netns {
        let meta = std::fs::metadata(ns)
            .map_err(|e| Error::new(Step::Validate, ns.display(), format!("--netns: {e}")))?;
        if meta.is_dir() {
            return Err(invalid(ns.display(), "--netns is a directory"));
        }
    }
    let cgroup_version = match cli.cgroup_version {
        None | Some(1) => CgroupVersion::V1,
        Some(_) => CgroupVersion::V2,
    };
    let cgroups = cli
        .cgroups
        .iter()
        .map(|s| CgroupSetting::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let parent = cli
        .parent_cgroup
        .clone()
        .unwrap_or_else(|| exec_name.clone());
    parent_cgroup(&parent)?;
    let rlimits = crate::rlimits::parse_all(&cli.resource_limits)?;
    let jail_dir = cli.chroot_base_dir.join(&exec_name).join(&cli.id);
    Ok(Plan {
        id: cli.id.clone(),
        root: jail_dir.join("root"),
        jail_dir,
        base: cli.chroot_base_dir.clone(),
        exec_src,
        exec_name,
        uid,
        gid,
        netns: cli.netns.clone(),
        cgroup_version,
        cgroups,
        parent_cgroup: parent,
        rlimits,
        daemonize: cli.daemonize,
        new_pid_ns: cli.new_pid_ns,
        no_pivot: cli.no_pivot,
        vmm_args: cli.vmm_args.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(id("abc-123-XYZ").is_ok());
        assert!(id(&"a".repeat(64)).is_ok());
        for bad in ["", "a/b", "..", "a_b", "a b", "é", &"a".repeat(65)] {
            let e = id(bad).unwrap_err().to_string();
            assert!(e.starts_with("validate: --id"), "{bad}: {e}");
        }
    }

    #[test]
    fn base_dirs() {
        assert!(base_dir(Path::new("/srv/jailer")).is_ok());
        for bad in ["srv", "/", "/srv/../etc", "/srv/./x"] {
            assert!(base_dir(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn parents() {
        assert!(parent_cgroup("vmm").is_ok());
        assert!(parent_cgroup("a/b-c_d.e").is_ok());
        for bad in ["", "/abs", "a/../b", "a//b", "..", "a b"] {
            assert!(parent_cgroup(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exec_files() {
        assert!(exec_file(Path::new("/nonexistent/vmm")).is_err());
        assert!(exec_file(Path::new("/")).is_err());
        let (p, n) = exec_file(Path::new("/bin/sh")).unwrap();
        assert!(p.is_absolute());
        assert!(!n.is_empty());
    }
}
