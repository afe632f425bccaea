//! Helpers shared by the integration tests and the start-up benchmark: a tiny ELF "kernel",
//! the vmm process under test and a minimal HTTP client for the API socket.
//!
//! The fixture most tests start from is [`ApiVmm::spawn`]: a scratch directory, a vmm
//! serving its API there, and request helpers; [`ApiVmm::boot_tiny`] puts a tiny ELF kernel
//! in it as the boot source. [`config_file_vmm`] is the `--no-api --config-file` command.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The vmm binary under test.
pub const VMM: &str = env!("CARGO_BIN_EXE_vmm");

/// True when this process can open /dev/kvm; tests that need KVM skip otherwise.
pub fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Returns from the test (which passes, saying it was skipped) when there is no KVM.
/// (The start-up bench shares this module and does not skip: hence the allows.)
#[allow(unused_macros)]
macro_rules! require_kvm {
    () => {
        if !common::kvm_available() {
            eprintln!("skipped: no /dev/kvm");
            return;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use require_kvm;

/// A vmm process, killed and reaped when dropped (also when a test fails).
pub struct Vmm(pub Child);
impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Vmm {
    /// Waits up to `timeout` for the process to exit; returns its exit code (None: still
    /// running, or ended by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        wait_exit(&mut self.0, timeout)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
    }
}

/// Waits up to `timeout` for `child` to exit; returns its exit code (None: still running,
/// or ended by a signal).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A vmm serving its API on `api.sock` in a fresh scratch directory, with request helpers.
/// Dropping it kills the vmm, then removes the directory.
pub struct ApiVmm {
    /// The vmm process (declared first: dropped, so killed, before the directory goes).
    pub vmm: Vmm,
    /// The API socket.
    pub sock: PathBuf,
    /// The scratch directory (`scratch(name)`).
    pub dir: PathBuf,
}

impl ApiVmm {
    /// A scratch directory `name` and a vmm started there with `extra` flags (see
    /// [`spawn_api`] for `capture`).
    pub fn spawn(name: &str, extra: &[&str], capture: bool) -> Self {
        Self::spawn_in(scratch(name), extra, capture)
    }

    /// Like [`ApiVmm::spawn`] in a scratch directory made beforehand (for flags that name
    /// files in it).
    pub fn spawn_in(dir: PathBuf, extra: &[&str], capture: bool) -> Self {
        let (vmm, sock) = spawn_api(&dir, extra, capture);
        ApiVmm { vmm, sock, dir }
    }

    /// `dir/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Sends one request; returns (status, body).
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        request(&self.sock, method, path, body)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, None)
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &str) -> (u16, String) {
        self.request("PUT", path, Some(body))
    }

    /// `PATCH path` with a JSON body.
    pub fn patch(&self, path: &str, body: &str) -> (u16, String) {
        self.request("PATCH", path, Some(body))
    }

    /// `PUT /actions` with `action_type` (`InstanceStart`, `SendCtrlAltDel`, ...).
    pub fn action(&self, action_type: &str) -> (u16, String) {
        self.put(
            "/actions",
            &format!(r#"{{"action_type": "{action_type}"}}"#),
        )
    }

    /// Writes `code` as a tiny ELF kernel (`dir/tiny.elf`) and makes it the boot source with
    /// `boot_args`; asserts the 204.
    pub fn boot_tiny(&self, code: &[u8], boot_args: &str) {
        let kernel = self.path("tiny.elf");
        std::fs::write(&kernel, tiny_elf(code)).unwrap();
        let body = format!(
            r#"{{"kernel_image_path": "{}", "boot_args": "{boot_args}"}}"#,
            kernel.display()
        );
        let (st, msg) = self.put("/boot-source", &body);
        assert_eq!(st, 204, "{msg}");
    }
}

impl Drop for ApiVmm {
    fn drop(&mut self) {
        let _ = self.vmm.0.kill();
        let _ = self.vmm.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asserts a 400 whose `fault_message` contains `want`.
pub fn expect_fault(r: (u16, String), want: &str) {
    assert_eq!(r.0, 400, "{}", r.1);
    let v: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    let msg = v["fault_message"].as_str().unwrap();
    assert!(msg.contains(want), "{msg:?} should mention {want:?}");
}

/// Runs `vmm --no-api --config-file cfg` to its end (at most `timeout`); returns its exit
/// code (None: still running at the timeout, or killed by a signal) and its stdout (the
/// guest console).
pub fn boot_config_file(cfg: &Path, timeout: Duration) -> (Option<i32>, String) {
    let mut child = config_file_vmm(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut child, timeout);
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (code, out)
}

/// `vmm --no-api --config-file cfg` with stdin from /dev/null.
pub fn config_file_vmm(cfg: &Path) -> Command {
    let mut c = Command::new(VMM);
    c.args(["--no-api", "--config-file"])
        .arg(cfg)
        .stdin(Stdio::null());
    c
}

/// Starts the vmm with its API on `dir/api.sock` plus `extra` flags and waits for the
/// socket. With `capture` its stdout and stderr are piped for the test to read, otherwise
/// discarded.
pub fn spawn_api(dir: &Path, extra: &[&str], capture: bool) -> (Vmm, PathBuf) {
    let sock = dir.join("api.sock");
    let out = || {
        if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let child = Command::new(VMM)
        .arg("--api-sock")
        .arg(&sock)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out())
        .stderr(out())
        .spawn()
        .unwrap();
    let vmm = Vmm(child);
    assert!(
        wait_for_socket(&sock, Duration::from_secs(10)),
        "API socket never appeared"
    );
    (vmm, sock)
}

/// Guest physical load address of the tiny kernels.
pub const LOAD: u64 = 0x10_0000;

/// Code that writes `text` to COM1, then either resets through the i8042 (`reset`) or
/// halts with interrupts off forever.
pub fn serial_program(text: &[u8], reset: bool) -> Vec<u8> {
    let mut c = vec![0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8
    for b in text {
        c.extend_from_slice(&[0xb0, *b, 0xee]); // mov al, b; out dx, al
    }
    if reset {
        c.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64]); // mov al, 0xfe; out 0x64, al
    }
    c.extend_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]); // cli; hlt; jmp hlt
    c
}

/// A minimal ELF64 executable with one PT_LOAD segment holding `code` at [`LOAD`].
pub fn tiny_elf(code: &[u8]) -> Vec<u8> {
    let mut e = Vec::new();
    e.extend_from_slice(b"\x7fELF\x02\x01\x01\0");
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&LOAD.to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    for v in [64u16, 56, 1, 64, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    let off = 0x1000u64;
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R+X
    for v in [
        off,
        LOAD,
        LOAD,
        code.len() as u64,
        code.len() as u64,
        0x1000,
    ] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.resize(off as usize, 0);
    e.extend_from_slice(code);
    e
}

/// A fresh scratch directory.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits until `sock` accepts connections.
pub fn wait_for_socket(sock: &Path, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if UnixStream::connect(sock).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// Sends one request; returns (status, body).
pub fn request(sock: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let b = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}
