//! Fuzzing the host's end of the channel, inside `cargo test` with a fixed budget and seed.
//!
//! Random and mutated byte streams go (a) through a [`FrameDecoder`] in random pieces and
//! (b) through a real Unix socket into a [`GuestConnection`], some of them with a short
//! read timeout and a writer that pauses mid-frame. Each must end in messages and then one
//! typed error (never a panic, never a hang), the socket path must give exactly what the
//! decoder gives, and no receive buffer may grow past `HEADER_LEN + MAX_FRAME_LEN`.
//!
//! Longer runs: `GUEST_PROTO_FUZZ_CASES=1000000 cargo test -p guest-proto --test fuzz`
//! (`GUEST_PROTO_FUZZ_SEED=<u64>` picks another seed; a failure prints its seed and case).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use guest_proto::frame::{decode_message, encode_frame, encode_message, HEADER_LEN};
use guest_proto::host::GuestConnection;
use guest_proto::messages::{Hello, Role};
use guest_proto::*;

const DEFAULT_CASES: u64 = 20_000;
const DEFAULT_SEED: u64 = 0x6775_6573_7470_726f;
/// One case in this many also goes through a real socket.
const SOCKET_EVERY: u64 = 10;
/// Read timeouts the socket runs saw (a pausing writer makes them fall mid-frame).
static TIMEOUTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn valid_message(rng: &mut Rng) -> GuestMessage {
    let s = |rng: &mut Rng| "é\u{1F600}x\"\\\n".repeat(rng.below(5));
    match rng.below(6) {
        0 => GuestMessage::TaskAccepted { task_arn: s(rng) },
        1 => GuestMessage::ContainerStateChange {
            container: s(rng),
            status: ContainerStatus::Running,
            exit_code: Some(rng.next() as i32),
            reason: None,
            pid: Some(7),
            timestamp_ms: rng.next(),
        },
        2 => GuestMessage::HealthChange {
            container: s(rng),
            status: HealthStatus::Unhealthy,
            output: s(rng),
            timestamp_ms: 0,
        },
        3 => GuestMessage::Log {
            container: "c".into(),
            stream: LogStream::Stderr,
            timestamp_ms: 1,
            line: s(rng),
        },
        4 => GuestMessage::Error {
            message: s(rng),
            fatal: rng.chance(2),
        },
        _ => GuestMessage::TaskStopped {
            reason: s(rng),
            containers: vec![],
        },
    }
}

/// Payloads a hostile guest might try: JSON that is almost right.
fn tricky_payload(rng: &mut Rng) -> Vec<u8> {
    let pieces: [&[u8]; 12] = [
        b"{\"type\":\"log\"}",
        b"{\"type\":\"nope\",\"line\":\"x\"}",
        b"{\"type\":7}",
        b"{\"type\":\"log\",\"type\":\"log\"}",
        b"{\"type\":\"taskAccepted\",\"taskArn\":\"\xc3\x28\"}",
        b"{\"type\":\"error\",\"message\":\"\\ud800\",\"fatal\":true}",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        b"null",
        b"\"\xff\xfe\"",
        b"{\"type\":\"taskStopped\",\"reason\":\"r\",\"containers\":[{\"name\":\"a\",\"status\":\"ZOMBIE\"}]}",
        b"1e999999",
        b"{\"type\":\"containerStateChange\",\"container\":\"c\",\"status\":\"RUNNING\",\"timestampMs\":-1}",
    ];
    let mut p = pieces[rng.below(pieces.len())].to_vec();
    if rng.chance(3) {
        let deep = rng.below(300);
        p = [vec![b'['; deep], p, vec![b']'; deep]].concat();
    }
    p
}

/// One input stream: frames (valid, tricky or random), then mutations.
fn input(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.chance(10) {
        let n = rng.below(64);
        return rng.bytes(n);
    }
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0..=2 => out.extend(encode_message(&valid_message(rng)).unwrap()),
            3 => out.extend(encode_frame(&tricky_payload(rng)).unwrap()),
            _ => {
                let n = 1 + rng.below(40);
                out.extend(encode_frame(&rng.bytes(n)).unwrap());
            }
        }
    }
    for _ in 0..rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(6) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.next() as u8,
            2 => out.truncate(at),
            3 => {
                let b = rng.next() as u8;
                out.insert(at, b)
            }
            4 => {
                out.remove(at);
            }
            _ => {
                // Overwrite 4 bytes with an interesting length.
                let lens = [
                    0,
                    1,
                    3,
                    MAX_FRAME_LEN as u32,
                    MAX_FRAME_LEN as u32 + 1,
                    u32::MAX,
                ];
                let len = lens[rng.below(lens.len())].to_be_bytes();
                let at = at.min(out.len().saturating_sub(4));
                for (i, b) in len.iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    out
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    Truncated,
    Empty,
    TooLarge,
    Utf8,
    UnknownType,
    Malformed,
}

fn end_of(e: &ProtoError) -> End {
    match e {
        ProtoError::Closed => End::Closed,
        ProtoError::TruncatedFrame => End::Truncated,
        ProtoError::EmptyFrame => End::Empty,
        ProtoError::FrameTooLarge { .. } => End::TooLarge,
        ProtoError::InvalidUtf8 { .. } => End::Utf8,
        ProtoError::UnknownType(_) => End::UnknownType,
        ProtoError::Malformed(_) => End::Malformed,
        other => panic!("untyped or unexpected end: {other:?}"),
    }
}

/// The decoder's reading of `data`, fed in random pieces.
fn through_decoder(data: &[u8], rng: &mut Rng) -> (Vec<GuestMessage>, End) {
    let mut d = FrameDecoder::new();
    let mut msgs = Vec::new();
    let mut rest = data;
    loop {
        if rest.is_empty() {
            let end = end_of(&d.end_of_stream());
            return (msgs, end);
        }
        let n = 1 + rng.below(rest.len().min(64));
        let mut piece = &rest[..n];
        while !piece.is_empty() {
            let got = d.decode(&mut piece);
            assert!(d.allocated() <= HEADER_LEN + MAX_FRAME_LEN);
            match got {
                Ok(Some(p)) => match decode_message::<GuestMessage>(&p) {
                    Ok(m) => msgs.push(m),
                    Err(e) => return (msgs, end_of(&e)),
                },
                Ok(None) => assert!(piece.is_empty(), "an incomplete frame consumes all"),
                Err(e) => return (msgs, end_of(&e)),
            }
        }
        rest = &rest[n..];
    }
}

/// The host connection's reading of `data`, written by a guest on a real socket.
fn through_socket(data: &[u8], rng: &mut Rng) -> (Vec<GuestMessage>, End) {
    let (host, mut guest) = UnixStream::pair().unwrap();
    let hello = serde_json::to_vec(&Hello::new(Role::Guest, "fuzz")).unwrap();
    guest.write_all(&encode_frame(&hello).unwrap()).unwrap();
    let mut conn = GuestConnection::handshake(host).unwrap();
    let stutter = rng.chance(6);
    if stutter {
        conn.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
    }
    let cuts: Vec<usize> = (0..3).map(|_| rng.below(data.len() + 1)).collect();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut at = 0;
        for cut in cuts.into_iter().chain([data.len()]) {
            // The host may have hung up already: the rest is not read.
            if guest.write_all(&data[at..cut]).is_err() {
                return;
            }
            at = cut;
            if stutter {
                std::thread::sleep(Duration::from_millis(6));
            }
        }
        let _ = guest.shutdown(std::net::Shutdown::Write);
        // Keep the socket open until the host is done, so it sees only the write shutdown.
        let mut sink = [0u8; 256];
        let _ = guest.set_read_timeout(Some(Duration::from_secs(10)));
        while matches!(std::io::Read::read(&mut guest, &mut sink), Ok(n) if n > 0) {}
    });
    let mut msgs = Vec::new();
    let end = loop {
        let got = conn.recv();
        assert!(conn.recv_buffer_allocated() <= HEADER_LEN + MAX_FRAME_LEN);
        match got {
            Ok(m) => msgs.push(m),
            Err(e) if e.is_timeout() => {
                TIMEOUTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => break end_of(&e),
        }
    };
    // Ended for good, without reading again.
    let again = conn.recv().unwrap_err();
    assert!(
        matches!(again, ProtoError::Poisoned | ProtoError::Closed),
        "{again}"
    );
    drop(conn);
    writer.join().unwrap();
    (msgs, end)
}

#[test]
fn random_and_mutated_streams_end_in_messages_or_typed_errors() {
    let cases = env_u64("GUEST_PROTO_FUZZ_CASES", DEFAULT_CASES);
    let seed = env_u64("GUEST_PROTO_FUZZ_SEED", DEFAULT_SEED);
    let mut ends = std::collections::BTreeMap::<String, u64>::new();
    for case in 0..cases {
        // Each case has its own generator, so a failing one reruns alone from its number.
        let mut rng = Rng(seed ^ (case + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let data = input(&mut rng);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let reference = through_decoder(&data, &mut rng);
            if case % SOCKET_EVERY == 0 {
                let socket = through_socket(&data, &mut rng);
                assert_eq!(socket, reference, "socket and decoder disagree");
            }
            reference
        }));
        match run {
            Ok((_, end)) => *ends.entry(format!("{end:?}")).or_default() += 1,
            Err(_) => panic!("seed {seed:#x} case {case} failed on input {data:02x?}"),
        }
    }
    let timeouts = TIMEOUTS.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{cases} cases (seed {seed:#x}): {ends:?}; {timeouts} read timeouts");
    assert!(timeouts > 0 || cases < DEFAULT_CASES);
    // The generator reaches every way a stream can end.
    assert!(ends.len() >= 7 || cases < DEFAULT_CASES, "{ends:?}");
}

/// Big frames: the longest legal one passes whole, one byte more is refused, both through
/// a real socket with pauses mid-frame.
#[test]
fn largest_frames_through_a_socket() {
    let mut rng = Rng(DEFAULT_SEED);
    let overhead = encode_message(&GuestMessage::Log {
        container: "c".into(),
        stream: LogStream::Stdout,
        timestamp_ms: 0,
        line: String::new(),
    })
    .unwrap()
    .len()
        - HEADER_LEN;
    let max = GuestMessage::Log {
        container: "c".into(),
        stream: LogStream::Stdout,
        timestamp_ms: 0,
        line: "m".repeat(MAX_FRAME_LEN - overhead),
    };
    let frame = encode_message(&max).unwrap();
    assert_eq!(frame.len(), HEADER_LEN + MAX_FRAME_LEN);
    let (msgs, end) = through_socket(&frame, &mut rng);
    assert_eq!((msgs, end), (vec![max], End::Closed));
    let mut over = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
    over.extend(vec![b' '; MAX_FRAME_LEN + 1]);
    assert_eq!(through_socket(&over, &mut rng), (vec![], End::TooLarge));
}
