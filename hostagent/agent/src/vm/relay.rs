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
//! agent. While no agent is connected the relay stops reading the guest after
//! [`QUEUE_LIMIT`] messages (the guest init then back-pressures container output).
//! The relay exits once the guest has hung up and its last message was delivered (or
//! no agent came for [`ORPHAN_TIMEOUT`]), or when the guest does not connect in time.

use guest_proto::host::{GuestConnection, HostListener};
use guest_proto::messages::Role;
use guest_proto::{Channel, GuestMessage, HostMessage};
use std::collections::VecDeque;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Guest messages held while no agent reads.
pub const QUEUE_LIMIT: usize = 1024;
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
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<GuestMessage>,
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

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the relay until the guest is gone and its messages delivered. Errors: setup
/// failures and a guest that never connected.
pub fn run(args: &RelayArgs) -> Result<(), String> {
    let guest_listener = HostListener::bind_path(&args.guest_socket)
        .map_err(|e| format!("{}: {e}", args.guest_socket.display()))?;
    std::os::unix::fs::chown(&args.guest_socket, Some(args.owner.0), Some(args.owner.1))
        .map_err(|e| format!("chown {}: {e}", args.guest_socket.display()))?;
    let _ = std::fs::remove_file(&args.agent_socket);
    let agent_listener = UnixListener::bind(&args.agent_socket)
        .map_err(|e| format!("{}: {e}", args.agent_socket.display()))?;
    let state = Arc::new(State {
        m: Mutex::new(Shared::default()),
        cv: Condvar::new(),
    });
    {
        let state = state.clone();
        let timeout = args.boot_timeout;
        std::thread::spawn(move || guest_reader(&guest_listener, timeout, &state));
    }
    let result = serve_agents(&agent_listener, &state);
    let _ = std::fs::remove_file(&args.agent_socket);
    let never = state.lock().guest.is_none();
    match result {
        Ok(()) if never => Err("the guest never connected".into()),
        r => r,
    }
}

/// Accepts the guest, then queues its messages until it hangs up.
fn guest_reader(listener: &HostListener, timeout: Duration, state: &State) {
    let mut conn = match listener.accept(timeout) {
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
                s.queue.push_back(m);
                state.cv.notify_all();
                while s.queue.len() >= QUEUE_LIMIT {
                    s = state.cv.wait(s).unwrap_or_else(|p| p.into_inner());
                }
            }
            Err(e) => {
                if !matches!(e, guest_proto::ProtoError::Closed) {
                    eprintln!("vm-relay: guest channel: {e}");
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
            s = state.cv.wait(s).unwrap_or_else(|p| p.into_inner());
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

fn serve_agents(listener: &UnixListener, state: &Arc<State>) -> Result<(), String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("agent socket: {e}"))?;
    let mut idle_since = std::time::Instant::now();
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                {
                    let s = state.lock();
                    if s.guest_done && s.guest.is_none() && s.queue.is_empty() {
                        return Err("the guest never connected".into());
                    }
                    if s.guest_done && idle_since.elapsed() > ORPHAN_TIMEOUT {
                        return Ok(());
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(format!("agent socket: {e}")),
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
                if let Some(m) = s.queue.front() {
                    break Some(m.clone());
                }
                if s.guest_done {
                    break None;
                }
                s = state.cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some(msg) = next else {
            let _ = chan.get_ref().shutdown(std::net::Shutdown::Both);
            return true;
        };
        if chan.send(&msg).is_err() {
            let _ = chan.get_ref().shutdown(std::net::Shutdown::Both);
            return false;
        }
        state.lock().queue.pop_front();
        state.cv.notify_all();
    }
}

/// Connects to a relay's agent socket (retrying until `timeout`: the relay may still be
/// starting) and does the handshake.
pub fn connect(path: &Path, timeout: Duration) -> Result<GuestConnection, String> {
    let deadline = std::time::Instant::now() + timeout;
    let stream = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            Err(e) => {
                if std::time::Instant::now() >= deadline {
                    return Err(format!("relay {}: {e}", path.display()));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let conn = GuestConnection::handshake(stream).map_err(|e| format!("relay handshake: {e}"))?;
    conn.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok(conn)
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
