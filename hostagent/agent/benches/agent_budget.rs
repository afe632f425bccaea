//! Agent memory and CPU per task (`cargo bench -p hostagent --bench agent_budget`, or
//! `hostagent/agent/bench/agent-budget.sh`): prints figures, asserts nothing.
//!
//! In-process, the real agent core (`Agent`, its event pump, the bounded task-event
//! queue, the task registry on disk) with a fake runtime behind `TaskRuntime` that
//! costs what the microVM runtime costs the agent per running task: one blocking
//! reader thread parked on a socket (the guest reader) and one tokio task ticking
//! every second (the supervisor). The channel is a consumer that serialises every
//! outgoing message to JSON, as the WebSocket channel does.
//!
//! 1. 1,000 idle tasks: RSS before/after, per task; CPU over 10 s idle, per task.
//! 2. 100 of them flood logs (200-byte lines as fast as each task's ingest gate with
//!    the default budgets admits) for 10 s: peak RSS, CPU, lines shipped/dropped.

use agent_proto::{AgentMessage, ContainerState, ControlMessage, NetworkSpec, Status, TaskSpec};
use hostagent::host::agent::Agent;
use hostagent::host::budget::{Admit, Budgets, IngestGate, Kind};
use hostagent::host::config::Capacity;
use hostagent::host::runtime::{
    task_events, LaunchFailure, Launched, LogStream, TaskEvent, TaskEvents, TaskRuntime,
};
use hostagent::host::store::TaskStore;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IDLE_TASKS: usize = 1000;
const FLOOD_TASKS: usize = 100;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of this process.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we pass; RUSAGE_SELF is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Costs what a microVM task costs the agent: a parked reader thread and a 1 s ticker.
struct IdleRuntime {
    guests: Mutex<Vec<UnixStream>>,
}

#[derive(Debug, thiserror::Error)]
#[error("no")]
struct No;

impl TaskRuntime for IdleRuntime {
    type AdoptError = No;

    async fn launch(&self, spec: &TaskSpec) -> Result<Launched, LaunchFailure> {
        let (a, b) = UnixStream::pair().map_err(|e| LaunchFailure {
            step: "bench".into(),
            reason: e.to_string(),
        })?;
        std::thread::spawn(move || {
            let mut a = a;
            let _ = std::io::Read::read(&mut a, &mut [0u8; 64]);
        });
        self.guests.lock().unwrap().push(b);
        tokio::spawn(async {
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
            }
        });
        Ok(Launched {
            private_ipv4_address: Some("10.0.0.2".into()),
            containers: vec![ContainerState {
                name: spec.containers[0].name.clone(),
                last_status: Status::Running,
                exit_code: None,
                reason: None,
            }],
        })
    }

    async fn adopt(&self, _: &TaskSpec) -> Result<Launched, No> {
        Err(No)
    }

    async fn stop(&self, _: &TaskSpec, _: &str) -> Vec<ContainerState> {
        vec![]
    }
}

fn spec(i: usize) -> TaskSpec {
    let mut options = std::collections::BTreeMap::new();
    options.insert("awslogs-group".to_string(), "/ecs/bench".to_string());
    options.insert("awslogs-stream-prefix".to_string(), "b".to_string());
    TaskSpec {
        task_arn: format!("arn:aws:ecs:us-east-1:111122223333:task/bench/{i:032x}"),
        account_id: "111122223333".into(),
        task_definition_arn: "arn:aws:ecs:us-east-1:111122223333:task-definition/b:1".into(),
        cpu: 256,
        memory: 512,
        containers: vec![agent_proto::ContainerSpec {
            name: "web".into(),
            image: "127.0.0.1:5000/busybox:v1".into(),
            essential: true,
            log_configuration: Some(agent_proto::LogConfiguration {
                log_driver: "awslogs".into(),
                options,
            }),
            ..Default::default()
        }],
        network: NetworkSpec {
            subnets: vec!["subnet-1".into()],
            security_groups: vec![],
            assign_public_ip: false,
        },
        volumes: vec![],
    }
}

/// A task's guest reader flooding logs through its ingest gate.
fn flood(events: TaskEvents, arn: String, stop: Arc<AtomicBool>, budgets: Budgets) {
    let mut gate = IngestGate::new(&budgets, Instant::now());
    let line = "L".repeat(200);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match gate.admit(Kind::Log(line.len()), Instant::now()) {
            Admit::Now => {}
            Admit::Wait(d) => {
                std::thread::sleep(d);
                continue;
            }
            Admit::Stop(_) => return,
        }
        i += 1;
        let _ = events.send(TaskEvent::Log {
            task_arn: arn.clone(),
            container: "web".into(),
            stream: LogStream::Stdout,
            timestamp_ms: 1_700_000_000_000 + i,
            line: line.clone(),
        });
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let budgets = Budgets::default();
        let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<AgentMessage>();
        let (ev_tx, ev_rx) = task_events(&budgets);
        let agent = Agent::new(
            TaskStore::open(dir.path()).expect("store"),
            IdleRuntime {
                guests: Mutex::new(vec![]),
            },
            Capacity {
                cpu: 1 << 20,
                memory: 1 << 24,
                max_enis: 100_000,
            },
            out_tx,
        );
        tokio::spawn(agent.clone().pump_events(ev_rx));
        let (shipped, bytes_out) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        {
            let (agent, shipped, bytes_out) = (agent.clone(), shipped.clone(), bytes_out.clone());
            tokio::spawn(async move {
                while let Some(m) = out_rx.recv().await {
                    agent.taken(&m);
                    if let AgentMessage::Logs { lines, .. } = &m {
                        shipped.fetch_add(lines.len() as u64, Ordering::Relaxed);
                    }
                    let text = serde_json::to_string(&m).unwrap_or_default();
                    bytes_out.fetch_add(text.len() as u64, Ordering::Relaxed);
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss0 = rss_kib();
        let t = Instant::now();
        for i in 0..IDLE_TASKS {
            agent.handle(ControlMessage::LaunchTask { task: spec(i) });
        }
        while agent.active_tasks().len() < IDLE_TASKS {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "launched {IDLE_TASKS} tasks in {:.1} s (2 registry writes each)",
            t.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss1 = rss_kib();
        let (c0, w0) = (cpu_secs(), Instant::now());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (cpu, wall) = (cpu_secs() - c0, w0.elapsed().as_secs_f64());
        println!(
            "idle: {IDLE_TASKS} tasks: RSS {rss0} KiB -> {rss1} KiB = {:.1} KiB per task (target < 200)",
            (rss1.saturating_sub(rss0)) as f64 / IDLE_TASKS as f64
        );
        println!(
            "idle: CPU {:.3} % of one core for {IDLE_TASKS} tasks = {:.5} % per task",
            100.0 * cpu / wall,
            100.0 * cpu / wall / IDLE_TASKS as f64
        );

        // The log flood.
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = vec![];
        for i in 0..FLOOD_TASKS {
            let (ev, arn, stop, b) = (ev_tx.clone(), spec(i).task_arn, stop.clone(), budgets.clone());
            threads.push(std::thread::spawn(move || flood(ev, arn, stop, b)));
        }
        let (c0, w0, s0, b0) = (
            cpu_secs(),
            Instant::now(),
            shipped.load(Ordering::Relaxed),
            bytes_out.load(Ordering::Relaxed),
        );
        let mut peak = 0;
        while w0.elapsed() < Duration::from_secs(10) {
            peak = peak.max(rss_kib());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let (cpu, wall) = (cpu_secs() - c0, w0.elapsed().as_secs_f64());
        for t in threads {
            let _ = t.join();
        }
        let lines = shipped.load(Ordering::Relaxed) - s0;
        println!(
            "log flood: {FLOOD_TASKS} tasks x 200-byte lines for {wall:.1} s: peak RSS {peak} KiB (+{} KiB over idle, {:.1} KiB per flooding task)",
            peak.saturating_sub(rss1),
            peak.saturating_sub(rss1) as f64 / FLOOD_TASKS as f64
        );
        println!(
            "log flood: CPU {:.1} % of one core ({:.2} % per flooding task); {lines} lines shipped ({:.0}/s), {:.1} MiB/s of channel JSON, {} lines dropped",
            100.0 * cpu / wall,
            100.0 * cpu / wall / FLOOD_TASKS as f64,
            lines as f64 / wall,
            (bytes_out.load(Ordering::Relaxed) - b0) as f64 / wall / 1048576.0,
            agent.logs_dropped()
        );
        drop(ev_tx);
    });
}
