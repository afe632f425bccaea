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

#[test]
fn host_client_flood_is_bounded() {
    let mem = memory();
    let limits = VsockLimits {
        max_connections: 16,
        handshake_timeout: Duration::from_millis(300),
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
    std::thread::sleep(Duration::from_millis(400));
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
