//! Unit tests of the agent core (a fake runtime behind `TaskRuntime` for the RUNNING paths).
use super::*;
use crate::host::runtime::{Launched, UnavailableRuntime, UNAVAILABLE_REASON};
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
    async fn adopt(&self, _: &TaskSpec) -> Result<Launched, String> {
        Ok(Launched {
            private_ipv4_address: Some("10.0.0.9".into()),
            containers: vec![],
        })
    }
    async fn stop(&self, _: &TaskSpec, _: &str) -> Vec<ContainerState> {
        vec![]
    }
}

fn cap(n: u32) -> Capacity {
    Capacity {
        cpu: 1024,
        memory: 2048,
        max_enis: n,
    }
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
    let tmp = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = Agent::new(
        TaskStore::open(tmp.path()).unwrap(),
        UnavailableRuntime,
        cap(4),
        tx,
    );
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
    let tmp = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = Agent::new(
        TaskStore::open(tmp.path()).unwrap(),
        FakeRuntime,
        cap(1),
        tx,
    );
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
    let (tx2, mut rx2) = mpsc::unbounded_channel();
    let b = Agent::new(
        TaskStore::open(tmp.path()).unwrap(),
        FakeRuntime,
        cap(1),
        tx2,
    );
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
    let tmp = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = Agent::new(
        TaskStore::open(tmp.path()).unwrap(),
        FakeRuntime,
        cap(4),
        tx,
    );
    a.handle(launch("arn:t1"));
    assert_eq!(next(&mut rx).await.1, Status::Pending);
    assert_eq!(next(&mut rx).await.1, Status::Running);
    // the agent restarts with a runtime that cannot adopt the task
    let (tx, mut rx) = mpsc::unbounded_channel();
    let b = Agent::new(
        TaskStore::open(tmp.path()).unwrap(),
        UnavailableRuntime,
        cap(4),
        tx,
    );
    b.recover().await;
    let why = format!("agent restart: {UNAVAILABLE_REASON}");
    assert_eq!(
        next(&mut rx).await,
        ("arn:t1".into(), Status::Stopped, Some(why))
    );
    assert!(b.is_idle());
}
