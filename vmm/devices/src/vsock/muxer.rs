//! Routes vsock packets between the guest and host Unix sockets, the way Firecracker
//! documents it:
//! - guest connects to host port P: we connect to `<uds_path>_P`;
//! - a host client connects to `<uds_path>`, sends `CONNECT <port>\n`; once the guest
//!   accepts, it reads `OK <host_port>\n` and the stream carries data.
//!
//! # What a hostile guest gets
//! Everything the muxer holds for a VM is bounded, in counts and in bytes ([`VsockLimits`]
//! gives the numbers; defaults in brackets), whatever the guest sends and however slowly
//! it drains its rx queue:
//! - Replies that belong to no connection (RSTs for packets to ports nobody serves, to
//!   unknown connections, with a wrong CID or type; RSTs for host connects the guest did
//!   not answer in time) wait in one queue of at most `max_replies` [512] headers
//!   (48 bytes each: 24 KiB). Beyond that, new ones are dropped and counted in the device's
//!   `dropped` metric. Dropping them is safe: each answers a packet for which no state
//!   exists, so the guest's connect simply times out (Linux: 2 s), and any later packet
//!   on that connection is answered with an RST again.
//! - Control packets of a live connection are merged: at most
//!   [`connection::MAX_PENDING`](super::connection::MAX_PENDING) per connection (a flood of
//!   CREDIT_REQUESTs queues one CREDIT_UPDATE).
//! - Connections, guest-initiated and host-initiated, plus host clients still sending their
//!   `CONNECT` line, count against one limit, `max_connections` [256]. A guest REQUEST
//!   beyond it gets an RST; a host client beyond it is closed at once (counted in
//!   `dropped`). A host client has `handshake_timeout` [2 s] to send its `CONNECT` line,
//!   and the guest `CONNECT_TIMEOUT` [2 s] to accept; then the client's socket is closed.
//! - Guest data the host sockets have not taken: at most `CONN_BUF` [256 KiB] per
//!   connection (the credit we advertise) and `max_tx_buffered` [4 MiB] for the whole VM;
//!   an RW within the guest's credit that would pass the VM's budget resets that connection
//!   (RST to the guest, host socket closed, counted in `dropped`). Buffers shrink as they
//!   drain, so their allocations stay under twice the budget (8 MiB) plus 4 KiB per
//!   connection.
//! - Host -> guest data is read from a host socket only into an rx buffer the guest
//!   posted and only within its credit; the rest stays in the host peer's socket buffer
//!   (its sender blocks), never in the vmm.
//! - One tx kick handles at most `tx_batch` [256, a queue's worth] packets, then kicks the
//!   device again and yields to the event loop, so streams that a REQUEST/RST flood opens
//!   and closes never pile up in one pass.
//!
//! Worst case per VM: [`VsockLimits::heap_bound`] bytes of buffers and queues, 9.1 MiB with
//! the defaults (tx buffers 8 MiB, reply queue 48 KiB, 256 connection slots x 4.25 KiB),
//! plus the connection structs (256 x ~0.3 KiB), plus, in the kernel, the send buffers of
//! the vmm's host sockets whose peers do not read (`net.core.wmem_default` each, ~208 KiB,
//! the host peer's choice).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_sys_util::timerfd::TimerFd;

use super::connection::{Connection, State};
use super::packet::{op, Header, HOST_CID, TYPE_STREAM};
use crate::metrics::DeviceMetrics;

/// Longest `CONNECT <port>\n` line accepted.
const MAX_HANDSHAKE: usize = 32;
/// Default most connections at once (guest-initiated, host-initiated and host clients
/// still in their handshake).
pub const MAX_CONNECTIONS: usize = 256;
/// Default most replies (RSTs for packets that belong to no connection) waiting for the
/// guest's rx buffers.
pub const MAX_REPLIES: usize = 512;
/// Default most guest bytes held for host sockets that do not read, over the whole VM.
pub const MAX_TX_BUFFERED: usize = 4 << 20;
/// Default time a host client has to send its `CONNECT` line.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default packets one tx kick handles: a queue's worth.
pub const TX_BATCH: usize = super::QUEUE_SIZE as usize;

/// Per-VM bounds of the vsock device (see the module header for the semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsockLimits {
    /// Connections plus host clients in their handshake.
    pub max_connections: usize,
    /// Replies for no connection waiting for rx buffers.
    pub max_replies: usize,
    /// Guest bytes held for host sockets, all connections together.
    pub max_tx_buffered: usize,
    /// Time a host client has to send its `CONNECT` line.
    pub handshake_timeout: Duration,
    /// Packets one tx kick handles before the event loop runs again (the device kicks
    /// itself for the rest); 0 counts as 1.
    pub tx_batch: usize,
}

impl VsockLimits {
    /// Heap bytes the muxer's buffers and queues can hold under these limits: the reply
    /// queue's allocation (at most twice its bound), the guest's bytes for host sockets
    /// (allocations at most twice the budget), and per connection slot a 4 KiB buffer floor
    /// plus its control queue, stash and handshake line (under 256 bytes).
    pub fn heap_bound(&self) -> usize {
        2 * self.max_replies * std::mem::size_of::<Header>()
            + 2 * self.max_tx_buffered
            + self.max_connections * (4096 + 256)
    }
}

impl Default for VsockLimits {
    fn default() -> Self {
        VsockLimits {
            max_connections: MAX_CONNECTIONS,
            max_replies: MAX_REPLIES,
            max_tx_buffered: MAX_TX_BUFFERED,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            tx_batch: TX_BATCH,
        }
    }
}
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

/// A host client that has not finished its `CONNECT` line.
#[derive(Debug)]
struct Handshake {
    stream: UnixStream,
    buf: Vec<u8>,
    deadline: Instant,
}

/// The connection multiplexer.
#[derive(Debug)]
pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    conns: BTreeMap<Key, Connection>,
    by_fd: HashMap<RawFd, Key>,
    handshakes: HashMap<RawFd, Handshake>,
    replies: VecDeque<Header>,
    next_local_port: u32,
    rr: Option<Key>,
    timer: TimerFd,
    limits: VsockLimits,
    /// Sum of the connections' `tx_buffered()`.
    tx_total: usize,
    metrics: Arc<DeviceMetrics>,
    /// Registration changes for the event loop to apply.
    pub fd_changes: FdChanges,
}

impl Muxer {
    /// Binds the host listener at `uds_path` (which must not exist). Drops are counted in
    /// `metrics.dropped`.
    pub fn new(
        guest_cid: u64,
        uds_path: &Path,
        limits: VsockLimits,
        metrics: Arc<DeviceMetrics>,
    ) -> std::io::Result<Self> {
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
            timer: nonblocking_timer()?,
            limits,
            tx_total: 0,
            metrics,
            fd_changes: FdChanges::default(),
        })
    }

    /// The bounds in force.
    pub fn limits(&self) -> VsockLimits {
        self.limits
    }

    /// Replies for no connection waiting for the guest's rx buffers.
    pub fn queued_replies(&self) -> usize {
        self.replies.len()
    }

    /// Control packets queued for the guest: replies plus every connection's pending ones.
    pub fn queued_packets(&self) -> usize {
        self.replies.len() + self.conns.values().map(|c| c.pending_len()).sum::<usize>()
    }

    /// Guest bytes held for host sockets, all connections together.
    pub fn tx_buffered(&self) -> usize {
        self.tx_total
    }

    /// Heap bytes held in buffers and queues for the guest and host clients (allocations,
    /// not contents; the connection structs themselves not included).
    pub fn heap_bytes(&self) -> usize {
        self.replies.capacity() * std::mem::size_of::<Header>()
            + self.conns.values().map(|c| c.heap_bytes()).sum::<usize>()
            + self
                .handshakes
                .values()
                .map(|h| h.buf.capacity())
                .sum::<usize>()
    }

    /// Host clients still sending their `CONNECT` line.
    pub fn handshake_count(&self) -> usize {
        self.handshakes.len()
    }

    fn drop_one(&self) {
        DeviceMetrics::inc(&self.metrics.dropped);
    }

    /// Queues a reply that belongs to no connection, unless `max_replies` wait already.
    fn push_reply(&mut self, h: Header) {
        if self.replies.len() >= self.limits.max_replies {
            self.drop_one();
            return;
        }
        self.replies.push_back(h);
    }

    /// The listener's fd (watch for readability).
    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// The connect-timeout timer's fd (watch for readability, then call `on_timer`).
    pub fn timer_fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }

    /// Drops host-initiated connections the guest did not accept in time (the host client
    /// sees its socket closed, the guest an RST) and host clients that did not send their
    /// `CONNECT` line in time.
    pub fn on_timer(&mut self) {
        // Non-blocking: EAGAIN when the timer was re-armed since it fired (the deadlines
        // below are checked either way).
        if let Err(e) = self.timer.wait() {
            tracing::debug!("vsock: timer read: {e}");
        }
        let now = Instant::now();
        let late: Vec<RawFd> = self
            .handshakes
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(fd, _)| *fd)
            .collect();
        for fd in late {
            if let Some(h) = self.handshakes.remove(&fd) {
                tracing::debug!("vsock: host client sent no CONNECT line in time");
                self.fd_changes.remove.push(h.stream);
            }
        }
        let expired: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Connecting && c.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.push_reply(Header {
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
            .chain(self.handshakes.values().map(|h| h.deadline))
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
        self.push_reply(Header {
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
            self.tx_total -= c.tx_buffered();
            self.by_fd.remove(&c.stream.as_raw_fd());
            self.fd_changes.remove.push(c.stream);
        }
    }

    /// Runs `f` on connection `key`, keeping `tx_total` in step and removing the
    /// connection if it died.
    fn with_conn<R>(&mut self, key: Key, f: impl FnOnce(&mut Connection, usize) -> R) -> Option<R> {
        let c = self.conns.get_mut(&key)?;
        let before = c.tx_buffered();
        let room = self
            .limits
            .max_tx_buffered
            .saturating_sub(self.tx_total - before);
        let r = f(c, room);
        let (after, dead) = (c.tx_buffered(), c.state == State::Dead);
        self.tx_total = self.tx_total - before + after;
        if dead {
            self.remove(key);
        }
        Some(r)
    }

    /// Connections plus host clients in their handshake.
    fn slots_used(&self) -> usize {
        self.conns.len() + self.handshakes.len()
    }

    /// Handles one packet from the guest's tx queue.
    pub fn on_guest_packet(&mut self, h: &Header, data: &[u8]) {
        if h.dst_cid != HOST_CID || h.src_cid != self.guest_cid || h.type_ != TYPE_STREAM {
            self.rst_for(h);
            return;
        }
        let key = (h.dst_port, h.src_port);
        if let Some(over) = self.with_conn(key, |c, room| c.on_guest_packet(h, data, room)) {
            if over {
                tracing::debug!("vsock: guest data over the VM's buffered-bytes budget");
                self.drop_one();
            }
            return;
        }
        if h.op != op::REQUEST || self.slots_used() >= self.limits.max_connections {
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
        let mut added = false;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    if self.slots_used() >= self.limits.max_connections {
                        // Closed at once: the client reads EOF.
                        self.drop_one();
                        continue;
                    }
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.fd_changes.add.push(s.as_raw_fd());
                    let deadline = Instant::now() + self.limits.handshake_timeout;
                    let h = Handshake {
                        stream: s,
                        buf: Vec::new(),
                        deadline,
                    };
                    self.handshakes.insert(h.stream.as_raw_fd(), h);
                    added = true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if added {
            self.arm_timer();
        }
    }

    /// A watched stream is readable or writable.
    pub fn on_stream(&mut self, fd: RawFd) {
        if self.handshakes.contains_key(&fd) {
            self.on_handshake(fd);
            return;
        }
        if let Some(&key) = self.by_fd.get(&fd) {
            self.with_conn(key, |c, _| {
                c.host_readable = true;
                c.flush_to_host();
            });
        }
    }

    fn on_handshake(&mut self, fd: RawFd) {
        let Some(Handshake {
            stream: mut s,
            mut buf,
            deadline,
        }) = self.handshakes.remove(&fd)
        else {
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
                let h = Handshake {
                    stream: s,
                    buf,
                    deadline,
                };
                self.handshakes.insert(fd, h);
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
        self.arm_timer();
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
            let guest_cid = self.guest_cid;
            let got = self.with_conn(key, |c, _| {
                c.next_rx(cap).map(|(o, flags, data)| {
                    (c.header(guest_cid, o, flags, data.len() as u32), data)
                })
            });
            if let Some(Some(pkt)) = got {
                self.rr = Some(key);
                return Some(pkt);
            }
        }
        None
    }

    /// Drops every connection (device reset). Makes no system call: it runs on a vCPU
    /// thread; the streams go to `fd_changes` for the event loop to unregister and close.
    pub fn reset(&mut self) {
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for k in keys {
            self.remove(k);
        }
        for (_, h) in self.handshakes.drain() {
            self.fd_changes.remove.push(h.stream);
        }
        self.replies.clear();
        // The timer is left as it is: this runs on a vCPU thread (the guest's status write
        // of 0, which Linux does when it probes the device), whose seccomp filter allows no
        // timerfd call. If it fires, `on_timer` finds nothing due and disarms it.
    }
}

/// The connect/handshake timer, non-blocking: `on_timer` may run after the timer was
/// re-armed (an `arm_timer` between its expiry and the event's dispatch), and then must
/// not wait for the new expiry with the event loop stalled.
fn nonblocking_timer() -> std::io::Result<TimerFd> {
    let timer = TimerFd::new()?;
    let fd = timer.as_raw_fd();
    // SAFETY: fcntl on a timerfd this function owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above; the flags are the fd's own plus O_NONBLOCK.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(timer)
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
