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
