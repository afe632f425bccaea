//! `hostagent [flags]` (no subcommand): the agent daemon. Registers with the control
//! plane, holds the agent channel, applies launches and stops. SIGTERM: clean exit;
//! SIGUSR1: drain.

use super::vm_flags::{vm_config, RuntimeKind, VmArgs, VmPaths};
use clap::Parser;
use hostagent::host::agent::Agent;
use hostagent::host::channel::{self, ChannelConfig, Exit};
use hostagent::host::config::{Args, Capacity};

use hostagent::host::runtime::{task_events, TaskEventsRx, TaskRuntime, UnavailableRuntime};
use hostagent::host::store::TaskStore;
use hostagent::vm::MicroVmRuntime;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

// The daemon's flags: the agent's (`Args`) and the microVM runtime's (`VmArgs`). (A
// plain comment: a doc comment would become the command's long help.)
#[derive(Debug, Parser)]
#[command(
    name = "hostagent",
    version,
    about = "The host agent: registers with the control plane and runs its tasks in microVMs."
)]
pub struct DaemonCli {
    #[command(flatten)]
    args: Args,
    #[command(flatten)]
    vm: VmArgs,
    /// Serve `GET /metrics` (Prometheus text) on this TCP address, e.g.
    /// 127.0.0.1:9102 (loopback recommended: it has no authentication). Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// Runs the daemon until it is stopped (SIGTERM, interrupt) or drained; exits the
/// process with 2 on bad flags and 1 on a fatal error.
pub fn run(cli: DaemonCli) {
    let capacity = match cli.args.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hostagent: {e}");
            std::process::exit(2);
        }
    };
    let budgets = match cli.args.budgets.budgets() {
        Ok(b) => b,
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
    let metrics_listen = cli.metrics_listen;
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
                let (tx, rx) = task_events(&budgets);
                let runtime = match MicroVmRuntime::new(cfg, tx) {
                    Ok(r) => r.with_budgets(budgets),
                    Err(e) => {
                        eprintln!("hostagent: microVM runtime: {e}");
                        std::process::exit(1);
                    }
                };
                serve(args, capacity, runtime, Some(rx), metrics_listen).await
            }
            None => serve(args, capacity, UnavailableRuntime, None, metrics_listen).await,
        }
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Runs the agent with `runtime`; `events`: the runtime's task events (a queue bounded
/// by the budgets), pumped into the agent (state reports, log batches, metrics)
/// once the registry is recovered.
async fn serve<R: TaskRuntime>(
    args: Args,
    capacity: Capacity,
    runtime: R,
    events: Option<TaskEventsRx>,
    metrics_listen: Option<std::net::SocketAddr>,
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
    if let Some(addr) = metrics_listen {
        if let Err(e) = super::metrics::serve(addr, agent.clone()).await {
            eprintln!("hostagent: --metrics-listen {addr}: {e}");
            std::process::exit(1);
        }
    }
    if let Some(rx) = events {
        tokio::spawn(agent.clone().pump_events(rx));
    }
    {
        let (agent, retention) = (
            agent.clone(),
            Duration::from_millis(args.task_record_retention_ms.max(1)),
        );
        // A quarter of the retention, between 250 ms and one minute.
        let period = (retention / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                agent.prune_records(retention);
            }
        });
    }
    if args.drain {
        agent.start_draining();
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tls = match args.controlplane_tls() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("hostagent: {e}");
            std::process::exit(2);
        }
    };
    let cfg = ChannelConfig {
        addr: args.controlplane_addr().to_string(),
        tls,
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
