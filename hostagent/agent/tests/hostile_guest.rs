//! A hostile guest against the real agent and the real relay: the `hostagent` daemon
//! (microVM runtime) adopts two tasks, each with a real `hostagent vm-relay` process,
//! and reports to a test control plane; the guests are this test, speaking guest-proto
//! over each relay's real guest socket. One task is polite (a state change and a log
//! line every 300 ms); the other attacks: event flood, log flood, connection flood,
//! garbage frames.
//!
//! Each test asserts: the agent's RSS stays under [`RSS_BOUND_KIB`] (it grew to
//! 384 MiB in 20 s under an event flood before the budgets); the control plane gets no
//! more state reports of the attacker than the configured rate allows; the polite task
//! keeps running and reporting; the attacker's task is stopped with a reason naming
//! what it broke (the connection flood is refused by the kernel before it costs
//! anything, so that task is not stopped: see its test).

mod hostile_support;

use guest_proto::GuestMessage;
use hostile_support::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The agent's resident memory stays under this (KiB) whatever the guest does.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// Budgets of these tests: small, so that the flood trips them in seconds.
const FLAGS: &[&str] = &[
    "--guest-events-per-sec",
    "50",
    "--guest-events-burst",
    "100",
    "--guest-log-bytes-per-sec",
    "262144",
    "--guest-log-burst-bytes",
    "524288",
    "--budget-stop-after-ms",
    "3000",
    "--task-reports-per-sec",
    "2",
    "--task-report-burst",
    "2",
];
/// `--task-reports-per-sec` + `--task-report-burst`, plus the STOPPED report.
const MAX_REPORTS_PER_SEC: usize = 2 + 2 + 1;

struct Rig {
    _dir: tempfile::TempDir,
    cp: TestControlPlane,
    polite: Task,
    attacker: Task,
    daemon: Daemon,
    stop_polite: Arc<AtomicBool>,
    polite_sent: Arc<AtomicU64>,
    rss: (Arc<AtomicBool>, Arc<AtomicU64>),
}

/// Two running tasks, the polite guest talking, the agent started and connected; the
/// attacker's guest connection is returned for the test to abuse.
fn rig() -> (Rig, guest_proto::Channel<std::os::unix::net::UnixStream>) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let cp = TestControlPlane::start();
    let polite = running_task(&state, "polite");
    let attacker = running_task(&state, "attacker");
    let pg = guest(&polite.guest_socket);
    let ag = guest(&attacker.guest_socket);
    let daemon = Daemon::start(&state, &cp, FLAGS);
    let rss = daemon.rss_sampler();
    wait_for(30, "both tasks adopted and reported RUNNING", || {
        cp.reports(&polite.arn).iter().any(|r| r.1 == "RUNNING")
            && cp.reports(&attacker.arn).iter().any(|r| r.1 == "RUNNING")
    });
    let (stop_polite, polite_sent) = (Arc::new(AtomicBool::new(false)), Arc::default());
    polite_guest(pg, stop_polite.clone(), Arc::clone(&polite_sent));
    (
        Rig {
            _dir: dir,
            cp,
            polite,
            attacker,
            daemon,
            stop_polite,
            polite_sent,
            rss,
        },
        ag,
    )
}

impl Rig {
    /// What every test asserts at the end: the attacker was stopped with `reason_has`
    /// (its relay and vmm gone), no more than the rate of its reports reached the
    /// control plane, the polite task still runs and reports, the RSS stayed bounded.
    fn check(mut self, reason_has: Option<&str>, since: Instant) {
        if let Some(want) = reason_has {
            let why = self.cp.stopped(&self.attacker.arn).unwrap();
            assert!(why.contains(want), "stoppedReason {why:?} lacks {want:?}");
            wait_for(15, "the attacker's relay and vmm to be gone", || {
                exited(&mut self.attacker.relay) && exited(&mut self.attacker.vmm)
            });
        }
        let reports = self.cp.reports(&self.attacker.arn);
        let per_sec = max_per_second(&reports);
        assert!(
            per_sec <= MAX_REPORTS_PER_SEC,
            "{per_sec} reports of the attacker in one second: {reports:?}"
        );
        // The polite task reports on: its latest change arrives.
        let before = self.cp.reports(&self.polite.arn).len();
        wait_for(10, "a new report of the polite task", || {
            self.cp.reports(&self.polite.arn).len() > before
        });
        assert_eq!(self.cp.stopped(&self.polite.arn), None);
        assert!(!exited(&mut self.polite.relay) && !exited(&mut self.polite.vmm));
        wait_for(10, "lines of the polite task shipped", || {
            self.cp
                .lines(&self.polite.arn)
                .iter()
                .any(|l| l.starts_with("polite line"))
        });
        let polite_lines = self.cp.lines(&self.polite.arn);
        assert!(
            !polite_lines.iter().any(|l| l.contains("lines dropped")),
            "the polite task lost nothing"
        );
        self.stop_polite.store(true, Ordering::SeqCst);
        self.rss.0.store(true, Ordering::SeqCst);
        let max = self.rss.1.load(Ordering::SeqCst);
        eprintln!(
            "agent max RSS {max} KiB over {:?}; attacker reports {}; polite guest sent {}",
            since.elapsed(),
            reports.len(),
            self.polite_sent.load(Ordering::SeqCst)
        );
        assert!(
            max > 0 && max < RSS_BOUND_KIB,
            "agent RSS {max} KiB (bound {RSS_BOUND_KIB}); log:\n{}",
            self.daemon.log_text()
        );
    }
}

#[test]
fn event_flood_is_coalesced_rate_limited_then_stopped() {
    let (rig, mut ag) = rig();
    let t0 = Instant::now();
    let attacker = rig.attacker.arn.clone();
    let cp_msgs = rig.cp.msgs.clone();
    // As fast as the socket takes them, until the task is stopped (the send fails).
    let flood = std::thread::spawn(move || {
        let mut n = 0u64;
        while t0.elapsed() < Duration::from_secs(40) {
            let m = GuestMessage::ContainerStateChange {
                container: if n % 2 == 0 { "web" } else { "side" }.into(),
                status: guest_proto::ContainerStatus::Running,
                exit_code: None,
                reason: Some(format!("flood {n}")),
                pid: Some(n as i32),
                timestamp_ms: n,
            };
            if ag.send(&m).is_err() {
                break;
            }
            n += 1;
        }
        n
    });
    wait_for(40, "the attacker stopped", || {
        rig.cp.stopped(&attacker).is_some()
    });
    let sent = flood.join().unwrap();
    let reports = rig.cp.reports(&attacker);
    eprintln!(
        "event flood: {sent} state changes sent, {} reports received, stopped after {:?}",
        reports.len(),
        t0.elapsed()
    );
    assert!(sent > 1000, "the guest did flood ({sent})");
    // Coalesced and rate-limited: a handful of reports for thousands of changes.
    let elapsed = t0.elapsed().as_secs_f64();
    assert!(
        (reports.len() as f64) <= 2.0 + 2.0 * elapsed + 3.0,
        "{} reports in {elapsed} s",
        reports.len()
    );
    drop(cp_msgs);
    rig.check(Some("event budget (50 messages/s) for 3 s"), t0);
}

#[test]
fn log_flood_is_bounded_marked_then_stopped() {
    let (rig, mut ag) = rig();
    let t0 = Instant::now();
    let attacker = rig.attacker.arn.clone();
    let flood = std::thread::spawn(move || {
        let line = "A".repeat(4096);
        let mut n = 0u64;
        while t0.elapsed() < Duration::from_secs(40) {
            let m = GuestMessage::Log {
                container: "web".into(),
                stream: guest_proto::LogStream::Stdout,
                timestamp_ms: 1_700_000_000_000 + n,
                line: line.clone(),
            };
            if ag.send(&m).is_err() {
                break;
            }
            n += 1;
        }
        n
    });
    wait_for(40, "the attacker stopped", || {
        rig.cp.stopped(&attacker).is_some()
    });
    let sent = flood.join().unwrap();
    let lines = rig.cp.lines(&attacker);
    let markers: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("lines dropped"))
        .collect();
    let shipped = lines.len() - markers.len();
    eprintln!(
        "log flood: {sent} lines of 4 KiB sent, {shipped} shipped, markers {markers:?}, stopped after {:?}",
        t0.elapsed()
    );
    assert!(
        !markers.is_empty(),
        "the dropped lines are counted in a marker"
    );
    // What reached the control plane is what the log budget allows.
    let allowed = (524_288.0 + 262_144.0 * t0.elapsed().as_secs_f64()) / 4096.0;
    assert!((shipped as f64) <= allowed + 1.0, "{shipped} > {allowed}");
    assert!(
        sent as usize > shipped,
        "the guest sent more than got through"
    );
    rig.check(Some("log budget (262144 bytes/s) for 3 s"), t0);
}

#[test]
fn connection_flood_is_refused_without_cost() {
    // Only the guest's first connection is taken: the relay removes its guest socket
    // then, so more connections are refused by the kernel and cost the agent and the
    // relay nothing. There is nothing to stop the task for: it keeps running.
    let (mut rig, _ag) = rig();
    let t0 = Instant::now();
    let relay_rss0 = rss_kib(rig.attacker.relay.id()).unwrap();
    let mut refused = 0;
    for _ in 0..2000 {
        if std::os::unix::net::UnixStream::connect(&rig.attacker.guest_socket).is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, 2000, "every extra connection is refused");
    let relay_rss = rss_kib(rig.attacker.relay.id()).unwrap();
    assert!(
        relay_rss < relay_rss0 + 1024,
        "relay RSS {relay_rss0} -> {relay_rss} KiB"
    );
    assert_eq!(rig.cp.stopped(&rig.attacker.arn), None);
    assert!(!exited(&mut rig.attacker.relay));
    rig.check(None, t0);
}

/// Byte sequences no guest-proto peer sends, each written after a good handshake.
fn garbage(seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let random: Vec<u8> = (0..256).map(|_| rnd() as u8).collect();
    vec![
        // A length far over the frame limit.
        vec![0xff, 0xff, 0xff, 0xff, b'{'],
        // A frame of invalid UTF-8.
        [
            &6u32.to_be_bytes()[..],
            &[b'{', 0xff, 0xfe, 0xc3, 0x28, b'}'],
        ]
        .concat(),
        // Valid JSON, unknown message type.
        {
            let j = br#"{"type":"rootTheHost","x":1}"#;
            [&(j.len() as u32).to_be_bytes()[..], j].concat()
        },
        // Half a frame, then silence (the sender hangs up below).
        [&100u32.to_be_bytes()[..], &b"{\"type\":\"log\""[..]].concat(),
        // Seeded random bytes.
        random,
    ]
}

#[test]
fn garbage_frames_end_the_task_cleanly() {
    // Every kind of garbage, each from its own task's guest, on one agent.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let cp = TestControlPlane::start();
    let polite = running_task(&state, "polite");
    let kinds = garbage(0x9e37_79b9_7f4a_7c15);
    let mut attackers: Vec<Task> = (0..kinds.len())
        .map(|i| running_task(&state, &format!("garbage{i}")))
        .collect();
    let pg = guest(&polite.guest_socket);
    let mut conns: Vec<_> = attackers.iter().map(|t| guest(&t.guest_socket)).collect();
    let daemon = Daemon::start(&state, &cp, FLAGS);
    let rss = daemon.rss_sampler();
    wait_for(30, "every task adopted", || {
        std::iter::once(&polite)
            .chain(&attackers)
            .all(|t| cp.reports(&t.arn).iter().any(|r| r.1 == "RUNNING"))
    });
    let (stop_polite, polite_sent) = (Arc::new(AtomicBool::new(false)), Arc::default());
    polite_guest(pg, stop_polite.clone(), Arc::clone(&polite_sent));
    let t0 = Instant::now();
    for (c, bytes) in conns.iter_mut().zip(&kinds) {
        let s = c.get_ref();
        let _ = (&*s).write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    // The first attacker goes through `Rig::check`; the others live until the end.
    let _others = attackers.split_off(1);
    let rig = Rig {
        _dir: dir,
        cp,
        polite,
        attacker: attackers.remove(0),
        daemon,
        stop_polite,
        polite_sent,
        rss,
    };
    // (the other attackers are checked through the control plane below)
    let names: Vec<String> = (0..kinds.len())
        .map(|i| format!("arn:aws:ecs:us-east-1:111122223333:task/c1/garbage{i}"))
        .collect();
    wait_for(30, "every garbage task stopped", || {
        names.iter().all(|a| rig.cp.stopped(a).is_some())
    });
    for a in &names {
        let why = rig.cp.stopped(a).unwrap();
        assert!(
            why.contains("guest channel broken"),
            "{a}: stoppedReason {why:?}"
        );
    }
    rig.check(Some("guest channel broken"), t0);
}
