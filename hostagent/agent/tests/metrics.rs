//! `hostagent --metrics-listen`: the agent's Prometheus exposition, parsed by the
//! reference OpenMetrics parser, moves with the channel and the control messages
//! (real `hostagent` and `controlplane` binaries).

mod channel_support;

use channel_support::prom::{hist_count, value, Sample};
use channel_support::*;
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

fn scrape(addr: &str) -> Vec<Sample> {
    let mut s = std::net::TcpStream::connect(addr).expect("metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    prom::parse(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_channel_and_the_control_messages() {
    let Some(bin) = controlplane_bin() else {
        eprintln!("SKIPPED: no controlplane binary (build it: cargo build -p controlplane, or set HOSTAGENT_TEST_CONTROLPLANE)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (data, state) = (tmp.path().join("cp"), tmp.path().join("state"));
    let addr = format!("127.0.0.1:{}", free_port());
    let maddr = format!("127.0.0.1:{}", free_port());
    let mut cp = ControlPlane::start(&bin, &addr, &data);
    let _agent = HostAgent::start(
        &addr,
        &state,
        &tmp.path().join("a.log"),
        &["--bootstrap-token", TOKEN, "--metrics-listen", &maddr],
    );
    wait_for(30, "agent to connect", || cp.connected() == 1);
    wait_for(10, "channel_connected 1", || {
        std::net::TcpStream::connect(&maddr).is_ok()
            && value(&scrape(&maddr), "hostagent_channel_connected", &[]) == Some(1.0)
    });
    let s0 = scrape(&maddr);
    assert!(value(&s0, "hostagent_channel_connects_total", &[]).unwrap_or(0.0) >= 1.0);
    assert_eq!(value(&s0, "hostagent_tasks_active", &[]), Some(0.0));
    assert_eq!(value(&s0, "hostagent_draining", &[]), Some(0.0));
    let launch = [("kind", "LaunchTask")];
    assert_eq!(
        hist_count(&s0, "hostagent_control_message_duration_seconds", &launch),
        0.0
    );

    // One launch (answered STOPPED: no microVM runtime here) is timed under its kind.
    let c = cp.client();
    c.call("CreateCluster", &json!({"clusterName": "c1"}))
        .await
        .unwrap();
    c.call(
        "RegisterTaskDefinition",
        &json!({"family": "web", "cpu": "256", "memory": "512", "networkMode": "awsvpc",
               "requiresCompatibilities": ["FARGATE"],
               "containerDefinitions": [{"name": "web", "image": "127.0.0.1:5000/busybox:v1", "essential": true}]}),
    )
    .await
    .unwrap();
    let r = c
        .call(
            "RunTask",
            &json!({"cluster": "c1", "taskDefinition": "web", "launchType": "FARGATE",
               "networkConfiguration": {"awsvpcConfiguration": {
                   "subnets": ["subnet-0a1b2c3d"], "securityGroups": ["sg-0a1b2c3d"],
                   "assignPublicIp": "DISABLED"}}}),
        )
        .await
        .unwrap();
    assert_eq!(r["failures"], json!([]), "{r}");
    wait_for(10, "LaunchTask timed", || {
        hist_count(
            &scrape(&maddr),
            "hostagent_control_message_duration_seconds",
            &launch,
        ) == 1.0
    });
    let body = {
        let mut s = std::net::TcpStream::connect(&maddr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    };
    assert!(!body.contains("arn:aws"), "no task ARN is a label");

    // The control plane goes away: the channel is down and the loss counted.
    cp.kill9();
    wait_for(15, "channel_connected 0", || {
        let s = scrape(&maddr);
        value(&s, "hostagent_channel_connected", &[]) == Some(0.0)
            && value(&s, "hostagent_channel_losses_total", &[]).unwrap_or(0.0) >= 1.0
    });
}
