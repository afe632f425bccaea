//! vsock tests with real Unix sockets, driven through a real event manager.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::{EventManager, SubscriberOps};

use super::connection::{CONN_BUF, MAX_PENDING};
use super::packet::{op, Header, HDR_LEN, HOST_CID, TYPE_STREAM};
use super::*;
use crate::bus::BusDevice;
use crate::test_utils::*;
use crate::transport::MmioTransport;
use crate::GuestMemoryMmap;
use vm_memory::{GuestAddress, GuestMemoryBackend};

const GUEST_CID: u64 = 3;
const RX_BUF: u32 = 4096;
const RX_BASE: u64 = BUF_BASE;
const TX_BASE: u64 = BUF_BASE + 0x40_0000;
/// Entries of the test rx and tx queues.
const RING: u16 = 64;
/// Largest payload of one test tx packet (a tx slot is 4 KiB).
const TX_PAYLOAD: usize = 4000;

struct Guest<'a> {
    mem: &'a GuestMemoryMmap,
    rxq: Driver<'a>,
    txq: Driver<'a>,
    transport: MmioTransport,
    em: EventManager<Arc<Mutex<Vsock>>>,
    dev: Arc<Mutex<Vsock>>,
    rx_seen: u16,
    rx_posted: u16,
    tx_sent: u16,
    /// Post a fresh rx buffer for each one `recv` takes back.
    refill: bool,
    _dir: tempfile::TempDir,
    uds: std::path::PathBuf,
}

impl<'a> Guest<'a> {
    fn new(mem: &'a GuestMemoryMmap) -> Self {
        Self::with(mem, VsockLimits::default(), 60)
    }

    /// A device with `limits`, activated with `rx` rx buffers posted.
    fn with(mem: &'a GuestMemoryMmap, limits: VsockLimits, rx: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v.sock");
        let dev = Arc::new(Mutex::new(
            Vsock::with_limits(
                &VsockConfig {
                    guest_cid: GUEST_CID,
                    uds_path: uds.clone(),
                },
                limits,
            )
            .unwrap(),
        ));
        let rxq = Driver::new(mem, 0, RING);
        let txq = Driver::new(mem, 0x4000, RING);
        let evq = Driver::new(mem, 0x8000, 16);
        let transport = activate(mem, dev.clone(), &[&rxq, &txq, &evq]);
        let mut em = EventManager::new().unwrap();
        em.add_subscriber(dev.clone());
        let mut g = Guest {
            mem,
            rxq,
            txq,
            transport,
            em,
            dev,
            rx_seen: 0,
            rx_posted: 0,
            tx_sent: 0,
            refill: false,
            _dir: dir,
            uds,
        };
        g.post_rx_quiet(rx);
        g
    }

    /// Runs the event loop until it has been idle for 20 ms.
    fn pump(&mut self) {
        for _ in 0..1000 {
            if self.em.run_with_timeout(20).unwrap() == 0 {
                break;
            }
        }
    }

    /// Posts `n` rx buffers of RX_BUF bytes without telling the device.
    fn post_rx_quiet(&mut self, n: u16) {
        for _ in 0..n {
            assert!(
                self.rx_posted.wrapping_sub(self.rx_seen) < RING,
                "test posted more rx buffers than the ring holds"
            );
            let slot = u64::from(self.rx_posted % RING);
            self.rxq
                .push(&[(RX_BASE + slot * u64::from(RX_BUF), RX_BUF, true)]);
            self.rx_posted = self.rx_posted.wrapping_add(1);
        }
    }

    /// Posts `n` rx buffers and kicks the rx queue, as the guest driver does.
    fn post_rx(&mut self, n: u16) {
        self.post_rx_quiet(n);
        self.transport.write(0x50, &0u32.to_le_bytes());
        self.pump();
    }

    fn push_tx(&mut self, h: Header, data: &[u8]) {
        let mut bytes = h.to_bytes().to_vec();
        bytes.extend_from_slice(data);
        assert!(bytes.len() <= 0x1000);
        let addr = TX_BASE + u64::from(self.tx_sent % RING) * 0x1000;
        write_mem(self.mem, addr, &bytes);
        self.txq.push(&[(addr, bytes.len() as u32, false)]);
        self.tx_sent = self.tx_sent.wrapping_add(1);
    }

    fn send(&mut self, h: Header, data: &[u8]) {
        self.push_tx(h, data);
        // Queue notify, as the guest's MMIO write would.
        self.transport.write(0x50, &1u32.to_le_bytes());
        self.pump();
    }

    /// Sends up to a ringful of packets with one kick; returns once the device used them.
    fn send_batch(&mut self, pkts: &[(Header, Vec<u8>)]) {
        assert!(pkts.len() <= usize::from(RING));
        for (h, d) in pkts {
            self.push_tx(*h, d);
        }
        self.transport.write(0x50, &1u32.to_le_bytes());
        for _ in 0..500 {
            if self.txq.used_idx() == self.tx_sent {
                break;
            }
            self.em.run_with_timeout(10).unwrap();
        }
        assert_eq!(
            self.txq.used_idx(),
            self.tx_sent,
            "device did not take the batch"
        );
        self.em.run_with_timeout(0).unwrap();
    }

    fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        self.pump();
        let mut out = Vec::new();
        while self.rx_seen != self.rxq.used_idx() {
            let (id, len) = self.rxq.used(self.rx_seen);
            self.rx_seen = self.rx_seen.wrapping_add(1);
            let addr = RX_BASE + u64::from(id) * u64::from(RX_BUF);
            let bytes = read_mem(self.mem, addr, len as usize);
            let h = Header::from_bytes(bytes[..HDR_LEN].try_into().unwrap());
            out.push((h, bytes[HDR_LEN..].to_vec()));
        }
        if self.refill && !out.is_empty() {
            self.post_rx(out.len() as u16);
        }
        out
    }

    /// Runs the event loop without waiting until nothing is ready.
    fn pump_quick(&mut self) {
        for _ in 0..100 {
            if self.em.run_with_timeout(0).unwrap() == 0 {
                break;
            }
        }
    }

    fn dev(&self) -> std::sync::MutexGuard<'_, Vsock> {
        self.dev.lock().unwrap()
    }
}

fn pkt(src_port: u32, dst_port: u32, op: u16, buf_alloc: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc,
        ..Header::default()
    }
}

fn rw(src_port: u32, dst_port: u32, len: usize) -> Header {
    Header {
        len: len as u32,
        ..pkt(src_port, dst_port, op::RW, 65536)
    }
}

#[test]
fn guest_initiated_connection_to_port_path() {
    let mem = memory();
    let mut g = Guest::new(&mem);
    let listener = UnixListener::bind(format!("{}_52", g.uds.display())).unwrap();
    g.send(pkt(1000, 52, op::REQUEST, 65536), &[]);
    let (mut host, _) = listener.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let got = g.recv();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.op, op::RESPONSE);
    assert_eq!((got[0].0.src_port, got[0].0.dst_port), (52, 1000));
    assert_eq!(got[0].0.dst_cid, GUEST_CID);

    g.send(rw(1000, 52, 4), b"ping");
    let mut buf = [0u8; 4];
    host.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");

    host.write_all(b"pong").unwrap();
    let got = g.recv();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.op, op::RW);
    assert_eq!(got[0].1, b"pong");
    assert_eq!(got[0].0.fwd_cnt, 4, "host consumed the 4 guest bytes");

    // Guest closes: host sees EOF, guest gets RST, connection gone.
    g.send(
        Header {
            flags: 3,
            ..pkt(1000, 52, op::SHUTDOWN, 65536)
        },
        &[],
    );
    let mut rest = Vec::new();
    host.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let got = g.recv();
    assert_eq!(got.last().unwrap().0.op, op::RST);
    assert_eq!(g.dev.lock().unwrap().connection_count(), 0);
}

#[test]
fn host_initiated_connect_handshake() {
    let mem = memory();
    let mut g = Guest::new(&mem);
    let mut host = UnixStream::connect(&g.uds).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host.write_all(b"CONNECT 1234\n").unwrap();
    g.pump();
    let got = g.recv();
    assert_eq!(got.len(), 1);
    let req = got[0].0;
    assert_eq!(req.op, op::REQUEST);
    assert_eq!(req.dst_port, 1234);
    assert!(req.src_port >= 1 << 30);
    // Guest accepts.
    g.send(pkt(1234, req.src_port, op::RESPONSE, 65536), &[]);
    let mut line = String::new();
    BufReader::new(host.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, format!("OK {}\n", req.src_port));
    // Data both ways.
    host.write_all(b"hello guest").unwrap();
    let got = g.recv();
    assert_eq!(got[0].1, b"hello guest");
    g.send(rw(1234, req.src_port, 10), b"hello host");
    let mut buf = [0u8; 10];
    host.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello host");
    // Host closes: guest gets SHUTDOWN, answers RST, connection gone.
    drop(host);
    let got = g.recv();
    assert_eq!(got.last().unwrap().0.op, op::SHUTDOWN);
    g.send(pkt(1234, req.src_port, op::RST, 0), &[]);
    assert_eq!(g.dev.lock().unwrap().connection_count(), 0);
}

#[test]
fn bad_handshake_closes_client() {
    let mem = memory();
    let mut g = Guest::new(&mem);
    let mut host = UnixStream::connect(&g.uds).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host.write_all(b"HELLO 12\n").unwrap();
    g.pump();
    let mut rest = Vec::new();
    assert_eq!(host.read_to_end(&mut rest).unwrap(), 0);
    assert!(g.recv().is_empty());
}

#[test]
fn credit_limits_host_to_guest_data() {
    let mem = memory();
    let mut g = Guest::new(&mem);
    let listener = UnixListener::bind(format!("{}_7", g.uds.display())).unwrap();
    // The guest has only 8 bytes of receive buffer.
    g.send(pkt(9, 7, op::REQUEST, 8), &[]);
    let (mut host, _) = listener.accept().unwrap();
    assert_eq!(g.recv()[0].0.op, op::RESPONSE);
    host.write_all(&[b'x'; 100]).unwrap();
    let got = g.recv();
    let total: usize = got.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(total, 8);
    // The guest consumed them and says so: 8 more bytes may flow.
    g.send(
        Header {
            fwd_cnt: 8,
            ..pkt(9, 7, op::CREDIT_UPDATE, 8)
        },
        &[],
    );
    let got = g.recv();
    let total: usize = got.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(total, 8);
    // A credit request gets a credit update.
    g.send(pkt(9, 7, op::CREDIT_REQUEST, 8), &[]);
    let got = g.recv();
    assert_eq!(got[0].0.op, op::CREDIT_UPDATE);
    assert_eq!(got[0].0.buf_alloc, connection::CONN_BUF);
}

#[test]
fn refused_and_hostile_packets() {
    let mem = memory();
    let mut g = Guest::new(&mem);
    // Nobody listens on port 99: RST.
    g.send(pkt(5, 99, op::REQUEST, 65536), &[]);
    let got = g.recv();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.op, op::RST);
    // Wrong source CID: RST.
    g.send(
        Header {
            src_cid: 77,
            ..pkt(5, 99, op::REQUEST, 65536)
        },
        &[],
    );
    assert_eq!(g.recv()[0].0.op, op::RST);
    // Data for no connection: RST; an RST for no connection: nothing.
    g.send(rw(5, 99, 3), b"abc");
    g.send(pkt(5, 99, op::RST, 0), &[]);
    assert_eq!(g.recv().len(), 1);
    // Length larger than the chain, short header, buffer outside memory: dropped, counted.
    g.send(rw(5, 99, 5000), b"abc");
    write_mem(&mem, TX_BASE + 0x10_0000, &[0u8; 10]);
    g.txq.push(&[(TX_BASE + 0x10_0000, 10, false)]);
    g.txq.push(&[(MEM_SIZE as u64 - 8, 64, false)]);
    g.transport.write(0x50, &1u32.to_le_bytes());
    g.pump();
    assert!(g.recv().is_empty());
    let m = g.dev.lock().unwrap().metrics().snapshot();
    assert_eq!(m.errors, 3);
    assert_eq!(g.txq.used_idx(), 7);
}

#[test]
fn invalid_cid_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = VsockConfig {
        guest_cid: 2,
        uds_path: dir.path().join("x"),
    };
    assert!(matches!(Vsock::new(&cfg), Err(VsockError::InvalidCid(2))));
}

/// The timer event can be dispatched after the timer was re-armed (or disarmed) in the
/// same pass of the event loop; `on_timer` must then return, not wait on the timerfd
/// (a blocking read of a disarmed timerfd never returns).
#[test]
fn on_timer_does_not_wait_for_a_timer_that_has_not_fired() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let metrics = Arc::default();
        let mut m = muxer::Muxer::new(GUEST_CID, &uds, VsockLimits::default(), metrics).unwrap();
        m.on_timer();
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "on_timer blocked on a timer that had not fired"
    );
}

#[test]
fn full_listener_backlog_refuses_instead_of_blocking() {
    let mem = memory();
    let mut g = Guest::new(&mem);
    let path = std::path::PathBuf::from(format!("{}_8", g.uds.display()));
    let _listener = UnixListener::bind(&path).unwrap();
    // Fill the backlog of a listener that never accepts.
    let mut held = Vec::new();
    for _ in 0..10_000 {
        match muxer::connect_nonblocking(&path) {
            Ok(s) => held.push(s),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
                break;
            }
        }
    }
    assert!(held.len() < 10_000, "backlog never filled");
    g.send(pkt(11, 8, op::REQUEST, 65536), &[]);
    let got = g.recv();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.op, op::RST);
}

#[test]
fn host_connect_times_out_when_guest_does_not_answer() {
    let mem = memory();
    let mut g = Guest::new(&mem);
    let mut host = UnixStream::connect(&g.uds).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    host.write_all(b"CONNECT 4321\n").unwrap();
    let got = g.recv();
    assert_eq!(got[0].0.op, op::REQUEST);
    let local = got[0].0.src_port;
    // The guest never answers.
    std::thread::sleep(connection::CONNECT_TIMEOUT + Duration::from_millis(200));
    let got = g.recv();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.op, op::RST);
    assert_eq!((got[0].0.src_port, got[0].0.dst_port), (local, 4321));
    let mut rest = Vec::new();
    assert_eq!(
        host.read_to_end(&mut rest).unwrap(),
        0,
        "client sees EOF, no OK line"
    );
    assert_eq!(g.dev.lock().unwrap().connection_count(), 0);
}

/// Sum of the payload bytes of `pkts`.
fn payload(pkts: &[(Header, Vec<u8>)]) -> usize {
    pkts.iter().map(|(_, d)| d.len()).sum()
}

#[test]
fn request_flood_without_rx_buffers_keeps_replies_bounded() {
    let mem = memory();
    // The hostile guest posts no rx buffer and floods REQUESTs to a port nobody serves.
    let mut g = Guest::with(&mem, VsockLimits::default(), 0);
    let max = g.dev().limits().max_replies;
    let metrics = g.dev().metrics();
    const FLOOD: usize = 5000;
    let mut sent = 0;
    while sent < FLOOD {
        let n = (FLOOD - sent).min(60);
        let batch: Vec<_> = (0..n)
            .map(|i| {
                (
                    pkt(10_000 + (sent + i) as u32, 4242, op::REQUEST, 65536),
                    vec![],
                )
            })
            .collect();
        g.send_batch(&batch);
        sent += n;
        let q = g.dev().queued_replies();
        let heap = g.dev().heap_bytes();
        assert!(q <= max, "{q} replies queued, bound {max}");
        assert!(
            heap <= max * std::mem::size_of::<Header>(),
            "{heap} heap bytes"
        );
    }
    assert_eq!(g.dev().queued_replies(), max);
    assert_eq!(g.dev().connection_count(), 0);
    assert_eq!(metrics.snapshot().dropped, (FLOOD - max) as u64);
    // Data and credit requests for no connection draw RSTs too (dropped now); RSTs draw
    // nothing.
    let batch: Vec<_> = (0..60u32)
        .map(|i| match i % 3 {
            0 => (rw(i, 4242, 3), b"abc".to_vec()),
            1 => (pkt(i, 4242, op::CREDIT_REQUEST, 0), vec![]),
            _ => (pkt(i, 4242, op::RST, 0), vec![]),
        })
        .collect();
    g.send_batch(&batch);
    assert_eq!(g.dev().queued_replies(), max);
    assert_eq!(metrics.snapshot().dropped, (FLOOD - max + 40) as u64);
    // The guest finally drains: it gets the queued RSTs, oldest first, then nothing more.
    g.refill = true;
    g.post_rx(60);
    let mut got = Vec::new();
    loop {
        let r = g.recv();
        if r.is_empty() {
            break;
        }
        got.extend(r);
    }
    assert_eq!(got.len(), max);
    assert!(got
        .iter()
        .all(|(h, _)| h.op == op::RST && h.src_port == 4242));
    assert_eq!(got[0].0.dst_port, 10_000);
    assert_eq!(g.dev().queued_replies(), 0);
    // And the device still serves: a refused REQUEST is answered again.
    g.send(pkt(1, 4242, op::REQUEST, 65536), &[]);
    assert_eq!(g.recv()[0].0.op, op::RST);
}

#[test]
fn default_limits_cost_under_10_mib_per_vm() {
    let l = VsockLimits::default();
    assert_eq!(
        (l.max_connections, l.max_replies, l.max_tx_buffered),
        (256, 512, 4 << 20)
    );
    assert!(l.heap_bound() < 10 << 20, "{}", l.heap_bound());
}

#[test]
fn credit_request_flood_is_merged_into_one_update() {
    let mem = memory();
    let mut g = Guest::with(&mem, VsockLimits::default(), 0);
    let listener = UnixListener::bind(format!("{}_7", g.uds.display())).unwrap();
    g.send(pkt(9, 7, op::REQUEST, 65536), &[]);
    let (_host, _) = listener.accept().unwrap();
    assert_eq!(g.dev().connection_count(), 1);
    for _ in 0..20 {
        let batch: Vec<_> = (0..50)
            .map(|_| (pkt(9, 7, op::CREDIT_REQUEST, 65536), vec![]))
            .collect();
        g.send_batch(&batch);
        assert!(g.dev().queued_packets() <= MAX_PENDING);
    }
    // The RESPONSE and one CREDIT_UPDATE wait; a thousand requests queued nothing more.
    assert_eq!(g.dev().queued_packets(), 2);
    g.post_rx(60);
    let got = g.recv();
    let ops: Vec<u16> = got.iter().map(|(h, _)| h.op).collect();
    assert_eq!(ops, [op::RESPONSE, op::CREDIT_UPDATE]);
    assert_eq!(g.dev().queued_packets(), 0);
}

/// Reads without blocking: Some(true) at EOF, Some(false) when nothing is there yet.
fn at_eof(s: &mut UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// A kick with more packets than one batch: the first pass handles `tx_batch`, the device
/// kicks itself, and the event loop's next passes handle the rest (none is left waiting
/// for a guest notification that will not come).
#[test]
fn a_tx_kick_past_its_batch_comes_back_for_the_rest() {
    let mem = memory();
    let limits = VsockLimits {
        tx_batch: 4,
        ..VsockLimits::default()
    };
    let mut g = Guest::with(&mem, limits, 0);
    for i in 0..20 {
        // RSTs for no connection: handled, nothing answered.
        g.push_tx(pkt(2000 + i, 9, op::RST, 0), &[]);
    }
    g.transport.write(0x50, &1u32.to_le_bytes());
    g.em.run_with_timeout(0).unwrap();
    assert_eq!(g.txq.used_idx(), 4, "one pass handles one batch");
    g.pump();
    assert_eq!(
        g.txq.used_idx(),
        20,
        "the rest waited for a kick that never came"
    );
    assert_eq!(g.dev().queued_packets(), 0);
}

#[test]
fn host_client_flood_is_bounded() {
    let mem = memory();
    let limits = VsockLimits {
        max_connections: 16,
        handshake_timeout: Duration::from_secs(1),
        ..VsockLimits::default()
    };
    let mut g = Guest::with(&mem, limits, 60);
    g.refill = true;
    let metrics = g.dev().metrics();
    let listener = UnixListener::bind(format!("{}_7", g.uds.display())).unwrap();
    listener.set_nonblocking(true).unwrap();

    // 200 clients connect and say nothing: 16 are held, the rest closed at once.
    let mut clients: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&g.uds).unwrap())
        .collect();
    g.pump();
    assert_eq!(g.dev().handshake_count(), 16);
    assert_eq!(metrics.snapshot().dropped, 184);
    let closed = clients.iter_mut().map(at_eof).filter(|e| *e).count();
    assert_eq!(closed, 184);
    // Half-open handshakes count: the guest cannot connect out either.
    g.send(pkt(9, 7, op::REQUEST, 65536), &[]);
    assert_eq!(g.recv()[0].0.op, op::RST);
    assert!(
        listener.accept().is_err(),
        "no connection reached the host listener"
    );
    // Silent clients are closed once the handshake timeout passes.
    std::thread::sleep(Duration::from_millis(1100));
    g.pump();
    assert_eq!(g.dev().handshake_count(), 0);
    assert!(clients.iter_mut().all(at_eof));

    // 100 clients that do CONNECT, to a guest that never answers: 16 connections at most,
    // 16 REQUESTs reach the guest, and the rest are closed.
    let mut clients: Vec<UnixStream> = (0..100)
        .map(|_| {
            let mut c = UnixStream::connect(&g.uds).unwrap();
            c.write_all(b"CONNECT 5000\n").unwrap();
            c
        })
        .collect();
    g.pump();
    let reqs = g.recv();
    let conns = g.dev().connection_count();
    let slots = conns + g.dev().handshake_count();
    assert_eq!(slots, 16);
    assert_eq!(reqs.len(), 16);
    assert!(reqs
        .iter()
        .all(|(h, _)| h.op == op::REQUEST && h.dst_port == 5000));
    assert_eq!(clients.iter_mut().map(at_eof).filter(|e| *e).count(), 84);
    // The guest's connect timeout frees them all.
    std::thread::sleep(connection::CONNECT_TIMEOUT + Duration::from_millis(200));
    let rsts = g.recv();
    assert_eq!(rsts.len(), 16);
    assert_eq!(g.dev().connection_count(), 0);
    assert!(clients.iter_mut().all(at_eof));
    // Below the limit again: a client gets through.
    let mut c = UnixStream::connect(&g.uds).unwrap();
    c.write_all(b"CONNECT 5001\n").unwrap();
    g.pump();
    assert_eq!(g.recv()[0].0.dst_port, 5001);
}

#[test]
fn guest_that_never_reads_leaves_host_data_in_the_host_socket() {
    let mem = memory();
    let mut g = Guest::with(&mem, VsockLimits::default(), 1);
    let listener = UnixListener::bind(format!("{}_7", g.uds.display())).unwrap();
    g.send(pkt(9, 7, op::REQUEST, 65536), &[]);
    let (mut host, _) = listener.accept().unwrap();
    assert_eq!(g.recv()[0].0.op, op::RESPONSE);
    // The host writes until its socket is full; the guest posts no rx buffer.
    host.set_nonblocking(true).unwrap();
    let chunk = vec![b'h'; 16 * 1024];
    let mut written = 0;
    loop {
        match host.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("host write: {e}"),
        }
        g.em.run_with_timeout(0).unwrap();
    }
    g.pump();
    assert!(written > 65536, "the host socket took {written} bytes");
    let m = g.dev().metrics();
    assert_eq!(m.snapshot().bytes_to_guest, 0);
    assert!(g.dev().heap_bytes() <= 4096, "the vmm holds no host data");
    // With rx buffers, the guest gets exactly its credit (64 KiB), no more.
    g.post_rx(60);
    let got = g.recv();
    assert_eq!(payload(&got), 65536);
    assert!(got.iter().all(|(h, _)| h.op == op::RW));
    g.pump();
    assert!(g.recv().is_empty());
    assert_eq!(m.snapshot().bytes_to_guest, 65536);
    assert!(g.dev().heap_bytes() <= 4096);
    // It consumes them and says so: the next 64 KiB flow, still from the host socket.
    g.send(
        Header {
            fwd_cnt: 65536,
            ..pkt(9, 7, op::CREDIT_UPDATE, 65536)
        },
        &[],
    );
    let got = g.recv();
    assert!(payload(&got) > 0 && payload(&got) <= 65536);
}

#[test]
fn guest_data_for_host_sockets_that_do_not_read_is_bounded_per_vm() {
    let mem = memory();
    let budget = 512 * 1024;
    let limits = VsockLimits {
        max_tx_buffered: budget,
        ..VsockLimits::default()
    };
    let mut g = Guest::with(&mem, limits, 60);
    g.refill = true;
    let metrics = g.dev().metrics();
    let listener = UnixListener::bind(format!("{}_7", g.uds.display())).unwrap();
    // Eight connections to a host peer that never reads.
    const N: usize = 8;
    let port = |i: usize| 100 + i as u32;
    let batch: Vec<_> = (0..N)
        .map(|i| (pkt(port(i), 7, op::REQUEST, 65536), vec![]))
        .collect();
    g.send_batch(&batch);
    let mut hosts: Vec<UnixStream> = (0..N).map(|_| listener.accept().unwrap().0).collect();
    let got = g.recv();
    assert_eq!(got.iter().filter(|(h, _)| h.op == op::RESPONSE).count(), N);

    // The guest honours its credit (CONN_BUF per connection, learnt through credit
    // requests): together that is far more than the VM's budget.
    let mut fwd = [0u32; N];
    let mut sent = [0u32; N];
    let mut reset = [false; N];
    let heap_bound = 2 * budget + N * 4096 + 64 * 1024;
    for _round in 0..20 {
        let mut progress = false;
        for i in 0..N {
            if reset[i] {
                continue;
            }
            g.send_batch(&[(pkt(port(i), 7, op::CREDIT_REQUEST, 65536), vec![])]);
            for (h, _) in g.recv() {
                let j = (h.dst_port - 100) as usize;
                match h.op {
                    op::RST => reset[j] = true,
                    _ => fwd[j] = fwd[j].max(h.fwd_cnt),
                }
            }
            if reset[i] {
                continue;
            }
            let credit = CONN_BUF - (sent[i] - fwd[i]);
            let n = (credit as usize / TX_PAYLOAD).min(60);
            if n == 0 {
                continue;
            }
            progress = true;
            let batch: Vec<_> = (0..n)
                .map(|_| (rw(port(i), 7, TX_PAYLOAD), vec![b'g'; TX_PAYLOAD]))
                .collect();
            g.send_batch(&batch);
            sent[i] += (n * TX_PAYLOAD) as u32;
            let held = g.dev().tx_buffered();
            let heap = g.dev().heap_bytes();
            assert!(held <= budget, "{held} bytes held, budget {budget}");
            assert!(heap <= heap_bound, "{heap} heap bytes, bound {heap_bound}");
        }
        if !progress {
            break;
        }
    }
    for (h, _) in g.recv() {
        if h.op == op::RST {
            reset[(h.dst_port - 100) as usize] = true;
        }
    }
    let resets = reset.iter().filter(|r| **r).count();
    assert!(resets >= 1, "the budget never reset a connection");
    assert!(resets < N, "connections within the budget live on");
    assert_eq!(metrics.snapshot().dropped, resets as u64);
    assert_eq!(g.dev().connection_count(), N - resets);
    assert!(g.dev().tx_buffered() <= budget);
    // A reset connection's host peer reads what was forwarded, then EOF.
    let i = reset.iter().position(|r| *r).unwrap();
    hosts[i]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut all = Vec::new();
    hosts[i].read_to_end(&mut all).unwrap();
    assert!(all.len() <= sent[i] as usize);
}

// Fuzzing inside `cargo test`: seeded loops with a fixed budget (the cargo-fuzz targets in
// fuzz/ run the same paths for as long as one wants; see the README).

/// Inputs per fuzz test; `VSOCK_FUZZ_ITERS=N` runs more.
fn fuzz_iters(default: u64) -> u64 {
    std::env::var("VSOCK_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Limits small enough that a short run reaches every bound.
fn small_limits() -> VsockLimits {
    VsockLimits {
        max_connections: 6,
        max_replies: 8,
        max_tx_buffered: 32 * 1024,
        handshake_timeout: Duration::from_millis(30),
        tx_batch: 16,
    }
}

/// A packet a hostile guest might send: mostly plausible fields, any of them wrong.
fn random_packet(rng: &mut Rng, host_ports: &[u32]) -> (Header, Vec<u8>) {
    let plen = match rng.below(4) {
        0 => 0,
        1 => rng.below(64) as usize,
        _ => rng.below(TX_PAYLOAD as u64 + 1) as usize,
    };
    let data = rng.bytes(plen);
    let any_port = rng.next_u64() as u32;
    let mut dst_ports = vec![7, 8, 99, any_port];
    dst_ports.extend_from_slice(host_ports);
    let any_len = rng.below(8192) as u32;
    let any_alloc = rng.next_u64() as u32;
    let h = Header {
        src_cid: if rng.chance(90) {
            GUEST_CID
        } else {
            rng.next_u64()
        },
        dst_cid: if rng.chance(90) {
            HOST_CID
        } else {
            rng.next_u64()
        },
        src_port: rng.pick(&[1, 2, 3, 5000, 5001, any_port]),
        dst_port: rng.pick(&dst_ports),
        len: if rng.chance(90) { plen as u32 } else { any_len },
        type_: if rng.chance(95) {
            TYPE_STREAM
        } else {
            rng.next_u64() as u16
        },
        op: rng.below(9) as u16,
        flags: rng.below(4) as u32,
        buf_alloc: rng.pick(&[0, 8, 4096, 65536, 1 << 20, any_alloc]),
        fwd_cnt: if rng.chance(70) {
            0
        } else {
            rng.next_u64() as u32
        },
    };
    (h, data)
}

/// How far a fuzz run got, so the test can tell that it reached the bounds it checks.
#[derive(Debug, Default)]
struct Reached {
    full_replies: bool,
    full_slots: bool,
    connections: usize,
    ops: u64,
    errors: u64,
    dropped: u64,
    to_guest: u64,
}

/// One seeded run of a hostile guest and hostile host clients against the real device,
/// event loop and sockets; every bound is checked after every step.
fn fuzz_session(seed: u64, steps: usize, reached: &mut Reached) {
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};

    let mut rng = Rng::new(seed);
    let mem = memory();
    let mut g = Guest::with(&mem, small_limits(), 0);
    let serving = UnixListener::bind(format!("{}_7", g.uds.display())).unwrap();
    serving.set_nonblocking(true).unwrap();
    // A host listener that never accepts: its backlog fills.
    let _stuck = UnixListener::bind(format!("{}_8", g.uds.display())).unwrap();
    let mut hosts: Vec<UnixStream> = Vec::new();
    let mut host_ports: Vec<u32> = Vec::new();
    let mut rx_addr = [0u64; RING as usize];
    for _ in 0..steps {
        match rng.below(100) {
            // Guest packets, a few per kick.
            0..=29 => {
                let n = 1 + rng.below(8) as usize;
                let batch: Vec<_> = (0..n)
                    .map(|_| random_packet(&mut rng, &host_ports))
                    .collect();
                g.send_batch(&batch);
            }
            // A flood: one packet many times over.
            30..=39 => {
                let p = random_packet(&mut rng, &host_ports);
                let n = 1 + rng.below(60) as usize;
                g.send_batch(&vec![p; n]);
            }
            // Rx buffers of any size, some read-only, some outside memory.
            40..=59 => {
                for _ in 0..1 + rng.below(8) {
                    if g.rx_posted.wrapping_sub(g.rx_seen) >= RING - 1 {
                        break;
                    }
                    let slot = u64::from(g.rx_posted % RING);
                    let any = rng.below(RX_BUF as u64 + 1) as u32;
                    let len = rng.pick(&[0, 10, 43, 44, 45, 200, RX_BUF, any]);
                    let addr = match rng.below(20) {
                        0 => MEM_SIZE as u64 - 8,
                        1 => rng.next_u64(),
                        _ => RX_BASE + slot * u64::from(RX_BUF),
                    };
                    let head = g.rxq.push(&[(addr, len, rng.chance(90))]);
                    rx_addr[usize::from(head)] = addr;
                    g.rx_posted = g.rx_posted.wrapping_add(1);
                }
                g.transport.write(0x50, &0u32.to_le_bytes());
            }
            // A raw descriptor with any address, length, flags and next index.
            60..=64 => {
                let slot = u64::from(g.tx_sent % RING);
                let (h, d) = random_packet(&mut rng, &host_ports);
                let mut bytes = h.to_bytes().to_vec();
                bytes.extend_from_slice(&d);
                write_mem(&mem, TX_BASE + slot * 0x1000, &bytes);
                let addr = match rng.below(3) {
                    0 => rng.next_u64(),
                    1 => MEM_SIZE as u64 - rng.below(64),
                    _ => TX_BASE + slot * 0x1000,
                };
                let desc = SplitDescriptor::new(
                    addr,
                    rng.below(8192) as u32,
                    rng.below(8) as u16,
                    rng.below(u64::from(RING) + 4) as u16,
                );
                g.txq
                    .push_raw(&[RawDescriptor::from(desc)], g.tx_sent % RING);
                g.tx_sent = g.tx_sent.wrapping_add(1);
                g.send_batch(&[]);
            }
            // A host client with a good, bad or unfinished CONNECT line.
            65..=74 => {
                if hosts.len() < 24 {
                    if let Ok(mut c) = UnixStream::connect(&g.uds) {
                        c.set_nonblocking(true).unwrap();
                        let port = rng.pick(&[5000, 5001, 7]);
                        let line = match rng.below(4) {
                            0 => format!("CONNECT {port}\n").into_bytes(),
                            1 => {
                                let n = rng.below(48) as usize;
                                rng.bytes(n)
                            }
                            2 => b"CONNECT 12".to_vec(),
                            _ => format!("CONNECT {port}\nearly data").into_bytes(),
                        };
                        let _ = c.write(&line);
                        hosts.push(c);
                    }
                }
            }
            // Host peers write, read, or go away.
            75..=84 if !hosts.is_empty() => {
                let i = rng.below(hosts.len() as u64) as usize;
                let n = rng.below(8192) as usize;
                let data = rng.bytes(n);
                let _ = hosts[i].write(&data);
            }
            85..=89 if !hosts.is_empty() => {
                let i = rng.below(hosts.len() as u64) as usize;
                let _ = at_eof(&mut hosts[i]);
            }
            90..=93 if !hosts.is_empty() => {
                let i = rng.below(hosts.len() as u64) as usize;
                hosts.swap_remove(i);
            }
            _ => {
                while let Ok((s, _)) = serving.accept() {
                    s.set_nonblocking(true).unwrap();
                    if hosts.len() < 24 {
                        hosts.push(s);
                    }
                }
            }
        }
        g.pump_quick();
        // What the guest received: learn the host ports it may answer.
        while g.rx_seen != g.rxq.used_idx() {
            let (id, len) = g.rxq.used(g.rx_seen);
            g.rx_seen = g.rx_seen.wrapping_add(1);
            let addr = rx_addr[id as usize % usize::from(RING)];
            if len as usize >= HDR_LEN && mem.check_range(GuestAddress(addr), HDR_LEN) {
                let b = read_mem(&mem, addr, HDR_LEN);
                let h = Header::from_bytes(b[..].try_into().unwrap());
                if h.op == op::REQUEST && h.src_port >= 1 << 30 && host_ports.len() < 16 {
                    host_ports.push(h.src_port);
                }
            }
        }
        let d = g.dev();
        assert_vsock_bounds(&d);
        let l = d.limits();
        reached.full_replies |= d.queued_replies() == l.max_replies;
        reached.full_slots |= d.connection_count() + d.handshake_count() == l.max_connections;
        reached.connections = reached.connections.max(d.connection_count());
    }
    let m = g.dev().metrics().snapshot();
    reached.ops += m.ops;
    reached.errors += m.errors;
    reached.dropped += m.dropped;
    reached.to_guest += m.bytes_to_guest;
}

#[test]
fn fuzz_hostile_guest_and_host_clients() {
    let mut reached = Reached::default();
    for seed in 0..fuzz_iters(32) {
        fuzz_session(seed, 300, &mut reached);
    }
    eprintln!("vsock fuzz: {reached:?}");
    // The fixed seeds do reach what the bounds are about.
    assert!(reached.full_replies && reached.full_slots, "{reached:?}");
    assert!(
        reached.connections > 0 && reached.dropped > 0,
        "{reached:?}"
    );
    assert!(reached.errors > 0 && reached.to_guest > 0, "{reached:?}");
}

/// Guest memory of the ring fuzz test (as in the cargo-fuzz targets).
const FUZZ_MEM: usize = 256 * 1024;

/// Random or mutated rings and buffers under an activated device; `process_tx` and
/// `process_rx` run over them directly.
fn fuzz_rings(seed: u64) {
    let mut rng = Rng::new(seed);
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), FUZZ_MEM)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let _serving = UnixListener::bind(format!("{}_7", uds.display())).unwrap();
    let cfg = VsockConfig {
        guest_cid: GUEST_CID,
        uds_path: uds,
    };
    let dev = Arc::new(Mutex::new(
        Vsock::with_limits(&cfg, small_limits()).unwrap(),
    ));
    let mut rxq = Driver::new(&mem, 0, 16);
    let mut txq = Driver::new(&mem, 0x400, 16);
    let evq = Driver::new(&mem, 0x800, 16);
    let layouts: Vec<QueueLayout> = [&rxq, &txq, &evq]
        .iter()
        .map(|d| (d.desc_addr().0, d.avail_addr().0, d.used_addr().0, 16))
        .collect();
    if seed % 2 == 0 {
        // Mutated: well-formed chains and packets, then a few bytes flipped anywhere.
        for i in 0..1 + rng.below(12) {
            let (h, d) = random_packet(&mut rng, &[]);
            let mut bytes = h.to_bytes().to_vec();
            bytes.extend_from_slice(&d);
            let addr = 0x1000 + i * 0x1000;
            write_mem(&mem, addr, &bytes);
            txq.push(&[(addr, bytes.len() as u32, false)]);
        }
        for i in 0..1 + rng.below(12) {
            rxq.push(&[(0x20000 + i * 0x1000, 0x1000, true)]);
        }
        for _ in 0..rng.below(16) {
            let at = if rng.chance(50) {
                rng.below(0x1000)
            } else {
                0x1000 + rng.below(0x20000)
            };
            write_mem(&mem, at, &[rng.next_u64() as u8]);
        }
    } else {
        // Random: rings and buffers are noise, with descriptors aimed into memory.
        write_mem(&mem, 0, &rng.bytes(0x1000));
        write_mem(&mem, 0x1000, &rng.bytes(0x4000));
        for q in 0..3u64 {
            for i in 0..16u64 {
                if rng.chance(70) {
                    let d = q * 0x400 + i * 16;
                    write_mem(&mem, d, &rng.below(FUZZ_MEM as u64).to_le_bytes());
                    write_mem(&mem, d + 8, &(rng.below(8192) as u32).to_le_bytes());
                }
            }
            if rng.chance(70) {
                let avail_idx = q * 0x400 + 0x100 + 2;
                write_mem(&mem, avail_idx, &(rng.below(24) as u16).to_le_bytes());
            }
        }
    }
    let (_t, ok) = activate_at(&mem, dev.clone(), &layouts);
    assert!(ok, "queues laid out in memory activate");
    for _ in 0..3 {
        let mut d = dev.lock().unwrap();
        d.process_tx();
        d.process_rx();
        assert_vsock_bounds(&d);
    }
}

#[test]
fn fuzz_random_and_mutated_rings() {
    for seed in 0..fuzz_iters(1000) {
        fuzz_rings(seed);
    }
}
