//! Firecracker parity of the API's request handling, over the real Unix socket: when values
//! are checked (PUT or InstanceStart), refused request shapes, the payload limit and its
//! flag, absolute-form targets, `smt`/`huge_pages`, `GET /vm/config`, `io_engine` and the
//! one wording of "not supported".

mod common;

use common::*;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A `PUT /machine-config` body padded with spaces to exactly `len` bytes.
fn padded_machine_config(len: usize) -> String {
    let mut b = r#"{"vcpu_count": 1, "mem_size_mib": 128}"#.to_string();
    let pad = len - b.len();
    b.insert_str(1, &" ".repeat(pad));
    assert_eq!(b.len(), len);
    b
}

#[test]
fn memory_sizes_are_checked_at_instance_start() {
    let api = ApiVmm::spawn("parity-mem", &[], true);
    api.boot_tiny(&serial_program(b"x", false), "console=ttyS0");

    // 1 MiB: accepted by PUT, refused by InstanceStart.
    let (st, msg) = api.put("/machine-config", r#"{"vcpu_count": 1, "mem_size_mib": 1}"#);
    assert_eq!(st, 204, "{msg}");
    expect_fault(
        api.action("InstanceStart"),
        "mem_size_mib must be at least 16, got 1",
    );

    // 16 TiB: the same.
    let body = format!(r#"{{"vcpu_count": 1, "mem_size_mib": {}}}"#, 16u64 << 20);
    let (st, msg) = api.put("/machine-config", &body);
    assert_eq!(st, 204, "{msg}");
    expect_fault(api.action("InstanceStart"), "exceeds the host's memory");

    // Zero and an odd vCPU count with SMT are refused at PUT, leaving the config as it was.
    expect_fault(
        api.put("/machine-config", r#"{"vcpu_count": 1, "mem_size_mib": 0}"#),
        "mem_size_mib 0 is invalid",
    );
    expect_fault(
        api.patch("/machine-config", r#"{"vcpu_count": 3, "smt": true}"#),
        "with smt, vcpu_count must be 1 or even, got 3",
    );
    let v = json(&api.get("/machine-config").1);
    assert_eq!(v["mem_size_mib"].as_u64(), Some(16 << 20));
    assert_eq!(v["smt"], false);
    let (_, body) = api.get("/");
    assert!(body.contains("Not started"), "{body}");
}

#[test]
fn refused_request_shapes() {
    let dir = scratch("parity-shapes");
    let metrics = dir.join("metrics.json");
    let api = ApiVmm::spawn_in(dir, &["--metrics-path", metrics.to_str().unwrap()], true);

    expect_fault(api.patch("/machine-config", "{}"), "sets no field");
    expect_fault(api.patch("/machine-config", ""), "needs a JSON body");
    // Metrics are configured: FlushMetrics is still refused before boot, as in Firecracker.
    expect_fault(
        api.action("FlushMetrics"),
        "FlushMetrics is not supported before the microVM starts",
    );
    expect_fault(
        api.action("SendCtrlAltDel"),
        "SendCtrlAltDel is not supported before the microVM starts",
    );
    expect_fault(
        api.request("GET", "/machine-config", Some("{}")),
        "a GET request must not have a body",
    );
    assert_eq!(api.get("/machine-config").0, 200);

    // Absolute-form targets are served like origin-form ones.
    let (st, msg) = api.put(
        "http://localhost/machine-config",
        r#"{"vcpu_count": 2, "mem_size_mib": 256}"#,
    );
    assert_eq!(st, 204, "{msg}");
    let (st, body) = api.get("http://localhost/machine-config");
    assert_eq!(st, 200);
    assert_eq!(json(&body)["vcpu_count"].as_u64(), Some(2));
}

#[test]
fn payload_limit_default_and_flag() {
    let api = ApiVmm::spawn("parity-payload", &[], true);
    let (st, msg) = api.put("/machine-config", &padded_machine_config(51_200));
    assert_eq!(st, 204, "{msg}");
    let (st, msg) = api.put("/machine-config", &padded_machine_config(51_201));
    assert_eq!(st, 413, "{msg}");
    assert!(msg.contains("limit of 51200 bytes"), "{msg}");
    let (st, msg) = api.put("/machine-config", &padded_machine_config(60 << 10));
    assert_eq!(st, 413, "{msg}");
    // The vmm still serves after refusing.
    assert_eq!(api.get("/").0, 200);
    drop(api);

    let api = ApiVmm::spawn(
        "parity-payload-flag",
        &["--http-api-max-payload-size", "100000"],
        true,
    );
    let (st, msg) = api.put("/machine-config", &padded_machine_config(60 << 10));
    assert_eq!(st, 204, "{msg}");
    let (st, msg) = api.put("/machine-config", &padded_machine_config(100_001));
    assert_eq!(st, 413, "{msg}");
}

#[test]
fn smt_and_huge_pages() {
    let api = ApiVmm::spawn("parity-huge", &[], true);
    let (st, msg) = api.put(
        "/machine-config",
        r#"{"vcpu_count": 2, "mem_size_mib": 64, "smt": true, "huge_pages": "2M"}"#,
    );
    assert_eq!(st, 204, "{msg}");
    let v = json(&api.get("/machine-config").1);
    assert_eq!(
        (v["smt"].as_bool(), v["huge_pages"].as_str()),
        (Some(true), Some("2M"))
    );
    expect_fault(
        api.patch("/machine-config", r#"{"mem_size_mib": 65}"#),
        "mem_size_mib 65 is invalid",
    );
    expect_fault(
        api.patch("/machine-config", r#"{"huge_pages": "1G"}"#),
        "invalid JSON",
    );

    // Without enough free huge pages on the host, InstanceStart says so.
    let free: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("HugePages_Free:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    if free < 32 {
        api.boot_tiny(&serial_program(b"x", false), "console=ttyS0");
        expect_fault(
            api.action("InstanceStart"),
            "cannot allocate 64 MiB of guest memory from 2 MiB huge pages",
        );
        let (_, body) = api.get("/");
        assert!(body.contains("Not started"), "{body}");
    } else {
        eprintln!("the host has {free} free huge pages: the no-pool failure is not checked");
    }
    let (st, _) = api.patch("/machine-config", r#"{"huge_pages": "None"}"#);
    assert_eq!(st, 204);
    assert_eq!(json(&api.get("/machine-config").1)["huge_pages"], "None");
}

#[test]
fn smt_guest_boots() {
    require_kvm!();
    let api = ApiVmm::spawn("parity-smt-boot", &[], true);
    let serial = api.path("serial.out");
    let body = format!(r#"{{"serial_out_path": "{}"}}"#, serial.display());
    assert_eq!(api.put("/serial", &body).0, 204);
    let (st, msg) = api.put(
        "/machine-config",
        r#"{"vcpu_count": 2, "mem_size_mib": 64, "smt": true}"#,
    );
    assert_eq!(st, 204, "{msg}");
    api.boot_tiny(&serial_program(b"smt up\n", false), "console=ttyS0");
    let (st, msg) = api.action("InstanceStart");
    assert_eq!(st, 204, "{msg}");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < end
        && !std::fs::read_to_string(&serial)
            .unwrap_or_default()
            .contains("smt up")
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(&serial).unwrap(), "smt up\n");
    let (st, body) = api.get("/");
    assert!(st == 200 && body.contains("Running"), "{body}");
}

#[test]
fn vm_config_and_io_engine() {
    let api = ApiVmm::spawn("parity-vmconfig", &[], true);
    let v = json(&api.get("/vm/config").1);
    assert_eq!(v["boot-source"]["kernel_image_path"], "");
    assert_eq!(v["machine-config"]["mem_size_mib"].as_u64(), Some(128));
    for key in ["balloon", "mmds-config", "cpu-config", "vsock", "entropy"] {
        assert!(v[key].is_null(), "{key}: {v}");
    }

    let disk = api.path("disk.img");
    std::fs::write(&disk, vec![0u8; 4096]).unwrap();
    let drive = |engine: &str| {
        format!(
            r#"{{"drive_id": "rootfs", "path_on_host": "{}", "is_root_device": true, "io_engine": "{engine}"}}"#,
            disk.display()
        )
    };
    let (st, msg) = api.put("/drives/rootfs", &drive("Sync"));
    assert_eq!(st, 204, "{msg}");
    // Async (io_uring) is served; the VM boots with it under the vmm's seccomp filters.
    let (st, msg) = api.put("/drives/rootfs", &drive("Async"));
    assert_eq!(st, 204, "{msg}");
    api.boot_tiny(&serial_program(b"x", false), "console=ttyS0 quiet");
    let (st, msg) = api.put(
        "/machine-config",
        r#"{"vcpu_count": 2, "mem_size_mib": 256, "smt": true}"#,
    );
    assert_eq!(st, 204, "{msg}");
    assert_eq!(api.put("/entropy", "{}").0, 204);

    let v = json(&api.get("/vm/config").1);
    assert_eq!(v["machine-config"]["vcpu_count"].as_u64(), Some(2));
    assert_eq!(v["machine-config"]["smt"], true);
    assert_eq!(v["machine-config"]["huge_pages"], "None");
    assert_eq!(v["boot-source"]["boot_args"], "console=ttyS0 quiet");
    assert!(v["boot-source"]["kernel_image_path"]
        .as_str()
        .unwrap()
        .ends_with("tiny.elf"));
    assert_eq!(v["drives"][0]["drive_id"], "rootfs");
    assert_eq!(v["drives"][0]["io_engine"], "Async");
    assert!(v["entropy"].is_object(), "{v}");
    assert_eq!(v["network-interfaces"], serde_json::json!([]));
}

#[test]
fn not_supported_is_worded_the_same_everywhere() {
    let api = ApiVmm::spawn("parity-unsupported", &[], true);
    let cases = [
        (
            "PUT",
            "/balloon",
            Some(r#"{"amount_mib": 1, "deflate_on_oom": false}"#),
        ),
        ("GET", "/balloon", None),
        ("PATCH", "/balloon", Some(r#"{"amount_mib": 2}"#)),
        ("GET", "/balloon/statistics", None),
        (
            "PATCH",
            "/balloon/statistics",
            Some(r#"{"stats_polling_interval_s": 1}"#),
        ),
        ("PUT", "/mmds", Some("{}")),
        ("GET", "/mmds", None),
        ("PATCH", "/mmds", Some("{}")),
        (
            "PUT",
            "/mmds/config",
            Some(r#"{"network_interfaces": ["eth0"]}"#),
        ),
        ("PUT", "/cpu-config", Some("{}")),
        (
            "PUT",
            "/hotplug/memory",
            Some(r#"{"total_size_mib": 1024}"#),
        ),
        ("GET", "/hotplug/memory", None),
        ("PUT", "/pmem/pmem0", Some("{}")),
        ("PATCH", "/vm", Some(r#"{"state": "Paused"}"#)),
        ("PUT", "/snapshot/create", Some("{}")),
        ("PUT", "/snapshot/load", Some("{}")),
    ];
    for (m, p, body) in cases {
        let (st, msg) = api.request(m, p, body);
        assert_eq!(st, 400, "{m} {p}: {msg}");
        assert_eq!(
            json(&msg)["fault_message"],
            format!("{m} {p} is not supported by this vmm"),
            "{m} {p}"
        );
    }
    expect_fault(
        api.put(
            "/machine-config",
            r#"{"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "T2"}"#,
        ),
        "cpu_template \"T2\" is not supported by this vmm",
    );
}
