//! Benchmark (prints figures, asserts nothing): vmm process start to API socket ready (CPU
//! and wall ms), and resident memory of a vmm running a 1 vCPU / 128 MiB guest, excluding
//! guest memory. Run with `cargo bench -p vmm --bench startup`.
//! Targets: <= 5 CPU ms to API ready, <= 3 MiB RSS overhead.

// Children are reaped with wait4 (for their rusage) in kill_and_cpu_ms, not Child::wait.
#![allow(clippy::zombie_processes)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
const RUNS: usize = 30;

/// Kills the child and returns its CPU time (user + system) in ms, from wait4's rusage.
fn kill_and_cpu_ms(pid: u32) -> f64 {
    // SAFETY: plain syscalls on our own child's pid; `ru` is a valid out-parameter.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
        let mut status = 0;
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::wait4(pid as i32, &mut status, 0, &mut ru);
        let t = |tv: libc::timeval| tv.tv_sec as f64 * 1e3 + tv.tv_usec as f64 / 1e3;
        t(ru.ru_utime) + t(ru.ru_stime)
    }
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "median {:.2}  min {:.2}  p90 {:.2}  max {:.2}",
        v[v.len() / 2],
        v[0],
        v[v.len() * 9 / 10],
        v[v.len() - 1]
    )
}

fn startup() {
    let dir = scratch("bench-start");
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let sock = dir.join(format!("{i}.sock"));
        let t0 = Instant::now();
        let child = Command::new(VMM)
            .arg("--api-sock")
            .arg(&sock)
            .arg("--no-serial-input")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn vmm");
        if !wait_for_socket(&sock, Duration::from_secs(10)) {
            panic!("API socket never became ready");
        }
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        cpu.push(kill_and_cpu_ms(child.id()));
        let _ = std::fs::remove_file(&sock);
    }
    println!("start -> API socket ready, {RUNS} runs");
    println!("  CPU ms  (user+sys of the vmm): {}", stats(cpu));
    println!("  wall ms (spawn to connect ok): {}", stats(wall));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Memory of a process in KiB from /proc/PID/smaps, with the guest RAM mappings (anonymous,
/// marked MADV_DONTDUMP by the vmm: VmFlags `dd`) counted apart.
#[derive(Default, Debug)]
struct Mem {
    /// Resident (shared library pages counted in full).
    rss: u64,
    /// Proportional (shared pages divided among the processes mapping them).
    pss: u64,
    /// Unique to the process (private clean + dirty).
    uss: u64,
    /// Resident pages of the guest RAM mapping.
    guest: u64,
}

fn mem_kib(pid: u32) -> Mem {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut m = Mem::default();
    // One block per mapping: a header line, then "Key: value kB" lines, VmFlags last.
    let mut block: Vec<(String, u64)> = Vec::new();
    let mut anon = false;
    for line in smaps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first()
            .is_some_and(|x| x.contains('-') && !x.ends_with(':'))
        {
            block.clear();
            anon = f.len() == 5;
        } else if f.first() == Some(&"VmFlags:") {
            let guest = anon && f.contains(&"dd");
            for (k, kib) in &block {
                match (guest, k.as_str()) {
                    (true, "Rss:") => m.guest += kib,
                    (true, _) => {}
                    (false, "Rss:") => m.rss += kib,
                    (false, "Pss:") => m.pss += kib,
                    (false, "Private_Clean:" | "Private_Dirty:") => m.uss += kib,
                    _ => {}
                }
            }
        } else if f.len() >= 2 {
            block.push((f[0].to_string(), f[1].parse().unwrap_or(0)));
        }
    }
    m
}

fn rss() {
    let kvm_ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !kvm_ok {
        println!("RSS: skipped (no /dev/kvm)");
        return;
    }
    let dir = scratch("bench-rss");
    let kernel = dir.join("tiny.elf");
    std::fs::write(&kernel, tiny_elf(&serial_program(b"up\n", false))).unwrap();
    let serial = dir.join("serial");
    let sock = dir.join("api.sock");
    let child = Command::new(VMM)
        .arg("--api-sock")
        .arg(&sock)
        .arg("--serial-out")
        .arg(&serial)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn vmm");
    assert!(wait_for_socket(&sock, Duration::from_secs(10)));
    let before = mem_kib(child.id());
    request(
        &sock,
        "PUT",
        "/machine-config",
        Some(r#"{"vcpu_count": 1, "mem_size_mib": 128}"#),
    );
    let body = format!(r#"{{"kernel_image_path": "{}"}}"#, kernel.display());
    request(&sock, "PUT", "/boot-source", Some(&body));
    let (st, b) = request(
        &sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
    );
    assert_eq!(st, 204, "{b}");
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && std::fs::read_to_string(&serial).unwrap_or_default() != "up\n" {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let m = mem_kib(child.id());
    let mib = |k: u64| k as f64 / 1024.0;
    println!("memory of the vmm with a 1 vCPU / 128 MiB guest started (tiny guest kernel)");
    println!(
        "  guest RAM mapping resident (excluded below): {} KiB",
        m.guest
    );
    println!(
        "  RSS overhead: {} KiB = {:.2} MiB (before InstanceStart: {} KiB)",
        m.rss,
        mib(m.rss),
        before.rss
    );
    println!(
        "  PSS overhead: {} KiB = {:.2} MiB (shared libc/ld.so pages divided)",
        m.pss,
        mib(m.pss)
    );
    println!(
        "  USS overhead: {} KiB = {:.2} MiB (pages only this vmm holds)",
        m.uss,
        mib(m.uss)
    );
    kill_and_cpu_ms(child.id());
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    startup();
    rss();
}
