//! The agent's task side: applies the control plane's launches and stops to the task
//! registry and the [`TaskRuntime`], and queues the state reports for the channel.
//!
//! Reports are idempotent: a launch or stop the control plane re-sends (it does on
//! every reconnect) for a task the agent already knows is answered with the task's
//! current state, so a report lost with a connection is sent again.

mod events;

use super::config::Capacity;
use super::runtime::{LaunchFailure, TaskRuntime};
use super::store::{TaskRecord, TaskStore};
use crate::util::lock;
use agent_proto::{AgentMessage, ContainerState, ControlMessage, Status, TaskSpec};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Reason given to launches refused while draining.
pub const DRAINING_REASON: &str = "launch refused: host is draining";

/// Most lines in one log batch sent to the control plane.
pub const LOG_BATCH_LINES: usize = 500;
/// Most bytes of lines in one log batch.
pub const LOG_BATCH_BYTES: usize = 256 * 1024;
/// Longest a log line waits in the agent before it is handed to the channel.
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Most log batches and metrics samples handed to the channel and not yet taken by
/// it; while the channel is down they stay in the agent's bounded buffer instead.
pub const MAX_QUEUED_TELEMETRY: usize = 16;

/// Tasks whose awslogs containers the event pump remembers (then it forgets all).
const SHIPPING_CACHE_TASKS: usize = 1024;

/// A launch in progress.
#[derive(Default)]
struct Inflight {
    /// A stop received meanwhile.
    stop: Option<String>,
    /// The runtime reported the task ended before the launch was recorded.
    ended: Option<(String, Vec<ContainerState>)>,
}

/// The task side of the agent.
pub struct Agent<R: TaskRuntime> {
    store: TaskStore,
    runtime: Arc<R>,
    capacity: Capacity,
    draining: AtomicBool,
    out: mpsc::UnboundedSender<AgentMessage>,
    /// Launches in progress; a stop (or the runtime's end report) received meanwhile
    /// is parked here. Its lock also orders a launch's RUNNING record before an end.
    inflight: Mutex<HashMap<String, Inflight>>,
    /// Stops in progress.
    stopping: Mutex<HashSet<String>>,
    /// Held for every record write and every read-modify-write of a record, so that
    /// two paths (a launch ending, the events pump) never interleave on one task.
    records: Mutex<()>,
    /// Log batches and metrics handed to `out` and not yet taken by the channel.
    telemetry_queued: AtomicUsize,
    /// Log lines dropped (buffer full while the channel was down).
    logs_dropped: AtomicU64,
    /// Metrics samples dropped (too many queued while the channel was down).
    metrics_dropped: AtomicU64,
    /// Lines the runtime-to-agent queue dropped (set by the event pump).
    outbox_dropped: std::sync::OnceLock<Arc<AtomicU64>>,
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
            records: Mutex::new(()),
            telemetry_queued: AtomicUsize::new(0),
            logs_dropped: AtomicU64::new(0),
            metrics_dropped: AtomicU64::new(0),
            outbox_dropped: std::sync::OnceLock::new(),
        })
    }

    /// Removes the records of tasks STOPPED for `retention` or more; returns how many.
    /// Until then a launch the control plane re-sends is answered from the record.
    pub fn prune_records(&self, retention: Duration) -> usize {
        match self
            .store
            .prune_stopped(retention, std::time::SystemTime::now())
        {
            Ok(n) => {
                if n > 0 {
                    tracing::info!("pruned {n} records of stopped tasks");
                }
                n
            }
            Err(e) => {
                tracing::warn!("pruning task records: {e}");
                0
            }
        }
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
        let records = lock(&self.records);
        self.commit_locked(&records, rec);
    }

    /// [`Agent::commit`] for a caller that holds the records lock (it read the
    /// record it changes under it).
    fn commit_locked(&self, _records: &std::sync::MutexGuard<'_, ()>, rec: &TaskRecord) {
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

    /// The counts `GET /metrics` shows.
    pub fn stats(&self) -> crate::host::metrics::AgentStats {
        crate::host::metrics::AgentStats {
            tasks_active: self.active_tasks().len(),
            launches_in_progress: lock(&self.inflight).len(),
            stops_in_progress: lock(&self.stopping).len(),
            telemetry_queued: self.telemetry_queued.load(Ordering::Relaxed),
            logs_dropped: self.logs_dropped(),
            metrics_dropped: self.metrics_dropped(),
            outbox_dropped: self
                .outbox_dropped
                .get()
                .map(|a| a.load(Ordering::Relaxed))
                .unwrap_or(0),
            draining: self.is_draining(),
        }
    }

    /// Applies one control-plane message (timed by kind for the metrics).
    pub fn handle(self: &Arc<Self>, msg: ControlMessage) {
        let started = std::time::Instant::now();
        let kind = match &msg {
            ControlMessage::LaunchTask { .. } => "LaunchTask",
            ControlMessage::StopTask { .. } => "StopTask",
            ControlMessage::Error { .. } => "Error",
            ControlMessage::CredentialRotated { .. } => "CredentialRotated",
        };
        self.apply(msg);
        crate::host::metrics::observe_control(kind, started);
    }

    fn apply(self: &Arc<Self>, msg: ControlMessage) {
        match msg {
            ControlMessage::LaunchTask { task } => self.launch(task),
            ControlMessage::StopTask { task_arn, reason } => self.stop(&task_arn, reason),
            ControlMessage::Error { message } => {
                tracing::warn!("control plane refused a message: {message}")
            }
            // The channel keeps the credential (see `channel`); nothing for tasks.
            ControlMessage::CredentialRotated { .. } => {}
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
        lock(&self.inflight).insert(arn.clone(), Inflight::default());
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
            let mut inflight = lock(&me.inflight);
            let parked = inflight.remove(&arn).unwrap_or_default();
            match result {
                Ok(l) => {
                    me.commit(&TaskRecord {
                        spec: spec.clone(),
                        last_status: Status::Running,
                        containers: l.containers,
                        stopped_reason: None,
                        private_ipv4_address: l.private_ipv4_address,
                    });
                    drop(inflight);
                    if let Some((reason, containers)) = parked.ended {
                        me.stopped(spec, reason, containers);
                    } else if let Some(reason) = parked.stop {
                        me.stop(&arn, reason);
                    }
                }
                Err(LaunchFailure { step, reason }) => {
                    drop(inflight);
                    let why = format!("{step}: {reason}");
                    let c = containers_with(&spec, Status::Stopped, Some(&why));
                    me.stopped(spec, why, c);
                }
            }
        });
    }

    fn stop(self: &Arc<Self>, arn: &str, reason: String) {
        if let Some(parked) = lock(&self.inflight).get_mut(arn) {
            parked.stop = Some(reason);
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
mod tests;
