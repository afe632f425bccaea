//! Test harness for the agent channel: the real `controlplane` binary on a loopback
//! port with a temporary data dir, and the real `hostagent` binary as a child process.
#![allow(dead_code)]

// One parser for every crate's metrics tests.
#[path = "../../../../tests/support/prom.rs"]
pub mod prom;

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const ACCOUNT: &str = "111122223333";
pub const KEY: &str = "AKIDHOSTAGENTTEST1";
pub const SECRET: &str = "hostagent/test+secret";
/// The bootstrap token the harness creates (`controlplane tokens create`).
pub const TOKEN: &str = "hostagent-bootstrap-token";

/// The controlplane binary: `$HOSTAGENT_TEST_CONTROLPLANE`, else beside this test's
/// target directory (`cargo test --workspace` builds it there, as controlplane's own
/// integration tests need it).
pub fn controlplane_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HOSTAGENT_TEST_CONTROLPLANE") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("controlplane");
    p.is_file().then_some(p)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` every 50 ms until it is true; panics with `what` after `secs`.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running controlplane; killed on drop.
pub struct ControlPlane {
    pub addr: String,
    pub bin: PathBuf,
    pub data: PathBuf,
    child: Child,
}

impl ControlPlane {
    /// Plain HTTP on loopback (`--dev-plain-http`).
    pub fn start(bin: &Path, addr: &str, data: &Path) -> ControlPlane {
        Self::start_with(bin, addr, data, &["--dev-plain-http"])
    }

    /// Starts one with `extra` flags (the listener's among them: `--dev-plain-http`,
    /// or `--tls-cert C --tls-key K`), after creating the bootstrap token TOKEN
    /// (cell 0, 100 hosts, a day) with the operator command unless it exists.
    pub fn start_with(bin: &Path, addr: &str, data: &Path, extra: &[&str]) -> ControlPlane {
        let out = Command::new(bin)
            .args(["tokens", "create", "--cell", "0", "--max-hosts", "100"])
            .args(["--expires-in", "1d", "--max-cpu", "65536"])
            .args([
                "--max-memory-mib",
                "1048576",
                "--token",
                TOKEN,
                "--data-dir",
            ])
            .arg(data)
            .output()
            .expect("controlplane tokens create");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("already exists"),
            "tokens create: {err}"
        );
        let child = Command::new(bin)
            .args(["--listen", addr, "--data-dir"])
            .arg(data)
            .args(["--account", &format!("{ACCOUNT}:{KEY}:{SECRET}")])
            .args(extra)
            .args([
                "--heartbeat-timeout-ms",
                "3000",
                "--heartbeat-interval-ms",
                "1000",
            ])
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn controlplane");
        let cp = ControlPlane {
            addr: addr.to_string(),
            bin: bin.to_path_buf(),
            data: data.to_path_buf(),
            child,
        };
        wait_for(30, "controlplane to listen", || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        cp
    }

    /// Runs the operator command `controlplane ARGS --data-dir DATA`; Ok(stdout)
    /// or Err(stderr).
    pub fn operator(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .output()
            .expect("run controlplane");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `sig` to the controlplane process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child process.
        let r = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(r, 0, "kill");
    }

    /// `GET /metrics.json`.
    pub fn metrics(&self) -> Option<Value> {
        let mut s = std::net::TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET /metrics.json HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        serde_json::from_str(resp.split_once("\r\n\r\n")?.1).ok()
    }

    pub fn connected(&self) -> i64 {
        self.metrics()
            .and_then(|m| m["agentsConnected"].as_i64())
            .unwrap_or(-1)
    }

    /// Runs `/usr/bin/aws SERVICE ARGS` (the real AWS CLI, isolated from any user
    /// configuration) against this control plane; Ok(json) or Err(stderr).
    pub fn aws(&self, service: &str, args: &[&str]) -> Result<Value, String> {
        let out = Command::new("/usr/bin/aws")
            .args(["--endpoint-url", &format!("http://{}", self.addr)])
            .args(["--region", "us-east-1", "--output", "json", service])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_PAGER", "")
            .output()
            .map_err(|e| format!("run /usr/bin/aws: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let s = String::from_utf8_lossy(&out.stdout);
        if s.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&s).map_err(|e| format!("aws output {s}: {e}"))
    }

    pub fn client(&self) -> controlplane::client::Client {
        controlplane::client::Client {
            addr: self.addr.clone(),
            tls: None,
            region: "us-east-1".into(),
            key: KEY.into(),
            secret: SECRET.into(),
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A running `hostagent`; its stderr goes to `log`; killed on drop.
pub struct HostAgent {
    pub child: Child,
    pub log: PathBuf,
}

impl HostAgent {
    /// Over plain HTTP to a loopback control plane (`--dev-plain-http`).
    pub fn start(cp_addr: &str, state: &Path, log: &Path, extra: &[&str]) -> HostAgent {
        let url = format!("http://{cp_addr}");
        let mut flags = vec!["--controlplane", &url, "--dev-plain-http"];
        flags.extend(extra);
        Self::start_with(state, log, &flags)
    }

    /// With `flags` (which name `--controlplane` and its TLS trust).
    pub fn start_with(state: &Path, log: &Path, flags: &[&str]) -> HostAgent {
        let err = std::fs::File::create(log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_hostagent"))
            .args(["--availability-zone", "us-east-1a", "--state-dir"])
            .arg(state)
            .args(["--cpu-units", "4096", "--memory-mib", "8192"])
            .args(
                (!flags.contains(&"--max-backoff-ms"))
                    .then_some(["--max-backoff-ms", "1000"])
                    .iter()
                    .flatten(),
            )
            .args(["--level", "debug"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn hostagent");
        HostAgent {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child process.
        let r = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(r, 0, "kill");
    }

    /// Waits up to `secs` for the process to exit.
    pub fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "hostagent did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
