//! The agent's side of a guest session (through the task's relay): sending the task,
//! waiting for its containers, turning guest messages into [`TaskEvent`]s. Everything the
//! guest says is untrusted: unknown container names are ignored, strings are bounded, and
//! every wait has a deadline.

use crate::host::budget::{Admit, IngestGate, Kind};
use crate::host::runtime::{LaunchFailure, TaskEvent, TaskEvents};
use agent_proto::{ContainerState, LogStream, Status};
use guest_proto::host::GuestConnection;
use guest_proto::{ContainerStatus, GuestMessage, ProtoError};
use std::time::{Duration, Instant};

/// Longest reason (stop reason, container reason) kept from the guest.
pub const MAX_REASON: usize = 1024;
/// Longest log line kept (the guest init splits lines at 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// What the agent knows of a task's containers from its guest.
#[derive(Debug, Clone)]
pub struct Tracker {
    task_arn: String,
    states: Vec<ContainerState>,
    /// The guest sent `taskAccepted`.
    pub accepted: bool,
    /// When it did.
    pub accepted_at: Option<Instant>,
    /// The guest's fatal error, if any.
    pub fatal: Option<String>,
    /// `taskStopped`: reason and final states.
    pub stopped: Option<(String, Vec<ContainerState>)>,
}

fn status_of(s: ContainerStatus) -> Status {
    match s {
        ContainerStatus::Pending => Status::Pending,
        ContainerStatus::Running => Status::Running,
        ContainerStatus::Stopped => Status::Stopped,
    }
}

impl Tracker {
    /// Containers `names`, all in `status`.
    pub fn new(task_arn: &str, names: &[String], status: Status) -> Tracker {
        Tracker {
            task_arn: task_arn.to_string(),
            states: names
                .iter()
                .map(|n| ContainerState {
                    name: n.clone(),
                    last_status: status,
                    exit_code: None,
                    reason: None,
                })
                .collect(),
            accepted: false,
            accepted_at: None,
            fatal: None,
            stopped: None,
        }
    }

    /// Current container states.
    pub fn states(&self) -> &[ContainerState] {
        &self.states
    }

    /// No container is PENDING any more.
    pub fn all_started(&self) -> bool {
        self.states.iter().all(|c| c.last_status != Status::Pending)
    }

    /// Final states: the guest's report, else every container STOPPED with `reason`.
    pub fn final_states(&self, reason: &str) -> Vec<ContainerState> {
        if let Some((_, s)) = &self.stopped {
            return s.clone();
        }
        self.states
            .iter()
            .map(|c| ContainerState {
                last_status: Status::Stopped,
                reason: c.reason.clone().or_else(|| Some(reason.to_string())),
                ..c.clone()
            })
            .collect()
    }

    fn find(&mut self, name: &str) -> Option<&mut ContainerState> {
        self.states.iter_mut().find(|c| c.name == name)
    }

    /// Applies one guest message; the event to emit, if any.
    pub fn apply(&mut self, msg: GuestMessage) -> Option<TaskEvent> {
        match msg {
            GuestMessage::TaskAccepted { .. } => {
                self.accepted = true;
                self.accepted_at.get_or_insert_with(Instant::now);
                None
            }
            GuestMessage::ContainerStateChange {
                container,
                status,
                exit_code,
                reason,
                ..
            } => {
                let c = self.find(&container)?;
                c.last_status = status_of(status);
                c.exit_code = exit_code;
                c.reason = reason.map(|r| bounded(&r, MAX_REASON));
                let state = c.clone();
                Some(TaskEvent::Container {
                    task_arn: self.task_arn.clone(),
                    state,
                })
            }
            GuestMessage::HealthChange { .. } => None,
            GuestMessage::Log {
                container,
                stream,
                timestamp_ms,
                line,
            } => {
                self.find(&container)?;
                Some(TaskEvent::Log {
                    task_arn: self.task_arn.clone(),
                    container,
                    stream: match stream {
                        guest_proto::LogStream::Stdout => LogStream::Stdout,
                        guest_proto::LogStream::Stderr => LogStream::Stderr,
                    },
                    timestamp_ms,
                    line: bounded(&line, MAX_LINE),
                })
            }
            GuestMessage::Error { message, fatal } => {
                let message = bounded(&message, MAX_REASON);
                tracing::warn!(task = %self.task_arn, fatal, "guest error: {message}");
                if fatal {
                    self.fatal = Some(message);
                }
                None
            }
            GuestMessage::TaskStopped { reason, containers } => {
                let mut finals: Vec<ContainerState> = self.states.clone();
                for c in containers {
                    if let Some(f) = finals.iter_mut().find(|f| f.name == c.name) {
                        f.last_status = Status::Stopped;
                        f.exit_code = c.exit_code;
                        f.reason = c.reason.map(|r| bounded(&r, MAX_REASON));
                    }
                }
                for f in &mut finals {
                    f.last_status = Status::Stopped;
                }
                self.states = finals.clone();
                self.stopped = Some((bounded(&reason, MAX_REASON), finals));
                None
            }
        }
    }
}

fn guest_fail(step: &str, reason: impl Into<String>) -> LaunchFailure {
    LaunchFailure {
        step: step.into(),
        reason: reason.into(),
    }
}

/// What bounds the launch phase.
pub struct Limits<'a> {
    /// From sending the task until the guest init accepted it.
    pub boot_timeout: Duration,
    /// From then until every container left PENDING.
    pub start_timeout: Duration,
    /// The task's ingest budget, applied to every message as after launch.
    pub gate: &'a mut IngestGate,
}

/// Launch phase: sends the task and waits until the guest accepted it (`boot_timeout`
/// from now: "vm boot") and every container left PENDING (`start_timeout`: "guest").
/// `vmm_alive` is polled so a dead VM ends the wait at once. Logs and container changes
/// seen meanwhile are emitted, each through `gate` first (over budget the reader waits;
/// kept over budget, the launch fails with the gate's reason).
pub fn start_task(
    conn: &mut GuestConnection,
    task: &guest_proto::TaskSpec,
    tracker: &mut Tracker,
    limits: Limits<'_>,
    vmm_alive: &dyn Fn() -> bool,
    events: &TaskEvents,
) -> Result<(), LaunchFailure> {
    let Limits {
        boot_timeout,
        start_timeout,
        gate,
    } = limits;
    conn.run_task(task)
        .map_err(|e| guest_fail("vm boot", format!("sending the task: {e}")))?;
    let started = Instant::now();
    let _ = conn.set_read_timeout(Some(Duration::from_millis(250)));
    loop {
        let phase = if tracker.accepted { "guest" } else { "vm boot" };
        let limit = if tracker.accepted {
            boot_timeout + start_timeout
        } else {
            boot_timeout
        };
        if started.elapsed() > limit {
            return Err(guest_fail(
                phase,
                if tracker.accepted {
                    format!("containers not running after {start_timeout:?}")
                } else {
                    format!("the guest init did not answer within {boot_timeout:?}")
                },
            ));
        }
        match conn.recv() {
            Ok(m) => {
                if let Some(reason) = wait_for_budget(gate, &m) {
                    return Err(guest_fail("guest", reason));
                }
                if let Some(ev) = tracker.apply(m) {
                    let _ = events.send(ev);
                }
            }
            Err(e) if e.is_timeout() => {
                if !vmm_alive() {
                    return Err(guest_fail(phase, "the vmm exited"));
                }
                continue;
            }
            Err(ProtoError::Closed) => {
                return Err(guest_fail(
                    phase,
                    if tracker.accepted {
                        "the guest hung up".to_string()
                    } else {
                        "the guest init never connected (or hung up)".to_string()
                    },
                ))
            }
            Err(e) => return Err(guest_fail(phase, format!("guest channel: {e}"))),
        }
        if let Some(f) = &tracker.fatal {
            return Err(guest_fail("guest", f.clone()));
        }
        if let Some((reason, finals)) = &tracker.stopped {
            let detail: Vec<String> = finals
                .iter()
                .filter_map(|c| c.reason.as_ref().map(|r| format!("{}: {r}", c.name)))
                .collect();
            return Err(guest_fail(
                "guest",
                format!(
                    "task stopped while starting: {reason} ({})",
                    detail.join("; ")
                ),
            ));
        }
        if tracker.accepted && tracker.all_started() {
            let _ = conn.set_read_timeout(None);
            return Ok(());
        }
    }
}

/// Waits (reading nothing) until `gate` admits `m`; `Some(reason)` when the guest was
/// kept over budget too long and its task must stop.
fn wait_for_budget(gate: &mut IngestGate, m: &GuestMessage) -> Option<String> {
    let kind = match m {
        GuestMessage::Log { line, .. } => Kind::Log(line.len().min(MAX_LINE)),
        _ => Kind::Event,
    };
    loop {
        match gate.admit(kind, Instant::now()) {
            Admit::Now => return None,
            Admit::Wait(d) => std::thread::sleep(d),
            Admit::Stop(reason) => return Some(reason),
        }
    }
}

/// After launch: forwards guest messages as events until the guest stopped the task or
/// the channel ended. `tracker` is shared with `stop`. Every message passes `gate`
/// first: over budget the reader waits (reading nothing, so the relay and then the
/// guest wait too); a guest kept over budget for too long ends the forwarding with
/// the gate's reason (`Some`), and its task must be stopped.
pub fn forward(
    mut conn: GuestConnection,
    tracker: &std::sync::Mutex<Tracker>,
    events: &TaskEvents,
    gate: &mut IngestGate,
) -> Option<String> {
    let _ = conn.set_read_timeout(None);
    loop {
        match conn.recv() {
            Ok(m) => {
                if let Some(reason) = wait_for_budget(gate, &m) {
                    return Some(reason);
                }
                let mut t = crate::util::lock(tracker);
                if let Some(ev) = t.apply(m) {
                    let _ = events.send(ev);
                }
                if t.stopped.is_some() {
                    return None;
                }
            }
            Err(e) => {
                if !matches!(e, ProtoError::Closed) {
                    tracing::warn!("guest channel: {e}");
                }
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_proto::messages::Role;
    use guest_proto::{Channel, HostMessage};
    use std::os::unix::net::UnixStream;

    fn change(name: &str, status: ContainerStatus, code: Option<i32>) -> GuestMessage {
        GuestMessage::ContainerStateChange {
            container: name.into(),
            status,
            exit_code: code,
            reason: None,
            pid: None,
            timestamp_ms: 1,
        }
    }

    fn names() -> Vec<String> {
        vec!["web".into(), "side".into()]
    }

    #[test]
    fn tracker_follows_the_guest_and_ignores_strangers() {
        let mut t = Tracker::new("arn:t", &names(), Status::Pending);
        assert!(!t.all_started());
        assert!(t
            .apply(change("nobody", ContainerStatus::Running, None))
            .is_none());
        let ev = t
            .apply(change("web", ContainerStatus::Running, None))
            .unwrap();
        assert!(
            matches!(ev, TaskEvent::Container { ref state, .. } if state.name == "web" && state.last_status == Status::Running)
        );
        assert!(!t.all_started());
        t.apply(change("side", ContainerStatus::Stopped, Some(0)));
        assert!(t.all_started());
        let long = "x".repeat(100_000);
        match t.apply(GuestMessage::Log {
            container: "web".into(),
            stream: guest_proto::LogStream::Stderr,
            timestamp_ms: 5,
            line: long,
        }) {
            Some(TaskEvent::Log { line, stream, .. }) => {
                assert_eq!(line.len(), MAX_LINE);
                assert_eq!(stream, LogStream::Stderr);
            }
            e => panic!("{e:?}"),
        }
        assert!(t
            .apply(GuestMessage::Log {
                container: "nobody".into(),
                stream: guest_proto::LogStream::Stdout,
                timestamp_ms: 5,
                line: "x".into(),
            })
            .is_none());
        assert_eq!(
            t.final_states("vm exited")[0].reason.as_deref(),
            Some("vm exited")
        );
        t.apply(GuestMessage::TaskStopped {
            reason: "Essential container in task exited".into(),
            containers: vec![guest_proto::ContainerState {
                name: "web".into(),
                status: ContainerStatus::Stopped,
                exit_code: Some(137),
                reason: None,
            }],
        });
        let f = t.final_states("ignored");
        assert_eq!(f[0].exit_code, Some(137));
        assert_eq!(f[1].exit_code, Some(0));
        assert!(f.iter().all(|c| c.last_status == Status::Stopped));
        assert_eq!(
            t.stopped.as_ref().unwrap().0,
            "Essential container in task exited"
        );
    }

    /// A scripted guest on the other end of a socket pair.
    fn session(
        script: Vec<GuestMessage>,
    ) -> (GuestConnection, std::thread::JoinHandle<Vec<HostMessage>>) {
        let (h, g) = UnixStream::pair().unwrap();
        let guest = std::thread::spawn(move || {
            let mut chan = Channel::new(g);
            chan.handshake(Role::Guest, "fake").unwrap();
            let first: HostMessage = chan.recv().unwrap();
            for m in script {
                chan.send(&m).unwrap();
            }
            // Keep the connection open a little (a silent guest), then hang up.
            std::thread::sleep(Duration::from_millis(1500));
            vec![first]
        });
        (GuestConnection::handshake(h).unwrap(), guest)
    }

    fn run(
        script: Vec<GuestMessage>,
        alive: bool,
    ) -> (Result<(), LaunchFailure>, Tracker, Vec<TaskEvent>) {
        run_with(script, alive, &crate::host::budget::Budgets::default())
    }

    fn run_with(
        script: Vec<GuestMessage>,
        alive: bool,
        budgets: &crate::host::budget::Budgets,
    ) -> (Result<(), LaunchFailure>, Tracker, Vec<TaskEvent>) {
        let mut gate = IngestGate::new(budgets, Instant::now());
        let (mut conn, guest) = session(script);
        let (tx, mut rx) = crate::host::runtime::task_events(&Default::default());
        let mut t = Tracker::new("arn:t", &names(), Status::Pending);
        let task = guest_proto::TaskSpec {
            task_arn: "arn:t".into(),
            ..Default::default()
        };
        let r = start_task(
            &mut conn,
            &task,
            &mut t,
            Limits {
                boot_timeout: Duration::from_millis(400),
                start_timeout: Duration::from_millis(400),
                gate: &mut gate,
            },
            &|| alive,
            &tx,
        );
        let sent = guest.join().unwrap();
        assert!(matches!(&sent[0], HostMessage::RunTask { task } if task.task_arn == "arn:t"));
        let mut evs = vec![];
        while let Some(e) = rx.try_recv() {
            evs.push(e);
        }
        (r, t, evs)
    }

    #[test]
    fn a_guest_flooding_while_it_starts_is_throttled_then_its_launch_fails() {
        let budgets = crate::host::budget::Budgets {
            guest_events_per_sec: 20.0,
            guest_events_burst: 5.0,
            stop_after: Duration::from_millis(200),
            ..Default::default()
        };
        // Accepted, then a flood of container changes that never starts every container.
        let mut script = vec![GuestMessage::TaskAccepted {
            task_arn: "arn:t".into(),
        }];
        script.extend((0..200).map(|_| change("web", ContainerStatus::Pending, None)));
        let t0 = Instant::now();
        let (r, _, evs) = run_with(script, true, &budgets);
        let e = r.unwrap_err();
        assert_eq!(e.step, "guest", "{e}");
        assert!(e.reason.contains("event budget"), "{e}");
        // Throttled at the rate: the burst, then about 20 a second until stopped.
        let bound = 5.0 + 20.0 * t0.elapsed().as_secs_f64() + 1.0;
        assert!(
            (evs.len() as f64) <= bound,
            "{} events in {:?}",
            evs.len(),
            t0.elapsed()
        );
    }

    #[test]
    fn start_task_waits_for_every_container() {
        let (r, t, evs) = run(
            vec![
                GuestMessage::TaskAccepted {
                    task_arn: "arn:t".into(),
                },
                change("web", ContainerStatus::Running, None),
                change("side", ContainerStatus::Running, None),
            ],
            true,
        );
        r.unwrap();
        assert!(t.all_started());
        assert_eq!(evs.len(), 2);
    }

    #[test]
    fn start_task_failures_name_their_step() {
        let (r, _, _) = run(vec![], true);
        let e = r.unwrap_err();
        assert_eq!(e.step, "vm boot", "{e}");
        assert!(e.reason.contains("did not answer"), "{e}");
        let (r, _, _) = run(vec![], false);
        assert_eq!(r.unwrap_err().reason, "the vmm exited");
        let (r, _, _) = run(
            vec![
                GuestMessage::TaskAccepted {
                    task_arn: "arn:t".into(),
                },
                change("web", ContainerStatus::Running, None),
            ],
            true,
        );
        let e = r.unwrap_err();
        assert_eq!(
            (e.step.as_str(), e.reason.contains("not running")),
            ("guest", true),
            "{e}"
        );
        let (r, _, _) = run(
            vec![
                GuestMessage::TaskAccepted {
                    task_arn: "arn:t".into(),
                },
                GuestMessage::TaskStopped {
                    reason: "Essential container in task exited".into(),
                    containers: vec![guest_proto::ContainerState {
                        name: "web".into(),
                        status: ContainerStatus::Stopped,
                        exit_code: None,
                        reason: Some("CannotStartContainerError: no such file".into()),
                    }],
                },
            ],
            true,
        );
        let e = r.unwrap_err();
        assert_eq!(e.step, "guest");
        assert!(e.reason.contains("web: CannotStartContainerError"), "{e}");
        let (r, _, _) = run(
            vec![GuestMessage::Error {
                message: "bad spec".into(),
                fatal: true,
            }],
            true,
        );
        assert_eq!(r.unwrap_err().reason, "bad spec");
    }
}
