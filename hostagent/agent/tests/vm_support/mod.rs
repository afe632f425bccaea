//! Fixtures of the microVM runtime tests: the real netd and jailer binaries (built beside
//! this test by `cargo test --workspace`), a private netd instance (own nft table, netns
//! and interface prefixes, a 10.x subnet only this machine sees), and the jailer's static
//! jail-probe standing in for the vmm (this machine's /dev/kvm cannot boot Linux).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether we run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A workspace binary: `$HOSTAGENT_TEST_<NAME>`, else beside this test's target dir.
pub fn workspace_bin(name: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(format!("HOSTAGENT_TEST_{}", name.to_uppercase())) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join(name);
    p.is_file().then_some(p)
}

/// The jailer's jail-probe, built static with rustc (the jail has no libraries).
pub fn probe() -> PathBuf {
    jailer::test_utils::jail_probe(Path::new(env!("CARGO_TARGET_TMPDIR"))).to_path_buf()
}

fn sh_out(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A private netd, killed and cleaned (table, namespaces, interfaces) on drop.
pub struct Netd {
    child: Child,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub subnet: String,
    pub net: String,
    table: String,
    ns_prefix: String,
    if_prefix: String,
}

impl Netd {
    /// Starts `bin` with subnet `svc` = 10.231.<n>.0/24 and waits for its API.
    pub fn start(bin: &Path, dir: &Path) -> Netd {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let letter = |v: u32| char::from(b'a' + u8::try_from(v % 26).unwrap_or(0));
        let n = 10 + (pid + k * 37) % 200;
        let if_prefix = format!("hv{}{}", letter(pid), letter(k));
        let table = format!("hostagentvm{pid}x{k}");
        let ns_prefix = format!("havm{pid}x{k}-");
        let net = format!("10.231.{n}");
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("netd.sock");
        let config = dir.join("netd.toml");
        std::fs::write(
            &config,
            format!(
                "socket = \"{}\"\nstate_file = \"{}\"\nnft_table = \"{table}\"\nnetns_prefix = \"{ns_prefix}\"\nifname_prefix = \"{if_prefix}\"\n[[subnet]]\nname = \"svc\"\ncidr = \"{net}.0/24\"\ngateway = \"{net}.1\"\ndns = [\"{net}.1\"]\n",
                socket.display(),
                dir.join("state.json").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("netd.log")).unwrap();
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stderr(log)
            .spawn()
            .expect("spawn netd");
        let mut me = Netd {
            child,
            dir: dir.to_path_buf(),
            socket,
            subnet: "svc".into(),
            net,
            table,
            ns_prefix,
            if_prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&me.socket).is_err() {
            if let Ok(Some(st)) = me.child.try_wait() {
                panic!(
                    "netd exited {st}: {}",
                    std::fs::read_to_string(dir.join("netd.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "netd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    /// netd's client.
    pub fn client(&self) -> netd::Client {
        netd::Client::new(&self.socket)
    }
}

impl Drop for Netd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        sh_quiet(&["nft", "delete", "table", "inet", &self.table]);
        for line in sh_out(&["ip", "netns", "list"]).lines() {
            if let Some(name) = line.split_whitespace().next() {
                if name.starts_with(&self.ns_prefix) {
                    sh_quiet(&["ip", "netns", "del", name]);
                }
            }
        }
        for line in sh_out(&["ip", "-o", "link"]).lines() {
            if let Some(name) = line.split(": ").nth(1) {
                let name = name.split('@').next().unwrap_or(name);
                if name.starts_with(&self.if_prefix) {
                    sh_quiet(&["ip", "link", "del", name]);
                }
            }
        }
    }
}

/// Pids of processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// The uid (real) of a running process.
pub fn uid_of(pid: i32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Every uid and gid (real, effective, saved, fs) of a running process.
pub fn ids_of(pid: i32) -> Option<(Vec<u32>, Vec<u32>)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<Vec<u32>> {
        let line = s.lines().find_map(|l| l.strip_prefix(name))?;
        line.split_whitespace().map(|v| v.parse().ok()).collect()
    };
    Some((field("Uid:")?, field("Gid:")?))
}

/// Plays a task's guest init on the relay's guest socket (`sock`), the way the guest
/// init does through the vmm's vsock: handshake, `taskAccepted`, each container
/// RUNNING; on `stopTask` every container STOPPED (exit 0) in `taskStopped`, then the
/// "VM reset": SIGTERM to the vmm recorded in `<task_dir>/state.json` (the jail-probe
/// standing in for the vmm exits on it). Ends when the connection closes.
pub fn play_guest(
    sock: PathBuf,
    task_dir: PathBuf,
    containers: Vec<String>,
) -> std::thread::JoinHandle<Result<(), String>> {
    use guest_proto::messages::Role;
    use guest_proto::{Channel, ContainerState, ContainerStatus, GuestMessage, HostMessage};
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let stream = loop {
            if let Ok(s) = std::os::unix::net::UnixStream::connect(&sock) {
                break s;
            }
            if Instant::now() > deadline {
                return Err(format!("{}: no relay", sock.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(300)))
            .map_err(|e| e.to_string())?;
        let mut chan = Channel::new(stream);
        chan.handshake(Role::Guest, "test-guest")
            .map_err(|e| format!("handshake: {e}"))?;
        let task = match chan.recv::<HostMessage>() {
            Ok(HostMessage::RunTask { task }) => task,
            other => return Err(format!("expected runTask, got {other:?}")),
        };
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
        };
        let send = |chan: &mut Channel<_>, m: GuestMessage| {
            chan.send(&m).map_err(|e| format!("send: {e}"))
        };
        send(
            &mut chan,
            GuestMessage::TaskAccepted {
                task_arn: task.task_arn.clone(),
            },
        )?;
        for c in &containers {
            send(
                &mut chan,
                GuestMessage::ContainerStateChange {
                    container: c.clone(),
                    status: ContainerStatus::Running,
                    exit_code: None,
                    reason: None,
                    pid: Some(7),
                    timestamp_ms: now(),
                },
            )?;
        }
        match chan.recv::<HostMessage>() {
            Ok(HostMessage::StopTask { reason, .. }) => {
                let finals = containers
                    .iter()
                    .map(|c| ContainerState {
                        name: c.clone(),
                        status: ContainerStatus::Stopped,
                        exit_code: Some(0),
                        reason: None,
                    })
                    .collect();
                send(
                    &mut chan,
                    GuestMessage::TaskStopped {
                        reason,
                        containers: finals,
                    },
                )?;
                let st: serde_json::Value = std::fs::read(task_dir.join("state.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                if let Some(pid) = st["vmm"]["pid"].as_i64() {
                    // SAFETY: kill(2) with a plain pid and signal number.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
                Ok(())
            }
            Ok(HostMessage::RunTask { .. }) => Err("second runTask".into()),
            // The agent went away for good (the test ended early).
            Err(_) => Ok(()),
        }
    })
}
