//! Settings of the microVM runtime (from the daemon's flags) and the names derived from a
//! task: its id (netd task id = jailer id), its jail root, its state directory.

use jailer::CgroupVersion;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the microVM runtime finds its binaries and guest, and how it sizes and bounds tasks.
#[derive(Debug, Clone)]
pub struct VmRuntimeConfig {
    /// Guest kernel (vmlinux); hard-linked (or copied) into every jail.
    pub kernel: PathBuf,
    /// Guest init initramfs; hard-linked (or copied) into every jail.
    pub initramfs: PathBuf,
    /// The jailer binary.
    pub jailer: PathBuf,
    /// The vmm binary (static: the jail has no libraries).
    pub vmm: PathBuf,
    /// The `hostagent` binary, run as `hostagent vm-relay` (one guest-channel relay per task).
    pub relay_exe: PathBuf,
    /// netd's API socket.
    pub netd_socket: PathBuf,
    /// `jailer --chroot-base-dir`; jails are `<base>/<vmm file name>/<task id>/root`.
    pub chroot_base: PathBuf,
    /// Which uid/gid each jailed vmm runs under (one per jail from a range by default).
    pub jail_ids: JailIds,
    /// Per-task state directories (`<dir>/<task id>/`), kept across agent restarts.
    pub state_dir: PathBuf,
    /// Image layer cache.
    pub image_cache: PathBuf,
    /// Registries reached over plain http besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// The registry allow-list (empty: public registries only).
    pub allowed_registries: Vec<crate::image::AllowRegistry>,
    /// Whether tenants' `oci-layout:` references are accepted.
    pub allow_oci_layout: bool,
    /// Cgroup hierarchy for the task's CPU and memory limits.
    pub cgroup_version: CgroupVersion,
    /// `jailer --parent-cgroup`.
    pub parent_cgroup: String,
    /// netd subnet used when the task names none.
    pub default_subnet: String,
    /// From VM start until the guest init's first message.
    pub boot_timeout: Duration,
    /// From RunTask until every container left PENDING.
    pub start_timeout: Duration,
    /// Added to the stop timeout before the vmm is killed.
    pub stop_margin: Duration,
    /// Between two metrics samples.
    pub metrics_interval: Duration,
    /// Memory the vmm may use beyond the guest's (cgroup limit = task memory + this).
    pub memory_overhead_mib: u64,
    /// Bytes of guest messages each task's relay holds for the agent (`vm-relay
    /// --queue-bytes`).
    pub relay_queue_bytes: usize,
    /// Appended to the guest kernel command line.
    pub extra_boot_args: String,
    /// The vmm's command line after the jailer's own flags (default: `--no-api
    /// --config-file /vm.json --level Info`; `with_vmm_flags` appends to it).
    pub vmm_args: Vec<String>,
}

impl VmRuntimeConfig {
    /// A configuration with the defaults for everything but the paths and identity.
    pub fn new(
        kernel: PathBuf,
        initramfs: PathBuf,
        jailer: PathBuf,
        vmm: PathBuf,
        state_dir: PathBuf,
    ) -> Self {
        VmRuntimeConfig {
            kernel,
            initramfs,
            jailer,
            vmm,
            relay_exe: std::env::current_exe().unwrap_or_else(|_| "hostagent".into()),
            netd_socket: "/run/netd/netd.sock".into(),
            chroot_base: "/srv/jailer".into(),
            jail_ids: JailIds::default(),
            image_cache: state_dir.join("images"),
            state_dir: state_dir.join("vm"),
            insecure_registries: Vec::new(),
            allowed_registries: Vec::new(),
            allow_oci_layout: false,
            cgroup_version: CgroupVersion::V2,
            parent_cgroup: "hostagent".into(),
            default_subnet: "service".into(),
            boot_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(120),
            stop_margin: Duration::from_secs(10),
            metrics_interval: Duration::from_secs(10),
            memory_overhead_mib: 64,
            relay_queue_bytes: crate::vm::relay::DEFAULT_QUEUE_BYTES,
            extra_boot_args: String::new(),
            vmm_args: default_vmm_args("Info"),
        }
    }

    /// The vmm's file name (the jailer names the jail directory after it).
    pub fn exec_name(&self) -> String {
        self.vmm
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "vmm".into())
    }

    /// `<base>/<exec-name>/<id>/root`.
    pub fn jail_root(&self, id: &str) -> PathBuf {
        self.jail_dir(id).join("root")
    }

    /// `<base>/<exec-name>/<id>` (what `jailer --cleanup` removes).
    pub fn jail_dir(&self, id: &str) -> PathBuf {
        self.chroot_base.join(self.exec_name()).join(id)
    }

    /// The task's state directory.
    pub fn task_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join(id)
    }

    /// The image store's settings.
    pub fn image_options(&self) -> crate::image::StoreOptions {
        crate::image::StoreOptions {
            insecure_registries: self.insecure_registries.clone(),
            allowed_registries: self.allowed_registries.clone(),
            allow_oci_layout: self.allow_oci_layout,
            ..crate::image::StoreOptions::default()
        }
    }

    /// Checks the files exist and the numbers make sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (flag, p) in [
            ("--guest-kernel", &self.kernel),
            ("--guest-initramfs", &self.initramfs),
            ("--jailer-bin", &self.jailer),
            ("--vmm-bin", &self.vmm),
        ] {
            if !p.is_file() {
                return Err(ConfigError::NotAFile {
                    flag,
                    path: p.clone(),
                });
            }
        }
        if !self.chroot_base.is_absolute() {
            return Err(ConfigError::RelativeChrootBase(self.chroot_base.clone()));
        }
        self.jail_ids.validate()?;
        if self.boot_timeout.is_zero() || self.start_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        Ok(())
    }
}

/// A [`VmRuntimeConfig`] that cannot run tasks (the text names the flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A binary or guest file is missing or not a regular file.
    #[error("{flag} {}: not a regular file", path.display())]
    NotAFile {
        /// The flag that names it.
        flag: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// `--chroot-base` is relative.
    #[error("--chroot-base {}: must be absolute", .0.display())]
    RelativeChrootBase(PathBuf),
    /// The jail identity is root (or `u32::MAX`).
    #[error("--jail-uid/--jail-gid: an unprivileged id (not 0) is required")]
    PrivilegedJailId,
    /// The jail id range holds root, `u32::MAX` or nothing.
    #[error("--jail-uid-range {0}: ids must be between 1 and 4294967294, first <= last")]
    BadJailRange(JailIds),
    /// A boot or start timeout of zero.
    #[error("boot and start timeouts must be positive")]
    ZeroTimeout,
}

/// The uid and gid one jail's vmm runs under (recorded in the task's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JailId {
    /// The vmm's uid (also the owner of the task's taps, devices and guest socket).
    pub uid: u32,
    /// The vmm's gid.
    pub gid: u32,
}

/// Where jail identities come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JailIds {
    /// Each jail gets a uid of its own from `first..=last`, and the gid of the same
    /// number (`--jail-uid-range`): a vmm that escapes its jail cannot signal, trace or
    /// read another task's vmm, taps or devices. Allocated by [`super::jail::ids`].
    Range {
        /// First id of the range.
        first: u32,
        /// Last id of the range (inclusive).
        last: u32,
    },
    /// Deprecated (`--jail-uid`/`--jail-gid` without a range): every jail runs under this
    /// one identity, as before per-jail ids existed.
    Shared(JailId),
}

/// Default `--jail-uid-range`: 65536 ids above the usual user, subuid and systemd ranges.
pub const DEFAULT_JAIL_ID_RANGE: (u32, u32) = (2_000_000_000, 2_000_065_535);

impl Default for JailIds {
    fn default() -> Self {
        JailIds::Range {
            first: DEFAULT_JAIL_ID_RANGE.0,
            last: DEFAULT_JAIL_ID_RANGE.1,
        }
    }
}

impl std::fmt::Display for JailIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JailIds::Range { first, last } => write!(f, "{first}-{last}"),
            JailIds::Shared(id) => write!(f, "{}:{} (shared)", id.uid, id.gid),
        }
    }
}

/// A `--jail-uid-range` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected FIRST-LAST or FIRST+COUNT (e.g. 100000-165535 or 100000+65536), ids from 1 to 4294967294")]
pub struct JailRangeError(pub String);

impl std::str::FromStr for JailIds {
    type Err = JailRangeError;

    /// `FIRST-LAST` (inclusive) or `FIRST+COUNT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || JailRangeError(s.to_string());
        let num = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        let (first, last) = if let Some((a, b)) = s.split_once('-') {
            (num(a)?, num(b)?)
        } else if let Some((a, n)) = s.split_once('+') {
            let first = num(a)?;
            let count = num(n)?;
            let last = count
                .checked_sub(1)
                .and_then(|c| first.checked_add(c))
                .ok_or_else(bad)?;
            (first, last)
        } else {
            return Err(bad());
        };
        let r = JailIds::Range { first, last };
        r.validate().map_err(|_| bad())?;
        Ok(r)
    }
}

impl JailIds {
    /// Root, `u32::MAX` (the kernel's "no id") and empty ranges are refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ok = |id: u32| id != 0 && id != u32::MAX;
        match *self {
            JailIds::Range { first, last } => {
                if ok(first) && ok(last) && first <= last {
                    Ok(())
                } else {
                    Err(ConfigError::BadJailRange(*self))
                }
            }
            JailIds::Shared(JailId { uid, gid }) => {
                if ok(uid) && ok(gid) {
                    Ok(())
                } else {
                    Err(ConfigError::PrivilegedJailId)
                }
            }
        }
    }

    /// How many jails may run at once (`u64`: a range may hold 2^32 - 2 ids).
    pub fn capacity(&self) -> Option<u64> {
        match *self {
            JailIds::Range { first, last } => Some(u64::from(last - first) + 1),
            JailIds::Shared(_) => None,
        }
    }
}

/// `--no-api --config-file /vm.json --level <level>` and the output limits.
pub fn default_vmm_args(level: &str) -> Vec<String> {
    vec![
        "--no-api".into(),
        "--config-file".into(),
        super::spec::jail_paths::CONFIG.into(),
        "--level".into(),
        level.into(),
        // Bounds the task's console.log whatever the guest does (both streams go there).
        "--serial-out-limit".into(),
        VMM_OUTPUT_LIMIT_BYTES.to_string(),
        "--log-limit".into(),
        VMM_OUTPUT_LIMIT_BYTES.to_string(),
    ]
}

/// Bytes of guest console, and of vmm log, kept per task VM (8 MiB each).
pub const VMM_OUTPUT_LIMIT_BYTES: u64 = 8 << 20;

/// The id of a task on this host: `t` + 24 hex digits of sha256(task ARN). It names the
/// netd task, the jail and the state directory (netd and the jailer accept it; ARNs hold
/// `:` and `/`, which neither does).
pub fn task_id(task_arn: &str) -> String {
    let h = Sha256::digest(task_arn.as_bytes());
    format!("t{}", &hex::encode(h)[..24])
}

/// Whether `p` is inside `dir` (lexically; both absolute).
pub fn is_within(p: &Path, dir: &Path) -> bool {
    p.starts_with(dir) && !p.components().any(|c| c == std::path::Component::ParentDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_short_stable_and_safe() {
        let a = task_id("arn:aws:ecs:us-east-1:1:task/c/abc");
        assert_eq!(a, task_id("arn:aws:ecs:us-east-1:1:task/c/abc"));
        assert_ne!(a, task_id("arn:aws:ecs:us-east-1:1:task/c/abd"));
        assert_eq!(a.len(), 25);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn jail_paths_follow_the_jailer() {
        let mut c = VmRuntimeConfig::new(
            "/k".into(),
            "/i".into(),
            "/j".into(),
            "/opt/bin/vmm".into(),
            "/var/lib/hostagent".into(),
        );
        c.chroot_base = "/srv/jailer".into();
        assert_eq!(c.jail_root("t1"), Path::new("/srv/jailer/vmm/t1/root"));
        assert_eq!(c.task_dir("t1"), Path::new("/var/lib/hostagent/vm/t1"));
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--guest-kernel"));
        assert!(is_within(Path::new("/a/b/c"), Path::new("/a/b")));
        assert!(!is_within(Path::new("/a/b/../c"), Path::new("/a/b")));
    }

    #[test]
    fn jail_id_ranges_parse_and_refuse_root() {
        let r = |first, last| Ok(JailIds::Range { first, last });
        assert_eq!("100000-165535".parse(), r(100_000, 165_535));
        assert_eq!("100000+65536".parse(), r(100_000, 165_535));
        assert_eq!("7-7".parse(), r(7, 7));
        assert_eq!("7+1".parse(), r(7, 7));
        for bad in [
            "",
            "100000",
            "0-10",
            "10-0",
            "5-4",
            "1-4294967295",
            "a-b",
            "1+0",
            "4294967290+10",
            "-5",
            "1--2",
        ] {
            let e = bad.parse::<JailIds>().unwrap_err();
            assert!(e.to_string().contains("FIRST-LAST"), "{bad}: {e}");
        }
        assert_eq!(
            "100000-165535".parse::<JailIds>().unwrap().capacity(),
            Some(65536)
        );
        assert_eq!(JailIds::default().validate(), Ok(()));
        assert_eq!(
            JailIds::Shared(JailId { uid: 0, gid: 5 }).validate(),
            Err(ConfigError::PrivilegedJailId)
        );
        let r = JailIds::Range { first: 9, last: 3 };
        assert!(r.validate().unwrap_err().to_string().contains("9-3"));
    }
}
