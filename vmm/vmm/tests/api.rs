//! The vmm binary end to end: Firecracker API on a Unix socket and config-file mode, with a
//! tiny ELF kernel on the real /dev/kvm.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn configuration_errors_are_400_with_a_message() {
    let api = ApiVmm::spawn("api-errors", &["--id", "test-vm"], true);

    let (st, body) = api.get("/");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "test-vm");
    assert_eq!(v["state"], "Not started");

    expect_fault(
        api.put("/machine-config", "{\"vcpu_count\": 2,"),
        "invalid JSON",
    );

    expect_fault(
        api.put(
            "/machine-config",
            r#"{"vcpu_count": 0, "mem_size_mib": 128}"#,
        ),
        "vcpu_count",
    );

    let (st, _) = api.put(
        "/machine-config",
        r#"{"vcpu_count": 2, "mem_size_mib": 256}"#,
    );
    assert_eq!(st, 204);
    let (st, _) = api.patch("/machine-config", r#"{"vcpu_count": 3}"#);
    assert_eq!(st, 204);
    let (_, body) = api.get("/machine-config");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["vcpu_count"].as_u64(), v["mem_size_mib"].as_u64()),
        (Some(3), Some(256))
    );

    expect_fault(api.action("InstanceStart"), "boot source");
    expect_fault(
        api.put(
            "/boot-source",
            r#"{"kernel_image_path": "/nonexistent/vmlinux"}"#,
        ),
        "/nonexistent/vmlinux",
    );
    expect_fault(api.put("/balloon", "{}"), "not supported");
    let (st, _) = api.get("/no-such-thing");
    assert_eq!(st, 400);

    if kvm_available() {
        let garbage = api.path("garbage.bin");
        std::fs::write(&garbage, vec![0x90u8; 64 << 10]).unwrap();
        let body = format!(r#"{{"kernel_image_path": "{}"}}"#, garbage.display());
        let (st, _) = api.put("/boot-source", &body);
        assert_eq!(st, 204);
        expect_fault(
            api.action("InstanceStart"),
            "neither an ELF vmlinux nor a bzImage",
        );
        // Still alive and still not started.
        let (_, body) = api.get("/");
        assert!(body.contains("Not started"), "{body}");
    }
}

#[test]
fn api_boot_second_start_and_ctrl_alt_del() {
    require_kvm!();
    let dir = scratch("api-boot");
    let metrics = dir.join("metrics.json");
    let mut api = ApiVmm::spawn_in(dir, &["--metrics-path", metrics.to_str().unwrap()], true);
    let serial = api.path("serial.out");
    let body = format!(r#"{{"serial_out_path": "{}"}}"#, serial.display());
    assert_eq!(api.put("/serial", &body).0, 204);
    api.boot_tiny(&serial_program(b"tiny guest up\n", false), "console=ttyS0");
    let (st, body) = api.action("SendCtrlAltDel");
    assert_eq!(st, 400, "{body}");
    let (st, body) = api.action("InstanceStart");
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
    expect_fault(
        api.action("InstanceStart"),
        "InstanceStart is not allowed after the microVM started",
    );
    let (st, _) = api.put(
        "/machine-config",
        r#"{"vcpu_count": 1, "mem_size_mib": 128}"#,
    );
    assert_eq!(st, 400);
    let (st, body) = api.get("/");
    assert!(st == 200 && body.contains("Running"), "{body}");
    assert_eq!(api.action("SendCtrlAltDel").0, 204);
    assert_eq!(api.action("FlushMetrics").0, 204);
    let text = std::fs::read_to_string(&metrics).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["serial"]["tx_bytes"].as_u64(), Some(14));
    assert!(api.vmm.0.try_wait().unwrap().is_none());
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
    let (code, out) = boot_config_file(&cfg, Duration::from_secs(20));
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
        let out = config_file_vmm(&cfg).output().unwrap();
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
    let mut api = ApiVmm::spawn_in(dir, &["--metrics-path", metrics.to_str().unwrap()], true);
    assert_eq!(api.get("/").0, 200);
    api.vmm.sigterm();
    assert_eq!(api.vmm.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!api.sock.exists(), "API socket left behind");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["api"]["requests"].as_u64(), Some(1));
}
