//! The container runtime: runs a validated task's containers and reports on them.
//! All paths come from [`RuntimeConfig`], so the same code runs as the VM's PID 1 and in
//! tests on a host (directories instead of block devices, a private mount namespace).
//!
//! Modules, each using only those listed below it:
//! - [`supervisor`]: the task's state machine (dependsOn, essential exits, stop, reports).
//! - [`health`]: a container's health checks, each run through a shim in exec mode.
//! - [`spawn`]: starts a shim and reads its status line.
//! - [`shim`]: the `__shim` process: namespaces, the container's root, user, exec.
//! - [`user`]: `user` resolved against the image's passwd and group files.
//! - [`cgroup`]: the task's and containers' cgroups (v2).
//! - [`logs`]: container output as log messages, line by line.

pub mod cgroup;
pub mod health;
pub mod logs;
pub mod shim;
pub mod spawn;
pub mod supervisor;
pub mod user;

use std::path::PathBuf;

use guest_proto::HostMessage;

/// Where the runtime keeps things.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Per-container state: `<state_dir>/<name>/{lower,upper,work,rootfs,*.json}`. Must be a
    /// file system overlayfs accepts as upper (tmpfs, ext4).
    pub state_dir: PathBuf,
    /// Task volumes: `<volumes_dir>/<volume name>`.
    pub volumes_dir: PathBuf,
    /// cgroup2 directory under which the task's cgroup is made; `None`: no cgroups.
    pub cgroup_root: Option<PathBuf>,
    /// The binary that runs `__shim` (this program: `/proc/self/exe`).
    pub shim_exe: PathBuf,
    /// Hostname containers get when neither they nor the task name one.
    pub default_hostname: String,
    /// Files written into each container's /etc (resolv.conf, hosts).
    pub etc_files: Vec<(String, String)>,
}

/// What the supervisor reacts to.
#[derive(Debug)]
pub enum Event {
    Host(HostMessage),
    /// The control channel broke: the task is stopped.
    HostGone(String),
    Exited {
        name: String,
        code: Option<i32>,
    },
    Health {
        name: String,
        ok: bool,
        output: String,
    },
}
