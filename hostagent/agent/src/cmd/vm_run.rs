//! `hostagent vm-run`: launches one task with the microVM runtime, without a control
//! plane (for trying a host out and measuring): prints the launch result and every
//! event as JSON lines, stops the task after `--run-secs` unless it ended before.

use super::vm_flags::{vm_config, VmArgs, VmPaths};
use hostagent::host::runtime::{LaunchFailure, TaskEvent, TaskRuntime};
use hostagent::vm::MicroVmRuntime;
use std::path::PathBuf;
use std::time::Duration;

/// `hostagent vm-run --task task.json [--run-secs N] [--adopt] --vmm-bin ... [microVM
/// runtime flags]`.
#[derive(Debug, clap::Args)]
pub struct VmRunCli {
    /// The task (agent-proto `TaskSpec` JSON, as the control plane sends it).
    #[arg(long)]
    task: PathBuf,
    /// Stop the task after this many seconds.
    #[arg(long, default_value_t = 10)]
    run_secs: u64,
    /// Re-adopt the task (after an earlier `vm-run` was killed) instead of launching it.
    #[arg(long)]
    adopt: bool,
    /// State directory (task state, image cache).
    #[arg(long, default_value = "/var/lib/hostagent")]
    state_dir: PathBuf,
    /// netd's API socket.
    #[arg(long, default_value = "/run/netd/netd.sock")]
    netd_socket: PathBuf,
    /// The vmm binary.
    #[arg(long)]
    vmm_bin: PathBuf,
    /// The jailer binary.
    #[arg(long)]
    jailer_bin: PathBuf,
    /// Guest kernel (vmlinux).
    #[arg(long)]
    guest_kernel: PathBuf,
    /// Guest init initramfs.
    #[arg(long)]
    guest_initramfs: PathBuf,
    #[command(flatten)]
    vm: VmArgs,
}

/// Runs `vm-run` on its own tokio runtime; the process exit code.
pub fn run(cli: VmRunCli) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
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
    }
}

/// A `--task` file that cannot be used.
#[derive(Debug, thiserror::Error)]
enum TaskFileError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Parse(#[from] serde_json::Error),
}

fn read_task(path: &std::path::Path) -> Result<agent_proto::TaskSpec, TaskFileError> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
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
    let spec = match read_task(&cli.task) {
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
    let (tx, mut rx) =
        hostagent::host::runtime::task_events(&hostagent::host::budget::Budgets::default());
    let rt = match MicroVmRuntime::new(cfg, tx) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hostagent vm-run: {e}");
            return 1;
        }
    };
    let t0 = std::time::Instant::now();
    let launched = if cli.adopt {
        rt.adopt(&spec).await.map_err(|e| LaunchFailure {
            step: "adopt".into(),
            reason: e.to_string(),
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
    while let Some(ev) = rx.try_recv() {
        json_line(event_json(&ev));
    }
    json_line(
        serde_json::json!({"stop": "done", "ms": t1.elapsed().as_millis(), "containers": finals}),
    );
    0
}
