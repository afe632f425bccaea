//! The `hostagent` binary against the real `controlplane` binary: registration,
//! heartbeats, reconnect after a control-plane kill -9, the honest launch answer,
//! identity kept across restarts, SIGTERM and drain (SIGUSR1) exits.

mod channel_support;

use channel_support::*;
use serde_json::{json, Value};
use std::time::Duration;

fn identity(state: &std::path::Path) -> Value {
    let b = std::fs::read(state.join("identity.json")).expect("identity.json");
    serde_json::from_slice(&b).expect("identity json")
}

async fn call(cp: &ControlPlane, op: &str, input: Value) -> Value {
    cp.client()
        .call(op, &input)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e:?}"))
}

/// Runs one task and waits for it to be STOPPED; returns the described task.
async fn run_task_until_stopped(cp: &ControlPlane) -> Value {
    let r = call(
        cp,
        "RunTask",
        json!({"cluster": "c1", "taskDefinition": "web", "launchType": "FARGATE",
               "networkConfiguration": {"awsvpcConfiguration": {
                   "subnets": ["subnet-0a1b2c3d"], "securityGroups": ["sg-0a1b2c3d"],
                   "assignPublicIp": "DISABLED"}}}),
    )
    .await;
    assert_eq!(r["failures"], json!([]), "{r}");
    let arn = r["tasks"][0]["taskArn"]
        .as_str()
        .expect("taskArn")
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = call(
            cp,
            "DescribeTasks",
            json!({"cluster": "c1", "tasks": [arn]}),
        )
        .await;
        let t = d["tasks"][0].clone();
        if t["lastStatus"] == "STOPPED" {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task not stopped: {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_registers_heartbeats_reconnects_and_answers_launches_honestly() {
    let Some(bin) = controlplane_bin() else {
        eprintln!("SKIPPED: no controlplane binary (build it: cargo build -p controlplane, or set HOSTAGENT_TEST_CONTROLPLANE)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (data, state) = (tmp.path().join("cp"), tmp.path().join("state"));
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cp = ControlPlane::start(&bin, &addr, &data);
    let mut agent = HostAgent::start(
        &addr,
        &state,
        &tmp.path().join("a1.log"),
        &["--bootstrap-token", TOKEN],
    );

    // Registration: identity persisted, channel connected.
    wait_for(30, "agent to connect", || cp.connected() == 1);
    let id = identity(&state);
    let host_id = id["hostId"].as_str().unwrap().to_string();
    assert!(host_id.starts_with("h-0-"), "{id}");

    // Heartbeats keep it alive well past the 3 s heartbeat timeout.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let m = cp.metrics().unwrap();
    assert_eq!(m["agentsConnected"], 1, "{m}");
    assert_eq!(m["hostsLost"], 0, "{m}");
    // ... on the first connection: pings are answered, the link was never declared dead.
    assert!(
        !agent.log_text().contains("reconnecting"),
        "{}",
        agent.log_text()
    );

    // A task placed on the agent is answered honestly: PENDING, then STOPPED with the
    // step that is not implemented; never RUNNING.
    call(&cp, "CreateCluster", json!({"clusterName": "c1"})).await;
    call(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "web", "cpu": "256", "memory": "512", "networkMode": "awsvpc",
               "requiresCompatibilities": ["FARGATE"],
               "containerDefinitions": [{"name": "web", "image": "127.0.0.1:5000/busybox:v1", "essential": true}]}),
    )
    .await;
    let t = run_task_until_stopped(&cp).await;
    assert_eq!(
        t["stoppedReason"], "launch: microVM runtime not available on this agent",
        "{t}"
    );
    assert!(
        t["startedAt"].is_null(),
        "a task that never ran has no startedAt: {t}"
    );
    assert!(
        t["containerInstanceArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{host_id}")),
        "placed on our host: {t}"
    );
    let log = agent.log_text();
    assert!(
        log.contains("status=\"PENDING\"") || log.contains("status=PENDING"),
        "{log}"
    );
    assert!(!log.contains("RUNNING"), "{log}");
    // The task registry has its record.
    let recs: Vec<_> = std::fs::read_dir(state.join("tasks")).unwrap().collect();
    assert_eq!(recs.len(), 1);

    // A control plane that stops answering (SIGSTOP) is detected by the missing pongs;
    // once it answers again the agent is back.
    cp.signal(libc::SIGSTOP);
    wait_for(20, "agent to declare the link dead", || {
        agent.log_text().contains("nothing heard for")
    });
    cp.signal(libc::SIGCONT);
    wait_for(30, "agent to reconnect after SIGCONT", || {
        agent.log_text().matches("channel connected").count() == 2 && cp.connected() == 1
    });

    // kill -9 the control plane, restart it on the same address: the agent reconnects.
    cp.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cp = ControlPlane::start(&bin, &addr, &data);
    wait_for(30, "agent to reconnect", || cp.connected() == 1);
    assert!(
        agent.log_text().contains("reconnecting in"),
        "{}",
        agent.log_text()
    );
    assert_eq!(identity(&state)["hostId"], host_id.as_str());

    // SIGTERM: clean exit, channel closed.
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit(15).success(), "{}", agent.log_text());
    wait_for(10, "channel to close", || cp.connected() == 0);

    // Restart without the bootstrap token: it can only be the stored identity.
    let mut agent = HostAgent::start(&addr, &state, &tmp.path().join("a2.log"), &[]);
    wait_for(30, "restarted agent to connect", || cp.connected() == 1);
    assert_eq!(identity(&state), id);
    assert!(agent.log_text().contains("using stored host identity"));
    let t = run_task_until_stopped(&cp).await;
    assert!(
        t["containerInstanceArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{host_id}")),
        "{t}"
    );
    assert_eq!(
        t["stoppedReason"],
        "launch: microVM runtime not available on this agent"
    );

    // Drain (SIGUSR1): no task left, so it exits cleanly.
    agent.signal(libc::SIGUSR1);
    assert!(agent.wait_exit(15).success(), "{}", agent.log_text());
    assert!(agent.log_text().contains("drained"), "{}", agent.log_text());
    assert!(
        agent
            .log_text()
            .contains("draining: the control plane places no new task here"),
        "{}",
        agent.log_text()
    );
}

#[test]
fn wrong_bootstrap_token_is_refused_and_nothing_is_stored() {
    let Some(bin) = controlplane_bin() else {
        eprintln!("SKIPPED: no controlplane binary");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _cp = ControlPlane::start(&bin, &addr, &tmp.path().join("cp"));
    let state = tmp.path().join("state");
    let mut agent = HostAgent::start(
        &addr,
        &state,
        &tmp.path().join("a.log"),
        &["--bootstrap-token", "wrong"],
    );
    let st = agent.wait_exit(30);
    assert_eq!(st.code(), Some(1), "{}", agent.log_text());
    assert!(
        agent.log_text().contains("registration refused"),
        "{}",
        agent.log_text()
    );
    assert!(!state.join("identity.json").exists());
    // and without any token there is nothing to register with
    let mut agent = HostAgent::start(&addr, &state, &tmp.path().join("b.log"), &[]);
    assert_eq!(agent.wait_exit(30).code(), Some(1));
    assert!(
        agent.log_text().contains("no --bootstrap-token"),
        "{}",
        agent.log_text()
    );
}

#[test]
fn bad_flags_exit_2_with_the_flag_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostagent"))
        .args([
            "--controlplane",
            "http://127.0.0.1:1",
            "--dev-plain-http",
            "--availability-zone",
            "az1",
        ])
        .args(["--vmm-bin", "/nonexistent/vmm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vmm-bin /nonexistent/vmm"));
}

#[test]
fn registration_is_retried_until_the_controlplane_is_up() {
    let Some(bin) = controlplane_bin() else {
        eprintln!("SKIPPED: no controlplane binary");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let state = tmp.path().join("state");
    let agent = HostAgent::start(
        &addr,
        &state,
        &tmp.path().join("a.log"),
        &["--bootstrap-token", TOKEN],
    );
    wait_for(20, "a failed registration attempt", || {
        agent.log_text().matches("retrying in").count() >= 2
    });
    assert!(!state.join("identity.json").exists());
    let cp = ControlPlane::start(&bin, &addr, &tmp.path().join("cp"));
    wait_for(30, "agent to register and connect", || cp.connected() == 1);
    assert!(state.join("identity.json").exists());
}

/// Whether the control plane refuses `cred` for `host` on the channel (`401`).
async fn refused(addr: &str, host: &str, cred: &str) -> bool {
    match controlplane::testagent::TestAgent::connect(addr, host, cred, 0, Duration::from_secs(1))
        .await
    {
        Ok(_) => false,
        Err(e) => e.channel_refusal().is_some_and(|(s, _)| s == 401),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_is_rotated_before_it_expires_and_a_revoked_host_stops() {
    let Some(bin) = controlplane_bin() else {
        eprintln!("SKIPPED: no controlplane binary");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cp = ControlPlane::start_with(
        &bin,
        &addr,
        &tmp.path().join("cp"),
        &[
            "--dev-plain-http",
            "--host-credential-ttl-ms",
            "4000",
            "--host-credential-overlap-ms",
            "1000",
        ],
    );
    let state = tmp.path().join("state");
    let mut agent = HostAgent::start(
        &addr,
        &state,
        &tmp.path().join("a.log"),
        &["--bootstrap-token", TOKEN],
    );
    wait_for(30, "agent to connect", || cp.connected() == 1);
    let first = identity(&state);
    let host = first["hostId"].as_str().unwrap().to_string();
    let c0 = first["hostCredential"].as_str().unwrap().to_string();
    // Past twice the TTL, on one channel: rotated (at half-life) at least twice.
    let mut seen = vec![c0.clone()];
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(9) {
        let c = identity(&state)["hostCredential"]
            .as_str()
            .unwrap()
            .to_string();
        if !seen.contains(&c) {
            seen.push(c);
        }
        assert_eq!(cp.connected(), 1, "{}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 3, "rotations: {}", seen.len() - 1);
    assert!(
        !agent.log_text().contains("reconnecting in"),
        "{}",
        agent.log_text()
    );
    assert!(
        refused(&addr, &host, &c0).await,
        "the first credential is refused"
    );
    // Stopped until its credential expired: without a token it cannot go on.
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit(15).success(), "{}", agent.log_text());
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let mut agent = HostAgent::start(&addr, &state, &tmp.path().join("b.log"), &[]);
    assert_eq!(agent.wait_exit(30).code(), Some(1));
    assert!(agent.log_text().contains("expired"), "{}", agent.log_text());
    // With the token it registers again, as a new host.
    let mut agent = HostAgent::start(
        &addr,
        &state,
        &tmp.path().join("c.log"),
        &["--bootstrap-token", TOKEN],
    );
    wait_for(30, "re-registered agent to connect", || cp.connected() == 1);
    let again = identity(&state)["hostId"].as_str().unwrap().to_string();
    assert_ne!(again, host);
    // The operator revokes it: its channel closes and the agent stops with the reason.
    cp.operator(&["hosts", "revoke", &again]).unwrap();
    assert_eq!(agent.wait_exit(30).code(), Some(1), "{}", agent.log_text());
    assert!(agent.log_text().contains("revoked"), "{}", agent.log_text());
    assert_eq!(cp.connected(), 0);
}

/// `GET /metrics.json` of an HTTPS control plane, with curl trusting `ca`.
fn metrics_tls(addr: &str, ca: &std::path::Path) -> Option<Value> {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "5", "--cacert"])
        .arg(ca)
        .arg(format!("https://{addr}/metrics.json"))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn the_agent_connects_over_wss_and_refuses_a_control_plane_it_does_not_trust() {
    let Some(bin) = controlplane_bin() else {
        eprintln!("SKIPPED: no controlplane binary");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let spec = controlplane::certs::CertsSpec {
        hosts: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
        days: 1,
    };
    let (tls, other) = (tmp.path().join("tls"), tmp.path().join("other"));
    controlplane::certs::generate(&tls, &spec).unwrap();
    controlplane::certs::generate(&other, &spec).unwrap();
    let (cert, key, ca) = (
        tls.join("server.pem"),
        tls.join("server-key.pem"),
        tls.join("ca.pem"),
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let _cp = ControlPlane::start_with(
        &bin,
        &addr,
        &tmp.path().join("cp"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("https://{addr}");

    // An agent that trusts another CA: registration fails on the certificate and is
    // retried; no identity is stored, nothing connects.
    let state_b = tmp.path().join("state-b");
    let other_ca = other.join("ca.pem");
    let wrong = HostAgent::start_with(
        &state_b,
        &tmp.path().join("b.log"),
        &[
            "--controlplane",
            &url,
            "--controlplane-ca",
            other_ca.to_str().unwrap(),
            "--bootstrap-token",
            TOKEN,
        ],
    );
    wait_for(20, "a refused registration", || {
        wrong.log_text().matches("retrying in").count() >= 2
    });
    assert!(
        wrong.log_text().contains("certificate") || wrong.log_text().contains("UnknownIssuer"),
        "{}",
        wrong.log_text()
    );
    assert!(!state_b.join("identity.json").exists());

    // The agent with the right CA registers over HTTPS and holds the channel over wss://.
    let state = tmp.path().join("state");
    let agent = HostAgent::start_with(
        &state,
        &tmp.path().join("a.log"),
        &[
            "--controlplane",
            &url,
            "--controlplane-ca",
            ca.to_str().unwrap(),
            "--bootstrap-token",
            TOKEN,
        ],
    );
    wait_for(30, "the agent over wss://", || {
        metrics_tls(&addr, &ca).and_then(|m| m["agentsConnected"].as_i64()) == Some(1)
    });
    assert!(state.join("identity.json").exists());
    assert!(
        agent.log_text().contains("channel connected"),
        "{}",
        agent.log_text()
    );
    // The one that trusts another CA is still outside.
    assert!(!state_b.join("identity.json").exists());
    let m = metrics_tls(&addr, &ca).unwrap();
    assert_eq!(m["agentsConnected"], 1, "{m}");

    // Plain http:// to an address other than loopback is refused by the agent's flags.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostagent"))
        .args(["--controlplane", "http://10.0.2.2:8080", "--dev-plain-http"])
        .args(["--availability-zone", "az1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    // https:// without the CA too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostagent"))
        .args(["--controlplane", &url, "--availability-zone", "az1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--controlplane-ca"));
}
