//! Command-line flags of the `hostagent` daemon and the host's capacity.

use clap::Parser;
use std::path::{Path, PathBuf};

/// `hostagent --controlplane URL --bootstrap-token T --availability-zone AZ --state-dir DIR`
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hostagent",
    version,
    about = "The host agent: registers with the control plane and runs its tasks in microVMs."
)]
pub struct Args {
    /// Control plane base URL, `https://host:port` (the channel is wss://).
    #[arg(long)]
    pub controlplane: String,
    /// CA certificate (PEM) the control plane's certificate is checked against.
    #[arg(long)]
    pub controlplane_ca: Option<PathBuf>,
    /// Allow an `http://` --controlplane URL (plain HTTP and ws://) to a loopback
    /// address: development only.
    #[arg(long)]
    pub dev_plain_http: bool,
    /// Bootstrap token (from `controlplane tokens create`) for registering: the first
    /// time, and again if the stored credential expired (not needed otherwise).
    #[arg(long, env = "HOSTAGENT_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,
    /// Availability zone of this host.
    #[arg(long)]
    pub availability_zone: String,
    /// State directory: identity, task records.
    #[arg(long, default_value = "/var/lib/hostagent")]
    pub state_dir: PathBuf,
    /// CPU units offered to tasks (default: nproc * 1024).
    #[arg(long)]
    pub cpu_units: Option<u32>,
    /// Memory in MiB offered to tasks (default: MemTotal minus the reserve).
    #[arg(long)]
    pub memory_mib: Option<u32>,
    /// Memory kept for the host itself when --memory-mib is not given.
    #[arg(long, default_value_t = 512)]
    pub reserved_memory_mib: u32,
    /// Most ENIs (so tasks) at once on this host.
    #[arg(long, default_value_t = 16)]
    pub max_enis: u32,
    /// Cell to join (the control plane picks one when absent).
    #[arg(long)]
    pub cell: Option<u32>,
    /// netd's API socket.
    #[arg(long, default_value = "/run/netd/netd.sock")]
    pub netd_socket: PathBuf,
    /// The vmm binary.
    #[arg(long)]
    pub vmm_bin: Option<PathBuf>,
    /// The jailer binary.
    #[arg(long)]
    pub jailer_bin: Option<PathBuf>,
    /// Guest kernel (vmlinux).
    #[arg(long)]
    pub guest_kernel: Option<PathBuf>,
    /// Guest init initramfs.
    #[arg(long)]
    pub guest_initramfs: Option<PathBuf>,
    /// Start draining: accept no launch, exit once no task remains.
    #[arg(long)]
    pub drain: bool,
    /// Longest delay between reconnects or retries of a refused credential, in
    /// milliseconds (delays start at 250 ms, double per failure, and are jittered).
    #[arg(long, default_value_t = 300_000)]
    pub max_backoff_ms: u64,
    /// How long the record of a STOPPED task (`<state-dir>/tasks/*.json`) is kept,
    /// in milliseconds: a launch the control plane re-sends meanwhile is answered
    /// from it. Keep it at least the control plane's --stopped-task-retention-ms.
    #[arg(long, default_value_t = 3_600_000)]
    pub task_record_retention_ms: u64,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    pub level: String,
    /// Per-task budgets against a hostile guest.
    #[command(flatten)]
    pub budgets: super::budget::BudgetArgs,
}

/// Capacity registered with the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// CPU units.
    pub cpu: u32,
    /// MiB.
    pub memory: u32,
    /// ENIs.
    pub max_enis: u32,
}

/// `MemTotal` of `/proc/meminfo` text, in MiB.
pub fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

impl Args {
    /// The capacity: flags, else derived from the host.
    pub fn capacity(&self) -> Result<Capacity, FlagError> {
        let cpu = match self.cpu_units {
            Some(c) => c,
            None => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                u32::try_from(n.saturating_mul(1024)).unwrap_or(u32::MAX)
            }
        };
        let memory = match self.memory_mib {
            Some(m) => m,
            None => {
                let text = std::fs::read_to_string("/proc/meminfo").map_err(FlagError::MemInfo)?;
                let total = mem_total_mib(&text).ok_or(FlagError::NoMemTotal)?;
                let m = total.saturating_sub(u64::from(self.reserved_memory_mib));
                u32::try_from(m).unwrap_or(u32::MAX)
            }
        };
        if cpu < 256 {
            return Err(FlagError::CpuUnits(cpu));
        }
        if memory < 512 {
            return Err(FlagError::MemoryMib(memory));
        }
        if self.max_enis == 0 {
            return Err(FlagError::MaxEnis);
        }
        Ok(Capacity {
            cpu,
            memory,
            max_enis: self.max_enis,
        })
    }

    /// Checks every flag; the first problem found.
    pub fn validate(&self) -> Result<Capacity, FlagError> {
        let u = &self.controlplane;
        let (rest, tls) = match (u.strip_prefix("https://"), u.strip_prefix("http://")) {
            (Some(r), _) => (r, true),
            (None, Some(r)) => (r, false),
            (None, None) => return Err(FlagError::NotHttp(u.clone())),
        };
        if rest.trim_end_matches('/').is_empty() || rest.trim_end_matches('/').contains('/') {
            return Err(FlagError::NotHostPort(u.clone()));
        }
        if tls && self.controlplane_ca.is_none() {
            return Err(FlagError::NoCa);
        }
        if !tls {
            let host = super::tls::host_of(self.controlplane_addr());
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !self.dev_plain_http || !loopback {
                return Err(FlagError::Plain(u.clone()));
            }
        }
        if let Some(ca) = &self.controlplane_ca {
            check_file("--controlplane-ca", ca, false)?;
        }
        if self.availability_zone.is_empty()
            || !self
                .availability_zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(FlagError::AvailabilityZone(self.availability_zone.clone()));
        }
        let files = [
            ("--vmm-bin", &self.vmm_bin, true),
            ("--jailer-bin", &self.jailer_bin, true),
            ("--guest-kernel", &self.guest_kernel, false),
            ("--guest-initramfs", &self.guest_initramfs, false),
        ];
        for (flag, p, exec) in files
            .iter()
            .filter_map(|(f, p, x)| p.as_ref().map(|p| (*f, p, *x)))
        {
            check_file(flag, p, exec)?;
        }
        self.level
            .parse::<tracing::Level>()
            .map_err(|_| FlagError::Level(self.level.clone()))?;
        self.capacity()
    }

    /// `host:port` of the control plane.
    pub fn controlplane_addr(&self) -> &str {
        let u = &self.controlplane;
        u.strip_prefix("https://")
            .or_else(|| u.strip_prefix("http://"))
            .unwrap_or(u)
            .trim_end_matches('/')
    }

    /// The TLS client configuration of an `https://` --controlplane (None for a
    /// `--dev-plain-http` one).
    pub fn controlplane_tls(
        &self,
    ) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, super::tls::TlsError> {
        match (
            &self.controlplane_ca,
            self.controlplane.starts_with("https://"),
        ) {
            (Some(ca), true) => super::tls::client_config(ca).map(Some),
            _ => Ok(None),
        }
    }
}

fn check_file(flag: &'static str, p: &Path, executable: bool) -> Result<(), FlagError> {
    use std::os::unix::fs::PermissionsExt;
    let path = || p.to_path_buf();
    let m = std::fs::metadata(p).map_err(|source| FlagError::File {
        flag,
        path: path(),
        source,
    })?;
    if !m.is_file() {
        return Err(FlagError::NotAFile { flag, path: path() });
    }
    if executable && m.permissions().mode() & 0o111 == 0 {
        return Err(FlagError::NotExecutable { flag, path: path() });
    }
    Ok(())
}

/// A flag the daemon refuses (the text names the flag).
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// `/proc/meminfo` cannot be read (no `--memory-mib`).
    #[error("/proc/meminfo: {0}")]
    MemInfo(#[source] std::io::Error),
    /// `/proc/meminfo` has no `MemTotal` line.
    #[error("/proc/meminfo: no MemTotal")]
    NoMemTotal,
    /// Fewer than 256 CPU units.
    #[error("--cpu-units {0}: a host needs at least 256 CPU units")]
    CpuUnits(u32),
    /// Less than 512 MiB for tasks.
    #[error("--memory-mib {0}: a host needs at least 512 MiB for tasks")]
    MemoryMib(u32),
    /// `--max-enis 0`.
    #[error("--max-enis must be at least 1")]
    MaxEnis,
    /// `--controlplane` is not `https://` (or `http://`).
    #[error("--controlplane {0}: must be an https:// URL")]
    NotHttp(String),
    /// `--controlplane` has a path.
    #[error("--controlplane {0}: expected https://host:port")]
    NotHostPort(String),
    /// `https://` without the CA to check the control plane with.
    #[error("--controlplane https://...: --controlplane-ca is needed to check its certificate")]
    NoCa,
    /// `http://` without `--dev-plain-http`, or to an address that is not loopback.
    #[error(
        "--controlplane {0}: plain HTTP only with --dev-plain-http and to a loopback address; \
         use https:// with --controlplane-ca"
    )]
    Plain(String),
    /// `--availability-zone` holds other characters.
    #[error("--availability-zone {0:?}: letters, digits and '-' only")]
    AvailabilityZone(String),
    /// A file flag names something that cannot be read.
    #[error("{flag} {}: {source}", path.display())]
    File {
        /// The flag.
        flag: &'static str,
        /// Its value.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file flag names a directory or device.
    #[error("{flag} {}: not a regular file", path.display())]
    NotAFile {
        /// The flag.
        flag: &'static str,
        /// Its value.
        path: PathBuf,
    },
    /// A binary flag names a file without execute permission.
    #[error("{flag} {}: not executable", path.display())]
    NotExecutable {
        /// The flag.
        flag: &'static str,
        /// Its value.
        path: PathBuf,
    },
    /// `--level` is not a tracing level.
    #[error("--level {0}: expected error, warn, info, debug or trace")]
    Level(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec![
            "hostagent",
            "--controlplane",
            "http://127.0.0.1:8080",
            "--dev-plain-http",
            "--availability-zone",
            "az-1",
        ];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn capacity_defaults_come_from_the_host() {
        let c = args(&[]).validate().unwrap();
        let n = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(c.cpu, n * 1024);
        let total = mem_total_mib(&std::fs::read_to_string("/proc/meminfo").unwrap()).unwrap();
        assert_eq!(u64::from(c.memory), total - 512);
        let c = args(&[
            "--cpu-units",
            "4096",
            "--memory-mib",
            "8192",
            "--max-enis",
            "3",
        ])
        .validate();
        assert_eq!(
            c.ok(),
            Some(Capacity {
                cpu: 4096,
                memory: 8192,
                max_enis: 3
            })
        );
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_named() {
        assert_eq!(
            mem_total_mib("MemFree: 1 kB\nMemTotal:  2097152 kB\n"),
            Some(2048)
        );
        assert_eq!(mem_total_mib("nothing"), None);
        let e = |a: &[&str]| args(a).validate().unwrap_err().to_string();
        assert!(e(&["--cpu-units", "100"]).contains("--cpu-units"));
        assert!(e(&["--memory-mib", "10"]).contains("--memory-mib"));
        assert!(e(&["--max-enis", "0"]).contains("--max-enis"));
        assert!(e(&["--vmm-bin", "/nonexistent/vmm"]).contains("--vmm-bin /nonexistent/vmm"));
        assert!(e(&["--guest-kernel", "/tmp"]).contains("not a regular file"));
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("jailer");
        std::fs::write(&plain, b"x").unwrap();
        let plain = plain.to_str().unwrap();
        assert!(e(&["--jailer-bin", plain]).contains("not executable"));
        assert!(args(&["--guest-initramfs", plain]).validate().is_ok());
        assert!(e(&["--level", "loud"]).contains("--level"));
        let mut a = args(&[]);
        a.controlplane = "ftp://x:1".into();
        assert!(a.validate().unwrap_err().to_string().contains("https://"));
        a.controlplane = "http://x:1/path".into();
        assert!(a.validate().is_err());
        a.controlplane = "http://x:1/".into();
        assert_eq!(a.controlplane_addr(), "x:1");
        // Plain HTTP: only with the flag, only to loopback.
        a.controlplane = "http://10.0.2.2:8080".into();
        assert!(a.validate().unwrap_err().to_string().contains("loopback"));
        a.controlplane = "http://[::1]:8080".into();
        assert!(a.validate().is_ok());
        a.dev_plain_http = false;
        assert!(a
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--dev-plain-http"));
        // https:// needs the CA, and the CA must be a readable file.
        a.controlplane = "https://10.0.2.2:8443".into();
        assert!(a
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--controlplane-ca"));
        a.controlplane_ca = Some("/nonexistent/ca.pem".into());
        assert!(a
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--controlplane-ca /nonexistent/ca.pem"));
        assert_eq!(a.controlplane_addr(), "10.0.2.2:8443");
        let mut a = args(&[]);
        a.availability_zone = "a z".into();
        assert!(a
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--availability-zone"));
    }
}
