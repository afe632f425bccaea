//! The virtio devices through the vmm binary: `/drives`, `/network-interfaces`, `/vsock`,
//! `/entropy` (API and config file), their errors, and a tiny guest on the real /dev/kvm
//! that reads the virtio-mmio registers and the kernel command line the vmm wrote.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn drive(id: &str, path: &Path, root: bool) -> String {
    format!(
        r#"{{"drive_id": "{id}", "path_on_host": "{}", "is_root_device": {root}, "is_read_only": false}}"#,
        path.display()
    )
}

#[test]
fn device_configuration_errors_before_start() {
    let api = ApiVmm::spawn("dev-errors", &[], false);
    let dir = api.dir.clone();
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 4096]).unwrap();

    let missing = dir.join("nope.img");
    expect_fault(
        api.put("/drives/rootfs", &drive("rootfs", &missing, true)),
        "nope.img",
    );
    expect_fault(api.put("/drives/rootfs", "{not json"), "invalid JSON");
    expect_fault(
        api.put(
            "/drives/rootfs",
            r#"{"drive_id": "rootfs", "is_root_device": true, "colour": "red"}"#,
        ),
        "colour",
    );
    expect_fault(
        api.put("/drives/other", &drive("rootfs", &disk, true)),
        "differ",
    );
    expect_fault(
        api.put("/drives/bad-id", &drive("bad-id", &disk, false)),
        "letters",
    );
    expect_fault(
        api.put(
            "/drives/rootfs",
            r#"{"drive_id": "rootfs", "is_root_device": true}"#,
        ),
        "path_on_host",
    );
    assert_eq!(
        api.put("/drives/rootfs", &drive("rootfs", &disk, true)).0,
        204
    );
    // Replacing the same drive is fine; a second root device is not.
    assert_eq!(
        api.put("/drives/rootfs", &drive("rootfs", &disk, true)).0,
        204
    );
    expect_fault(
        api.put("/drives/second", &drive("second", &disk, true)),
        "root device is already configured (rootfs)",
    );
    expect_fault(
        api.patch(
            "/drives/rootfs",
            r#"{"drive_id": "rootfs", "path_on_host": "/x"}"#,
        ),
        "running microVM",
    );
    expect_fault(
        api.patch("/network-interfaces/eth0", r#"{"iface_id": "eth0"}"#),
        "running microVM",
    );
    expect_fault(
        api.put(
            "/network-interfaces/eth0",
            r#"{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "not-a-mac"}"#,
        ),
        "guest_mac",
    );
    let vs = dir.join("v.sock");
    expect_fault(
        api.put(
            "/vsock",
            &format!(r#"{{"guest_cid": 2, "uds_path": "{}"}}"#, vs.display()),
        ),
        "CID",
    );
    let vsock_body = format!(
        r#"{{"vsock_id": "vsock0", "guest_cid": 3, "uds_path": "{}"}}"#,
        vs.display()
    );
    assert_eq!(api.put("/vsock", &vsock_body).0, 204);
    assert!(vs.exists(), "vsock listener not bound");
    // A second PUT replaces the device (same path: the old listener lets go of it).
    assert_eq!(api.put("/vsock", &vsock_body).0, 204);
    assert_eq!(api.put("/entropy", "{}").0, 204);
    expect_fault(
        api.put(
            "/entropy",
            r#"{"rate_limiter": {"bandwidth": {"size": 1}}}"#,
        ),
        "refill_time",
    );
    let (_, info) = api.get("/");
    assert!(info.contains("Not started"), "{info}");
}

/// Guest code: prints the kernel command line (at 0x20000), a newline, then for each
/// virtio-mmio slot the low byte of MagicValue ('v') and '0' + DeviceID, and for the first
/// `capacity_slots` slots '0' + the low byte of the block capacity; then halts.
fn probe_program(slots: u64, capacity_slots: u64) -> Vec<u8> {
    let mut c = vec![0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8
    c.extend_from_slice(&[0xbe, 0x00, 0x00, 0x02, 0x00]); // mov esi, 0x20000
    c.extend_from_slice(&[0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8]); // print loop
    c.extend_from_slice(&[0xb0, b'\n', 0xee]);
    for n in 0..slots {
        c.extend_from_slice(&[0x48, 0xbb]); // mov rbx, imm64
        c.extend_from_slice(&(0xC000_1000u64 + n * 0x1000).to_le_bytes());
        c.extend_from_slice(&[0x8b, 0x03, 0xee]); // mov eax, [rbx]; out dx, al
        c.extend_from_slice(&[0x8b, 0x43, 0x08, 0x04, 0x30, 0xee]); // [rbx+8] + '0'
        if n < capacity_slots {
            // mov eax, [rbx+0x100]; add al, '0'; out dx, al
            c.extend_from_slice(&[0x8b, 0x83, 0x00, 0x01, 0x00, 0x00, 0x04, 0x30, 0xee]);
        }
    }
    c.extend_from_slice(&[0xb0, b'\n', 0xee]);
    c.extend_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]); // cli; hlt; jmp hlt
    c
}

fn wait_for(path: &Path, want: &str, timeout: Duration) -> String {
    let end = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(want) || Instant::now() > end {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn devices_attached_in_order_with_cmdline_patch_and_metrics() {
    require_kvm!();
    let dir = scratch("dev-kvm");
    let serial = dir.join("serial.out");
    let metrics = dir.join("metrics.json");
    let mut api = ApiVmm::spawn_in(
        dir.clone(),
        &["--serial-out", serial.to_str().unwrap()],
        false,
    );
    let root = dir.join("root.img");
    let data = dir.join("data.img");
    std::fs::write(&root, vec![0u8; 3 * 512]).unwrap();
    std::fs::write(&data, vec![0u8; 5 * 512]).unwrap();
    // The data drive is PUT first, the root drive is still attached first (/dev/vda).
    assert_eq!(api.put("/drives/data", &drive("data", &data, false)).0, 204);
    assert_eq!(
        api.put("/drives/rootfs", &drive("rootfs", &root, true)).0,
        204
    );
    let tap = format!("vwt{}", std::process::id() % 100_000);
    let with_net = is_root();
    if with_net {
        let body = format!(
            r#"{{"iface_id": "eth0", "host_dev_name": "{tap}", "guest_mac": "06:00:ac:10:00:02"}}"#
        );
        assert_eq!(api.put("/network-interfaces/eth0", &body).0, 204);
    }
    let vs = dir.join("v.sock");
    let body = format!(r#"{{"guest_cid": 3, "uds_path": "{}"}}"#, vs.display());
    assert_eq!(api.put("/vsock", &body).0, 204);
    assert_eq!(api.put("/entropy", "{}").0, 204);
    let slots = if with_net { 5 } else { 4 };
    api.boot_tiny(&probe_program(slots, 2), "console=ttyS0 pci=off");
    let body = format!(r#"{{"metrics_path": "{}"}}"#, metrics.display());
    assert_eq!(api.put("/metrics", &body).0, 204);
    let (st, body) = api.action("InstanceStart");
    assert_eq!(st, 204, "{body}");

    // block(2) root with 3 sectors, block data with 5, [net(1)], vsock(19 = 'C'), rng(4).
    let want = if with_net {
        "v23v25v1vCv4\n"
    } else {
        "v23v25vCv4\n"
    };
    let out = wait_for(&serial, want, Duration::from_secs(30));
    let (cmdline, devices) = out.split_once('\n').unwrap_or((&out, ""));
    assert_eq!(devices, want, "serial: {out:?}");
    let mut expected = "console=ttyS0 pci=off root=/dev/vda rw".to_string();
    for n in 0..slots {
        expected += &format!(
            " virtio_mmio.device=4K@{:#x}:{}",
            0xC000_1000 + n * 0x1000,
            5 + n
        );
    }
    assert_eq!(cmdline, expected);

    // Every thread (event loop, API, vCPU) runs under its seccomp filter (mode 2).
    let tasks = std::fs::read_dir(format!("/proc/{}/task", api.vmm.0.id())).unwrap();
    let mut modes = Vec::new();
    for t in tasks {
        let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        let name = status.lines().next().unwrap_or("").to_string();
        let mode = status
            .lines()
            .find(|l| l.starts_with("Seccomp:"))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string());
        modes.push((name, mode));
    }
    assert!(modes.len() >= 3, "{modes:?}");
    assert!(
        modes.iter().all(|(_, m)| m.as_deref() == Some("2")),
        "{modes:?}"
    );

    // Running: PUT is refused, PATCH works, unknown ids and missing files are refused.
    expect_fault(
        api.put("/drives/more", &drive("more", &data, false)),
        "after the microVM started",
    );
    expect_fault(api.put("/entropy", "{}"), "after the microVM started");
    let bigger = dir.join("bigger.img");
    std::fs::write(&bigger, vec![0u8; 7 * 512]).unwrap();
    let body = format!(
        r#"{{"drive_id": "data", "path_on_host": "{}", "rate_limiter": {{"ops": {{"size": 100, "refill_time": 1000}}}}}}"#,
        bigger.display()
    );
    let (st, msg) = api.patch("/drives/data", &body);
    assert_eq!(st, 204, "{msg}");
    expect_fault(
        api.patch(
            "/drives/nosuch",
            r#"{"drive_id": "nosuch", "path_on_host": "/x"}"#,
        ),
        "no drive with drive_id \"nosuch\"",
    );
    expect_fault(
        api.patch(
            "/drives/data",
            &format!(
                r#"{{"drive_id": "data", "path_on_host": "{}"}}"#,
                dir.join("gone.img").display()
            ),
        ),
        "gone.img",
    );
    if with_net {
        let body = r#"{"iface_id": "eth0", "tx_rate_limiter": {"bandwidth": {"size": 1000000, "refill_time": 100}}}"#;
        assert_eq!(api.patch("/network-interfaces/eth0", body).0, 204);
    }
    expect_fault(
        api.patch("/network-interfaces/eth9", r#"{"iface_id": "eth9"}"#),
        "no network interface",
    );

    assert_eq!(api.action("FlushMetrics").0, 204);
    let text = std::fs::read_to_string(&metrics).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    for key in ["block_rootfs", "block_data", "vsock", "entropy"] {
        assert!(last[key]["errors"].is_u64(), "{key} missing: {last}");
    }
    assert_eq!(last["net_eth0"]["errors"].is_u64(), with_net, "{last}");
    api.vmm.sigterm();
    assert_eq!(api.vmm.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!vs.exists(), "vsock socket left behind");
}

#[test]
fn config_file_with_devices_boots_and_reports_bad_drives() {
    require_kvm!();
    let dir = scratch("dev-config");
    let kernel = dir.join("probe.elf");
    // Probe 2 slots, then reset through the i8042 (exit code 0).
    let mut code = probe_program(2, 1);
    code.truncate(code.len() - 4);
    code.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64, 0xfa, 0xf4]);
    std::fs::write(&kernel, tiny_elf(&code)).unwrap();
    let root = dir.join("root.img");
    std::fs::write(&root, vec![0u8; 2 * 512]).unwrap();
    let cfg = |drive_path: &Path| {
        format!(
            r#"{{
  "boot-source": {{"kernel_image_path": "{}", "boot_args": "console=ttyS0 reboot=k"}},
  "drives": [{{"drive_id": "rootfs", "path_on_host": "{}", "is_root_device": true,
               "partuuid": "0eaa91a0-01", "is_read_only": true, "cache_type": "Unsafe",
               "io_engine": "Sync", "rate_limiter": null}}],
  "machine-config": {{"vcpu_count": 1, "mem_size_mib": 64, "smt": false}},
  "network-interfaces": [], "vsock": null,
  "entropy": {{"rate_limiter": {{"bandwidth": {{"size": 1000, "one_time_burst": null, "refill_time": 100}}}}}}
}}"#,
            kernel.display(),
            drive_path.display()
        )
    };
    let file = dir.join("vm.json");
    std::fs::write(&file, cfg(&root)).unwrap();
    let (code, out) = boot_config_file(&file, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{out:?}");
    assert_eq!(
        out,
        "console=ttyS0 reboot=k root=PARTUUID=0eaa91a0-01 ro \
         virtio_mmio.device=4K@0xc0001000:5 virtio_mmio.device=4K@0xc0002000:6\nv22v4\n"
    );

    std::fs::write(&file, cfg(&dir.join("missing.img"))).unwrap();
    let out = config_file_vmm(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.img"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
