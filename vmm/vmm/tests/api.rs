//! The vmm binary end to end: Firecracker API on a Unix socket and config-file mode, with a
//! tiny ELF kernel on the real /dev/kvm.

mod common;

use common::*;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn configuration_errors_are_400_with_a_message() {
    let dir = scratch("api-errors");
    let (_vmm, sock) = spawn_api(&dir, &["--id", "test-vm"], true);

    let (st, body) = request(&sock, "GET", "/", None);
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "test-vm");
    assert_eq!(v["state"], "Not started");

    let (st, body) = request(&sock, "PUT", "/machine-config", Some("{\"vcpu_count\": 2,"));
    assert_eq!(st, 400);
    assert!(
        body.contains("fault_message") && body.contains("invalid JSON"),
        "{body}"
    );

    let big = format!(r#"{{"vcpu_count": 1, "mem_size_mib": {}}}"#, 1u64 << 40);
    let (st, body) = request(&sock, "PUT", "/machine-config", Some(&big));
    assert_eq!(st, 400);
    assert!(body.contains("exceeds the host"), "{body}");

    let (st, _) = request(
        &sock,
        "PUT",
        "/machine-config",
        Some(r#"{"vcpu_count": 2, "mem_size_mib": 256}"#),
    );
    assert_eq!(st, 204);
    let (st, _) = request(
        &sock,
        "PATCH",
        "/machine-config",
        Some(r#"{"vcpu_count": 3}"#),
    );
    assert_eq!(st, 204);
    let (_, body) = request(&sock, "GET", "/machine-config", None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["vcpu_count"].as_u64(), v["mem_size_mib"].as_u64()),
        (Some(3), Some(256))
    );

    let (st, body) = request(
        &sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
    );
    assert_eq!(st, 400);
    assert!(body.contains("boot source"), "{body}");

    let (st, body) = request(
        &sock,
        "PUT",
        "/boot-source",
        Some(r#"{"kernel_image_path": "/nonexistent/vmlinux"}"#),
    );
    assert_eq!(st, 400);
    assert!(body.contains("/nonexistent/vmlinux"), "{body}");

    let (st, body) = request(&sock, "PUT", "/balloon", Some("{}"));
    assert_eq!(st, 400);
    assert!(body.contains("not supported"), "{body}");
    let (st, _) = request(&sock, "GET", "/no-such-thing", None);
    assert_eq!(st, 400);

    if kvm_available() {
        let garbage = dir.join("garbage.bin");
        std::fs::write(&garbage, vec![0x90u8; 64 << 10]).unwrap();
        let body = format!(r#"{{"kernel_image_path": "{}"}}"#, garbage.display());
        let (st, _) = request(&sock, "PUT", "/boot-source", Some(&body));
        assert_eq!(st, 204);
        let (st, body) = request(
            &sock,
            "PUT",
            "/actions",
            Some(r#"{"action_type": "InstanceStart"}"#),
        );
        assert_eq!(st, 400);
        assert!(
            body.contains("neither an ELF vmlinux nor a bzImage"),
            "{body}"
        );
        // Still alive and still not started.
        let (_, body) = request(&sock, "GET", "/", None);
        assert!(body.contains("Not started"), "{body}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn api_boot_second_start_and_ctrl_alt_del() {
    require_kvm!();
    let dir = scratch("api-boot");
    let kernel = dir.join("tiny.elf");
    std::fs::write(
        &kernel,
        tiny_elf(&serial_program(b"tiny guest up\n", false)),
    )
    .unwrap();
    let serial = dir.join("serial.out");
    let metrics = dir.join("metrics.json");
    let (mut vmm, sock) = spawn_api(&dir, &["--metrics-path", metrics.to_str().unwrap()], true);
    let body = format!(r#"{{"serial_out_path": "{}"}}"#, serial.display());
    assert_eq!(request(&sock, "PUT", "/serial", Some(&body)).0, 204);
    let body = format!(
        r#"{{"kernel_image_path": "{}", "boot_args": "console=ttyS0"}}"#,
        kernel.display()
    );
    assert_eq!(request(&sock, "PUT", "/boot-source", Some(&body)).0, 204);
    let (st, body) = request(
        &sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type": "SendCtrlAltDel"}"#),
    );
    assert_eq!(st, 400, "{body}");
    let (st, body) = request(
        &sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
    );
    assert_eq!(st, 204, "{body}");
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end
        && !std::fs::read_to_string(&serial)
            .unwrap_or_default()
            .contains("tiny guest up")
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(&serial).unwrap(), "tiny guest up\n");
    let (st, body) = request(
        &sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
    );
    assert_eq!(st, 400);
    assert!(
        body.contains("InstanceStart is not allowed after the microVM started"),
        "{body}"
    );
    let (st, _) = request(
        &sock,
        "PUT",
        "/machine-config",
        Some(r#"{"vcpu_count": 1, "mem_size_mib": 128}"#),
    );
    assert_eq!(st, 400);
    let (st, body) = request(&sock, "GET", "/", None);
    assert!(st == 200 && body.contains("Running"), "{body}");
    let (st, _) = request(
        &sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type": "SendCtrlAltDel"}"#),
    );
    assert_eq!(st, 204);
    let (st, _) = request(
        &sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type": "FlushMetrics"}"#),
    );
    assert_eq!(st, 204);
    let text = std::fs::read_to_string(&metrics).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["serial"]["tx_bytes"].as_u64(), Some(14));
    assert!(vmm.0.try_wait().unwrap().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_file_boot_to_reset_exits_zero() {
    require_kvm!();
    let dir = scratch("config-file");
    let kernel = dir.join("tiny.elf");
    std::fs::write(
        &kernel,
        tiny_elf(&serial_program(b"from config file\n", true)),
    )
    .unwrap();
    let cfg = dir.join("vm.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{
  "boot-source": {{"kernel_image_path": "{}", "boot_args": "console=ttyS0 reboot=k panic=1 pci=off"}},
  "drives": [],
  "machine-config": {{"vcpu_count": 2, "mem_size_mib": 128, "smt": false}}
}}"#,
            kernel.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(VMM)
        .args(["--no-api", "--config-file"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(20));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(out, "from config file\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_file_errors_exit_nonzero_with_a_message() {
    let dir = scratch("config-bad");
    let cases = [
        ("{not json", "invalid config file"),
        (
            r#"{"boot-source": {"kernel_image_path": "/nonexistent"}, "balloon": {"amount_mib": 1}}"#,
            "balloon",
        ),
        (
            r#"{"boot-source": {"kernel_image_path": "/nonexistent"}}"#,
            "/nonexistent",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let cfg = dir.join(format!("vm{i}.json"));
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(VMM)
            .args(["--no-api", "--config-file"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "case {i}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_exits_cleanly_removing_the_socket_and_flushing_metrics() {
    let dir = scratch("sigterm");
    let metrics = dir.join("m.json");
    let (mut vmm, sock) = spawn_api(&dir, &["--metrics-path", metrics.to_str().unwrap()], true);
    assert_eq!(request(&sock, "GET", "/", None).0, 200);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(vmm.0.id() as i32, libc::SIGTERM) };
    assert_eq!(wait_exit(&mut vmm.0, Duration::from_secs(10)), Some(0));
    assert!(!sock.exists(), "API socket left behind");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["api"]["requests"].as_u64(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}
