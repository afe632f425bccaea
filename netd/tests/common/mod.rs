//! Test harness: runs the real netd binary with a private config (own nft table, namespace
//! and interface prefixes, own 10.x subnets that exist only inside this machine's test
//! namespaces), and stands in for each task's VM with a "guest" namespace whose veth is
//! plugged into the ENI's bridge next to the tap, configured exactly as the guest would be.
#![allow(dead_code)]

// One parser for every crate's metrics tests.
#[path = "../../../tests/support/prom.rs"]
pub mod prom;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netd::client::ClientError;
use netd::model::{CreateTaskRequest, EniRequest, Protocol, Rule, SecurityGroupSpec, Task};
use netd::Client;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs a command, panicking with its output on failure.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command, returning whether it succeeded.
pub fn sh_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// stdout of a command.
pub fn sh_out(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One netd instance under test, cleaned up on drop (also when the test fails).
pub struct Env {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub table: String,
    pub ns_prefix: String,
    pub if_prefix: String,
    pub guest_prefix: String,
    /// (name, "10.x.y" prefix of a /24 or given cidr)
    pub subnets: Vec<(String, String)>,
    child: Option<Child>,
    pub log: PathBuf,
    /// More flags for netd (set before `start`).
    pub args: Vec<String>,
}

impl Env {
    /// A new environment with subnets `names`, each a /24 (`cidr_len` overrides the length).
    pub fn new(names: &[&str], cidr_len: u8) -> Env {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id() as usize;
        let tag = format!(
            "{}{}",
            (b'a' + (n % 26) as u8) as char,
            (b'a' + (pid % 26) as u8) as char
        );
        let dir = std::env::temp_dir().join(format!("netd-test-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let if_prefix = format!("z{tag}");
        let mut subnets = Vec::new();
        let mut text = format!(
            "socket = \"{}\"\nstate_file = \"{}\"\nnft_table = \"netdtest{pid}{n}\"\nnetns_prefix = \"ndt{pid}{n}-\"\nifname_prefix = \"{if_prefix}\"\n",
            dir.join("netd.sock").display(),
            dir.join("state.json").display()
        );
        for (k, name) in names.iter().enumerate() {
            let net = format!("10.{}.{}", 180 + (n % 60), 10 + k);
            text += &format!(
                "[[subnet]]\nname = \"{name}\"\ncidr = \"{net}.0/{cidr_len}\"\ngateway = \"{net}.1\"\ndns = [\"{net}.1\"]\n"
            );
            subnets.push((name.to_string(), net));
        }
        let config = dir.join("netd.toml");
        std::fs::write(&config, text).unwrap();
        Env {
            socket: dir.join("netd.sock"),
            log: dir.join("netd.log"),
            config,
            table: format!("netdtest{pid}{n}"),
            ns_prefix: format!("ndt{pid}{n}-"),
            guest_prefix: format!("ngt{pid}{n}-"),
            if_prefix,
            subnets,
            child: None,
            args: Vec::new(),
            dir,
        }
    }

    /// Starts netd and waits for its API.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_netd"))
            .arg("--config")
            .arg(&self.config)
            .args(&self.args)
            .stderr(log)
            .spawn()
            .expect("spawn netd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "netd exited {st}: {}",
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    );
                }
            }
            assert!(Instant::now() < deadline, "netd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("netd not running");
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        c.wait().unwrap()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// The "guest" of a task: a namespace whose `eth<i>` is plugged into the ENI's bridge,
    /// with the ENI's MAC, address, prefix and (for the primary) default route.
    pub fn guest(&self, task: &Task) -> String {
        let g = format!("{}{}", self.guest_prefix, task.task_id);
        sh(&["ip", "netns", "add", &g]);
        sh(&["ip", "-n", &g, "link", "set", "lo", "up"]);
        for eni in &task.enis {
            let i = eni.index;
            let (port, eth) = (format!("gv{i}"), format!("eth{i}"));
            sh(&[
                "ip",
                "-n",
                &task.netns,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                &eth,
                "netns",
                &g,
            ]);
            sh(&[
                "ip",
                "-n",
                &task.netns,
                "link",
                "set",
                &port,
                "master",
                &format!("br{i}"),
                "up",
            ]);
            sh(&[
                "ip", "-n", &g, "link", "set", &eth, "address", &eni.mac, "up",
            ]);
            sh(&[
                "ip",
                "-n",
                &g,
                "addr",
                "add",
                &format!("{}/{}", eni.ip, eni.prefix_len),
                "dev",
                &eth,
            ]);
            if i == 0 {
                sh(&[
                    "ip",
                    "-n",
                    &g,
                    "route",
                    "add",
                    "default",
                    "via",
                    &eni.gateway.to_string(),
                    "dev",
                    &eth,
                ]);
            }
        }
        g
    }

    /// Names of host links netd owns for this environment.
    pub fn host_links(&self) -> Vec<String> {
        sh_out(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| n.starts_with(&self.if_prefix))
            .collect()
    }

    /// Task namespaces of this environment.
    pub fn namespaces(&self) -> Vec<String> {
        std::fs::read_dir("/var/run/netns")
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&self.ns_prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The table as text without rule handles.
    pub fn ruleset(&self) -> String {
        sh_out(&["nft", "list", "table", "inet", &self.table])
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill9();
        if let Ok(rd) = std::fs::read_dir("/var/run/netns") {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&self.ns_prefix) || n.starts_with(&self.guest_prefix) {
                    sh_ok(&["ip", "netns", "del", &n]);
                }
            }
        }
        for l in self.host_links() {
            sh_ok(&["ip", "link", "del", &l]);
        }
        for (_, net) in &self.subnets {
            let routes = sh_out(&["ip", "-o", "route", "show", "root", &format!("{net}.0/24")]);
            for r in routes.lines() {
                let mut args = vec!["ip", "route", "del"];
                args.extend(r.split_whitespace());
                sh_ok(&args);
            }
        }
        sh_ok(&["nft", "delete", "table", "inet", &self.table]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` on a fresh thread inside namespace `ns`.
pub fn in_ns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("open netns");
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("ns thread")
}

/// A TCP echo server inside a namespace; stops when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Starts an echo server on `port` (all addresses) inside `ns`.
pub fn serve(ns: &str, port: u16) -> Server {
    let listener = in_ns(ns, move || {
        TcpListener::bind(("0.0.0.0", port)).expect("bind")
    });
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    std::thread::spawn(move || {
                        s.set_nonblocking(false).ok();
                        let mut buf = [0u8; 64];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Server { stop }
}

/// Opens a TCP connection from inside `ns` (the socket stays in that namespace).
pub fn connect(ns: &str, ip: Ipv4Addr, port: u16) -> Option<TcpStream> {
    in_ns(ns, move || {
        let addr = SocketAddr::from((ip, port));
        let s = TcpStream::connect_timeout(&addr, Duration::from_millis(800)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(s)
    })
}

/// One echo round trip on an open connection.
pub fn echo(s: &mut TcpStream, msg: &[u8]) -> bool {
    let mut buf = vec![0u8; msg.len()];
    s.write_all(msg).is_ok() && s.read_exact(&mut buf).is_ok() && buf == msg
}

/// Can `ns` open a TCP connection to ip:port and get an echo back?
pub fn tcp_ok(ns: &str, ip: Ipv4Addr, port: u16) -> bool {
    connect(ns, ip, port)
        .map(|mut s| echo(&mut s, b"hi"))
        .unwrap_or(false)
}

/// Does a ping from `ns` to `ip` get an answer (2 tries)?
pub fn ping_ok(ns: &str, ip: Ipv4Addr) -> bool {
    sh_ok(&[
        "ip",
        "netns",
        "exec",
        ns,
        "ping",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "1",
        &ip.to_string(),
    ])
}

/// A tokio runtime for client calls.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The usual start of a test: netd running with /24 subnets `names`, a runtime for client
/// calls and a client.
pub fn started(names: &[&str]) -> (Env, tokio::runtime::Runtime, Client) {
    let mut env = Env::new(names, 24);
    env.start();
    let rt = rt();
    let c = env.client();
    (env, rt, c)
}

// ---- request builders shared by the test files ----

pub fn eni(subnet: &str, groups: &[&str]) -> EniRequest {
    EniRequest {
        subnet: subnet.into(),
        security_groups: groups.iter().map(|s| s.to_string()).collect(),
        public_ip: None,
    }
}

pub fn req(enis: Vec<EniRequest>) -> CreateTaskRequest {
    CreateTaskRequest {
        enis,
        tap_uid: None,
        tap_gid: None,
    }
}

pub fn rule(
    protocol: Protocol,
    ports: Option<(u16, u16)>,
    cidr: Option<&str>,
    group: Option<&str>,
) -> Rule {
    Rule {
        protocol,
        from_port: ports.map(|p| p.0),
        to_port: ports.map(|p| p.1),
        cidr: cidr.map(|c| c.parse().unwrap()),
        group: group.map(String::from),
    }
}

pub fn spec(ingress: Vec<Rule>, egress: Vec<Rule>) -> SecurityGroupSpec {
    SecurityGroupSpec { ingress, egress }
}

pub fn egress_all() -> Vec<Rule> {
    vec![rule(Protocol::All, None, Some("0.0.0.0/0"), None)]
}

/// TCP on `ports` from the members of `group`.
pub fn tcp_from_group(ports: (u16, u16), group: &str) -> Rule {
    rule(Protocol::Tcp, Some(ports), None, Some(group))
}

/// TCP on `ports` from `cidr`.
pub fn tcp_from_cidr(ports: (u16, u16), cidr: &str) -> Rule {
    rule(Protocol::Tcp, Some(ports), Some(cidr), None)
}

pub fn ip(t: &Task, i: usize) -> Ipv4Addr {
    t.enis[i].ip
}

pub fn api_status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub async fn put(c: &Client, name: &str, s: SecurityGroupSpec) {
    c.put_group(name, &s).await.unwrap();
}

/// Puts group `name`: no ingress, egress anywhere (the clients of the tests).
pub async fn put_egress_all(c: &Client, name: &str) {
    put(c, name, spec(vec![], egress_all())).await;
}

/// Puts group `name`: `ingress` only, no egress.
pub async fn put_ingress(c: &Client, name: &str, ingress: Vec<Rule>) {
    put(c, name, spec(ingress, vec![])).await;
}

/// Creates task `id` with `enis`, which must succeed.
pub async fn create(c: &Client, id: &str, enis: Vec<EniRequest>) -> Task {
    c.create_task(id, &req(enis)).await.unwrap()
}
