//! Operations over the real binary: the Prometheus exposition of `GET /metrics`
//! (parsed by a Prometheus text-format parser) and `backup` / `restore`.

mod common;

use common::prom::{hist_count, value};
use common::*;
use controlplane::testagent::TestAgent;
use std::time::Duration;

/// `GET PATH` of `addr`: (status line, content type, body).
fn http_get(addr: &str, path: &str) -> (String, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("http answer");
    let status = head.lines().next().unwrap_or("").to_string();
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// The parsed `/metrics` of the control plane at `addr`.
fn scrape(addr: &str) -> Vec<common::prom::Sample> {
    let (status, ctype, body) = http_get(addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    assert!(ctype.contains("text"), "{ctype}");
    prom::parse(&body)
}

#[test]
fn metrics_are_prometheus_text_and_move() {
    let cp = ControlPlane::start(&[]);
    let before = scrape(&cp.addr);
    assert_eq!(value(&before, "controlplane_cells", &[]), Some(1.0));
    assert_eq!(
        value(&before, "controlplane_cell_leader", &[("cell", "0")]),
        Some(1.0),
        "a lone SQLite replica leads its cell"
    );
    assert!(value(&before, "controlplane_agent_messages_total", &[]).is_some());
    assert!(value(&before, "controlplane_audit_queue_depth", &[]).is_some());
    let op = [("api", "ecs"), ("operation", "CreateCluster")];
    let created0 = hist_count(&before, "controlplane_api_request_duration_seconds", &op);

    cp.aws(&["create-cluster", "--cluster-name", "metrics-a"])
        .unwrap();
    cp.aws(&["create-cluster", "--cluster-name", "metrics-b"])
        .unwrap();
    // An unknown operation and an error: bounded labels, counted by type.
    let _ = cp.call("NoSuchOperationAtAll", serde_json::json!({}));
    let e = cp
        .call(
            "DescribeServices",
            serde_json::json!({"cluster": "nope", "services": ["x"]}),
        )
        .unwrap_err();

    let after = scrape(&cp.addr);
    assert_eq!(
        hist_count(&after, "controlplane_api_request_duration_seconds", &op),
        created0 + 2.0,
        "two CreateCluster calls timed"
    );
    assert!(
        hist_count(
            &after,
            "controlplane_api_request_duration_seconds",
            &[("operation", "unknown")]
        ) >= 1.0
    );
    assert!(
        value(&after, "controlplane_api_errors_total", &[("error", &e.0)]).unwrap_or(0.0) >= 1.0,
        "error {e:?} counted by type"
    );
    // No tenant-chosen value shows up anywhere.
    let (_, _, body) = http_get(&cp.addr, "/metrics");
    assert!(!body.contains("metrics-a") && !body.contains("NoSuchOperation"));
    // The JSON document stays at /metrics.json.
    assert!(cp.metrics().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_placement_metrics_move() {
    let cp = ControlPlane::start(&["--heartbeat-timeout-ms", "30000"]);
    let s0 = scrape(&cp.addr);
    assert_eq!(
        value(&s0, "controlplane_hosts", &[("cell", "0")]),
        Some(0.0)
    );
    let placed0 = hist_count(&s0, "controlplane_placement_duration_seconds", &[]);
    let hb = Duration::from_millis(500);
    let _a = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 4096, 8192, None, hb)
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    cp.aws(&["create-cluster", "--cluster-name", "m"]).unwrap();
    let file = scorekeep_file(tmp.path());
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    cp.aws(&[
        "run-task",
        "--cluster",
        "m",
        "--task-definition",
        "scorekeep",
        "--launch-type",
        "FARGATE",
        "--network-configuration",
        NET,
    ])
    .unwrap();
    let s1 = scrape(&cp.addr);
    assert_eq!(
        value(&s1, "controlplane_hosts", &[("cell", "0")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s1, "controlplane_agents_connected", &[("cell", "0")]),
        Some(1.0)
    );
    assert_eq!(
        hist_count(&s1, "controlplane_placement_duration_seconds", &[]),
        placed0 + 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_running_then_restore_into_a_wiped_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut cp = ControlPlane::start_in(&dir, &["--heartbeat-timeout-ms", "30000"]);
    let hb = Duration::from_millis(500);
    let agent = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 4096, 8192, None, hb)
        .await
        .unwrap();
    cp.aws(&["create-cluster", "--cluster-name", "kept"])
        .unwrap();
    let file = scorekeep_file(tmp.path());
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    let run = cp
        .aws(&[
            "run-task",
            "--cluster",
            "kept",
            "--task-definition",
            "scorekeep",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            NET,
        ])
        .unwrap();
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();

    // Backup while it runs; restore refuses while it runs.
    let out = tmp.path().join("state.backup");
    let out_s = out.display().to_string();
    cp.operator(&["backup", "--out", &out_s]).unwrap();
    assert!(out.exists());
    let e = cp.operator(&["restore", "--from", &out_s]).unwrap_err();
    assert!(e.contains("running control plane"), "{e}");
    assert!(
        cp.operator(&["backup", "--out", &out_s]).is_err(),
        "an existing backup is not overwritten"
    );

    // Stop, wipe, restore, start.
    drop(agent);
    cp.terminate();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    cp.operator(&["restore", "--from", &out_s]).unwrap();
    let cp2 = ControlPlane::start_in(&dir, &["--heartbeat-timeout-ms", "30000"]);
    let clusters = cp2.aws(&["list-clusters"]).unwrap();
    assert!(
        clusters["clusterArns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap_or("").ends_with("cluster/kept")),
        "{clusters}"
    );
    let td = cp2
        .aws(&[
            "describe-task-definition",
            "--task-definition",
            "scorekeep:1",
        ])
        .unwrap();
    assert_eq!(td["taskDefinition"]["family"], "scorekeep");
    let t = cp2
        .aws(&["describe-tasks", "--cluster", "kept", "--tasks", &arn])
        .unwrap();
    assert_eq!(t["tasks"][0]["taskArn"], arn.as_str(), "{t}");
}

#[test]
fn backup_over_etcd_holds_an_etcd_snapshot_and_the_log_stores() {
    if etcd::skip_without_etcd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let e = etcd::etcd_for(&dir);
    let flags = etcd::flags(&e);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cp = ControlPlane::start_in(&dir, &flags);
    cp.wait_for(30, "leadership of the cell", || {
        let m = cp.metrics()?;
        (m["cellsLed"].as_u64()? == 1).then_some(())
    });
    cp.aws(&["create-cluster", "--cluster-name", "in-etcd"])
        .unwrap();
    let out = tmp.path().join("etcd.backup");
    cp.operator(&["backup", "--out", &out.display().to_string()])
        .unwrap();
    let mut names = vec![];
    let mut tar = tar::Archive::new(std::fs::File::open(&out).unwrap());
    let snap = tmp.path().join("snap.db");
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name == "etcd.snapshot" {
            entry.unpack(&snap).unwrap();
        }
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        ["etcd.snapshot", "logs-0.db"],
        "no SQLite cell file over etcd"
    );
    // etcd's own tool reads the snapshot, and it holds keys (the cluster among them).
    let st = std::process::Command::new("/usr/bin/etcdctl")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&snap)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert!(v["totalKey"].as_u64().unwrap_or(0) > 0, "{v}");
}
