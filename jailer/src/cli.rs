//! Command line, with the flags Firecracker's jailer users know.

use std::path::PathBuf;

use clap::Parser;

/// Default base directory of the jails (same as Firecracker's jailer).
pub const DEFAULT_CHROOT_BASE: &str = "/srv/jailer";

/// Starts one vmm confined: its own root, mount/pid/net namespaces, cgroups, rlimits,
/// an unprivileged uid/gid and no capabilities.
#[derive(Debug, Parser)]
#[command(name = "jailer", version, about)]
pub struct Cli {
    /// Jail id: letters, digits and '-', at most 64 characters.
    #[arg(long)]
    pub id: String,

    /// The binary to run in the jail (copied in). With --cleanup: its path or name.
    #[arg(long, required_unless_present = "cleanup")]
    pub exec_file: Option<PathBuf>,

    /// User id the vmm runs as.
    #[arg(long, required_unless_present = "cleanup")]
    pub uid: Option<u32>,

    /// Group id the vmm runs as.
    #[arg(long, required_unless_present = "cleanup")]
    pub gid: Option<u32>,

    /// Base directory of the jails: the jail is <base>/<exec-name>/<id>/root.
    #[arg(long, default_value = DEFAULT_CHROOT_BASE)]
    pub chroot_base_dir: PathBuf,

    /// Network namespace to join (a path such as /var/run/netns/NAME).
    #[arg(long)]
    pub netns: Option<PathBuf>,

    /// Cgroup version: 1 (controllers mounted separately) or 2 (unified hierarchy).
    /// Default 1; with --cleanup the default is both.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub cgroup_version: Option<u8>,

    /// A cgroup file and the value written to it, e.g. cpu.max="25000 100000" (repeatable).
    #[arg(long = "cgroup", value_name = "FILE=VALUE")]
    pub cgroups: Vec<String>,

    /// Parent cgroup of the jail's cgroup (default: the exec file's name).
    #[arg(long)]
    pub parent_cgroup: Option<String>,

    /// A resource limit: fsize=BYTES or no-file=N (repeatable; no-file defaults to 2048).
    #[arg(long = "resource-limit", value_name = "RESOURCE=VALUE")]
    pub resource_limits: Vec<String>,

    /// Detach: new session, stdio to /dev/null; the jailer exits once the vmm runs.
    #[arg(long)]
    pub daemonize: bool,

    /// Run the vmm as pid 1 of a new PID namespace.
    #[arg(long)]
    pub new_pid_ns: bool,

    /// Enter the jail by moving its mount over / and chroot instead of pivot_root
    /// (automatic when / is an initramfs, which pivot_root refuses).
    #[arg(long)]
    pub no_pivot: bool,

    /// Remove the jail directory and cgroups of --id (after its vmm exited).
    #[arg(long, conflicts_with_all = ["uid", "gid", "netns", "cgroups", "resource_limits", "daemonize", "new_pid_ns", "no_pivot"])]
    pub cleanup: bool,

    /// Arguments passed to the vmm (after `--`).
    #[arg(last = true, value_name = "VMM_ARGS")]
    pub vmm_args: Vec<String>,
}
