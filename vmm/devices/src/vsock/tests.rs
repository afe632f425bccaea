//! vsock tests with real Unix sockets, driven through a real event manager.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::{EventManager, SubscriberOps};

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

struct Guest<'a> {
    mem: &'a GuestMemoryMmap,
    rxq: Driver<'a>,
    txq: Driver<'a>,
    transport: MmioTransport,
    em: EventManager<Arc<Mutex<Vsock>>>,
    dev: Arc<Mutex<Vsock>>,
    rx_seen: u16,
    tx_next: u64,
    _dir: tempfile::TempDir,
    uds: std::path::PathBuf,
}

impl<'a> Guest<'a> {
    fn new(mem: &'a GuestMemoryMmap) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v.sock");
        let dev = Arc::new(Mutex::new(
            Vsock::new(&VsockConfig {
                guest_cid: GUEST_CID,
                uds_path: uds.clone(),
            })
            .unwrap(),
        ));
        let mut rxq = Driver::new(mem, 0, 64);
        let txq = Driver::new(mem, 0x4000, 64);
        let evq = Driver::new(mem, 0x8000, 16);
        for i in 0..60u32 {
            rxq.push(&[(RX_BASE + u64::from(i) * u64::from(RX_BUF), RX_BUF, true)]);
        }
        let transport = activate(mem, dev.clone(), &[&rxq, &txq, &evq]);
        let mut em = EventManager::new().unwrap();
        em.add_subscriber(dev.clone());
        Guest {
            mem,
            rxq,
            txq,
            transport,
            em,
            dev,
            rx_seen: 0,
            tx_next: TX_BASE,
            _dir: dir,
            uds,
        }
    }

    fn pump(&mut self) {
        for _ in 0..5 {
            self.em.run_with_timeout(20).unwrap();
        }
    }

    fn send(&mut self, h: Header, data: &[u8]) {
        let mut bytes = h.to_bytes().to_vec();
        bytes.extend_from_slice(data);
        write_mem(self.mem, self.tx_next, &bytes);
        self.txq.push(&[(self.tx_next, bytes.len() as u32, false)]);
        self.tx_next += 0x1000;
        // Queue notify, as the guest's MMIO write would.
        self.transport.write(0x50, &1u32.to_le_bytes());
        self.pump();
    }

    fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        self.pump();
        let mut out = Vec::new();
        while self.rx_seen < self.rxq.used_idx() {
            let (id, len) = self.rxq.used(self.rx_seen);
            self.rx_seen += 1;
            let addr = RX_BASE + u64::from(id) * u64::from(RX_BUF);
            let bytes = read_mem(self.mem, addr, len as usize);
            let h = Header::from_bytes(bytes[..HDR_LEN].try_into().unwrap());
            out.push((h, bytes[HDR_LEN..].to_vec()));
        }
        out
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
