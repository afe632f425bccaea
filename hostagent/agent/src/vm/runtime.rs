//! `MicroVmRuntime`: the [`TaskRuntime`] that runs each task in its own jailed microVM,
//! supervises it (guest messages -> [`TaskEvent`]s, cgroup metrics, VM exit), stops it,
//! and re-adopts it after an agent restart.

use super::config::{task_id, VmRuntimeConfig};
use super::eni::Netd;
use super::guest::{self, Tracker};
use super::jail::ids::JailIdPool;
use super::launch;
use super::metrics::{utilization, CgroupFiles};
use super::relay;
use super::state::{self, TaskState};
use super::steps::{release, Shared, TaskSteps};
use crate::host::budget::{Budgets, IngestGate};
use crate::host::runtime::{LaunchFailure, Launched, TaskEvent, TaskEvents, TaskRuntime};
use crate::image::ImageStore;
use crate::util::lock;
use agent_proto::{ContainerState, Status, TaskSpec};
use guest_proto::host::GuestConnection;
use guest_proto::GuestMessage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Reason of a task whose VM ended without the guest's report.
pub const VM_EXITED: &str = "Task failed: the microVM exited unexpectedly";

/// The runtime cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The state directory cannot be created.
    #[error("{}: {source}", path.display())]
    StateDir {
        /// `VmRuntimeConfig::state_dir`.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The image cache cannot be opened.
    #[error(transparent)]
    Images(#[from] crate::image::ImageError),
}

/// Why a task could not be adopted after an agent restart (the text goes into its
/// stoppedReason).
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The state directory of this task's id holds another task.
    #[error("task state belongs to another task")]
    ForeignState,
    /// No state directory for the task.
    #[error("no microVM state for this task on this host")]
    NoState,
    /// The state file cannot be read.
    #[error("task state: {0}")]
    State(#[source] std::io::Error),
    /// The task's VM cannot be re-attached (its resources were released).
    #[error("{why}{}", last_words.as_ref().map(|w| format!(" ({w})")).unwrap_or_default())]
    Ended {
        /// What was found.
        why: Ended,
        /// The guest's stop reason, if the relay still held it.
        last_words: Option<String>,
    },
}

/// What a task that cannot be re-attached was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ended {
    /// The agent died before the launch finished.
    #[error("the launch was interrupted")]
    Interrupted,
    /// The vmm is gone.
    #[error("the microVM exited while the agent was down")]
    VmExited,
    /// The vmm runs but its relay does not answer.
    #[error("the guest channel is gone")]
    ChannelGone,
}

/// A task this runtime supervises.
struct Live {
    state: TaskState,
    tracker: Arc<Mutex<Tracker>>,
    /// For stopTask (a clone of the session's connection).
    writer: Mutex<Option<GuestConnection>>,
    stop_requested: AtomicBool,
    done: watch::Receiver<bool>,
    finals: Mutex<Option<Vec<ContainerState>>>,
}

struct Inner {
    shared: Shared,
    tasks: Mutex<HashMap<String, Arc<Live>>>,
}

/// Runs every task in a microVM: netd ENI, image devices, jailer + vmm, guest init.
#[derive(Clone)]
pub struct MicroVmRuntime {
    inner: Arc<Inner>,
}

fn stop_timeout(spec: &TaskSpec) -> Duration {
    let secs = spec
        .containers
        .iter()
        .map(|c| match c.stop_timeout_secs {
            0 => guest_proto::DEFAULT_STOP_TIMEOUT_SECS,
            s => s.min(guest_proto::MAX_STOP_TIMEOUT_SECS),
        })
        .max()
        .unwrap_or(guest_proto::DEFAULT_STOP_TIMEOUT_SECS);
    Duration::from_secs(u64::from(secs))
}

fn stopped_all(spec: &TaskSpec, reason: &str) -> Vec<ContainerState> {
    spec.containers
        .iter()
        .map(|c| ContainerState {
            name: c.name.clone(),
            last_status: Status::Stopped,
            exit_code: None,
            reason: Some(reason.to_string()),
        })
        .collect()
}

impl MicroVmRuntime {
    /// A runtime with `cfg`, reporting to `events`.
    pub fn new(cfg: VmRuntimeConfig, events: TaskEvents) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| RuntimeError::StateDir {
            path: cfg.state_dir.clone(),
            source,
        })?;
        let images = ImageStore::open(&cfg.image_cache, cfg.image_options())?;
        let netd = Netd::new(&cfg.netd_socket);
        let ids = rebuild_jail_ids(&cfg);
        Ok(MicroVmRuntime {
            inner: Arc::new(Inner {
                shared: Shared {
                    cfg,
                    images,
                    netd,
                    events,
                    ids,
                    budgets: Budgets::default(),
                },
                tasks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The same runtime with these per-task budgets (before any task runs; the
    /// default is [`Budgets::default`]).
    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.shared.budgets = budgets;
        }
        self
    }

    /// The settings.
    pub fn config(&self) -> &VmRuntimeConfig {
        &self.inner.shared.cfg
    }

    fn new_state(&self, spec: &TaskSpec) -> TaskState {
        TaskState {
            task_arn: spec.task_arn.clone(),
            task_id: task_id(&spec.task_arn),
            cpu: spec.cpu,
            memory: spec.memory,
            stop_timeout_secs: u32::try_from(stop_timeout(spec).as_secs()).unwrap_or(120),
            containers: spec.containers.iter().map(|c| c.name.clone()).collect(),
            ..Default::default()
        }
    }

    /// Registers a running task and starts its supervisor.
    fn supervise(&self, st: TaskState, conn: GuestConnection, tracker: Tracker) {
        let (done_tx, done_rx) = watch::channel(false);
        let writer = conn.try_clone().ok();
        let live = Arc::new(Live {
            state: st,
            tracker: Arc::new(Mutex::new(tracker)),
            writer: Mutex::new(writer),
            stop_requested: AtomicBool::new(false),
            done: done_rx,
            finals: Mutex::new(None),
        });
        lock(&self.inner.tasks).insert(live.state.task_arn.clone(), live.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            supervise(&inner, &live, conn).await;
            lock(&inner.tasks).remove(&live.state.task_arn);
            let _ = done_tx.send(true);
        });
    }
}

/// The jail id pool with the ids of every task state on disk held (an agent restart:
/// those tasks are re-adopted or released, and give their ids back then).
fn rebuild_jail_ids(cfg: &VmRuntimeConfig) -> JailIdPool {
    let pool = JailIdPool::new(cfg.jail_ids);
    for st in state::load_all(&cfg.state_dir) {
        match st {
            Ok(st) => {
                if let Some(id) = st.jail_id {
                    pool.hold(&st.task_id, id);
                }
            }
            // Its id is unknown: the host process check still keeps it from reuse
            // while anything runs with it.
            Err((dir, e)) => tracing::warn!("{}: unreadable task state: {e}", dir.display()),
        }
    }
    pool
}

/// Forwards the guest's messages, samples metrics, notices the VM's end; then releases
/// the task and (unless the agent asked for the stop) emits `Stopped`.
async fn supervise(inner: &Inner, live: &Live, conn: GuestConnection) {
    let shared = &inner.shared;
    let st = &live.state;
    let (fwd_tx, mut fwd_rx) = tokio::sync::oneshot::channel::<Option<String>>();
    {
        let tracker = live.tracker.clone();
        let events = shared.events.clone();
        let mut gate = IngestGate::new(&inner.shared.budgets, Instant::now());
        std::thread::spawn(move || {
            let over = guest::forward(conn, &tracker, &events, &mut gate);
            let _ = fwd_tx.send(over);
        });
    }
    let cg = CgroupFiles::find(
        shared.cfg.cgroup_version,
        &shared.cfg.parent_cgroup,
        &st.task_id,
    );
    let mut prev = cg
        .as_ref()
        .and_then(CgroupFiles::read)
        .map(|s| (s, Instant::now()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_metrics = Instant::now();
    let mut over_budget = None;
    let vmm_died = loop {
        tokio::select! {
            r = &mut fwd_rx => {
                over_budget = r.ok().flatten();
                break false;
            }
            _ = tick.tick() => {
                if st.vmm.is_some_and(|v| !v.alive()) {
                    break true;
                }
                if last_metrics.elapsed() >= shared.cfg.metrics_interval {
                    last_metrics = Instant::now();
                    if let (Some(cg), Some((p, at))) = (&cg, prev) {
                        if let Some(now) = cg.read() {
                            let wall = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
                            let (cpu, mem) = utilization(p, now, wall, st.cpu, st.memory);
                            let _ = shared.events.send(TaskEvent::Metrics {
                                task_arn: st.task_arn.clone(),
                                cpu_utilization: cpu,
                                memory_utilization: mem,
                            });
                            prev = Some((now, Instant::now()));
                        }
                    }
                }
            }
        }
    };
    if vmm_died {
        // The relay still delivers what the guest said last.
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut fwd_rx).await;
    }
    if let Some(why) = &over_budget {
        // A guest over its budget is not asked: its VM is killed.
        tracing::warn!(task = %st.task_arn, "{why}; killing the VM");
        if let Some(v) = st.vmm {
            v.signal(libc::SIGKILL);
        }
    }
    // A guest that broke its channel (or said it failed) without taskStopped is not
    // waited for.
    let broken = {
        let t = lock(&live.tracker);
        t.stopped.is_none() && t.fatal.is_some()
    };
    if let Some(v) = st.vmm {
        // After taskStopped the guest resets the VM, which ends the vmm.
        let grace = if broken || over_budget.is_some() {
            Duration::ZERO
        } else {
            Duration::from_secs(10)
        };
        if !v.wait_gone(grace).await {
            v.kill_and_wait(Duration::from_secs(5)).await;
        }
    }
    let (reason, finals) = {
        let t = lock(&live.tracker);
        match (&over_budget, &t.stopped) {
            (Some(why), _) => (why.clone(), t.final_states(why)),
            (None, Some((r, f))) => (r.clone(), f.clone()),
            (None, None) => match &t.fatal {
                Some(f) => {
                    let why = format!("Task failed: {f}");
                    let finals = t.final_states(&why);
                    (why, finals)
                }
                None => (VM_EXITED.to_string(), t.final_states(VM_EXITED)),
            },
        }
    };
    for p in release(shared, st).await {
        tracing::warn!(task = %st.task_arn, "release: {p}");
    }
    *lock(&live.finals) = Some(finals.clone());
    if !live.stop_requested.load(Ordering::SeqCst) {
        tracing::info!(task = %st.task_arn, %reason, "task ended on its own");
        let _ = shared.events.send(TaskEvent::Stopped {
            task_arn: st.task_arn.clone(),
            reason,
            containers: finals,
        });
    }
}

impl TaskRuntime for MicroVmRuntime {
    type AdoptError = AdoptError;

    async fn launch(&self, spec: &TaskSpec) -> Result<Launched, LaunchFailure> {
        if spec.containers.is_empty() {
            return Err(LaunchFailure {
                step: "launch".into(),
                reason: "the task has no container".into(),
            });
        }
        let st = self.new_state(spec);
        let steps = TaskSteps {
            shared: &self.inner.shared,
            spec,
        };
        let running = launch::launch(&steps, st).await?;
        let ms = |name: &str| {
            running
                .phases
                .iter()
                .find(|p| p.0 == name)
                .map_or(0, |p| p.1.as_millis())
        };
        tracing::info!(task = %spec.task_arn, devices_ms = ms("devices"), eni_ms = ms("eni"),
            jail_ms = ms("jail"), boot_and_start_ms = ms("guest"), "launch phases");
        let (conn, tracker) = running.session;
        let launched = Launched {
            private_ipv4_address: running.state.eni_ip.clone(),
            containers: tracker.states().to_vec(),
        };
        // The jailer is our child: tokio reaps it once it ends.
        drop(running.vm.jailer);
        self.supervise(running.state, conn, tracker);
        Ok(launched)
    }

    async fn adopt(&self, spec: &TaskSpec) -> Result<Launched, AdoptError> {
        let shared = &self.inner.shared;
        let dir = shared.cfg.task_dir(&task_id(&spec.task_arn));
        let st = match state::load(&dir) {
            Ok(Some(st)) if st.task_arn == spec.task_arn => st,
            Ok(Some(_)) => return Err(AdoptError::ForeignState),
            Ok(None) => return Err(AdoptError::NoState),
            Err(e) => return Err(AdoptError::State(e)),
        };
        let vmm_alive = st.vmm.is_some_and(|v| v.alive());
        let relay_alive = st.relay.is_some_and(|r| r.alive());
        let socket = st.relay_socket.clone();
        if st.running && vmm_alive && relay_alive {
            if let Some(sock) = socket {
                let names = st.containers.clone();
                let arn = st.task_arn.clone();
                let r = tokio::task::spawn_blocking(move || {
                    relay::connect(&sock, Duration::from_secs(5))
                })
                .await;
                match r {
                    Ok(Ok(conn)) => {
                        let tracker = Tracker::new(&arn, &names, Status::Running);
                        let launched = Launched {
                            private_ipv4_address: st.eni_ip.clone(),
                            containers: tracker.states().to_vec(),
                        };
                        tracing::info!(task = %arn, "re-attached to the running microVM");
                        self.supervise(st, conn, tracker);
                        return Ok(launched);
                    }
                    Ok(Err(e)) => tracing::warn!(task = %arn, "relay: {e}"),
                    Err(e) => tracing::warn!(task = %arn, "relay: {e}"),
                }
            }
        }
        // Not adoptable: collect the guest's last words if the relay still holds them.
        let why = if !st.running {
            Ended::Interrupted
        } else if !vmm_alive {
            Ended::VmExited
        } else {
            Ended::ChannelGone
        };
        let mut last = None;
        if relay_alive {
            if let Some(sock) = st.relay_socket.clone() {
                last = tokio::task::spawn_blocking(move || last_words(&sock))
                    .await
                    .ok()
                    .flatten();
            }
        }
        for p in release(shared, &st).await {
            tracing::warn!(task = %st.task_arn, "release: {p}");
        }
        Err(AdoptError::Ended {
            why,
            last_words: last,
        })
    }

    async fn stop(&self, spec: &TaskSpec, reason: &str) -> Vec<ContainerState> {
        let live = lock(&self.inner.tasks).get(&spec.task_arn).cloned();
        let Some(live) = live else {
            // Not supervised here: release whatever a state file says exists.
            let dir = self.inner.shared.cfg.task_dir(&task_id(&spec.task_arn));
            if let Ok(Some(st)) = state::load(&dir) {
                release(&self.inner.shared, &st).await;
            }
            return stopped_all(spec, reason);
        };
        live.stop_requested.store(true, Ordering::SeqCst);
        let writer = lock(&live.writer).take();
        if let Some(mut w) = writer {
            let reason = reason.to_string();
            let sent = tokio::task::spawn_blocking(move || w.stop_task(&reason, false)).await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::warn!(task = %spec.task_arn, "stopTask not delivered; killing the VM");
                if let Some(v) = live.state.vmm {
                    v.signal(libc::SIGKILL);
                }
            }
        }
        let mut done = live.done.clone();
        let grace = stop_timeout(spec) + self.inner.shared.cfg.stop_margin;
        if tokio::time::timeout(grace, done.wait_for(|d| *d))
            .await
            .is_err()
        {
            tracing::warn!(task = %spec.task_arn, "guest did not stop within {grace:?}; killing the VM");
            if let Some(v) = live.state.vmm {
                v.signal(libc::SIGKILL);
            }
            let _ = tokio::time::timeout(Duration::from_secs(60), done.wait_for(|d| *d)).await;
        }
        let finals = lock(&live.finals).clone();
        finals.unwrap_or_else(|| lock(&live.tracker).final_states(reason))
    }
}

/// Reads what a relay still holds (bounded: 3 s), for the stop reason of a task whose VM
/// ended while the agent was down.
fn last_words(sock: &std::path::Path) -> Option<String> {
    let mut conn = relay::connect(sock, Duration::from_secs(1)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match conn.recv() {
            Ok(GuestMessage::TaskStopped { reason, .. }) => {
                return Some(reason.chars().take(guest::MAX_REASON).collect())
            }
            Ok(_) => {}
            Err(e) if e.is_timeout() => {}
            Err(_) => return None,
        }
    }
    None
}
