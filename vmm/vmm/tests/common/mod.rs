//! Helpers shared by the integration tests and the start-up benchmark: a tiny ELF "kernel",
//! the vmm process under test and a minimal HTTP client for the API socket.
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
