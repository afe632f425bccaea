//! The task's state machine: starts containers as their dependsOn conditions are met,
//! stops the task when an essential container exits or the host asks, escalates SIGTERM to
//! SIGKILL after the stop timeout, and reports every change.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_proto::validate::ulimit_resource;
use guest_proto::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::clock::now_ms;

use super::cgroup::Cgroups;
use super::health::Checker;
use super::logs::pump;
use super::shim::{Bind, RootSetup, ShimConfig, ShimMode};
use super::spawn::{exit_code, spawn_shim, SpawnError};
use super::{Event, RuntimeConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Stopped,
}

struct Ctr {
    spec: ContainerSpec,
    state: State,
    pid: Option<i32>,
    exit_code: Option<i32>,
    reason: Option<String>,
    health: HealthStatus,
    started: Option<Instant>,
    failures: u32,
    kill_at: Option<Instant>,
    killed: bool,
    alive: Arc<AtomicBool>,
}

pub struct Supervisor {
    cfg: RuntimeConfig,
    task: TaskSpec,
    out: SyncSender<GuestMessage>,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    ctrs: Vec<Ctr>,
    stopping: Option<String>,
    cgroups: Option<Cgroups>,
    on_first_start: Option<Box<dyn FnOnce()>>,
}

/// Why a container could not be started; the container stops with
/// "CannotStartContainerError: " and this text.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("creating {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup: {0}")]
    Cgroup(#[source] std::io::Error),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

enum Deps {
    Ready,
    Wait,
    Never(String),
}

impl Supervisor {
    pub fn new(
        cfg: RuntimeConfig,
        task: TaskSpec,
        out: SyncSender<GuestMessage>,
        events_tx: Sender<Event>,
        events: Receiver<Event>,
    ) -> Self {
        let ctrs = task
            .containers
            .iter()
            .map(|c| Ctr {
                spec: c.clone(),
                state: State::Pending,
                pid: None,
                exit_code: None,
                reason: None,
                health: HealthStatus::Unknown,
                started: None,
                failures: 0,
                kill_at: None,
                killed: false,
                alive: Arc::new(AtomicBool::new(false)),
            })
            .collect();
        Self {
            cfg,
            task,
            out,
            events_tx,
            events,
            ctrs,
            stopping: None,
            cgroups: None,
            on_first_start: None,
        }
    }

    /// Called once, right after the first container process starts (boot marker).
    pub fn on_first_start(&mut self, f: Box<dyn FnOnce()>) {
        self.on_first_start = Some(f);
    }

    fn send(&self, m: GuestMessage) {
        let _ = self.out.send(m);
    }

    fn report(&self, i: usize) {
        let c = &self.ctrs[i];
        let status = match c.state {
            State::Pending => ContainerStatus::Pending,
            State::Running => ContainerStatus::Running,
            State::Stopped => ContainerStatus::Stopped,
        };
        self.send(GuestMessage::ContainerStateChange {
            container: c.spec.name.clone(),
            status,
            exit_code: c.exit_code,
            reason: c.reason.clone(),
            pid: if c.state == State::Running {
                c.pid
            } else {
                None
            },
            timestamp_ms: now_ms(),
        });
    }

    /// Runs the task to its end; returns the reason it stopped and every container's final state.
    pub fn run(mut self) -> (String, Vec<ContainerState>) {
        if let Some(root) = self.cfg.cgroup_root.clone() {
            let name: String = self
                .task
                .task_arn
                .rsplit('/')
                .next()
                .unwrap_or("task")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            match Cgroups::create(&root, &format!("task-{name}")) {
                Ok(c) => self.cgroups = Some(c),
                Err(e) => self.send(GuestMessage::Error {
                    message: format!("cgroups unavailable, containers run without: {e}"),
                    fatal: false,
                }),
            }
        }
        for i in 0..self.ctrs.len() {
            self.report(i);
        }
        self.start_ready();
        loop {
            let running = self.ctrs.iter().any(|c| c.state == State::Running);
            let pending = self.ctrs.iter().any(|c| c.state == State::Pending);
            if !running && (self.stopping.is_some() || !pending) {
                break;
            }
            let now = Instant::now();
            let next_kill = self
                .ctrs
                .iter()
                .filter(|c| c.state == State::Running && !c.killed)
                .filter_map(|c| c.kill_at)
                .min();
            let wait = next_kill
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(1));
            match self.events.recv_timeout(wait) {
                Ok(Event::Host(HostMessage::StopTask { reason, spot })) => {
                    self.begin_stop(reason, spot)
                }
                Ok(Event::Host(HostMessage::RunTask { .. })) => self.send(GuestMessage::Error {
                    message: "a task is already running in this VM".into(),
                    fatal: false,
                }),
                Ok(Event::HostGone(e)) => {
                    self.begin_stop(format!("control channel lost: {e}"), false)
                }
                Ok(Event::Exited { name, code }) => self.exited(&name, code),
                Ok(Event::Health { name, ok, output }) => self.health(&name, ok, output),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.escalate();
        }
        let reason = self
            .stopping
            .clone()
            .unwrap_or_else(|| "all containers exited".into());
        let states = self
            .ctrs
            .iter()
            .map(|c| ContainerState {
                name: c.spec.name.clone(),
                status: ContainerStatus::Stopped,
                exit_code: c.exit_code,
                reason: c.reason.clone(),
            })
            .collect();
        (reason, states)
    }

    fn idx(&self, name: &str) -> Option<usize> {
        self.ctrs.iter().position(|c| c.spec.name == name)
    }

    fn deps(&self, i: usize) -> Deps {
        let mut ready = true;
        for d in &self.ctrs[i].spec.depends_on {
            let Some(j) = self.idx(&d.container_name) else {
                return Deps::Never(format!("unknown dependency {}", d.container_name));
            };
            let dep = &self.ctrs[j];
            let never = |what: &str| {
                Deps::Never(format!(
                    "dependency {} {what} (condition {:?})",
                    dep.spec.name, d.condition
                ))
            };
            match (d.condition, dep.state) {
                (Condition::Start, State::Running | State::Stopped) if dep.started.is_some() => {}
                (Condition::Start, State::Stopped) => return never("never started"),
                (Condition::Complete, State::Stopped) if dep.started.is_some() => {}
                (Condition::Complete, State::Stopped) => return never("never started"),
                (Condition::Success, State::Stopped) if dep.exit_code == Some(0) => {}
                (Condition::Success, State::Stopped) => {
                    return never(&format!("exited with {:?}", dep.exit_code))
                }
                (Condition::Healthy, State::Running) if dep.health == HealthStatus::Healthy => {}
                (Condition::Healthy, State::Stopped) => {
                    return never("stopped before becoming healthy")
                }
                _ => ready = false,
            }
        }
        if ready {
            Deps::Ready
        } else {
            Deps::Wait
        }
    }

    /// Starts every pending container whose conditions hold, until nothing changes.
    fn start_ready(&mut self) {
        loop {
            if self.stopping.is_some() {
                return;
            }
            let mut changed = false;
            for i in 0..self.ctrs.len() {
                if self.ctrs[i].state != State::Pending {
                    continue;
                }
                match self.deps(i) {
                    Deps::Wait => {}
                    Deps::Ready => {
                        self.start(i);
                        changed = true;
                    }
                    Deps::Never(why) => {
                        self.ctrs[i].state = State::Stopped;
                        self.ctrs[i].reason = Some(format!("DependencyConditionNotMet: {why}"));
                        self.report(i);
                        self.stopped(i);
                        changed = true;
                    }
                }
                if self.stopping.is_some() {
                    return;
                }
            }
            if !changed {
                return;
            }
        }
    }

    fn shim_base(&self, i: usize, cgroup: Option<PathBuf>) -> ShimConfig {
        let c = &self.ctrs[i].spec;
        let mut argv = c.entry_point.clone();
        argv.extend(c.command.iter().cloned());
        ShimConfig {
            name: c.name.clone(),
            mode: ShimMode::Exec { pid: 0 },
            argv,
            env: c
                .environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            cwd: c.working_directory.clone(),
            user: c.user.clone(),
            ulimits: c
                .ulimits
                .iter()
                .filter_map(|u| Some((ulimit_resource(&u.name)?, u.soft_limit, u.hard_limit)))
                .collect(),
            cgroup,
        }
    }

    fn start(&mut self, i: usize) {
        match self.try_start(i) {
            Ok(()) => {
                self.report(i);
                if let Some(f) = self.on_first_start.take() {
                    f();
                }
            }
            Err(e) => {
                let c = &mut self.ctrs[i];
                c.state = State::Stopped;
                c.reason = Some(format!("CannotStartContainerError: {e}"));
                self.report(i);
                self.stopped(i);
            }
        }
    }

    fn try_start(&mut self, i: usize) -> Result<(), StartError> {
        let spec = self.ctrs[i].spec.clone();
        let dir = self.cfg.state_dir.join(&spec.name);
        let sub = |s: &str| dir.join(s);
        for d in ["lower", "upper", "work", "rootfs"] {
            let path = sub(d);
            if let Err(source) = std::fs::create_dir_all(&path) {
                return Err(StartError::StateDir { path, source });
            }
        }
        let cgroup = match &self.cgroups {
            Some(cg) => Some(
                cg.container(&spec.name, spec.cpu, spec.memory_reservation, spec.memory)
                    .map_err(StartError::Cgroup)?,
            ),
            None => None,
        };
        let mut cfg = self.shim_base(i, cgroup);
        let binds = spec
            .mount_points
            .iter()
            .map(|m| Bind {
                source: self.cfg.volumes_dir.join(&m.source_volume),
                target: m.container_path.clone(),
                readonly: m.read_only,
            })
            .collect();
        let hostname = spec
            .hostname
            .clone()
            .or_else(|| self.task.hostname.clone())
            .unwrap_or_else(|| self.cfg.default_hostname.clone());
        cfg.mode = ShimMode::Run(Box::new(RootSetup {
            hostname,
            root_source: PathBuf::from(&spec.root_device),
            root_fs_type: spec.root_fs_type.clone().unwrap_or_else(|| "ext4".into()),
            lower_dir: sub("lower"),
            upper_dir: sub("upper"),
            work_dir: sub("work"),
            rootfs_dir: sub("rootfs"),
            readonly: spec.readonly_root_filesystem,
            binds,
            etc_files: self.cfg.etc_files.clone(),
        }));
        let mut sp = spawn_shim(
            &self.cfg.shim_exe,
            &cfg,
            &sub("run.json"),
            Stdio::piped(),
            Stdio::piped(),
        )?;
        let mut readers = Vec::new();
        if let Some(o) = sp.shim.stdout.take() {
            let (n, out) = (spec.name.clone(), self.out.clone());
            readers.push(std::thread::spawn(move || {
                pump(o, n, LogStream::Stdout, out)
            }));
        }
        if let Some(e) = sp.shim.stderr.take() {
            let (n, out) = (spec.name.clone(), self.out.clone());
            readers.push(std::thread::spawn(move || {
                pump(e, n, LogStream::Stderr, out)
            }));
        }
        let (name, tx) = (spec.name.clone(), self.events_tx.clone());
        let mut shim = sp.shim;
        std::thread::spawn(move || {
            let code = exit_code(shim.wait());
            for r in readers {
                let _ = r.join();
            }
            let _ = tx.send(Event::Exited { name, code });
        });
        let c = &mut self.ctrs[i];
        c.state = State::Running;
        c.pid = Some(sp.pid);
        c.started = Some(Instant::now());
        c.alive.store(true, Ordering::Relaxed);
        if let Some(h) = spec.health_check.clone() {
            let checker = Checker {
                container: spec.name.clone(),
                check: h,
                target_pid: sp.pid,
                base: cfg,
                shim_exe: self.cfg.shim_exe.clone(),
                config_file: sub("health.json"),
                alive: c.alive.clone(),
                events: self.events_tx.clone(),
            };
            std::thread::spawn(move || checker.run());
        }
        Ok(())
    }

    fn exited(&mut self, name: &str, code: Option<i32>) {
        let Some(i) = self.idx(name) else { return };
        let c = &mut self.ctrs[i];
        c.state = State::Stopped;
        c.exit_code = code;
        c.alive.store(false, Ordering::Relaxed);
        if c.reason.is_none() && c.killed {
            c.reason = Some("killed after the stop timeout".into());
        }
        if let Some(cg) = &self.cgroups {
            cg.remove(name);
        }
        self.report(i);
        self.stopped(i);
        self.start_ready();
    }

    /// Consequences of container `i` reaching STOPPED.
    fn stopped(&mut self, i: usize) {
        if self.ctrs[i].spec.essential && self.stopping.is_none() {
            self.begin_stop(
                format!(
                    "Essential container in task exited: {}",
                    self.ctrs[i].spec.name
                ),
                false,
            );
        }
    }

    fn health(&mut self, name: &str, ok: bool, output: String) {
        let Some(i) = self.idx(name) else { return };
        let c = &mut self.ctrs[i];
        if c.state != State::Running {
            return;
        }
        let Some(check) = &c.spec.health_check else {
            return;
        };
        let grace = c
            .started
            .map(|s| s.elapsed() < Duration::from_secs(check.start_period_secs().into()))
            .unwrap_or(false);
        let new = if ok {
            c.failures = 0;
            HealthStatus::Healthy
        } else if grace {
            c.health
        } else {
            c.failures += 1;
            if c.failures >= check.retries_count() {
                HealthStatus::Unhealthy
            } else {
                c.health
            }
        };
        if new != c.health {
            c.health = new;
            self.send(GuestMessage::HealthChange {
                container: name.into(),
                status: new,
                output: output.trim_end().to_string(),
                timestamp_ms: now_ms(),
            });
            self.start_ready();
        }
    }

    /// SIGTERM to every running container; pending ones will never start.
    fn begin_stop(&mut self, reason: String, spot: bool) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(reason.clone());
        let now = Instant::now();
        for i in 0..self.ctrs.len() {
            match self.ctrs[i].state {
                State::Pending => {
                    self.ctrs[i].state = State::Stopped;
                    self.ctrs[i].reason = Some(format!(
                        "task stopped before the container started: {reason}"
                    ));
                    self.report(i);
                }
                State::Running => {
                    let c = &mut self.ctrs[i];
                    let secs = if spot {
                        SPOT_STOP_TIMEOUT_SECS
                    } else {
                        c.spec.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT_SECS)
                    };
                    c.kill_at = Some(now + Duration::from_secs(secs.into()));
                    if let Some(pid) = c.pid {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                    }
                }
                State::Stopped => {}
            }
        }
    }

    /// SIGKILL containers past their stop timeout.
    fn escalate(&mut self) {
        let now = Instant::now();
        for c in &mut self.ctrs {
            if c.state == State::Running && !c.killed && c.kill_at.is_some_and(|t| t <= now) {
                if let Some(pid) = c.pid {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                c.killed = true;
            }
        }
    }
}
