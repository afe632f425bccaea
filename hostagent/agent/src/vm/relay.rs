//! The guest-channel relay: a small process per task (`hostagent vm-relay`, started by the
//! agent in its own process group) that holds the guest init's one control connection,
//! so the agent can die and come back without the guest noticing.
//!
//! Why: the guest init connects once (vsock port 1024) and stops its task when that
//! connection breaks. The relay accepts it (listening on `<jail>/run/v.sock_1024`, bound
//! before the vmm starts), does the host side of the handshake, and serves the agent on
//! a Unix socket in the task's state directory, where it plays the guest: an agent
//! connects, does an ordinary guest-proto handshake (`GuestConnection::handshake`), and
//! gets every guest message the relay has not yet delivered; its host messages go to the
//! guest. Messages are forwarded whole (typed), so an agent that dies mid-frame does not
//! desynchronise anything; a message is dropped from the queue only once written to an
//! agent. The queue is bounded in bytes ([`RelayArgs::queue_bytes`], default
//! [`DEFAULT_QUEUE_BYTES`]): over it, the oldest log lines are dropped and a counted
//! marker line (`[vm-relay] N lines dropped ...`) takes their place; if only other
//! messages remain the relay stops reading the guest until the agent takes some.
//! Only the guest's first connection is accepted: the guest socket is removed once it
//! is there, so a guest that opens more connections is refused by the kernel.
//! The relay exits once the guest has hung up and its last message was delivered (or
//! no agent came for [`ORPHAN_TIMEOUT`]), or when the guest does not connect in time.

use crate::util::wait;
use guest_proto::host::{GuestConnection, HostListener};
use guest_proto::messages::Role;
use guest_proto::{Channel, GuestMessage, HostMessage};
use std::collections::VecDeque;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Bytes of guest messages the relay holds for the agent by default.
pub const DEFAULT_QUEUE_BYTES: usize = 256 * 1024;
/// How the fatal error the relay queues for a guest that broke the channel (garbage
/// frames, oversized lengths, a frame cut off) begins.
pub const CHANNEL_BROKEN: &str = "guest channel broken";
/// What a queued message costs beyond its strings.
const ENTRY_OVERHEAD: usize = 64;
/// What a drop marker costs.
const MARKER_COST: usize = 32;
/// How long a relay whose guest is gone waits for an agent to collect the last messages.
pub const ORPHAN_TIMEOUT: Duration = Duration::from_secs(600);

/// Flags of `hostagent vm-relay`.
#[derive(Debug, Clone)]
pub struct RelayArgs {
    /// Where guest-initiated connections arrive (`<uds_path>_1024`).
    pub guest_socket: PathBuf,
    /// The socket the agent connects to.
    pub agent_socket: PathBuf,
    /// Owner of the guest socket (the jailed vmm's uid/gid, which must connect to it).
    pub owner: (u32, u32),
    /// How long to wait for the guest.
    pub boot_timeout: Duration,
    /// Bytes of guest messages held for the agent (log lines dropped beyond).
    pub queue_bytes: usize,
}

/// Why the relay stopped, or an agent could not reach it.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A socket cannot be bound.
    #[error("{}: {source}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The guest socket cannot be given to the jailed vmm's identity.
    #[error("chown {}: {source}", path.display())]
    Chown {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The guest did not connect within the boot timeout.
    #[error("the guest never connected")]
    GuestNeverConnected,
    /// Accepting agents failed.
    #[error("agent socket: {0}")]
    AgentSocket(#[source] std::io::Error),
    /// No relay answers on its agent socket (within the timeout).
    #[error("relay {}: {source}", path.display())]
    Connect {
        /// The agent socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The relay's handshake failed.
    #[error("relay handshake: {0}")]
    Handshake(#[source] guest_proto::ProtoError),
    /// A socket option cannot be set.
    #[error(transparent)]
    Socket(std::io::Error),
}

/// A queued guest message, or the marker of log lines dropped where it stands.
enum Entry {
    Msg(GuestMessage, usize),
    Dropped {
        container: String,
        timestamp_ms: u64,
        n: u64,
    },
}

impl Entry {
    fn cost(&self) -> usize {
        match self {
            Entry::Msg(_, c) => *c,
            Entry::Dropped { .. } => MARKER_COST,
        }
    }

    /// What the agent gets.
    fn message(&self) -> GuestMessage {
        match self {
            Entry::Msg(m, _) => m.clone(),
            Entry::Dropped {
                container,
                timestamp_ms,
                n,
            } => GuestMessage::Log {
                container: container.clone(),
                stream: guest_proto::LogStream::Stderr,
                timestamp_ms: *timestamp_ms,
                line: dropped_marker(*n),
            },
        }
    }
}

/// The text of the relay's marker for `n` dropped lines.
pub fn dropped_marker(n: u64) -> String {
    format!("[vm-relay] {n} lines dropped: the task is over its relay queue budget")
}

/// What `m` costs in the queue (its strings plus [`ENTRY_OVERHEAD`]).
fn cost(m: &GuestMessage) -> usize {
    match m {
        GuestMessage::Log {
            container, line, ..
        } => container.len() + line.len() + ENTRY_OVERHEAD,
        m => serde_json::to_vec(m).map_or(guest_proto::MAX_FRAME_LEN, |v| v.len()) + ENTRY_OVERHEAD,
    }
}

/// Lines longer than this are cut (the guest init splits lines at 16 KiB).
const MAX_LINE: usize = 16 * 1024;

fn cut_line(m: &mut GuestMessage) {
    if let GuestMessage::Log { line, .. } = m {
        if line.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
    }
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Entry>,
    /// Bytes the queue costs.
    bytes: usize,
    /// The queue's budget.
    budget: usize,
    guest_done: bool,
    guest: Option<GuestConnection>,
    /// Number of the agent connection being served (1, 2, ... one per agent start).
    agent_conn: u64,
    /// The last agent connection whose reader saw it end (EOF or error): an idle guest
    /// sends nothing, so the writer learns of a killed agent only through this.
    agent_closed: u64,
}

struct State {
    m: Mutex<Shared>,
    cv: Condvar,
}

impl Shared {
    /// Queues `m`; over budget, drops the oldest log lines for a marker (if only other
    /// messages are left, the queue stays over budget: the reader must wait).
    fn push(&mut self, mut m: GuestMessage) {
        cut_line(&mut m);
        let c = cost(&m);
        self.bytes += c;
        self.queue.push_back(Entry::Msg(m, c));
        if self.bytes > self.budget {
            // Down to 3/4 of the budget at once: one marker per run of drops, not one
            // per line.
            let low = self.budget - self.budget / 4;
            while self.bytes > low && self.drop_oldest_line() {}
        }
    }

    fn drop_oldest_line(&mut self) -> bool {
        let Some(i) = self
            .queue
            .iter()
            .position(|e| matches!(e, Entry::Msg(GuestMessage::Log { .. }, _)))
        else {
            return false;
        };
        let Some(Entry::Msg(
            GuestMessage::Log {
                container,
                timestamp_ms,
                ..
            },
            c,
        )) = self.queue.remove(i)
        else {
            return false;
        };
        self.bytes -= c;
        if let Some(Entry::Dropped {
            container: mc, n, ..
        }) = i.checked_sub(1).and_then(|j| self.queue.get_mut(j))
        {
            if *mc == container {
                *n += 1;
                return true;
            }
        }
        self.bytes += MARKER_COST;
        self.queue.insert(
            i,
            Entry::Dropped {
                container,
                timestamp_ms,
                n: 1,
            },
        );
        true
    }
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        crate::util::lock(&self.m)
    }
}

/// Runs the relay until the guest is gone and its messages delivered. Errors: setup
/// failures and a guest that never connected.
pub fn run(args: &RelayArgs) -> Result<(), RelayError> {
    let guest_listener =
        HostListener::bind_path(&args.guest_socket).map_err(|source| RelayError::Bind {
            path: args.guest_socket.clone(),
            source,
        })?;
    std::os::unix::fs::chown(&args.guest_socket, Some(args.owner.0), Some(args.owner.1)).map_err(
        |source| RelayError::Chown {
            path: args.guest_socket.clone(),
            source,
        },
    )?;
    let _ = std::fs::remove_file(&args.agent_socket);
    let agent_listener =
        UnixListener::bind(&args.agent_socket).map_err(|source| RelayError::Bind {
            path: args.agent_socket.clone(),
            source,
        })?;
    let state = Arc::new(State {
        m: Mutex::new(Shared {
            budget: args.queue_bytes.max(1),
            ..Shared::default()
        }),
        cv: Condvar::new(),
    });
    {
        let state = state.clone();
        let timeout = args.boot_timeout;
        std::thread::spawn(move || guest_reader(guest_listener, timeout, &state));
    }
    let result = serve_agents(&agent_listener, &state);
    let _ = std::fs::remove_file(&args.agent_socket);
    let never = state.lock().guest.is_none();
    match result {
        Ok(()) if never => Err(RelayError::GuestNeverConnected),
        r => r,
    }
}

/// Accepts the guest (only its first connection: the socket is removed then), then
/// queues its messages until it hangs up.
fn guest_reader(listener: HostListener, timeout: Duration, state: &State) {
    let accepted = listener.accept(timeout);
    drop(listener);
    let mut conn = match accepted {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vm-relay: guest did not connect: {e}");
            state.lock().guest_done = true;
            state.cv.notify_all();
            return;
        }
    };
    match conn.try_clone() {
        Ok(w) => state.lock().guest = Some(w),
        Err(e) => eprintln!("vm-relay: {e}"),
    }
    state.cv.notify_all();
    loop {
        let msg = conn.recv();
        let mut s = state.lock();
        match msg {
            Ok(m) => {
                s.push(m);
                state.cv.notify_all();
                // Only messages that are not log lines are left over budget: wait
                // for the agent to take some.
                while s.bytes > s.budget {
                    s = wait(&state.cv, s);
                }
            }
            Err(e) => {
                if !matches!(e, guest_proto::ProtoError::Closed) {
                    eprintln!("vm-relay: guest channel: {e}");
                    // The agent learns why (the guest's bytes broke the channel).
                    s.push(GuestMessage::Error {
                        message: format!("{CHANNEL_BROKEN}: {e}"),
                        fatal: true,
                    });
                }
                s.guest_done = true;
                state.cv.notify_all();
                return;
            }
        }
    }
}

/// Host messages from agent connection `conn` to the guest (waits for the guest to
/// connect); marks the connection closed when the agent hangs up.
fn agent_reader(mut chan: Channel<UnixStream>, state: Arc<State>, conn: u64) {
    agent_messages(&mut chan, &state);
    let mut s = state.lock();
    s.agent_closed = s.agent_closed.max(conn);
    state.cv.notify_all();
}

fn agent_messages(chan: &mut Channel<UnixStream>, state: &State) {
    while let Ok(msg) = chan.recv::<HostMessage>() {
        let mut s = state.lock();
        while s.guest.is_none() && !s.guest_done {
            s = wait(&state.cv, s);
        }
        let Some(g) = s.guest.as_mut() else { return };
        let sent = match &msg {
            HostMessage::RunTask { task } => g.run_task(task),
            HostMessage::StopTask { reason, spot } => g.stop_task(reason, *spot),
        };
        if let Err(e) = sent {
            eprintln!("vm-relay: to guest: {e}");
        }
    }
}

fn serve_agents(listener: &UnixListener, state: &Arc<State>) -> Result<(), RelayError> {
    listener
        .set_nonblocking(true)
        .map_err(RelayError::AgentSocket)?;
    let mut idle_since = std::time::Instant::now();
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                {
                    let s = state.lock();
                    if s.guest_done && s.guest.is_none() && s.queue.is_empty() {
                        return Err(RelayError::GuestNeverConnected);
                    }
                    if s.guest_done && idle_since.elapsed() > ORPHAN_TIMEOUT {
                        return Ok(());
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(RelayError::AgentSocket(e)),
        };
        if serve_one(stream, state) {
            return Ok(());
        }
        idle_since = std::time::Instant::now();
    }
}

/// Serves one agent; true once everything was delivered and the guest is gone.
fn serve_one(stream: UnixStream, state: &Arc<State>) -> bool {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut chan = Channel::new(stream);
    if let Err(e) = chan.handshake(Role::Guest, "hostagent-vm-relay") {
        eprintln!("vm-relay: agent handshake: {e}");
        return false;
    }
    let _ = chan.get_ref().set_read_timeout(None);
    let reader = match chan.get_ref().try_clone() {
        Ok(r) => Channel::new(r),
        Err(_) => return false,
    };
    let conn = {
        let mut s = state.lock();
        s.agent_conn += 1;
        s.agent_conn
    };
    {
        let state = state.clone();
        std::thread::spawn(move || agent_reader(reader, state, conn));
    }
    loop {
        let next = {
            let mut s = state.lock();
            loop {
                if s.agent_closed >= conn {
                    // The agent went away (killed): back to accepting its successor.
                    let _ = chan.get_ref().shutdown(std::net::Shutdown::Both);
                    return false;
                }
                if let Some(e) = s.queue.pop_front() {
                    s.bytes -= e.cost();
                    break Some(e);
                }
                if s.guest_done {
                    break None;
                }
                s = wait(&state.cv, s);
            }
        };
        let Some(entry) = next else {
            let _ = chan.get_ref().shutdown(std::net::Shutdown::Both);
            return true;
        };
        state.cv.notify_all();
        if chan.send(&entry.message()).is_err() {
            // Not delivered: back to the front of the queue for the next agent.
            let mut s = state.lock();
            s.bytes += entry.cost();
            s.queue.push_front(entry);
            drop(s);
            let _ = chan.get_ref().shutdown(std::net::Shutdown::Both);
            return false;
        }
    }
}

/// Connects to a relay's agent socket (retrying until `timeout`: the relay may still be
/// starting) and does the handshake.
pub fn connect(path: &Path, timeout: Duration) -> Result<GuestConnection, RelayError> {
    let deadline = std::time::Instant::now() + timeout;
    let stream = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            Err(e) => {
                if std::time::Instant::now() >= deadline {
                    return Err(RelayError::Connect {
                        path: path.to_path_buf(),
                        source: e,
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(RelayError::Socket)?;
    let conn = GuestConnection::handshake(stream).map_err(RelayError::Handshake)?;
    conn.set_read_timeout(None).map_err(RelayError::Socket)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_proto::{ContainerStatus, TaskSpec};

    fn fake_guest(
        uds: PathBuf,
        out: std::sync::mpsc::Sender<HostMessage>,
        script: std::sync::mpsc::Receiver<Option<GuestMessage>>,
    ) {
        let path = guest_proto::host::guest_initiated_socket_path(&uds, guest_proto::CONTROL_PORT);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let stream = loop {
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("guest connect: {e}"),
            }
        };
        let mut chan = Channel::new(stream);
        chan.handshake(Role::Guest, "fake-guest").unwrap();
        let mut reader = Channel::new(chan.get_ref().try_clone().unwrap());
        std::thread::spawn(move || {
            while let Ok(m) = reader.recv::<HostMessage>() {
                if out.send(m).is_err() {
                    return;
                }
            }
        });
        // None: hang up.
        while let Ok(Some(m)) = script.recv() {
            chan.send(&m).unwrap();
        }
        // Like a VM that resets: the connection ends for both directions.
        let _ = chan.get_ref().shutdown(std::net::Shutdown::Both);
    }

    fn log(line: &str) -> GuestMessage {
        GuestMessage::Log {
            container: "web".into(),
            stream: guest_proto::LogStream::Stdout,
            timestamp_ms: 1,
            line: line.into(),
        }
    }

    /// A relay and a fake guest connected to it.
    struct Rig {
        args: RelayArgs,
        relay: std::thread::JoinHandle<Result<(), RelayError>>,
        /// What the guest receives.
        host_rx: std::sync::mpsc::Receiver<HostMessage>,
        /// The guest's script (None hangs up).
        script_tx: std::sync::mpsc::Sender<Option<GuestMessage>>,
        guest: std::thread::JoinHandle<()>,
    }

    impl Rig {
        /// An agent connects and sends RunTask for `arn`, which the guest receives.
        fn agent_runs(&self, arn: &str) -> GuestConnection {
            let mut a = connect(&self.args.agent_socket, Duration::from_secs(5)).unwrap();
            a.run_task(&TaskSpec {
                task_arn: arn.into(),
                ..Default::default()
            })
            .unwrap();
            match self.host_rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                HostMessage::RunTask { task } => assert_eq!(task.task_arn, arn),
                m => panic!("{m:?}"),
            }
            a
        }
    }

    /// A relay in `dir` and a fake guest connected to it.
    fn relay_with_guest(dir: &std::path::Path) -> Rig {
        let uds = dir.join("v.sock");
        let args = RelayArgs {
            guest_socket: guest_proto::host::guest_initiated_socket_path(
                &uds,
                guest_proto::CONTROL_PORT,
            ),
            agent_socket: dir.join("relay.sock"),
            owner: nix_ids(),
            boot_timeout: Duration::from_secs(10),
            queue_bytes: DEFAULT_QUEUE_BYTES,
        };
        let relay = {
            let a = args.clone();
            std::thread::spawn(move || run(&a))
        };
        let (host_tx, host_rx) = std::sync::mpsc::channel();
        let (script_tx, script_rx) = std::sync::mpsc::channel();
        let guest = std::thread::spawn(move || fake_guest(uds, host_tx, script_rx));
        Rig {
            args,
            relay,
            host_rx,
            script_tx,
            guest,
        }
    }

    #[test]
    fn relay_survives_an_agent_restart_and_delivers_everything() {
        let d = tempfile::tempdir().unwrap();
        let rig = relay_with_guest(d.path());
        // First agent: sends the task, gets the first messages.
        let mut a1 = rig.agent_runs("arn:t");
        let Rig {
            args,
            relay,
            host_rx,
            script_tx,
            guest,
        } = rig;
        script_tx
            .send(Some(GuestMessage::TaskAccepted {
                task_arn: "arn:t".into(),
            }))
            .unwrap();
        script_tx.send(Some(log("one"))).unwrap();
        assert!(matches!(
            a1.recv().unwrap(),
            GuestMessage::TaskAccepted { .. }
        ));
        assert_eq!(a1.recv().unwrap(), log("one"));
        // The agent dies; the guest goes on talking.
        drop(a1);
        script_tx.send(Some(log("two"))).unwrap();
        script_tx
            .send(Some(GuestMessage::ContainerStateChange {
                container: "web".into(),
                status: ContainerStatus::Running,
                exit_code: None,
                reason: None,
                pid: Some(5),
                timestamp_ms: 2,
            }))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // A new agent gets what it missed, and can stop the task.
        let mut a2 = connect(&args.agent_socket, Duration::from_secs(5)).unwrap();
        assert_eq!(a2.recv().unwrap(), log("two"));
        assert!(matches!(
            a2.recv().unwrap(),
            GuestMessage::ContainerStateChange { .. }
        ));
        a2.stop_task("user", false).unwrap();
        match host_rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            HostMessage::StopTask { reason, spot } => {
                assert_eq!((reason.as_str(), spot), ("user", false))
            }
            m => panic!("{m:?}"),
        }
        script_tx
            .send(Some(GuestMessage::TaskStopped {
                reason: "user".into(),
                containers: vec![],
            }))
            .unwrap();
        script_tx.send(None).unwrap();
        guest.join().unwrap();
        assert!(matches!(
            a2.recv().unwrap(),
            GuestMessage::TaskStopped { .. }
        ));
        assert!(matches!(a2.recv(), Err(guest_proto::ProtoError::Closed)));
        relay.join().unwrap().unwrap();
        assert!(!args.agent_socket.exists());
    }

    #[test]
    fn relay_takes_a_new_agent_while_the_guest_is_silent() {
        // An idle task (a web server nobody calls) sends nothing: the relay must notice the
        // killed agent from its end of the socket, not from a failed write.
        let d = tempfile::tempdir().unwrap();
        let rig = relay_with_guest(d.path());
        let a1 = rig.agent_runs("arn:idle");
        let Rig {
            args,
            relay,
            host_rx,
            script_tx,
            guest,
        } = rig;
        drop(a1);
        // Nothing from the guest; the second agent's handshake must still be answered
        // (connect gives the relay 5 s).
        let mut a2 = connect(&args.agent_socket, Duration::from_secs(5))
            .expect("the relay accepts the next agent while the guest is silent");
        a2.stop_task("after restart", false).unwrap();
        assert!(matches!(
            host_rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            HostMessage::StopTask { .. }
        ));
        script_tx.send(None).unwrap();
        guest.join().unwrap();
        assert!(matches!(a2.recv(), Err(guest_proto::ProtoError::Closed)));
        relay.join().unwrap().unwrap();
    }

    #[test]
    fn relay_gives_up_when_the_guest_never_connects() {
        let d = tempfile::tempdir().unwrap();
        let args = RelayArgs {
            guest_socket: d.path().join("v.sock_1024"),
            agent_socket: d.path().join("relay.sock"),
            owner: nix_ids(),
            boot_timeout: Duration::from_millis(300),
            queue_bytes: DEFAULT_QUEUE_BYTES,
        };
        let relay = {
            let a = args.clone();
            std::thread::spawn(move || run(&a))
        };
        let mut a = connect(&args.agent_socket, Duration::from_secs(5)).unwrap();
        assert!(a.recv().is_err(), "the relay hangs up");
        let e = relay.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("never connected"), "{e}");
    }

    #[test]
    fn a_log_flood_is_bounded_in_bytes_and_the_dropped_lines_are_counted() {
        let d = tempfile::tempdir().unwrap();
        let rig = relay_with_guest(d.path());
        let a1 = rig.agent_runs("arn:flood");
        let Rig {
            args,
            relay,
            script_tx,
            guest,
            ..
        } = rig;
        // No agent reads while the guest writes 10 MiB of lines (40x the budget).
        drop(a1);
        let n = 10 * 1024;
        let line = "x".repeat(1000);
        for i in 0..n {
            script_tx
                .send(Some(GuestMessage::Log {
                    container: "web".into(),
                    stream: guest_proto::LogStream::Stdout,
                    timestamp_ms: i,
                    line: line.clone(),
                }))
                .unwrap();
        }
        script_tx
            .send(Some(GuestMessage::TaskStopped {
                reason: "done".into(),
                containers: vec![],
            }))
            .unwrap();
        // Only the first connection is taken: the guest socket is gone.
        assert!(!args.guest_socket.exists());
        assert!(UnixStream::connect(&args.guest_socket).is_err());
        script_tx.send(None).unwrap();
        guest.join().unwrap();
        let mut a2 = connect(&args.agent_socket, Duration::from_secs(5)).unwrap();
        let (mut lines, mut marked, mut bytes) = (0u64, 0u64, 0usize);
        loop {
            match a2.recv().unwrap() {
                GuestMessage::Log { line: l, .. } if l.starts_with("[vm-relay]") => {
                    let k: u64 = l.split(' ').nth(1).unwrap().parse().unwrap();
                    assert_eq!(l, dropped_marker(k));
                    marked += k;
                }
                GuestMessage::Log { line: l, .. } => {
                    lines += 1;
                    bytes += l.len() + 3 + ENTRY_OVERHEAD;
                }
                GuestMessage::TaskStopped { .. } => break,
                m => panic!("{m:?}"),
            }
        }
        assert!(bytes <= DEFAULT_QUEUE_BYTES, "{bytes} bytes held");
        assert!(lines > 100, "{lines}");
        assert_eq!(lines + marked, n, "every line delivered or counted");
        relay.join().unwrap().unwrap();
    }

    fn nix_ids() -> (u32, u32) {
        // SAFETY: getuid/getgid cannot fail and take no arguments.
        unsafe { (libc::getuid(), libc::getgid()) }
    }
}
