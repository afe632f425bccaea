//! PID 1 inside every task microVM: runs the task's containers.
//!
//! - As PID 1 (or `guest-init boot`): mounts, connects to the host over vsock, receives the
//!   task, configures the guest, runs the containers, reports, powers off.
//! - `guest-init run ...`: the same session on a host, with paths given as flags (tests).
//! - `guest-init __shim CONFIG`: internal, the per-container shim.
//!
//! Module map (each module uses only those listed below it):
//! - [`session`]: one task session on a connection: handshake, receive and validate the
//!   task, set the guest up through the [`session::Host`] hooks (defined in this file for
//!   the VM and for `run`), run it, report the end.
//! - [`runtime`]: the container runtime: the task's state machine, health checks, the shim
//!   that builds each container's root and execs it, users, cgroups, log lines.
//! - [`control`]: the guest's end of the control channel: endpoint, connect with retries.
//! - [`net`]: the task's network over rtnetlink, resolv.conf and hosts.
//! - [`boot`]: PID 1 duties: leaving the initramfs, early mounts, clock, entropy, task
//!   storage, boot marker, power-off.
//! - [`clock`]: the wall clock for message timestamps.

mod boot;
mod clock;
mod control;
mod net;
mod runtime;
mod session;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use control::Endpoint;
use guest_proto::validate::parse_hex;
use guest_proto::{SpecError, TaskSpec, CONTROL_PORT, HOST_CID};
use runtime::RuntimeConfig;
use session::{Host, Outcome};

#[derive(Parser)]
#[command(
    name = "guest-init",
    about = "PID 1 of a task microVM: runs the task's containers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot as the VM's init (what PID 1 does without arguments).
    Boot {
        /// Control endpoint: vsock:CID:PORT or unix:PATH.
        #[arg(long, default_value_t = format!("vsock:{HOST_CID}:{CONTROL_PORT}"))]
        connect: String,
        /// Do not write the boot-timer device through /dev/mem (outside a VM: never poke
        /// host physical memory).
        #[arg(long)]
        no_boot_marker: bool,
    },
    /// Run one task session outside a VM (tests): paths instead of devices.
    Run {
        /// Control endpoint: vsock:CID:PORT or unix:PATH.
        #[arg(long)]
        connect: String,
        /// Per-container state (upper/work layers); must suit overlayfs (see --tmpfs-state).
        #[arg(long)]
        state_dir: PathBuf,
        /// Mount a tmpfs on --state-dir first (only inside a private mount namespace).
        #[arg(long)]
        tmpfs_state: bool,
        /// Volume directories (default: <state-dir>/volumes).
        #[arg(long)]
        volumes_dir: Option<PathBuf>,
        /// cgroup2 directory under which the task cgroup is created (default: none).
        #[arg(long)]
        cgroup_root: Option<PathBuf>,
        /// Configure the spec's network interfaces (only inside a private network namespace).
        #[arg(long)]
        configure_network: bool,
        /// Binary that runs `__shim` (default: this one).
        #[arg(long)]
        shim_exe: Option<PathBuf>,
    },
}

fn self_exe() -> PathBuf {
    std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}

/// Why the guest could not be set up for the task; the session sends the text to the host
/// after "setting up the guest: ".
#[derive(Debug, thiserror::Error)]
enum PrepareError {
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("sethostname: {0}")]
    Hostname(#[source] nix::Error),
    /// The spec's entropy seed is not hex.
    #[error(transparent)]
    EntropySeed(#[from] SpecError),
    #[error("{path}: {source}")]
    WriteEtc {
        path: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("volume {}: {source}", path.display())]
    Volume {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn write_etc(path: &'static str, content: &str) -> Result<(), PrepareError> {
    std::fs::write(path, content).map_err(|source| PrepareError::WriteEtc { path, source })
}

/// The VM's guest-wide setup.
struct Vm {
    boot_marker: bool,
}

impl Host for Vm {
    type Error = PrepareError;

    fn prepare(&mut self, task: &TaskSpec, cfg: &mut RuntimeConfig) -> Result<(), PrepareError> {
        if let Some(ms) = task.host_time_ms {
            boot::set_clock(ms)?;
        }
        let hostname = task.hostname.clone().unwrap_or_else(|| "localhost".into());
        nix::unistd::sethostname(&hostname).map_err(PrepareError::Hostname)?;
        cfg.default_hostname = hostname.clone();
        if let Some(s) = &task.entropy_seed {
            boot::seed_entropy(&parse_hex(s)?)?;
        }
        net::configure(&task.interfaces)?;
        let resolv = net::resolv_conf(&task.dns);
        let hosts = net::hosts(&hostname);
        let _ = std::fs::create_dir_all("/etc");
        write_etc("/etc/resolv.conf", &resolv)?;
        write_etc("/etc/hosts", &hosts)?;
        cfg.etc_files = vec![
            ("resolv.conf".into(), resolv),
            ("hosts".into(), hosts),
            ("hostname".into(), format!("{hostname}\n")),
        ];
        boot::mount_storage(task.scratch_device.as_deref(), &cfg.state_dir)?;
        boot::mount_storage(task.volume_device.as_deref(), &cfg.volumes_dir)?;
        make_volumes(task, cfg)
    }

    fn first_container_started(&mut self) -> Box<dyn FnOnce()> {
        if self.boot_marker {
            Box::new(boot::boot_marker)
        } else {
            Box::new(|| {})
        }
    }
}

fn make_volumes(task: &TaskSpec, cfg: &RuntimeConfig) -> Result<(), PrepareError> {
    for v in &task.volumes {
        let path = cfg.volumes_dir.join(&v.name);
        if let Err(source) = std::fs::create_dir_all(&path) {
            return Err(PrepareError::Volume { path, source });
        }
    }
    Ok(())
}

/// Host-side (test) setup: only what the flags allow.
struct Local {
    configure_network: bool,
}

impl Host for Local {
    type Error = PrepareError;

    fn prepare(&mut self, task: &TaskSpec, cfg: &mut RuntimeConfig) -> Result<(), PrepareError> {
        if self.configure_network {
            net::configure(&task.interfaces)?;
        }
        if !task.dns.nameservers.is_empty() {
            cfg.etc_files
                .push(("resolv.conf".into(), net::resolv_conf(&task.dns)));
        }
        make_volumes(task, cfg)
    }

    fn first_container_started(&mut self) -> Box<dyn FnOnce()> {
        Box::new(|| {})
    }
}

/// PID 1: never returns.
fn boot_main(connect: &str, boot_marker: bool) -> ! {
    std::panic::set_hook(Box::new(|p| {
        eprintln!("guest-init: panic: {p}");
        boot::power_off();
    }));
    let mounted = boot::leave_initramfs().and_then(|()| boot::early_mounts());
    boot::ensure_stdio();
    if let Err(e) = mounted {
        eprintln!("guest-init: {e}");
        boot::power_off();
    }
    let outcome = match connect.parse::<Endpoint>() {
        Err(e) => Outcome::Failed(e.to_string()),
        Ok(ep) => match control::connect_retry(&ep, Duration::from_secs(10)) {
            Err(e) => Outcome::Failed(format!("connecting to the host at {connect}: {e}")),
            Ok(conn) => {
                let cfg = RuntimeConfig {
                    state_dir: "/run/containers".into(),
                    volumes_dir: "/run/volumes".into(),
                    cgroup_root: Some("/sys/fs/cgroup".into()),
                    shim_exe: self_exe(),
                    default_hostname: "localhost".into(),
                    etc_files: vec![],
                };
                session::run(conn, cfg, &mut Vm { boot_marker })
            }
        },
    };
    eprintln!("guest-init: {outcome:?}; powering off");
    boot::power_off();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__shim") {
        let Some(cfg) = args.get(2) else {
            return ExitCode::from(127);
        };
        return ExitCode::from(runtime::shim::main(std::path::Path::new(cfg)).clamp(0, 255) as u8);
    }
    // The kernel passes unknown command-line words to init: as PID 1, anything but an
    // explicit `boot` subcommand means "boot the VM with the defaults".
    if std::process::id() == 1 && args.get(1).map(String::as_str) != Some("boot") {
        boot_main(&format!("vsock:{HOST_CID}:{CONTROL_PORT}"), true);
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Boot {
            connect,
            no_boot_marker,
        } => {
            // It mounts over /proc, /dev, /run, /tmp...: never in someone else's namespaces.
            if std::process::id() != 1 {
                eprintln!("guest-init: boot must run as PID 1 (in the VM, or in a new PID and mount namespace)");
                return ExitCode::from(2);
            }
            boot_main(&connect, !no_boot_marker)
        }
        Cmd::Run {
            connect,
            state_dir,
            tmpfs_state,
            volumes_dir,
            cgroup_root,
            configure_network,
            shim_exe,
        } => {
            let ep: Endpoint = match connect.parse() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("guest-init: {e}");
                    return ExitCode::from(2);
                }
            };
            if tmpfs_state {
                if let Err(e) = boot::mount_storage(None, &state_dir) {
                    eprintln!("guest-init: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let cfg = RuntimeConfig {
                volumes_dir: volumes_dir.unwrap_or_else(|| state_dir.join("volumes")),
                state_dir,
                cgroup_root,
                shim_exe: shim_exe.unwrap_or_else(self_exe),
                default_hostname: "localhost".into(),
                etc_files: vec![],
            };
            let conn = match control::connect_retry(&ep, Duration::from_secs(5)) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("guest-init: connecting to {connect}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match session::run(conn, cfg, &mut Local { configure_network }) {
                Outcome::Stopped(r) => {
                    eprintln!("guest-init: task stopped: {r}");
                    ExitCode::SUCCESS
                }
                Outcome::Failed(e) => {
                    eprintln!("guest-init: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
