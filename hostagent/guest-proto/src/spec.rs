//! The task spec the host sends: the task definition resolved for this one task (image
//! config merged in: entryPoint, command, env, workingDir, user are final), plus where each
//! container's image root and the task's storage are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSpec {
    pub task_arn: String,
    /// Hostname of the VM (UTS of the task; each container also gets it unless it has its own).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Network interfaces (ENIs), configured statically (no DHCP).
    #[serde(default)]
    pub interfaces: Vec<NetInterface>,
    #[serde(default)]
    pub dns: Dns,
    /// Host wall-clock time (ms since the Unix epoch) when the spec was sent; the guest sets
    /// its clock from it (a microVM has no RTC), so log timestamps are meaningful.
    #[serde(default)]
    pub host_time_ms: Option<u64>,
    /// Hex-encoded random bytes credited to the guest's entropy pool at boot.
    #[serde(default)]
    pub entropy_seed: Option<String>,
    /// Block device holding the task's volume storage (formatted ext4 by the host); when
    /// absent volumes live on tmpfs.
    #[serde(default)]
    pub volume_device: Option<String>,
    /// Block device for the containers' writable layers (ext4); when absent, tmpfs.
    #[serde(default)]
    pub scratch_device: Option<String>,
    /// Volumes containers can share through mountPoints.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    pub containers: Vec<ContainerSpec>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetInterface {
    /// MAC address (`aa:bb:cc:dd:ee:ff`) used to find the interface; else `name`.
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Addresses in CIDR form, e.g. `10.0.1.5/24` (IPv4 or IPv6).
    pub addresses: Vec<String>,
    /// Default gateway reached through this interface.
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// Destination in CIDR form.
    pub destination: String,
    /// Next hop; absent for an on-link route.
    #[serde(default)]
    pub via: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub search: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    pub name: String,
    /// Where the image root is: a block device (mounted read-only with `rootFsType`) or, for
    /// tests outside a VM, a directory (bind-mounted read-only).
    pub root_device: String,
    #[serde(default)]
    pub root_fs_type: Option<String>,
    #[serde(default)]
    pub entry_point: Vec<String>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub working_directory: Option<String>,
    /// `uid[:gid]` numeric, or a user name (`name[:group]`) resolved from the image's
    /// /etc/passwd and /etc/group. Default root.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    #[serde(default = "yes")]
    pub essential: bool,
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    /// Seconds between SIGTERM and SIGKILL (default 30, at most 120).
    #[serde(default)]
    pub stop_timeout: Option<u32>,
    /// CPU units (1024 = 1 vCPU): the container's cgroup cpu.weight share.
    #[serde(default)]
    pub cpu: u32,
    /// Soft memory limit in MiB (cgroup memory.low).
    #[serde(default)]
    pub memory_reservation: Option<u64>,
    /// Hard memory limit in MiB (cgroup memory.max).
    #[serde(default)]
    pub memory: Option<u64>,
    /// Container hostname (default: the task's).
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub readonly_root_filesystem: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ulimit {
    /// ECS name: core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc,
    /// rss, rtprio, rttime, sigpending, stack.
    pub name: String,
    pub soft_limit: u64,
    pub hard_limit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Condition {
    Start,
    Complete,
    Success,
    Healthy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dependency {
    pub container_name: String,
    pub condition: Condition,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// `["CMD", exe, args...]` or `["CMD-SHELL", "shell command"]`.
    pub command: Vec<String>,
    /// Seconds between checks (5..=300, default 30).
    #[serde(default)]
    pub interval: Option<u32>,
    /// Seconds a check may take (2..=60, default 5).
    #[serde(default)]
    pub timeout: Option<u32>,
    /// Consecutive failures before UNHEALTHY (1..=10, default 3).
    #[serde(default)]
    pub retries: Option<u32>,
    /// Grace seconds after start during which failures do not count (0..=300, default 0).
    #[serde(default)]
    pub start_period: Option<u32>,
}

impl HealthCheck {
    pub fn interval_secs(&self) -> u32 {
        self.interval.unwrap_or(30)
    }
    pub fn timeout_secs(&self) -> u32 {
        self.timeout.unwrap_or(5)
    }
    pub fn retries_count(&self) -> u32 {
        self.retries.unwrap_or(3)
    }
    pub fn start_period_secs(&self) -> u32 {
        self.start_period.unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountPoint {
    pub source_volume: String,
    pub container_path: String,
    #[serde(default)]
    pub read_only: bool,
}

/// Default seconds between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT_SECS: u32 = 30;
/// Grace for a Spot interruption.
pub const SPOT_STOP_TIMEOUT_SECS: u32 = 120;
/// Largest stopTimeout ECS accepts.
pub const MAX_STOP_TIMEOUT_SECS: u32 = 120;
/// Most containers in one task.
pub const MAX_CONTAINERS: usize = 10;
