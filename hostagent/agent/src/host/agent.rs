//! The agent's task side: applies the control plane's launches and stops to the task
//! registry and the [`TaskRuntime`], and queues the state reports for the channel.
//!
//! Reports are idempotent: a launch or stop the control plane re-sends (it does on
//! every reconnect) for a task the agent already knows is answered with the task's
//! current state, so a report lost with a connection is sent again.

use super::config::Capacity;
use super::runtime::{LaunchFailure, TaskRuntime};
use super::store::{TaskRecord, TaskStore};
use agent_proto::{AgentMessage, ContainerState, ControlMessage, Status, TaskSpec};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Reason given to launches refused while draining.
pub const DRAINING_REASON: &str = "launch refused: host is draining";

/// The task side of the agent.
pub struct Agent<R: TaskRuntime> {
    store: TaskStore,
    runtime: Arc<R>,
    capacity: Capacity,
    draining: AtomicBool,
    out: mpsc::UnboundedSender<AgentMessage>,
    /// Launches in progress; a stop received meanwhile is parked here.
    inflight: Mutex<HashMap<String, Option<String>>>,
    /// Stops in progress.
    stopping: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn containers_with(spec: &TaskSpec, status: Status, reason: Option<&str>) -> Vec<ContainerState> {
    spec.containers
        .iter()
        .map(|c| ContainerState {
            name: c.name.clone(),
            last_status: status,
            exit_code: None,
            reason: reason.map(str::to_string),
        })
        .collect()
}

impl<R: TaskRuntime> Agent<R> {
    /// An agent over `store`; reports go to `out`.
    pub fn new(
        store: TaskStore,
        runtime: R,
        capacity: Capacity,
        out: mpsc::UnboundedSender<AgentMessage>,
    ) -> Arc<Self> {
        Arc::new(Agent {
            store,
            runtime: Arc::new(runtime),
            capacity,
            draining: AtomicBool::new(false),
            out,
            inflight: Mutex::new(HashMap::new()),
            stopping: Mutex::new(HashSet::new()),
        })
    }

    /// Stops accepting launches (running tasks continue until stopped).
    pub fn start_draining(&self) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            tracing::info!("draining: no new launches; exiting once no task remains");
        }
    }

    /// Whether draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Tasks not yet STOPPED (the heartbeat's `runningTasks`).
    pub fn active_tasks(&self) -> Vec<String> {
        self.store.active().unwrap_or_else(|e| {
            tracing::error!("task registry: {e}");
            vec![]
        })
    }

    /// No task left and nothing in progress.
    pub fn is_idle(&self) -> bool {
        lock(&self.inflight).is_empty()
            && lock(&self.stopping).is_empty()
            && self.store.active().is_ok_and(|a| a.is_empty())
    }

    /// The heartbeat to send now.
    pub fn heartbeat(&self) -> AgentMessage {
        AgentMessage::Heartbeat {
            running_tasks: self.active_tasks(),
        }
    }

    /// Records `rec` and queues its report.
    fn commit(&self, rec: &TaskRecord) {
        if let Err(e) = self.store.put(rec) {
            tracing::error!(task = %rec.spec.task_arn, "task registry write: {e}");
        }
        tracing::info!(task = %rec.spec.task_arn, status = rec.last_status.as_str(),
            reason = rec.stopped_reason.as_deref().unwrap_or(""), "task state");
        let _ = self.out.send(rec.report());
    }

    fn stopped(&self, spec: TaskSpec, reason: String, containers: Vec<ContainerState>) {
        let rec = TaskRecord {
            spec,
            last_status: Status::Stopped,
            containers,
            stopped_reason: Some(reason),
            private_ipv4_address: None,
        };
        self.commit(&rec);
    }

    /// At start: every task the registry holds as not STOPPED is handed to the runtime
    /// to adopt; one it cannot adopt is recorded and reported STOPPED
    /// (`agent restart: <why>`). Reports are queued for the first connection.
    pub async fn recover(self: &Arc<Self>) {
        let recs = match self.store.list() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("task registry: {e}");
                return;
            }
        };
        for rec in recs
            .into_iter()
            .filter(|r| r.last_status != Status::Stopped)
        {
            match self.runtime.adopt(&rec.spec).await {
                Ok(l) => {
                    tracing::info!(task = %rec.spec.task_arn, "adopted");
                    self.commit(&TaskRecord {
                        last_status: Status::Running,
                        containers: l.containers,
                        private_ipv4_address: l.private_ipv4_address,
                        ..rec
                    });
                }
                Err(why) => {
                    let why = format!("agent restart: {why}");
                    let c = containers_with(&rec.spec, Status::Stopped, Some(&why));
                    self.stopped(rec.spec, why, c);
                }
            }
        }
    }

    /// Applies one control-plane message.
    pub fn handle(self: &Arc<Self>, msg: ControlMessage) {
        match msg {
            ControlMessage::LaunchTask { task } => self.launch(task),
            ControlMessage::StopTask { task_arn, reason } => self.stop(&task_arn, reason),
            ControlMessage::Error { message } => {
                tracing::warn!("control plane refused a message: {message}")
            }
        }
    }

    fn launch(self: &Arc<Self>, spec: TaskSpec) {
        let arn = spec.task_arn.clone();
        match self.store.get(&arn) {
            Ok(Some(rec)) => {
                // Known: answer with what we know (re-sent launch after a reconnect).
                let _ = self.out.send(rec.report());
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(task = %arn, "task registry read: {e}");
                return;
            }
        }
        if lock(&self.inflight).contains_key(&arn) {
            return;
        }
        if self.is_draining() {
            let c = containers_with(&spec, Status::Stopped, Some(DRAINING_REASON));
            return self.stopped(spec, DRAINING_REASON.into(), c);
        }
        let active = self.active_tasks().len() + lock(&self.inflight).len();
        if active >= self.capacity.max_enis as usize {
            let reason = format!(
                "launch refused: no free ENI on this host ({} of {} in use)",
                active, self.capacity.max_enis
            );
            let c = containers_with(&spec, Status::Stopped, Some(&reason));
            return self.stopped(spec, reason, c);
        }
        lock(&self.inflight).insert(arn.clone(), None);
        self.commit(&TaskRecord {
            containers: containers_with(&spec, Status::Pending, None),
            spec: spec.clone(),
            last_status: Status::Pending,
            stopped_reason: None,
            private_ipv4_address: None,
        });
        let me = self.clone();
        tokio::spawn(async move {
            let result = me.runtime.launch(&spec).await;
            let parked = lock(&me.inflight).remove(&arn).flatten();
            match result {
                Ok(l) => {
                    me.commit(&TaskRecord {
                        spec: spec.clone(),
                        last_status: Status::Running,
                        containers: l.containers,
                        stopped_reason: None,
                        private_ipv4_address: l.private_ipv4_address,
                    });
                    if let Some(reason) = parked {
                        me.stop(&arn, reason);
                    }
                }
                Err(LaunchFailure { step, reason }) => {
                    let why = format!("{step}: {reason}");
                    let c = containers_with(&spec, Status::Stopped, Some(&why));
                    me.stopped(spec, why, c);
                }
            }
        });
    }

    fn stop(self: &Arc<Self>, arn: &str, reason: String) {
        if let Some(parked) = lock(&self.inflight).get_mut(arn) {
            *parked = Some(reason);
            return;
        }
        let rec = match self.store.get(arn) {
            Ok(Some(r)) => r,
            Ok(None) => {
                // Never seen (e.g. the state dir was lost): nothing runs here.
                let _ = self.out.send(AgentMessage::TaskStateChange {
                    task_arn: arn.to_string(),
                    last_status: Status::Stopped,
                    containers: vec![],
                    stopped_reason: Some(reason),
                    private_ipv4_address: None,
                });
                return;
            }
            Err(e) => {
                tracing::error!(task = %arn, "task registry read: {e}");
                return;
            }
        };
        if rec.last_status == Status::Stopped {
            let _ = self.out.send(rec.report());
            return;
        }
        if !lock(&self.stopping).insert(arn.to_string()) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut rec = rec;
            rec.last_status = Status::Deprovisioning;
            me.commit(&rec);
            let containers = me.runtime.stop(&rec.spec, &reason).await;
            let arn = rec.spec.task_arn.clone();
            me.stopped(rec.spec, reason, containers);
            lock(&me.stopping).remove(&arn);
        });
    }
}

#[cfg(test)]
mod tests {
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

    async fn next(
        rx: &mut mpsc::UnboundedReceiver<AgentMessage>,
    ) -> (String, Status, Option<String>) {
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
}
