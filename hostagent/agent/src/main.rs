//! `hostagent`: the host agent daemon. Registers with the control plane, holds the
//! agent channel, applies launches and stops. SIGTERM: clean exit; SIGUSR1: drain.
//!
//! `hostagent vm-relay ...` (started by the agent itself, one per task) is the
//! guest-channel relay of the microVM runtime (see `hostagent::vm::relay`).

use clap::Parser;
use hostagent::host::agent::Agent;
use hostagent::host::channel::{self, ChannelConfig, Exit};
use hostagent::host::config::{Args, Capacity};
use hostagent::host::runtime::{LaunchFailure, TaskEvent, TaskRuntime, UnavailableRuntime};
use hostagent::host::store::TaskStore;
use hostagent::vm::{relay, MicroVmRuntime, VmRuntimeConfig};
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedReceiver;

/// Which runtime runs the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeKind {
    /// Every task in its own jailed microVM (netd + jailer + vmm + guest init).
    Microvm,
    /// No runtime: every launch is answered STOPPED, honestly.
    Unavailable,
}

/// Flags of the microVM runtime (besides `--netd-socket`, `--vmm-bin`, `--jailer-bin`,
/// `--guest-kernel`, `--guest-initramfs`).
#[derive(Debug, Clone, clap::Args)]
struct VmArgs {
    /// Task runtime.
    #[arg(long, value_enum, default_value = "unavailable")]
    runtime: RuntimeKind,
    /// Jailer chroot base (`jailer --chroot-base-dir`).
    #[arg(long, default_value = "/srv/jailer")]
    chroot_base: PathBuf,
    /// uid of the jailed vmm processes.
    #[arg(long, default_value_t = 10_000)]
    jail_uid: u32,
    /// gid of the jailed vmm processes.
    #[arg(long, default_value_t = 10_000)]
    jail_gid: u32,
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

#[derive(Debug, Parser)]
#[command(
    name = "hostagent",
    version,
    about = "The host agent: registers with the control plane and runs its tasks in microVMs."
)]
struct Cli {
    #[command(flatten)]
    args: Args,
    #[command(flatten)]
    vm: VmArgs,
}

/// `hostagent vm-relay`.
#[derive(Debug, Parser)]
#[command(name = "hostagent vm-relay")]
struct RelayCli {
    #[arg(long)]
    guest_socket: PathBuf,
    #[arg(long)]
    agent_socket: PathBuf,
    #[arg(long)]
    uid: u32,
    #[arg(long)]
    gid: u32,
    #[arg(long)]
    boot_timeout_ms: u64,
}

/// `hostagent vm-run`: launches one task with the microVM runtime, without a control
/// plane (for trying a host out and measuring): prints the launch result and every
/// event as JSON lines, stops the task after `--run-secs` unless it ended before.
#[derive(Debug, Parser)]
#[command(name = "hostagent vm-run")]
struct VmRunCli {
    /// The task (agent-proto `TaskSpec` JSON, as the control plane sends it).
    #[arg(long)]
    task: PathBuf,
    /// Stop the task after this many seconds.
    #[arg(long, default_value_t = 10)]
    run_secs: u64,
    /// Re-adopt the task (after an earlier `vm-run` was killed) instead of launching it.
    #[arg(long)]
    adopt: bool,
    #[arg(long, default_value = "/var/lib/hostagent")]
    state_dir: PathBuf,
    #[arg(long, default_value = "/run/netd/netd.sock")]
    netd_socket: PathBuf,
    #[arg(long)]
    vmm_bin: PathBuf,
    #[arg(long)]
    jailer_bin: PathBuf,
    #[arg(long)]
    guest_kernel: PathBuf,
    #[arg(long)]
    guest_initramfs: PathBuf,
    #[command(flatten)]
    vm: VmArgs,
}

fn json_line(v: serde_json::Value) {
    println!("{v}");
}

fn event_json(ev: &TaskEvent) -> serde_json::Value {
    match ev {
        TaskEvent::Container { state, .. } => {
            serde_json::json!({"event": "container", "state": state})
        }
        TaskEvent::Stopped {
            reason, containers, ..
        } => {
            serde_json::json!({"event": "stopped", "reason": reason, "containers": containers})
        }
        TaskEvent::Log {
            container,
            stream,
            line,
            ..
        } => {
            serde_json::json!({"event": "log", "container": container, "stream": stream, "line": line})
        }
        TaskEvent::Metrics {
            cpu_utilization,
            memory_utilization,
            ..
        } => serde_json::json!({
            "event": "metrics", "cpu": cpu_utilization, "memory": memory_utilization}),
    }
}

async fn vm_run(cli: VmRunCli) -> i32 {
    let spec: agent_proto::TaskSpec = match std::fs::read(&cli.task)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hostagent vm-run: --task {}: {e}", cli.task.display());
            return 2;
        }
    };
    let paths = VmPaths {
        kernel: Some(cli.guest_kernel),
        initramfs: Some(cli.guest_initramfs),
        jailer: Some(cli.jailer_bin),
        vmm: Some(cli.vmm_bin),
        state_dir: cli.state_dir,
        netd_socket: cli.netd_socket,
    };
    let cfg = match vm_config(paths, &cli.vm) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hostagent vm-run: {e}");
            return 2;
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = match MicroVmRuntime::new(cfg, tx) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hostagent vm-run: {e}");
            return 1;
        }
    };
    let t0 = std::time::Instant::now();
    let launched = if cli.adopt {
        rt.adopt(&spec).await.map_err(|reason| LaunchFailure {
            step: "adopt".into(),
            reason,
        })
    } else {
        rt.launch(&spec).await
    };
    let ms = t0.elapsed().as_millis();
    let launched = match launched {
        Ok(l) => l,
        Err(f) => {
            json_line(
                serde_json::json!({"launch": "failed", "ms": ms, "step": f.step, "reason": f.reason}),
            );
            return 1;
        }
    };
    json_line(serde_json::json!({"launch": "running", "ms": ms,
        "privateIpv4Address": launched.private_ipv4_address, "containers": launched.containers}));
    let deadline = tokio::time::sleep(Duration::from_secs(cli.run_secs));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    let stopped = matches!(ev, TaskEvent::Stopped { .. });
                    json_line(event_json(&ev));
                    if stopped {
                        return 0;
                    }
                }
                None => return 1,
            },
            _ = &mut deadline => break,
        }
    }
    let t1 = std::time::Instant::now();
    let finals = rt.stop(&spec, "vm-run: --run-secs elapsed").await;
    while let Ok(ev) = rx.try_recv() {
        json_line(event_json(&ev));
    }
    json_line(
        serde_json::json!({"stop": "done", "ms": t1.elapsed().as_millis(), "containers": finals}),
    );
    0
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn required(p: &Option<PathBuf>, flag: &str) -> Result<PathBuf, String> {
    p.clone()
        .ok_or_else(|| format!("--runtime microvm needs {flag}"))
}

/// The paths the microVM runtime needs (from the daemon's flags or `vm-run`'s).
struct VmPaths {
    kernel: Option<PathBuf>,
    initramfs: Option<PathBuf>,
    jailer: Option<PathBuf>,
    vmm: Option<PathBuf>,
    state_dir: PathBuf,
    netd_socket: PathBuf,
}

impl VmPaths {
    fn of(a: &Args) -> VmPaths {
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

fn vm_config(p: VmPaths, v: &VmArgs) -> Result<VmRuntimeConfig, String> {
    let mut c = VmRuntimeConfig::new(
        required(&p.kernel, "--guest-kernel")?,
        required(&p.initramfs, "--guest-initramfs")?,
        required(&p.jailer, "--jailer-bin")?,
        required(&p.vmm, "--vmm-bin")?,
        p.state_dir,
    );
    c.netd_socket = p.netd_socket;
    c.chroot_base = v.chroot_base.clone();
    c.uid = v.jail_uid;
    c.gid = v.jail_gid;
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
    c.boot_timeout = Duration::from_secs(v.boot_timeout_secs);
    c.start_timeout = Duration::from_secs(v.start_timeout_secs);
    c.metrics_interval = Duration::from_secs(v.metrics_interval_secs.max(1));
    c.memory_overhead_mib = v.vmm_memory_overhead_mib;
    c.extra_boot_args = v.extra_boot_args.clone();
    c.vmm_args = hostagent::vm::config::default_vmm_args(&v.vmm_log_level);
    c.vmm_args.extend(v.vmm_args.iter().cloned());
    c.validate()?;
    Ok(c)
}

fn relay_main() -> ! {
    let cli = RelayCli::parse_from(std::env::args().skip(1));
    let r = relay::run(&relay::RelayArgs {
        guest_socket: cli.guest_socket,
        agent_socket: cli.agent_socket,
        owner: (cli.uid, cli.gid),
        boot_timeout: Duration::from_millis(cli.boot_timeout_ms),
    });
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("vm-relay: {e}");
            std::process::exit(1)
        }
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("vm-relay") {
        relay_main();
    }
    if std::env::args().nth(1).as_deref() == Some("vm-run") {
        let cli = VmRunCli::parse_from(std::env::args().skip(1));
        let code = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::INFO)
                    .with_writer(std::io::stderr)
                    .init();
                rt.block_on(vm_run(cli))
            }
            Err(e) => {
                eprintln!("hostagent: tokio: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    let cli = Cli::parse();
    let capacity = match cli.args.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hostagent: {e}");
            std::process::exit(2);
        }
    };
    let vm = match cli.vm.runtime {
        RuntimeKind::Microvm => match vm_config(VmPaths::of(&cli.args), &cli.vm) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("hostagent: {e}");
                std::process::exit(2);
            }
        },
        RuntimeKind::Unavailable => None,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hostagent: tokio: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let args = cli.args;
        let level = args.level.parse().unwrap_or(tracing::Level::INFO);
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
        match vm {
            Some(cfg) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let runtime = match MicroVmRuntime::new(cfg, tx) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("hostagent: microVM runtime: {e}");
                        std::process::exit(1);
                    }
                };
                serve(args, capacity, runtime, Some(rx)).await
            }
            None => serve(args, capacity, UnavailableRuntime, None).await,
        }
    })
}

/// Runs the agent with `runtime`; `events`: the runtime's [`TaskEvent`]s, pumped into
/// the agent (state reports, log batches, metrics) once the registry is recovered.
async fn serve<R: TaskRuntime>(
    args: Args,
    capacity: Capacity,
    runtime: R,
    events: Option<UnboundedReceiver<TaskEvent>>,
) {
    if let Err(e) = std::fs::create_dir_all(&args.state_dir) {
        eprintln!("hostagent: --state-dir {}: {e}", args.state_dir.display());
        std::process::exit(1);
    }
    let store = match TaskStore::open(&args.state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "hostagent: task registry in {}: {e}",
                args.state_dir.display()
            );
            std::process::exit(1);
        }
    };
    let (mut term, mut usr1) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::user_defined1()),
    ) {
        (Ok(t), Ok(u)) => (t, u),
        _ => {
            eprintln!("hostagent: cannot install signal handlers");
            std::process::exit(1);
        }
    };
    tracing::info!(cpu = capacity.cpu, memory = capacity.memory, max_enis = capacity.max_enis,
        az = %args.availability_zone, "hostagent starting");
    let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
    let agent = Agent::new(store, runtime, capacity, out_tx);
    agent.recover().await;
    if let Some(rx) = events {
        tokio::spawn(agent.clone().pump_events(rx));
    }
    if args.drain {
        agent.start_draining();
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = ChannelConfig {
        addr: args.controlplane_addr().to_string(),
        url: args.controlplane.clone(),
        bootstrap_token: args.bootstrap_token.clone(),
        hostname: hostname(),
        availability_zone: args.availability_zone.clone(),
        cpu: capacity.cpu,
        memory: capacity.memory,
        cell: args.cell,
        state_dir: args.state_dir.clone(),
        min_backoff: Duration::from_millis(250),
        max_backoff: Duration::from_millis(args.max_backoff_ms.max(250)),
    };
    let mut run = tokio::spawn(channel::run(cfg, agent.clone(), out_rx, stop_rx));
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = term.recv() => {
                tracing::info!("SIGTERM: shutting down");
                let _ = stop_tx.send(true);
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupt: shutting down");
                let _ = stop_tx.send(true);
            }
            _ = usr1.recv() => agent.start_draining(),
        }
    };
    match result {
        Ok(Ok(Exit::Shutdown)) => tracing::info!("stopped"),
        Ok(Ok(Exit::Drained)) => tracing::info!("drained, exiting"),
        Ok(Err(e)) => {
            tracing::error!("{e}");
            eprintln!("hostagent: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("hostagent: {e}");
            std::process::exit(1);
        }
    }
}
