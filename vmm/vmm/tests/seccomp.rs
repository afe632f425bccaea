//! `--no-seccomp` and `--seccomp-filter FILE` on the vmm binary (tiny guest, real /dev/kvm).

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn config(dir: &Path, reset: bool) -> std::path::PathBuf {
    let kernel = dir.join("tiny.elf");
    std::fs::write(&kernel, tiny_elf(&serial_program(b"hi\n", reset))).unwrap();
    let cfg = dir.join("vm.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"boot-source": {{"kernel_image_path": "{}"}},
                "machine-config": {{"vcpu_count": 1, "mem_size_mib": 32}}}}"#,
            kernel.display()
        ),
    )
    .unwrap();
    cfg
}

fn seccomp_modes(pid: u32) -> Vec<String> {
    let mut modes = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        if let Some(l) = status.lines().find(|l| l.starts_with("Seccomp:")) {
            modes.push(l.split_whitespace().nth(1).unwrap_or("").to_string());
        }
    }
    modes
}

#[test]
fn no_seccomp_leaves_every_thread_unfiltered() {
    require_kvm!();
    let dir = scratch("seccomp-off");
    let cfg = config(&dir, false);
    let sock = dir.join("api.sock");
    let mut child = Command::new(VMM)
        .arg("--no-seccomp")
        .arg("--api-sock")
        .arg(&sock)
        .arg("--config-file")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_socket(&sock, Duration::from_secs(10)));
    let (_, info) = request(&sock, "GET", "/", None);
    assert!(info.contains("Running"), "{info}");
    let modes = seccomp_modes(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(modes.len() >= 3, "{modes:?}");
    assert!(modes.iter().all(|m| m == "0"), "{modes:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn seccomp_filter_file_is_what_the_threads_run_under() {
    require_kvm!();
    let dir = scratch("seccomp-file");
    let cfg = config(&dir, true);
    let permissive = r#"{"default_action": "allow", "filter_action": "kill_process",
                         "filter": [{"syscall": "getppid"}]}"#;
    let no_ioctl = r#"{"default_action": "allow", "filter_action": "kill_process",
                       "filter": [{"syscall": "ioctl"}]}"#;
    let run = |vcpu: &str| {
        let f = dir.join("filter.json");
        std::fs::write(
            &f,
            format!(r#"{{"api": {permissive}, "vmm": {permissive}, "vcpu": {vcpu}}}"#),
        )
        .unwrap();
        config_file_vmm(&cfg)
            .arg("--seccomp-filter")
            .arg(&f)
            .output()
            .unwrap()
    };
    // The vCPU filter allows everything: the guest prints and resets (exit 0).
    let ok = run(permissive);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "hi\n");
    // The vCPU filter kills on ioctl: KVM_RUN kills the process before the guest runs.
    let killed = run(no_ioctl);
    assert_eq!(killed.status.signal(), Some(libc::SIGSYS), "{killed:?}");
    assert!(killed.stdout.is_empty());

    let missing = config_file_vmm(&cfg)
        .arg("--seccomp-filter")
        .arg(dir.join("nope.json"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.json"));
    let _ = std::fs::remove_dir_all(&dir);
}
