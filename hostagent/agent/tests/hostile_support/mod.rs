//! Harness for the hostile-guest tests: a test control plane (a WebSocket server that
//! records every agent message with its arrival time), tasks made of a real
//! `hostagent vm-relay` process, a stand-in vmm process (`sleep`) and a state
//! directory the real `hostagent` daemon adopts at start (`--runtime microvm`), and
//! the guest side: a program speaking guest-proto over the relay's real guest socket.
#![allow(dead_code)]

use agent_proto::{ContainerSpec, ContainerState, NetworkSpec, Status, TaskSpec};
use futures_util::StreamExt;
use guest_proto::messages::Role;
use guest_proto::Channel;
use hostagent::host::identity::{self, Identity};
use hostagent::host::store::{TaskRecord, TaskStore};
use hostagent::vm::config::task_id;
use hostagent::vm::process::ProcIdent;
use hostagent::vm::state::{self, TaskState};
use serde_json::Value;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it is true; panics with `what` after `secs`.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test control plane: accepts the agent channel and records what arrives.
pub struct TestControlPlane {
    pub addr: String,
    pub msgs: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl TestControlPlane {
    pub fn start() -> TestControlPlane {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap().to_string();
        let msgs: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let m2 = msgs.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
                while let Ok((s, _)) = l.accept().await {
                    let m3 = m2.clone();
                    tokio::spawn(async move {
                        let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                            return;
                        };
                        while let Some(Ok(f)) = ws.next().await {
                            if let tokio_tungstenite::tungstenite::Message::Text(t) = f {
                                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                                    m3.lock().unwrap().push((Instant::now(), v));
                                }
                            }
                        }
                    });
                }
            });
        });
        TestControlPlane { addr, msgs }
    }

    /// State reports of `arn`: (arrival, status, stoppedReason).
    pub fn reports(&self, arn: &str) -> Vec<(Instant, String, Option<String>)> {
        self.msgs
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["type"] == "taskStateChange" && v["taskArn"] == arn)
            .map(|(t, v)| {
                (
                    *t,
                    v["lastStatus"].as_str().unwrap_or("").to_string(),
                    v["stoppedReason"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    /// The stoppedReason once `arn` was reported STOPPED.
    pub fn stopped(&self, arn: &str) -> Option<String> {
        self.reports(arn)
            .into_iter()
            .find(|r| r.1 == "STOPPED")
            .map(|r| r.2.unwrap_or_default())
    }

    /// Log lines of `arn` the control plane received.
    pub fn lines(&self, arn: &str) -> Vec<String> {
        let mut out = vec![];
        for (_, v) in self.msgs.lock().unwrap().iter() {
            if v["type"] != "logs" {
                continue;
            }
            for l in v["lines"].as_array().into_iter().flatten() {
                if l["taskArn"] == arn {
                    out.push(l["line"].as_str().unwrap_or("").to_string());
                }
            }
        }
        out
    }
}

/// The most state reports of `arn` in any one-second window.
pub fn max_per_second(reports: &[(Instant, String, Option<String>)]) -> usize {
    let mut best = 0;
    for (i, r) in reports.iter().enumerate() {
        let n = reports[i..]
            .iter()
            .take_while(|x| x.0.duration_since(r.0) < Duration::from_secs(1))
            .count();
        best = best.max(n);
    }
    best
}

/// One adopted task: its relay, its stand-in vmm and where its guest connects.
pub struct Task {
    pub arn: String,
    pub relay: Child,
    pub vmm: Child,
    pub guest_socket: PathBuf,
}

impl Drop for Task {
    fn drop(&mut self) {
        let _ = self.relay.kill();
        let _ = self.relay.wait();
        let _ = self.vmm.kill();
        let _ = self.vmm.wait();
    }
}

fn ids() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail and take no arguments.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// A task spec with containers `web` (awslogs) and `side`.
pub fn spec(arn: &str) -> TaskSpec {
    let mut options = std::collections::BTreeMap::new();
    options.insert("awslogs-group".to_string(), "/ecs/web".to_string());
    options.insert("awslogs-stream-prefix".to_string(), "app".to_string());
    TaskSpec {
        task_arn: arn.into(),
        account_id: "111122223333".into(),
        task_definition_arn: "arn:td/web:1".into(),
        cpu: 256,
        memory: 512,
        containers: vec![
            ContainerSpec {
                name: "web".into(),
                essential: true,
                stop_timeout_secs: 2,
                log_configuration: Some(agent_proto::LogConfiguration {
                    log_driver: "awslogs".into(),
                    options,
                }),
                ..Default::default()
            },
            ContainerSpec {
                name: "side".into(),
                stop_timeout_secs: 2,
                ..Default::default()
            },
        ],
        network: NetworkSpec {
            subnets: vec!["subnet-1".into()],
            security_groups: vec![],
            assign_public_ip: false,
        },
        volumes: vec![],
    }
}

/// Makes task `name` as a launch would have left it running: a real relay process
/// (guest socket under `state/jail-<name>/`), a `sleep` as its vmm, `state.json`, and
/// a RUNNING record in the registry.
pub fn running_task(state: &Path, name: &str) -> Task {
    let arn = format!("arn:aws:ecs:us-east-1:111122223333:task/c1/{name}");
    let id = task_id(&arn);
    let dir = state.join("vm").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let jail = state.join(format!("jail-{name}"));
    std::fs::create_dir_all(&jail).unwrap();
    let guest_socket = jail.join("v.sock_1024");
    let agent_socket = dir.join("relay.sock");
    let (uid, gid) = ids();
    let relay = Command::new(env!("CARGO_BIN_EXE_hostagent"))
        .arg("vm-relay")
        .arg("--guest-socket")
        .arg(&guest_socket)
        .arg("--agent-socket")
        .arg(&agent_socket)
        .args(["--uid", &uid.to_string(), "--gid", &gid.to_string()])
        .args(["--boot-timeout-ms", "30000"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(state.join(format!("relay-{name}.log"))).unwrap())
        .spawn()
        .unwrap();
    let vmm = Command::new("sleep").arg("600").spawn().unwrap();
    wait_for(10, "relay sockets", || {
        guest_socket.exists() && agent_socket.exists()
    });
    let st = TaskState {
        task_arn: arn.clone(),
        task_id: id,
        cpu: 256,
        memory: 512,
        stop_timeout_secs: 2,
        containers: vec!["web".into(), "side".into()],
        vmm: Some(ProcIdent::of(vmm.id() as i32).unwrap()),
        relay: Some(ProcIdent::of(relay.id() as i32).unwrap()),
        relay_socket: Some(agent_socket),
        running: true,
        ..Default::default()
    };
    state::save(&dir, &st).unwrap();
    let running = |n: &str| ContainerState {
        name: n.into(),
        last_status: Status::Running,
        exit_code: None,
        reason: None,
    };
    TaskStore::open(state)
        .unwrap()
        .put(&TaskRecord {
            spec: spec(&arn),
            last_status: Status::Running,
            containers: vec![running("web"), running("side")],
            stopped_reason: None,
            private_ipv4_address: Some("10.0.0.7".into()),
        })
        .unwrap();
    Task {
        arn,
        relay,
        vmm,
        guest_socket,
    }
}

/// The guest's end: connects to the relay's guest socket and does the handshake.
pub fn guest(sock: &Path) -> Channel<UnixStream> {
    let s = UnixStream::connect(sock).unwrap();
    let mut c = Channel::new(s);
    c.handshake(Role::Guest, "hostile-guest").unwrap();
    c
}

/// A well-behaved guest: a state change and a log line every 300 ms until `stop`;
/// counts what it sent.
pub fn polite_guest(
    mut c: Channel<UnixStream>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0u32;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let ok = c
                .send(&guest_proto::GuestMessage::ContainerStateChange {
                    container: "side".into(),
                    status: guest_proto::ContainerStatus::Running,
                    exit_code: None,
                    reason: None,
                    pid: Some(i as i32),
                    timestamp_ms: 1,
                })
                .is_ok()
                && c.send(&guest_proto::GuestMessage::Log {
                    container: "web".into(),
                    stream: guest_proto::LogStream::Stdout,
                    timestamp_ms: 1_700_000_000_000 + u64::from(i),
                    line: format!("polite line {i}"),
                })
                .is_ok();
            if !ok {
                return;
            }
            sent.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

/// The real `hostagent` daemon with the microVM runtime (stand-in binaries: it only
/// adopts here), stored identity, the test control plane; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(state: &Path, cp: &TestControlPlane, budget_flags: &[&str]) -> Daemon {
        identity::save(
            state,
            &Identity {
                controlplane: format!("http://{}", cp.addr),
                host_id: "host-hostile".into(),
                host_credential: "secret".into(),
                cell: 0,
                heartbeat_interval_secs: 1,
                // Valid for a day: no rotation during the test.
                credential_issued_at_ms: identity::now_ms(),
                credential_expires_at_ms: identity::now_ms() + 86_400_000,
            },
        )
        .unwrap();
        let f = state.join("guest-file");
        std::fs::write(&f, b"x").unwrap();
        let log = state.join("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_hostagent"))
            .args(["--controlplane", &format!("http://{}", cp.addr)])
            .arg("--dev-plain-http")
            .args(["--availability-zone", "us-east-1a", "--state-dir"])
            .arg(state)
            .args(["--cpu-units", "4096", "--memory-mib", "8192"])
            .args(["--runtime", "microvm", "--vmm-bin", "/bin/true"])
            .args(["--jailer-bin", "/bin/true", "--guest-kernel"])
            .arg(&f)
            .arg("--guest-initramfs")
            .arg(&f)
            .arg("--chroot-base")
            .arg(state.join("jails"))
            .arg("--netd-socket")
            .arg(state.join("no-netd.sock"))
            .args(["--level", "info"])
            .args(budget_flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Samples the daemon's VmRSS every 50 ms until the returned flag is set; the
    /// largest value (KiB) is in the returned counter.
    pub fn rss_sampler(&self) -> (Arc<AtomicBool>, Arc<AtomicU64>) {
        let (stop, max) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s2, m2, pid) = (stop.clone(), max.clone(), self.child.id());
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                if let Some(kib) = rss_kib(pid) {
                    m2.fetch_max(kib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        (stop, max)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// Whether process `pid` (our child) has exited (reaps it).
pub fn exited(c: &mut Child) -> bool {
    matches!(c.try_wait(), Ok(Some(_)))
}
