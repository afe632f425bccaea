//! Command-line flags (Firecracker-compatible where they overlap).

use clap::Parser;
use std::path::PathBuf;

/// A KVM microVM monitor with the Firecracker API.
#[derive(Debug, Parser)]
#[command(name = "vmm", version, about)]
pub struct Cli {
    /// Unix socket the API listens on (must not exist yet).
    #[arg(long, value_name = "PATH", default_value = "/run/vmm.socket")]
    pub api_sock: PathBuf,

    /// Serve no API (requires --config-file).
    #[arg(long, requires = "config_file")]
    pub no_api: bool,

    /// Firecracker config file: configure and start the microVM from it.
    #[arg(long, value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Instance id, reported by GET /.
    #[arg(long, default_value = "anonymous-instance")]
    pub id: String,

    /// Log level: Error, Warning, Info, Debug, Trace or Off.
    #[arg(long, default_value = "Warning")]
    pub level: String,

    /// Log to this file or named pipe instead of stderr.
    #[arg(long, value_name = "PATH")]
    pub log_path: Option<PathBuf>,

    /// Write metrics as JSON lines to this file or named pipe.
    #[arg(long, value_name = "PATH")]
    pub metrics_path: Option<PathBuf>,

    /// Seconds between periodic metrics lines.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub metrics_interval: u64,

    /// Send the guest's serial console to this file or named pipe instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub serial_out: Option<PathBuf>,

    /// At most this many bytes of the guest's serial console are written (then a notice
    /// line; the rest is dropped and counted in the metrics). Default: no limit.
    #[arg(long, value_name = "BYTES")]
    pub serial_out_limit: Option<u64>,

    /// At most this many bytes of log are written (then a notice line; the rest is
    /// dropped and counted in the metrics). Default: no limit.
    #[arg(long, value_name = "BYTES")]
    pub log_limit: Option<u64>,

    /// Do not feed stdin to the guest's serial console.
    #[arg(long)]
    pub no_serial_input: bool,

    /// Accepted for compatibility: the boot-timer device is always present.
    #[arg(long)]
    pub boot_timer: bool,

    /// Accepted for compatibility (Firecracker's log decorations).
    #[arg(long)]
    pub show_level: bool,

    /// Accepted for compatibility (Firecracker's log decorations).
    #[arg(long)]
    pub show_log_origin: bool,

    /// Accepted for compatibility (set by a jailer); ignored.
    #[arg(long, value_name = "US")]
    pub start_time_us: Option<u64>,

    /// Accepted for compatibility (set by a jailer); ignored.
    #[arg(long, value_name = "US")]
    pub start_time_cpu_us: Option<u64>,

    /// Accepted for compatibility (set by a jailer); ignored.
    #[arg(long, value_name = "US")]
    pub parent_cpu_time_us: Option<u64>,

    /// Do not install seccomp filters (default: built-in filters per thread; a syscall
    /// outside them ends the vmm with status 159, naming the syscall on stderr).
    #[arg(long)]
    pub no_seccomp: bool,

    /// seccomp filters from a seccompiler JSON file with filters "api", "vmm" and "vcpu".
    #[arg(long, value_name = "PATH", conflicts_with = "no_seccomp")]
    pub seccomp_filter: Option<PathBuf>,

    /// Largest API request body in bytes; a larger one is answered 413 and the connection
    /// closes (Firecracker's flag and default).
    #[arg(long, value_name = "BYTES", default_value_t = crate::api::http::DEFAULT_MAX_PAYLOAD)]
    pub http_api_max_payload_size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firecracker_style_flags() {
        let c = Cli::try_parse_from([
            "vmm",
            "--api-sock",
            "/tmp/a.sock",
            "--id",
            "vm1",
            "--level",
            "Info",
            "--boot-timer",
            "--metrics-path",
            "/tmp/m",
        ])
        .unwrap();
        assert_eq!(c.api_sock, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.id, "vm1");
        assert!(c.boot_timer && !c.no_api);
        assert_eq!(c.http_api_max_payload_size, 51_200);
        assert!(Cli::try_parse_from(["vmm", "--no-api"]).is_err());
        let c = Cli::try_parse_from(["vmm", "--no-api", "--config-file", "vm.json"]).unwrap();
        assert!(c.no_api);
    }
}
