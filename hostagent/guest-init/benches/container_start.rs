//! Container start latency on this host (no VM): from the host sending RunTask to the
//! guest init reporting the container RUNNING (its process exec'd), and to its first log
//! line arriving on the host side. One busybox container per task, a fresh guest init in
//! its own mount namespace each time. Needs root. Prints min / median / max over 15 runs.
//!
//! `cargo bench -p guest-init --bench container_start`; `GUEST_INIT_BIN=<path>` measures
//! another build (e.g. the static release binary that ships in the VM).

use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use guest_proto::host::HostListener;
use guest_proto::*;

const RUNS: usize = 15;

fn stats(name: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        println!("{name}: no samples (the task failed; run the tests)");
        return;
    }
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: min {:.1} ms, median {:.1} ms, max {:.1} ms ({} runs)",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        v.len()
    );
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("container_start: SKIPPED (needs root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("image");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    symlink("busybox", root.join("bin/echo")).unwrap();
    let task = TaskSpec {
        task_arn: "bench".into(),
        containers: vec![ContainerSpec {
            name: "c".into(),
            root_device: root.display().to_string(),
            command: vec!["echo".into(), "started".into()],
            essential: true,
            ..Default::default()
        }],
        ..Default::default()
    };
    let (mut to_running, mut to_log) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let sock = dir.path().join(format!("c{i}.sock"));
        let listener = HostListener::bind_path(&sock).unwrap();
        let state = dir.path().join(format!("state{i}"));
        std::fs::create_dir_all(&state).unwrap();
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(
                std::env::var("GUEST_INIT_BIN")
                    .unwrap_or_else(|_| env!("CARGO_BIN_EXE_guest-init").to_string()),
            )
            .args(["run", "--tmpfs-state"])
            .arg(format!("--connect=unix:{}", sock.display()))
            .arg(format!("--state-dir={}", state.display()))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut conn = listener.accept(Duration::from_secs(30)).unwrap();
        let t0 = Instant::now();
        conn.run_task(&task).unwrap();
        loop {
            match conn.recv() {
                Ok(GuestMessage::ContainerStateChange {
                    status: ContainerStatus::Running,
                    ..
                }) => to_running.push(t0.elapsed()),
                Ok(GuestMessage::Log { .. }) => to_log.push(t0.elapsed()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = child.wait();
    }
    stats("RunTask -> container RUNNING", to_running);
    stats("RunTask -> first log line on the host", to_log);
}
