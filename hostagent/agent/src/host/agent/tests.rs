//! Unit tests of the agent core (a fake runtime behind `TaskRuntime` for the RUNNING paths).
use super::*;
use crate::host::budget::Budgets;
use crate::host::outbox::dropped_marker;
use crate::host::runtime::{
    task_events, Launched, TaskEvent, UnavailableRuntime, UNAVAILABLE_REASON,
};
use crate::host::store::tests::spec;
use std::time::Duration;

/// A runtime that "runs" every task (unit tests only).
struct FakeRuntime;
impl TaskRuntime for FakeRuntime {
    async fn launch(&self, _: &TaskSpec) -> Result<Launched, LaunchFailure> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(Launched {
            private_ipv4_address: Some("10.0.0.9".into()),
            containers: vec![],
        })
    }
    type AdoptError = std::convert::Infallible;

    async fn adopt(&self, _: &TaskSpec) -> Result<Launched, Self::AdoptError> {
        Ok(Launched {
            private_ipv4_address: Some("10.0.0.9".into()),
            containers: vec![],
        })
    }
    async fn stop(&self, _: &TaskSpec, _: &str) -> Vec<ContainerState> {
        vec![]
    }
}

/// A host's state directory; agents over it (a second one is the agent restarted).
struct Host {
    dir: tempfile::TempDir,
}

/// An agent and its outgoing queue (what the channel would take).
type Started<R> = (Arc<Agent<R>>, mpsc::UnboundedReceiver<AgentMessage>);

impl Host {
    fn new() -> Host {
        Host {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// An agent over this host's registry with `runtime` and room for `max_enis` tasks.
    fn agent<R: TaskRuntime>(&self, runtime: R, max_enis: u32) -> Started<R> {
        let (tx, rx) = mpsc::unbounded_channel();
        let capacity = Capacity {
            cpu: 1024,
            memory: 2048,
            max_enis,
        };
        let a = Agent::new(
            TaskStore::open(self.dir.path()).unwrap(),
            runtime,
            capacity,
            tx,
        );
        (a, rx)
    }
}

/// Launches `task` and waits for its PENDING and RUNNING reports.
async fn launch_running<R: TaskRuntime>(
    a: &Arc<Agent<R>>,
    rx: &mut mpsc::UnboundedReceiver<AgentMessage>,
    task: TaskSpec,
) {
    a.handle(ControlMessage::LaunchTask { task });
    assert_eq!(next(rx).await.1, Status::Pending);
    assert_eq!(next(rx).await.1, Status::Running);
}

fn launch(arn: &str) -> ControlMessage {
    ControlMessage::LaunchTask { task: spec(arn) }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<AgentMessage>) -> (String, Status, Option<String>) {
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(AgentMessage::TaskStateChange {
            task_arn,
            last_status,
            stopped_reason,
            ..
        })) => (task_arn, last_status, stopped_reason),
        other => panic!("expected a report, got {other:?}"),
    }
}

#[tokio::test]
async fn unavailable_runtime_reports_pending_then_stopped_and_resends_on_relaunch() {
    let host = Host::new();
    let (a, mut rx) = host.agent(UnavailableRuntime, 4);
    a.handle(launch("arn:t1"));
    assert_eq!(
        next(&mut rx).await,
        ("arn:t1".into(), Status::Pending, None)
    );
    let why = format!("launch: {UNAVAILABLE_REASON}");
    assert_eq!(
        next(&mut rx).await,
        ("arn:t1".into(), Status::Stopped, Some(why.clone()))
    );
    assert!(a.is_idle());
    // the control plane re-sends the launch after a reconnect: same answer, no relaunch
    a.handle(launch("arn:t1"));
    assert_eq!(
        next(&mut rx).await,
        ("arn:t1".into(), Status::Stopped, Some(why))
    );
    assert!(rx.try_recv().is_err());
    // a stop for a task never seen is answered STOPPED
    a.handle(ControlMessage::StopTask {
        task_arn: "arn:zz".into(),
        reason: "r".into(),
    });
    assert_eq!(
        next(&mut rx).await,
        ("arn:zz".into(), Status::Stopped, Some("r".into()))
    );
}

#[tokio::test]
async fn running_task_stops_and_draining_refuses_launches() {
    let host = Host::new();
    let (a, mut rx) = host.agent(FakeRuntime, 1);
    a.handle(launch("arn:t1"));
    assert_eq!(next(&mut rx).await.1, Status::Pending);
    // a stop during the launch is applied once it is up
    a.handle(ControlMessage::StopTask {
        task_arn: "arn:t1".into(),
        reason: "bye".into(),
    });
    assert_eq!(next(&mut rx).await.1, Status::Running);
    assert_eq!(next(&mut rx).await.1, Status::Deprovisioning);
    assert_eq!(
        next(&mut rx).await,
        ("arn:t1".into(), Status::Stopped, Some("bye".into()))
    );
    a.handle(launch("arn:t2"));
    assert_eq!(next(&mut rx).await.1, Status::Pending);
    assert_eq!(next(&mut rx).await.1, Status::Running);
    assert_eq!(a.active_tasks(), vec!["arn:t2".to_string()]);
    assert!(!a.is_idle());
    // max-enis 1: a second task is refused
    a.handle(launch("arn:t3"));
    let (_, s, r) = next(&mut rx).await;
    assert_eq!(s, Status::Stopped);
    assert!(r.unwrap().contains("no free ENI"), "");
    a.start_draining();
    a.handle(launch("arn:t4"));
    assert_eq!(
        next(&mut rx).await,
        (
            "arn:t4".into(),
            Status::Stopped,
            Some(DRAINING_REASON.into())
        )
    );
    // a restarted agent over the same state dir still knows t2 runs
    let (b, mut rx2) = host.agent(FakeRuntime, 1);
    b.recover().await;
    assert_eq!(
        next(&mut rx2).await,
        ("arn:t2".into(), Status::Running, None)
    );
    assert_eq!(
        b.heartbeat(),
        AgentMessage::Heartbeat {
            running_tasks: vec!["arn:t2".into()]
        }
    );
}

#[tokio::test]
async fn restart_with_no_runtime_reports_unfinished_tasks_stopped() {
    let host = Host::new();
    let (a, mut rx) = host.agent(FakeRuntime, 4);
    launch_running(&a, &mut rx, spec("arn:t1")).await;
    // the agent restarts with a runtime that cannot adopt the task
    let (b, mut rx) = host.agent(UnavailableRuntime, 4);
    b.recover().await;
    let why = format!("agent restart: {UNAVAILABLE_REASON}");
    assert_eq!(
        next(&mut rx).await,
        ("arn:t1".into(), Status::Stopped, Some(why))
    );
    assert!(b.is_idle());
}

fn logged_spec(arn: &str) -> TaskSpec {
    let mut s = spec(arn);
    let mut options = std::collections::BTreeMap::new();
    options.insert("awslogs-group".to_string(), "/ecs/web".to_string());
    options.insert("awslogs-stream-prefix".to_string(), "app".to_string());
    s.containers = vec![
        agent_proto::ContainerSpec {
            name: "web".into(),
            essential: true,
            log_configuration: Some(agent_proto::LogConfiguration {
                log_driver: "awslogs".into(),
                options,
            }),
            ..Default::default()
        },
        agent_proto::ContainerSpec {
            name: "side".into(),
            ..Default::default()
        },
    ];
    s
}

/// The next message, taken from the queue as the channel does.
async fn take(
    a: &Agent<FakeRuntime>,
    rx: &mut mpsc::UnboundedReceiver<AgentMessage>,
) -> AgentMessage {
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(m)) => {
            a.taken(&m);
            m
        }
        other => panic!("expected a message, got {other:?}"),
    }
}

fn log_event(arn: &str, container: &str, i: u64) -> TaskEvent {
    TaskEvent::Log {
        task_arn: arn.into(),
        container: container.into(),
        stream: agent_proto::LogStream::Stdout,
        timestamp_ms: 1_700_000_000_000 + i,
        line: format!("line {i}"),
    }
}

fn state(name: &str, status: Status, code: Option<i32>) -> ContainerState {
    ContainerState {
        name: name.into(),
        last_status: status,
        exit_code: code,
        reason: None,
    }
}

#[tokio::test]
async fn runtime_events_become_reports_log_batches_and_metrics() {
    let host = Host::new();
    let (a, mut rx) = host.agent(FakeRuntime, 4);
    launch_running(&a, &mut rx, logged_spec("arn:t1")).await;
    let (ev, evrx) = task_events(&Budgets::default());
    let pump = tokio::spawn(a.clone().pump_events(evrx));

    // A non-essential container exits: recorded and reported with its exit code.
    ev.send(TaskEvent::Container {
        task_arn: "arn:t1".into(),
        state: state("side", Status::Stopped, Some(3)),
    })
    .unwrap();
    match take(&a, &mut rx).await {
        AgentMessage::TaskStateChange {
            task_arn,
            last_status,
            containers,
            ..
        } => {
            assert_eq!(
                (task_arn.as_str(), last_status),
                ("arn:t1", Status::Running)
            );
            assert!(containers.contains(&state("side", Status::Stopped, Some(3))));
        }
        m => panic!("{m:?}"),
    }
    let rec = a.store.get("arn:t1").unwrap().unwrap();
    assert!(rec
        .containers
        .contains(&state("side", Status::Stopped, Some(3))));

    // Lines of the awslogs container go out in one batch, in order, within the flush
    // interval; lines of a container without awslogs and of unknown tasks do not.
    ev.send(log_event("arn:t1", "web", 1)).unwrap();
    ev.send(log_event("arn:t1", "side", 2)).unwrap();
    ev.send(log_event("arn:nope", "web", 3)).unwrap();
    ev.send(log_event("arn:t1", "web", 4)).unwrap();
    let t = std::time::Instant::now();
    let mut got = vec![];
    while got.len() < 2 {
        match take(&a, &mut rx).await {
            AgentMessage::Logs { lines, dropped } => {
                assert_eq!(dropped, 0);
                got.extend(lines);
            }
            m => panic!("{m:?}"),
        }
    }
    let texts: Vec<_> = got.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(texts, ["line 1", "line 4"]);
    assert_eq!(got[1].timestamp, 1_700_000_000_004);
    assert_eq!(got[0].container, "web");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    ev.send(TaskEvent::Metrics {
        task_arn: "arn:t1".into(),
        cpu_utilization: 12.5,
        memory_utilization: 40.0,
    })
    .unwrap();
    match take(&a, &mut rx).await {
        AgentMessage::TaskMetrics {
            task_arn,
            cpu_utilization,
            memory_utilization,
            timestamp,
        } => {
            assert_eq!(task_arn, "arn:t1");
            assert_eq!((cpu_utilization, memory_utilization), (12.5, 40.0));
            assert!(timestamp > 1_700_000_000_000);
        }
        m => panic!("{m:?}"),
    }

    // The task ends on its own: lines read before the end go first, then STOPPED
    // with the reason and exit codes, recorded in the registry.
    ev.send(log_event("arn:t1", "web", 5)).unwrap();
    let fin = vec![
        state("web", Status::Stopped, Some(1)),
        state("side", Status::Stopped, Some(3)),
    ];
    ev.send(TaskEvent::Stopped {
        task_arn: "arn:t1".into(),
        reason: "Essential container in task exited".into(),
        containers: fin.clone(),
    })
    .unwrap();
    assert!(
        matches!(take(&a, &mut rx).await, AgentMessage::Logs { lines, .. } if lines[0].line == "line 5")
    );
    match take(&a, &mut rx).await {
        AgentMessage::TaskStateChange {
            last_status,
            containers,
            stopped_reason,
            ..
        } => {
            assert_eq!(last_status, Status::Stopped);
            assert_eq!(containers, fin);
            assert_eq!(
                stopped_reason.as_deref(),
                Some("Essential container in task exited")
            );
        }
        m => panic!("{m:?}"),
    }
    assert_eq!(
        a.store.get("arn:t1").unwrap().unwrap().last_status,
        Status::Stopped
    );
    assert!(a.active_tasks().is_empty());
    // A second end report changes nothing.
    ev.send(TaskEvent::Stopped {
        task_arn: "arn:t1".into(),
        reason: "again".into(),
        containers: vec![],
    })
    .unwrap();
    drop(ev);
    pump.await.unwrap();
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn an_end_reported_during_the_launch_is_recorded_after_running() {
    let host = Host::new();
    let (a, mut rx) = host.agent(FakeRuntime, 4);
    let (ev, evrx) = task_events(&Budgets::default());
    tokio::spawn(a.clone().pump_events(evrx));
    a.handle(ControlMessage::LaunchTask {
        task: logged_spec("arn:t1"),
    });
    assert_eq!(next(&mut rx).await.1, Status::Pending);
    // FakeRuntime's launch takes 20 ms: the end arrives while it is in flight.
    ev.send(TaskEvent::Stopped {
        task_arn: "arn:t1".into(),
        reason: "vm died".into(),
        containers: vec![state("web", Status::Stopped, Some(137))],
    })
    .unwrap();
    assert_eq!(next(&mut rx).await.1, Status::Running);
    assert_eq!(
        next(&mut rx).await,
        ("arn:t1".into(), Status::Stopped, Some("vm died".into()))
    );
    assert!(a.is_idle());
}

#[tokio::test]
async fn log_memory_is_bounded_while_the_channel_is_down_and_drops_are_counted() {
    let host = Host::new();
    let (a, mut rx) = host.agent(FakeRuntime, 4);
    launch_running(&a, &mut rx, logged_spec("arn:t1")).await;
    let budgets = Budgets::default();
    let (ev, evrx) = task_events(&budgets);
    tokio::spawn(a.clone().pump_events(evrx));
    // The channel takes nothing (disconnected) while far more than the task's queue
    // budget arrives.
    let per_line = "line 99999".len() + "web".len() + crate::host::budget::LINE_OVERHEAD;
    let total = (budgets.task_log_queue_bytes / per_line
        + MAX_QUEUED_TELEMETRY * LOG_BATCH_LINES
        + 5000) as u64;
    for i in 0..total {
        ev.send(log_event("arn:t1", "web", i)).unwrap();
        if i % 500 == 499 && rx.len() < MAX_QUEUED_TELEMETRY {
            // Let the pump fill the channel's queue as lines come.
            tokio::time::sleep(LOG_FLUSH_INTERVAL + Duration::from_millis(20)).await;
        }
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        while a.logs_dropped() < 5000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("lines dropped");
    tokio::time::sleep(LOG_FLUSH_INTERVAL * 3).await;
    assert_eq!(
        rx.len(),
        MAX_QUEUED_TELEMETRY,
        "no more batches than the limit wait"
    );
    let dropped = a.logs_dropped();
    let metrics_sample = TaskEvent::Metrics {
        task_arn: "arn:t1".into(),
        cpu_utilization: 1.0,
        memory_utilization: 1.0,
    };
    ev.send(metrics_sample).unwrap();
    tokio::time::sleep(LOG_FLUSH_INTERVAL).await;
    assert_eq!(a.metrics_dropped(), 1);
    // The channel is back: everything not dropped arrives, in order, with one marker
    // line where lines were dropped, and the batches say how many lines were dropped.
    let (mut got, mut reported, mut marked, mut last, mut batches) =
        (0u64, 0u64, 0u64, None::<u64>, 0u64);
    while got + dropped < total {
        match take(&a, &mut rx).await {
            AgentMessage::Logs { lines, dropped } => {
                batches += 1;
                assert!(lines.len() <= LOG_BATCH_LINES + 1);
                reported += dropped;
                for l in lines {
                    if l.line.starts_with("[hostagent]") {
                        assert_eq!(l.line, dropped_marker(dropped));
                        marked += dropped;
                        continue;
                    }
                    let i = l.timestamp - 1_700_000_000_000;
                    assert!(last.is_none_or(|p| i > p), "in order");
                    last = Some(i);
                    got += 1;
                }
            }
            m => panic!("{m:?}"),
        }
    }
    assert_eq!(last, Some(total - 1), "the newest lines are kept");
    assert!(
        batches <= got / LOG_BATCH_LINES as u64 + 20,
        "{got} lines in {batches} batches"
    );
    assert_eq!(reported, dropped);
    assert_eq!(marked, dropped);
    assert_eq!(a.logs_dropped(), dropped);
}

#[tokio::test]
async fn a_flood_of_container_changes_costs_one_report_per_budget_tick() {
    let host = Host::new();
    let (a, mut rx) = host.agent(FakeRuntime, 4);
    launch_running(&a, &mut rx, logged_spec("arn:t1")).await;
    let budgets = Budgets {
        reports_per_sec: 2.0,
        report_burst: 1.0,
        ..Budgets::default()
    };
    let (ev, evrx) = task_events(&budgets);
    tokio::spawn(a.clone().pump_events(evrx));
    let t0 = std::time::Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_millis(2000) {
        for _ in 0..1000 {
            i += 1;
            ev.send(TaskEvent::Container {
                task_arn: "arn:t1".into(),
                state: state("side", Status::Running, Some(i)),
            })
            .unwrap();
        }
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut reports = vec![];
    while let Ok(m) = rx.try_recv() {
        a.taken(&m);
        if let AgentMessage::TaskStateChange { containers, .. } = m {
            reports.push(containers);
        }
    }
    // 2 s at 2 a second, burst 1 (+1 for the edges): at most 6 reports for 100,000s
    // of changes; the last one carries the latest state.
    assert!(
        (2..=6).contains(&reports.len()),
        "{} reports for {i} changes",
        reports.len()
    );
    let last = reports.last().unwrap();
    assert!(
        last.contains(&state("side", Status::Running, Some(i))),
        "{last:?}"
    );
    assert_eq!(
        a.store.get("arn:t1").unwrap().unwrap().containers,
        last.clone()
    );
}
