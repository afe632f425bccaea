//! Container logs and metrics end to end: the agent library (Agent, its event pump
//! and the real agent channel) against the real `controlplane` binary, read back
//! with the real AWS CLI (`aws logs get-log-events`, `filter-log-events`,
//! `aws ecs describe-tasks`).
//!
//! The task runtime here is a scripted one behind the `TaskRuntime` trait (the
//! microVM runtime needs KVM and a guest): it emits the `TaskEvent`s a guest's
//! containers would, through the same sender the microVM runtime uses.

mod channel_support;

use agent_proto::{ContainerState, Status, TaskSpec};
use channel_support::*;
use hostagent::host::agent::Agent;
use hostagent::host::channel::{self, ChannelConfig};
use hostagent::host::config::Capacity;
use hostagent::host::runtime::{
    LaunchFailure, Launched, LogStream, TaskEvent, TaskEvents, TaskRuntime,
};
use hostagent::host::store::TaskStore;
use serde_json::{json, Value};
use std::time::Duration;

/// Emits, for each launched task, three lines of `web` (one on stderr), one line of
/// `side` (no awslogs) and a metrics sample; a task whose `web` command is
/// `["exit", N]` then ends on its own with exit code N.
struct ScriptedRuntime {
    events: TaskEvents,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn states(spec: &TaskSpec, status: Status, code: Option<i32>) -> Vec<ContainerState> {
    spec.containers
        .iter()
        .map(|c| ContainerState {
            name: c.name.clone(),
            last_status: status,
            exit_code: code,
            reason: None,
        })
        .collect()
}

/// The only adopt answer of [`ScriptedRuntime`].
#[derive(Debug, thiserror::Error)]
#[error("not adoptable")]
struct NotAdoptable;

impl TaskRuntime for ScriptedRuntime {
    async fn launch(&self, spec: &TaskSpec) -> Result<Launched, LaunchFailure> {
        let (ev, spec2) = (self.events.clone(), spec.clone());
        tokio::spawn(async move {
            // After launch returned, as the runtime contract says.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let arn = spec2.task_arn.clone();
            let t0 = now_ms();
            let log = |c: &str, s: LogStream, i: u64, l: &str| TaskEvent::Log {
                task_arn: arn.clone(),
                container: c.into(),
                stream: s,
                timestamp_ms: t0 + i,
                line: l.into(),
            };
            let _ = ev.send(log("web", LogStream::Stdout, 0, "listening on :80"));
            let _ = ev.send(log("side", LogStream::Stdout, 1, "sidecar says hi"));
            let _ = ev.send(log("web", LogStream::Stderr, 2, "ERROR no index.html"));
            let _ = ev.send(log("web", LogStream::Stdout, 3, "GET / 404"));
            let _ = ev.send(TaskEvent::Metrics {
                task_arn: arn.clone(),
                cpu_utilization: 7.5,
                memory_utilization: 30.25,
            });
            if let Some(code) = spec2.containers[0]
                .command
                .get(1)
                .filter(|_| spec2.containers[0].command[0] == "exit")
                .and_then(|c| c.parse().ok())
            {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = ev.send(TaskEvent::Stopped {
                    task_arn: arn,
                    reason: "Essential container in task exited".into(),
                    containers: states(&spec2, Status::Stopped, Some(code)),
                });
            }
        });
        Ok(Launched {
            private_ipv4_address: Some("10.0.0.7".into()),
            containers: states(spec, Status::Running, None),
        })
    }
    type AdoptError = NotAdoptable;

    async fn adopt(&self, _: &TaskSpec) -> Result<Launched, NotAdoptable> {
        Err(NotAdoptable)
    }
    async fn stop(&self, spec: &TaskSpec, _: &str) -> Vec<ContainerState> {
        states(spec, Status::Stopped, Some(143))
    }
}

fn wait_task(cp: &ControlPlane, arn: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = cp
            .aws(
                "ecs",
                &["describe-tasks", "--cluster", "c1", "--tasks", arn],
            )
            .unwrap();
        if d["tasks"][0]["lastStatus"] == status {
            return d["tasks"][0].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{arn} not {status}: {d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_task(cp: &ControlPlane, family: &str) -> String {
    let r = cp
        .aws(
            "ecs",
            &[
                "run-task",
                "--cluster",
                "c1",
                "--task-definition",
                family,
                "--launch-type",
                "FARGATE",
                "--network-configuration",
                "awsvpcConfiguration={subnets=[subnet-0a1b2c3d],assignPublicIp=DISABLED}",
            ],
        )
        .unwrap();
    r["tasks"][0]["taskArn"].as_str().unwrap().to_string()
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_logs_and_metrics_reach_the_aws_cli_through_the_agent_channel() {
    let Some(bin) = controlplane_bin() else {
        eprintln!("SKIPPED: no controlplane binary (build it: cargo build -p controlplane, or set HOSTAGENT_TEST_CONTROLPLANE)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cp = ControlPlane::start(&bin, &addr, &tmp.path().join("cp"));

    let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
    let (ev_tx, ev_rx) =
        hostagent::host::runtime::task_events(&hostagent::host::budget::Budgets::default());
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let agent = Agent::new(
        TaskStore::open(&state).unwrap(),
        ScriptedRuntime { events: ev_tx },
        Capacity {
            cpu: 4096,
            memory: 8192,
            max_enis: 4,
        },
        out_tx,
    );
    let pump = tokio::spawn(agent.clone().pump_events(ev_rx));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = ChannelConfig {
        addr: addr.clone(),
        url: format!("http://{addr}"),
        tls: None,
        bootstrap_token: Some(TOKEN.into()),
        hostname: "logs-test".into(),
        availability_zone: "us-east-1a".into(),
        cpu: 4096,
        memory: 8192,
        cell: None,
        state_dir: state.clone(),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(1000),
    };
    let chan = tokio::spawn(channel::run(cfg, agent.clone(), out_rx, stop_rx));
    wait_for(30, "agent to connect", || cp.connected() == 1);

    cp.aws("ecs", &["create-cluster", "--cluster-name", "c1"])
        .unwrap();
    for (family, command) in [("web", json!([])), ("oneshot", json!(["exit", "3"]))] {
        let td = json!({"family": family, "cpu": "256", "memory": "512",
            "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "containerDefinitions": [
                {"name": "web", "image": "127.0.0.1:5000/busybox:v1", "essential": true,
                 "command": command,
                 "logConfiguration": {"logDriver": "awslogs", "options": {
                     "awslogs-group": "/ecs/hello", "awslogs-region": "us-east-1",
                     "awslogs-stream-prefix": family, "awslogs-create-group": "true"}}},
                {"name": "side", "image": "127.0.0.1:5000/busybox:v1", "essential": false}]});
        let f = tmp.path().join(format!("{family}.json"));
        std::fs::write(&f, td.to_string()).unwrap();
        cp.aws(
            "ecs",
            &[
                "register-task-definition",
                "--cli-input-json",
                &format!("file://{}", f.display()),
            ],
        )
        .unwrap();
    }

    // A long-running task: its lines and its metrics arrive while it runs.
    let arn = run_task(&cp, "web");
    let id = arn.rsplit('/').next().unwrap().to_string();
    wait_task(&cp, &arn, "RUNNING");
    let stream = format!("web/web/{id}");
    let get = |stream: &str| {
        cp.aws(
            "logs",
            &[
                "get-log-events",
                "--log-group-name",
                "/ecs/hello",
                "--log-stream-name",
                stream,
                "--start-from-head",
            ],
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let g = loop {
        match get(&stream) {
            Ok(g) if messages(&g).len() == 3 => break g,
            other => assert!(std::time::Instant::now() < deadline, "{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        messages(&g),
        ["listening on :80", "ERROR no index.html", "GET / 404"],
        "in order, stderr included, the sidecar (no awslogs) not"
    );
    let ts: Vec<u64> = g["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["timestamp"].as_u64().unwrap())
        .collect();
    assert!(
        ts.windows(2).all(|w| w[1] == w[0] + 1 || w[1] == w[0] + 2),
        "{ts:?}"
    );
    let t = wait_task(&cp, &arn, "RUNNING");
    let attrs = t["attributes"].to_string();
    assert!(
        attrs.contains("ecs.task.cpu-utilization") && attrs.contains("\"7.50\""),
        "{t}"
    );
    assert!(attrs.contains("\"30.25\""), "{t}");

    // A task that ends on its own: STOPPED with its exit code, and its lines kept.
    let one = run_task(&cp, "oneshot");
    let t = wait_task(&cp, &one, "STOPPED");
    assert_eq!(t["stopCode"], "EssentialContainerExited", "{t}");
    assert_eq!(t["containers"][0]["exitCode"], 3, "{t}");
    let one_stream = format!("oneshot/web/{}", one.rsplit('/').next().unwrap());
    let f = cp
        .aws(
            "logs",
            &[
                "filter-log-events",
                "--log-group-name",
                "/ecs/hello",
                "--filter-pattern",
                "ERROR",
            ],
        )
        .unwrap();
    let streams: Vec<&str> = f["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["logStreamName"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages(&f),
        ["ERROR no index.html", "ERROR no index.html"],
        "{f}"
    );
    assert!(
        streams.contains(&stream.as_str()) && streams.contains(&one_stream.as_str()),
        "{f}"
    );
    assert_eq!(agent.logs_dropped(), 0);

    // stop-task of the long-running one: exit code 143 from the runtime's stop.
    cp.aws("ecs", &["stop-task", "--cluster", "c1", "--task", &arn])
        .unwrap();
    let t = wait_task(&cp, &arn, "STOPPED");
    assert_eq!(t["containers"][0]["exitCode"], 143, "{t}");

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), chan).await;
    pump.abort();
}
