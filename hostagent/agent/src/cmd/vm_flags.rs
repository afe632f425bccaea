//! The microVM runtime's flags, shared by the daemon and `vm-run`, and their checked
//! [`VmRuntimeConfig`].

use hostagent::host::config::Args;
use hostagent::vm::config::{default_vmm_args, ConfigError, JailId, JailIds};
use hostagent::vm::VmRuntimeConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Which runtime runs the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Every task in its own jailed microVM (netd + jailer + vmm + guest init).
    Microvm,
    /// No runtime: every launch is answered STOPPED, honestly.
    Unavailable,
}

/// Flags of the microVM runtime (besides `--netd-socket`, `--vmm-bin`, `--jailer-bin`,
/// `--guest-kernel`, `--guest-initramfs`).
#[derive(Debug, Clone, clap::Args)]
pub struct VmArgs {
    /// Task runtime.
    #[arg(long, value_enum, default_value = "unavailable")]
    pub runtime: RuntimeKind,
    /// Jailer chroot base (`jailer --chroot-base-dir`).
    #[arg(long, default_value = "/srv/jailer")]
    chroot_base: PathBuf,
    /// uids for the jailed vmms, FIRST-LAST or FIRST+COUNT: each task gets its own uid
    /// (and the gid of the same number), held until everything of the task is gone; a
    /// launch finding none free is refused. Use ids no user, subuid range or other
    /// service of the host has [default: 2000000000-2000065535]
    #[arg(long, value_name = "RANGE", conflicts_with_all = ["jail_uid", "jail_gid"])]
    jail_uid_range: Option<JailIds>,
    /// DEPRECATED (use --jail-uid-range): every jailed vmm runs under this one uid, so a
    /// vmm that escapes its jail can signal and read every other task's vmm. Given
    /// without --jail-uid-range it replaces the range (gid: --jail-gid, else 10000).
    #[arg(long, value_name = "UID")]
    jail_uid: Option<u32>,
    /// DEPRECATED (use --jail-uid-range): the one gid of every jailed vmm (uid:
    /// --jail-uid, else 10000).
    #[arg(long, value_name = "GID")]
    jail_gid: Option<u32>,
    /// Cgroup version for the task limits (1: v1 controllers, 2: cgroup2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    cgroup_version: u8,
    /// Parent cgroup of the jails.
    #[arg(long, default_value = "hostagent")]
    parent_cgroup: String,
    /// netd subnet for tasks whose subnets netd does not know.
    #[arg(long, default_value = "service")]
    default_subnet: String,
    /// Image layer cache (default `<state-dir>/images`).
    #[arg(long)]
    image_cache: Option<PathBuf>,
    /// Registry (`host:port`) reached over plain http (repeatable; loopback always is).
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Registry tenants may pull from (repeatable): host, host:port, [v6]:port, CIDR, or
    /// `public`. None given: registries at public addresses only (never loopback,
    /// link-local, private or this host's addresses).
    #[arg(long = "allow-registry")]
    allowed_registries: Vec<hostagent::image::AllowRegistry>,
    /// Accept tenants' `oci-layout:/host/path` image references.
    #[arg(long)]
    allow_oci_layout: bool,
    /// Seconds from VM start to the guest init's answer.
    #[arg(long, default_value_t = 30)]
    boot_timeout_secs: u64,
    /// Seconds from RunTask to every container started.
    #[arg(long, default_value_t = 120)]
    start_timeout_secs: u64,
    /// Seconds between two metrics samples of a task.
    #[arg(long, default_value_t = 10)]
    metrics_interval_secs: u64,
    /// MiB the vmm may use beyond the guest memory (cgroup memory limit margin).
    #[arg(long, default_value_t = 64)]
    vmm_memory_overhead_mib: u64,
    /// Bytes of guest messages each task's relay holds while the agent does not read
    /// (over it the oldest log lines are dropped, with a counted marker line).
    #[arg(long, default_value_t = hostagent::vm::relay::DEFAULT_QUEUE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(4096..))]
    relay_queue_bytes: u64,
    /// Appended to the guest kernel command line.
    #[arg(long, default_value = "")]
    extra_boot_args: String,
    /// `vmm --level` (Info shows the guest boot marker in console.log).
    #[arg(long, default_value = "Info")]
    vmm_log_level: String,
    /// Extra vmm flag (repeatable), e.g. `--vmm-arg=--no-seccomp`.
    #[arg(long = "vmm-arg", allow_hyphen_values = true)]
    vmm_args: Vec<String>,
}

/// A microVM runtime configuration the flags do not give.
#[derive(Debug, thiserror::Error)]
pub enum VmFlagsError {
    /// A path the runtime needs was not given.
    #[error("--runtime microvm needs {0}")]
    Missing(&'static str),
    /// The settings do not pass [`VmRuntimeConfig::validate`].
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// The paths the microVM runtime needs (from the daemon's flags or `vm-run`'s).
pub struct VmPaths {
    pub kernel: Option<PathBuf>,
    pub initramfs: Option<PathBuf>,
    pub jailer: Option<PathBuf>,
    pub vmm: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub netd_socket: PathBuf,
}

impl VmPaths {
    /// The daemon's.
    pub fn of(a: &Args) -> VmPaths {
        VmPaths {
            kernel: a.guest_kernel.clone(),
            initramfs: a.guest_initramfs.clone(),
            jailer: a.jailer_bin.clone(),
            vmm: a.vmm_bin.clone(),
            state_dir: a.state_dir.clone(),
            netd_socket: a.netd_socket.clone(),
        }
    }
}

/// Old default of `--jail-uid`/`--jail-gid`, kept for the deprecated shared identity.
const LEGACY_JAIL_ID: u32 = 10_000;

/// The jail identities the flags give: the range, or (deprecated) one shared id.
fn jail_ids(v: &VmArgs) -> JailIds {
    match (v.jail_uid_range, v.jail_uid, v.jail_gid) {
        (Some(r), _, _) => r,
        (None, None, None) => JailIds::default(),
        (None, uid, gid) => {
            tracing::warn!(
                "--jail-uid/--jail-gid are deprecated: every jail shares one identity; \
                 use --jail-uid-range"
            );
            JailIds::Shared(JailId {
                uid: uid.unwrap_or(LEGACY_JAIL_ID),
                gid: gid.unwrap_or(LEGACY_JAIL_ID),
            })
        }
    }
}

fn required(p: &Option<PathBuf>, flag: &'static str) -> Result<PathBuf, VmFlagsError> {
    p.clone().ok_or(VmFlagsError::Missing(flag))
}

/// The runtime's settings from `p` and `v`, checked.
pub fn vm_config(p: VmPaths, v: &VmArgs) -> Result<VmRuntimeConfig, VmFlagsError> {
    let mut c = VmRuntimeConfig::new(
        required(&p.kernel, "--guest-kernel")?,
        required(&p.initramfs, "--guest-initramfs")?,
        required(&p.jailer, "--jailer-bin")?,
        required(&p.vmm, "--vmm-bin")?,
        p.state_dir,
    );
    c.netd_socket = p.netd_socket;
    c.chroot_base = v.chroot_base.clone();
    c.jail_ids = jail_ids(v);
    c.cgroup_version = if v.cgroup_version == 1 {
        jailer::CgroupVersion::V1
    } else {
        jailer::CgroupVersion::V2
    };
    c.parent_cgroup = v.parent_cgroup.clone();
    c.default_subnet = v.default_subnet.clone();
    if let Some(p) = &v.image_cache {
        c.image_cache = p.clone();
    }
    c.insecure_registries = v.insecure_registries.clone();
    c.allowed_registries = v.allowed_registries.clone();
    c.allow_oci_layout = v.allow_oci_layout;
    c.boot_timeout = Duration::from_secs(v.boot_timeout_secs);
    c.start_timeout = Duration::from_secs(v.start_timeout_secs);
    c.metrics_interval = Duration::from_secs(v.metrics_interval_secs.max(1));
    c.memory_overhead_mib = v.vmm_memory_overhead_mib;
    c.relay_queue_bytes = usize::try_from(v.relay_queue_bytes).unwrap_or(usize::MAX);
    c.extra_boot_args = v.extra_boot_args.clone();
    c.vmm_args = default_vmm_args(&v.vmm_log_level);
    c.vmm_args.extend(v.vmm_args.iter().cloned());
    c.validate()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use hostagent::image::AllowRegistry;

    #[derive(Debug, clap::Parser)]
    struct T {
        #[command(flatten)]
        vm: VmArgs,
    }

    fn ids(args: &[&str]) -> Result<JailIds, clap::Error> {
        let t = T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))?;
        Ok(jail_ids(&t.vm))
    }

    #[test]
    fn jail_ids_come_from_the_range_or_the_deprecated_shared_flags() {
        assert_eq!(ids(&[]).unwrap(), JailIds::default());
        assert_eq!(
            ids(&["--jail-uid-range", "100000-165535"]).unwrap(),
            JailIds::Range {
                first: 100_000,
                last: 165_535
            }
        );
        assert_eq!(
            ids(&["--jail-uid-range=5000+10"]).unwrap(),
            JailIds::Range {
                first: 5000,
                last: 5009
            }
        );
        let shared = |uid, gid| JailIds::Shared(JailId { uid, gid });
        assert_eq!(ids(&["--jail-uid", "7"]).unwrap(), shared(7, 10_000));
        assert_eq!(
            ids(&["--jail-uid", "7", "--jail-gid", "8"]).unwrap(),
            shared(7, 8)
        );
        assert_eq!(ids(&["--jail-gid", "8"]).unwrap(), shared(10_000, 8));
        let e = ids(&["--jail-uid-range", "1-9", "--jail-uid", "7"]).unwrap_err();
        assert!(e.to_string().contains("cannot be used with"), "{e}");
        let e = ids(&["--jail-uid-range", "0-9"]).unwrap_err();
        assert!(e.to_string().contains("FIRST-LAST"), "{e}");
    }

    #[test]
    fn image_source_flags() {
        let t = T::try_parse_from(["t"]).unwrap();
        assert!(t.vm.allowed_registries.is_empty() && !t.vm.allow_oci_layout);
        let t = T::try_parse_from([
            "t",
            "--allow-registry",
            "10.0.2.2:5000",
            "--allow-registry=public",
            "--allow-oci-layout",
        ])
        .unwrap();
        assert_eq!(
            t.vm.allowed_registries,
            vec![
                AllowRegistry::Host {
                    host: "10.0.2.2".into(),
                    port: Some(5000)
                },
                AllowRegistry::Public
            ]
        );
        assert!(t.vm.allow_oci_layout);
        let e = T::try_parse_from(["t", "--allow-registry", "10.0.0.0/40"]).unwrap_err();
        assert!(e.to_string().contains("--allow-registry"), "{e}");
    }
}
