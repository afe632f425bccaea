//! One vsock stream connection between a guest port and a host Unix socket, with the
//! virtio-vsock credit-based flow control.
//!
//! What one connection can hold for a hostile guest (the muxer bounds the sums per VM):
//! - guest -> host bytes the host socket has not taken (`tx_buf`): at most [`CONN_BUF`]
//!   (the credit we advertise; a guest that overruns it is reset), and at most what the
//!   VM's buffered-bytes budget has left (`room` in [`Connection::on_guest_packet`]; over
//!   it, the connection is reset). Its allocation is shrunk as it drains, so it stays
//!   under twice its contents.
//! - host -> guest bytes: none. The host socket is read only when the guest has posted an
//!   rx buffer and has credit, at most one packet's worth ([`MAX_RX_PAYLOAD`]) at a time;
//!   what the host peer sends beyond that stays in its own socket buffer.
//! - bytes a host client sent after its `CONNECT` line (`stash`): under the handshake
//!   line limit (32 bytes).
//! - control packets for the guest (`pending`): at most [`MAX_PENDING`]: the
//!   REQUEST/RESPONSE, then one CREDIT_UPDATE (a guest's CREDIT_REQUESTs are merged into
//!   the one already queued); an RST replaces everything queued.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::num::Wrapping;
use std::os::unix::net::UnixStream;

use super::packet::{op, Header, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};

/// Our receive buffer per connection, advertised as `buf_alloc`: the most guest data we
/// hold for a host socket that does not read.
pub const CONN_BUF: u32 = 256 * 1024;
/// Largest payload we put in one rx packet.
pub const MAX_RX_PAYLOAD: usize = 64 * 1024;

/// Most control packets one connection queues for the guest.
pub const MAX_PENDING: usize = 2;
/// Below this allocation the guest -> host buffer is not shrunk.
const TX_BUF_KEEP: usize = 4096;

/// How long a host client's CONNECT waits for the guest to accept.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: REQUEST sent (or queued), waiting for the guest's RESPONSE.
    Connecting,
    /// Data flows.
    Established,
    /// Finished: remove once the queued packets (an RST) are delivered.
    Closing,
    /// Gone: remove now.
    Dead,
}

/// A connection.
#[derive(Debug)]
pub struct Connection {
    /// The host side.
    pub stream: UnixStream,
    /// Host-side port.
    pub local_port: u32,
    /// Guest-side port.
    pub peer_port: u32,
    /// State.
    pub state: State,
    /// Set when the host socket may have data (edge-triggered readiness).
    pub host_readable: bool,
    pending: VecDeque<(u16, u32)>,
    tx_buf: VecDeque<u8>,
    stash: VecDeque<u8>,
    fwd_cnt: Wrapping<u32>,
    last_fwd_cnt_sent: Wrapping<u32>,
    rx_cnt: Wrapping<u32>,
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    host_eof: bool,
    peer_shut_send: bool,
    /// Host-initiated: when to give up waiting for the guest's RESPONSE.
    pub deadline: Option<std::time::Instant>,
}

impl Connection {
    fn new(stream: UnixStream, local_port: u32, peer_port: u32, state: State) -> Self {
        Connection {
            stream,
            local_port,
            peer_port,
            state,
            host_readable: true,
            pending: VecDeque::new(),
            tx_buf: VecDeque::new(),
            stash: VecDeque::new(),
            fwd_cnt: Wrapping(0),
            last_fwd_cnt_sent: Wrapping(0),
            rx_cnt: Wrapping(0),
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            host_eof: false,
            peer_shut_send: false,
            deadline: None,
        }
    }

    /// The guest connected to a host listener (`<uds_path>_<port>`): answer RESPONSE.
    pub fn guest_initiated(stream: UnixStream, req: &Header) -> Self {
        let mut c = Connection::new(stream, req.dst_port, req.src_port, State::Established);
        c.update_peer_credit(req);
        c.pending.push_back((op::RESPONSE, 0));
        c
    }

    /// A host client sent `CONNECT <port>`: ask the guest with a REQUEST. `stash` holds
    /// bytes the client sent after its CONNECT line.
    pub fn host_initiated(stream: UnixStream, local: u32, peer: u32, stash: &[u8]) -> Self {
        let mut c = Connection::new(stream, local, peer, State::Connecting);
        c.deadline = Some(std::time::Instant::now() + CONNECT_TIMEOUT);
        c.stash.extend(stash);
        c.pending.push_back((op::REQUEST, 0));
        c
    }

    fn update_peer_credit(&mut self, h: &Header) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = Wrapping(h.fwd_cnt);
    }

    /// Bytes the guest can still take.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.pending.push_back((op::RST, 0));
        self.state = State::Closing;
    }

    /// Guest bytes waiting for the host socket.
    pub fn tx_buffered(&self) -> usize {
        self.tx_buf.len()
    }

    /// Heap bytes this connection holds for its peers (buffers, not the struct).
    pub fn heap_bytes(&self) -> usize {
        self.tx_buf.capacity()
            + self.stash.capacity()
            + self.pending.capacity() * std::mem::size_of::<(u16, u32)>()
    }

    /// Control packets queued for the guest.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn queue_credit_update(&mut self) {
        if !self.pending.contains(&(op::CREDIT_UPDATE, 0)) {
            self.pending.push_back((op::CREDIT_UPDATE, 0));
        }
    }

    /// Handles a packet the guest sent on this connection. `room` is how many guest bytes
    /// this connection may hold in all (the VM's budget left, plus what it holds now).
    /// Returns true when the connection was reset because that budget was spent.
    pub fn on_guest_packet(&mut self, h: &Header, data: &[u8], room: usize) -> bool {
        self.update_peer_credit(h);
        match (h.op, self.state) {
            (op::RST, _) => self.state = State::Dead,
            (op::RESPONSE, State::Connecting) => {
                let ok = format!("OK {}\n", self.local_port);
                match self.stream.write_all(ok.as_bytes()) {
                    Ok(()) => self.state = State::Established,
                    Err(_) => self.reset(),
                }
            }
            (op::RW, State::Established) => {
                if self.peer_shut_send || self.tx_buf.len() + data.len() > CONN_BUF as usize {
                    // The guest ignored our credit or its own shutdown.
                    self.reset();
                    return false;
                }
                if self.tx_buf.len() + data.len() > room {
                    // Within its credit, but the VM holds too much for host sockets that
                    // do not read: first give the host socket a chance to take some.
                    self.flush_to_host();
                    if self.state != State::Established {
                        return false;
                    }
                    if self.tx_buf.len() + data.len() > room {
                        self.reset();
                        return true;
                    }
                }
                self.tx_buf.extend(data);
                self.flush_to_host();
            }
            (op::CREDIT_UPDATE, State::Established) => {}
            (op::CREDIT_REQUEST, State::Established) => self.queue_credit_update(),
            (op::SHUTDOWN, State::Established) => {
                if h.flags & SHUTDOWN_SEND != 0 {
                    self.peer_shut_send = true;
                }
                self.flush_to_host();
                if h.flags & (SHUTDOWN_SEND | SHUTDOWN_RCV) == SHUTDOWN_SEND | SHUTDOWN_RCV {
                    self.reset();
                }
            }
            (_, State::Closing) | (_, State::Dead) => {}
            _ => self.reset(),
        }
        false
    }

    /// Writes buffered guest data to the host socket, as far as it takes it.
    pub fn flush_to_host(&mut self) {
        while !self.tx_buf.is_empty() {
            let (a, _) = self.tx_buf.as_slices();
            match self.stream.write(a) {
                Ok(0) => break,
                Ok(n) => {
                    self.tx_buf.drain(..n);
                    self.fwd_cnt += Wrapping(n as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.reset();
                    return;
                }
            }
        }
        // Give memory back as the buffer drains: the allocation stays under twice what it
        // holds (or TX_BUF_KEEP).
        let (len, cap) = (self.tx_buf.len(), self.tx_buf.capacity());
        if cap > TX_BUF_KEEP && len < cap / 2 {
            self.tx_buf.shrink_to(len.max(TX_BUF_KEEP));
        }
        if self.tx_buf.is_empty() && self.peer_shut_send {
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        let unreported = (self.fwd_cnt - self.last_fwd_cnt_sent).0;
        if unreported >= CONN_BUF / 4 && self.state == State::Established {
            self.queue_credit_update();
        }
    }

    /// Whether the connection has something for the guest.
    pub fn wants_rx(&self) -> bool {
        !self.pending.is_empty()
            || (self.state == State::Established
                && !self.host_eof
                && (self.host_readable || !self.stash.is_empty())
                && self.peer_credit() > 0)
    }

    /// The next packet for the guest (op, flags, payload) fitting `cap` payload bytes.
    pub fn next_rx(&mut self, cap: usize) -> Option<(u16, u32, Vec<u8>)> {
        if let Some((o, f)) = self.pending.pop_front() {
            if o == op::RST {
                self.state = State::Dead;
            }
            return Some((o, f, Vec::new()));
        }
        if self.state != State::Established || self.host_eof {
            return None;
        }
        let want = cap.min(self.peer_credit() as usize).min(MAX_RX_PAYLOAD);
        if want == 0 {
            return None;
        }
        let data = if !self.stash.is_empty() {
            let n = want.min(self.stash.len());
            self.stash.drain(..n).collect()
        } else {
            if !self.host_readable {
                return None;
            }
            let mut buf = vec![0u8; want];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.host_eof = true;
                    return Some((op::SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND, Vec::new()));
                }
                Ok(n) => {
                    buf.truncate(n);
                    buf
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.host_readable = false;
                    return None;
                }
                Err(_) => {
                    self.state = State::Dead;
                    return Some((op::RST, 0, Vec::new()));
                }
            }
        };
        self.rx_cnt += Wrapping(data.len() as u32);
        Some((op::RW, 0, data))
    }

    /// Fills a header for a packet to the guest, and records the credit it reports.
    pub fn header(&mut self, guest_cid: u64, op: u16, flags: u32, len: u32) -> Header {
        self.last_fwd_cnt_sent = self.fwd_cnt;
        Header {
            src_cid: super::packet::HOST_CID,
            dst_cid: guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc: CONN_BUF,
            fwd_cnt: self.fwd_cnt.0,
        }
    }
}
