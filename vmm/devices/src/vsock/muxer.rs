//! Routes vsock packets between the guest and host Unix sockets, the way Firecracker
//! documents it:
//! - guest connects to host port P: we connect to `<uds_path>_P`;
//! - a host client connects to `<uds_path>`, sends `CONNECT <port>\n`; once the guest
//!   accepts, it reads `OK <host_port>\n` and the stream carries data.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use std::time::Instant;

use vmm_sys_util::timerfd::TimerFd;

use super::connection::{Connection, State, CONNECT_TIMEOUT};
use super::packet::{op, Header, HOST_CID, TYPE_STREAM};

/// Longest `CONNECT <port>\n` line accepted.
const MAX_HANDSHAKE: usize = 32;
/// Most connections at once (guest-initiated plus host-initiated).
pub const MAX_CONNECTIONS: usize = 1024;
/// First host-side port given to host-initiated connections.
const FIRST_LOCAL_PORT: u32 = 1 << 30;

/// Fds whose registration in the event loop must change.
#[derive(Debug, Default)]
pub struct FdChanges {
    /// New streams to watch (readable, writable, edge-triggered).
    pub add: Vec<RawFd>,
    /// Streams to stop watching; they close when this list is dropped.
    pub remove: Vec<UnixStream>,
}

type Key = (u32, u32); // (local port, peer port)

/// The connection multiplexer.
#[derive(Debug)]
pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    conns: BTreeMap<Key, Connection>,
    by_fd: HashMap<RawFd, Key>,
    handshakes: HashMap<RawFd, (UnixStream, Vec<u8>)>,
    replies: VecDeque<Header>,
    next_local_port: u32,
    rr: Option<Key>,
    timer: TimerFd,
    /// Registration changes for the event loop to apply.
    pub fd_changes: FdChanges,
}

impl Muxer {
    /// Binds the host listener at `uds_path` (which must not exist).
    pub fn new(guest_cid: u64, uds_path: &Path) -> std::io::Result<Self> {
        let listener = UnixListener::bind(uds_path)?;
        listener.set_nonblocking(true)?;
        Ok(Muxer {
            guest_cid,
            uds_path: uds_path.to_path_buf(),
            listener,
            conns: BTreeMap::new(),
            by_fd: HashMap::new(),
            handshakes: HashMap::new(),
            replies: VecDeque::new(),
            next_local_port: FIRST_LOCAL_PORT,
            rr: None,
            timer: TimerFd::new()?,
            fd_changes: FdChanges::default(),
        })
    }

    /// The listener's fd (watch for readability).
    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// The connect-timeout timer's fd (watch for readability, then call `on_timer`).
    pub fn timer_fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }

    /// Drops host-initiated connections the guest did not accept in time: the host client
    /// sees its socket closed, the guest an RST.
    pub fn on_timer(&mut self) {
        if let Err(e) = self.timer.wait() {
            tracing::debug!("vsock: timer read: {e}");
        }
        let now = Instant::now();
        let expired: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Connecting && c.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.replies.push_back(Header {
                src_cid: HOST_CID,
                dst_cid: self.guest_cid,
                src_port: key.0,
                dst_port: key.1,
                type_: TYPE_STREAM,
                op: op::RST,
                ..Header::default()
            });
            self.remove(key);
        }
        self.arm_timer();
    }

    fn arm_timer(&mut self) {
        let next = self
            .conns
            .values()
            .filter(|c| c.state == State::Connecting)
            .filter_map(|c| c.deadline)
            .min();
        let r = match next {
            Some(d) => {
                let wait = d.saturating_duration_since(Instant::now());
                self.timer
                    .reset(wait.max(std::time::Duration::from_millis(1)), None)
            }
            None => self.timer.clear(),
        };
        if let Err(e) = r {
            tracing::warn!("vsock: cannot arm connect timer: {e}");
        }
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn rst_for(&mut self, h: &Header) {
        if h.op == op::RST {
            return;
        }
        self.replies.push_back(Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: h.dst_port,
            dst_port: h.src_port,
            type_: TYPE_STREAM,
            op: op::RST,
            ..Header::default()
        });
    }

    fn insert(&mut self, c: Connection) {
        let fd = c.stream.as_raw_fd();
        let key = (c.local_port, c.peer_port);
        self.by_fd.insert(fd, key);
        self.conns.insert(key, c);
    }

    fn remove(&mut self, key: Key) {
        if let Some(c) = self.conns.remove(&key) {
            self.by_fd.remove(&c.stream.as_raw_fd());
            self.fd_changes.remove.push(c.stream);
        }
    }

    /// Handles one packet from the guest's tx queue.
    pub fn on_guest_packet(&mut self, h: &Header, data: &[u8]) {
        if h.dst_cid != HOST_CID || h.src_cid != self.guest_cid || h.type_ != TYPE_STREAM {
            self.rst_for(h);
            return;
        }
        let key = (h.dst_port, h.src_port);
        if let Some(c) = self.conns.get_mut(&key) {
            c.on_guest_packet(h, data);
            if c.state == State::Dead {
                self.remove(key);
            }
            return;
        }
        if h.op != op::REQUEST || self.conns.len() >= MAX_CONNECTIONS {
            self.rst_for(h);
            return;
        }
        let path = format!("{}_{}", self.uds_path.display(), h.dst_port);
        match connect_nonblocking(Path::new(&path)) {
            Ok(stream) => {
                self.fd_changes.add.push(stream.as_raw_fd());
                self.insert(Connection::guest_initiated(stream, h));
            }
            Err(e) => {
                tracing::debug!("vsock: guest connect to {path}: {e}");
                self.rst_for(h);
            }
        }
    }

    /// Accepts host clients waiting on the listener.
    pub fn on_listener(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    if s.set_nonblocking(true).is_err()
                        || self.handshakes.len() + self.conns.len() >= MAX_CONNECTIONS
                    {
                        continue;
                    }
                    self.fd_changes.add.push(s.as_raw_fd());
                    self.handshakes.insert(s.as_raw_fd(), (s, Vec::new()));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    /// A watched stream is readable or writable.
    pub fn on_stream(&mut self, fd: RawFd) {
        if self.handshakes.contains_key(&fd) {
            self.on_handshake(fd);
            return;
        }
        if let Some(&key) = self.by_fd.get(&fd) {
            if let Some(c) = self.conns.get_mut(&key) {
                c.host_readable = true;
                c.flush_to_host();
                if c.state == State::Dead {
                    self.remove(key);
                }
            }
        }
    }

    fn on_handshake(&mut self, fd: RawFd) {
        let Some((mut s, mut buf)) = self.handshakes.remove(&fd) else {
            return;
        };
        let mut chunk = [0u8; MAX_HANDSHAKE];
        loop {
            match s.read(&mut chunk[..MAX_HANDSHAKE - buf.len().min(MAX_HANDSHAKE)]) {
                Ok(0) => return self.fd_changes.remove.push(s),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return self.fd_changes.remove.push(s),
            }
            if buf.contains(&b'\n') || buf.len() >= MAX_HANDSHAKE {
                break;
            }
        }
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() >= MAX_HANDSHAKE {
                self.fd_changes.remove.push(s);
            } else {
                self.handshakes.insert(fd, (s, buf));
            }
            return;
        };
        let port = std::str::from_utf8(&buf[..nl])
            .ok()
            .and_then(|l| l.trim_end_matches('\r').strip_prefix("CONNECT "))
            .and_then(|p| p.trim().parse::<u32>().ok());
        let Some(port) = port else {
            tracing::debug!("vsock: bad handshake from host client");
            return self.fd_changes.remove.push(s);
        };
        let local = self.alloc_local_port(port);
        let c = Connection::host_initiated(s, local, port, &buf[nl + 1..]);
        self.insert(c);
        if !self.timer.is_armed().unwrap_or(false) {
            if let Err(e) = self.timer.reset(CONNECT_TIMEOUT, None) {
                tracing::warn!("vsock: cannot arm connect timer: {e}");
            }
        }
    }

    fn alloc_local_port(&mut self, peer: u32) -> u32 {
        loop {
            let p = self.next_local_port;
            self.next_local_port = self.next_local_port.wrapping_add(1).max(FIRST_LOCAL_PORT);
            if !self.conns.contains_key(&(p, peer)) {
                return p;
            }
        }
    }

    /// Whether any packet waits for an rx buffer.
    pub fn has_rx(&self) -> bool {
        !self.replies.is_empty() || self.conns.values().any(|c| c.wants_rx())
    }

    /// The next packet for the guest whose payload fits `cap` bytes.
    pub fn next_rx(&mut self, cap: usize) -> Option<(Header, Vec<u8>)> {
        if let Some(h) = self.replies.pop_front() {
            return Some((h, Vec::new()));
        }
        // Round-robin over connections, starting after the last one served.
        let keys: Vec<Key> = match self.rr {
            Some(last) => {
                let after = self
                    .conns
                    .range((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded));
                let before = self.conns.range(..=last);
                after.chain(before).map(|(k, _)| *k).collect()
            }
            None => self.conns.keys().copied().collect(),
        };
        for key in keys {
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            if !c.wants_rx() {
                continue;
            }
            if let Some((o, flags, data)) = c.next_rx(cap) {
                let h = c.header(self.guest_cid, o, flags, data.len() as u32);
                if c.state == State::Dead {
                    self.remove(key);
                }
                self.rr = Some(key);
                return Some((h, data));
            }
            if c.state == State::Dead {
                self.remove(key);
            }
        }
        None
    }

    /// Drops every connection (device reset).
    pub fn reset(&mut self) {
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for k in keys {
            self.remove(k);
        }
        for (_, (s, _)) in self.handshakes.drain() {
            self.fd_changes.remove.push(s);
        }
        self.replies.clear();
    }
}

/// Connects a non-blocking Unix stream: a listener whose backlog is full fails at once
/// (EAGAIN) instead of stalling the event loop.
pub(crate) fn connect_nonblocking(path: &Path) -> std::io::Result<UnixStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_UNIX, flags, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un and `len` does not exceed its size.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(UnixStream::from(fd))
}

impl Drop for Muxer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}
