//! The agent channel: registration, host identity checks, lost hosts, capacity.

use crate::common::*;
use agent_proto::{AgentMessage, RegisterRequest, Status};
use controlplane::testagent::{register, TestAgent};
use serde_json::json;
use std::time::Duration;

async fn setup(cp: &ControlPlane) {
    let tmp = tempfile::tempdir().unwrap();
    let file = scorekeep_file(tmp.path());
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    cp.call("CreateCluster", json!({"clusterName": "c"}))
        .unwrap();
}

fn run(cp: &ControlPlane, count: u32) -> serde_json::Value {
    cp.call(
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "scorekeep", "count": count,
               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}}}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_channel_need_credentials() {
    let cp = ControlPlane::start(&[]);
    let mut req = RegisterRequest {
        bootstrap_token: "wrong".into(),
        hostname: "h".into(),
        availability_zone: "us-east-1a".into(),
        cpu: 4096,
        memory: 8192,
        cell: None,
    };
    let e = register(&cp.addr, &req).await.unwrap_err().to_string();
    assert!(e.contains("401"), "{e}");
    req.bootstrap_token = TOKEN.into();
    let ok = register(&cp.addr, &req).await.unwrap();
    assert!(ok.host_id.starts_with("h-0-"));
    let bad = TestAgent::connect(&cp.addr, &ok.host_id, "forged", 0, Duration::from_secs(1)).await;
    assert!(
        bad.is_err(),
        "a forged credential must not open the channel"
    );
    let good = TestAgent::connect(
        &cp.addr,
        &ok.host_id,
        &ok.host_credential,
        0,
        Duration::from_secs(1),
    )
    .await;
    assert!(good.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cannot_touch_another_hosts_tasks() {
    let cp = ControlPlane::start(&[]);
    setup(&cp).await;
    let hb = Duration::from_millis(300);
    let a = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 1024, 2048, None, hb)
        .await
        .unwrap();
    let r = run(&cp, 1);
    let arn = r["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    cp.wait_status("c", &arn, "RUNNING", 20);
    let b = TestAgent::start(&cp.addr, TOKEN, "us-east-1b", 1024, 2048, None, hb)
        .await
        .unwrap();
    assert!(a.running().contains(&arn) && b.running().is_empty());
    // B claims A's task stopped, and reports a task of an ARN it made up.
    b.send(AgentMessage::TaskStateChange {
        task_arn: arn.clone(),
        last_status: Status::Stopped,
        containers: vec![],
        stopped_reason: Some("forged".into()),
        private_ipv4_address: None,
    });
    let forged_other_account = arn.replace(ACCOUNT, ACCOUNT2);
    b.send(AgentMessage::Heartbeat {
        running_tasks: vec![forged_other_account],
    });
    cp.wait_for(10, "errors to host B", || {
        (b.errors().len() >= 2).then_some(())
    });
    assert!(
        b.errors()
            .iter()
            .all(|e| e.contains("not assigned to this host")),
        "{:?}",
        b.errors()
    );
    let t = cp.task_fast("c", &arn);
    assert_eq!(
        t["lastStatus"], "RUNNING",
        "the forged report had no effect"
    );
    // A may not move its own task backwards either.
    a.send(AgentMessage::TaskStateChange {
        task_arn: arn.clone(),
        last_status: Status::Pending,
        containers: vec![],
        stopped_reason: None,
        private_ipv4_address: None,
    });
    cp.wait_for(10, "error to host A", || {
        (!a.errors().is_empty()).then_some(())
    });
    assert_eq!(cp.task_fast("c", &arn)["lastStatus"], "RUNNING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_host_tasks_stop_and_capacity_failures() {
    let cp = ControlPlane::start(&["--heartbeat-timeout-ms", "1500"]);
    setup(&cp).await;
    let hb = Duration::from_millis(250);
    // One host fits two scorekeep tasks (1 vCPU / 2 GB each) by CPU, one by memory.
    let a = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 2048, 3072, None, hb)
        .await
        .unwrap();
    let r = run(&cp, 2);
    assert_eq!(r["tasks"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["failures"][0]["reason"], "RESOURCE:MEMORY");
    let r2 = cp
        .call(
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "scorekeep", "count": 1,
               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}},
               "overrides": {}}),
        )
        .unwrap();
    assert_eq!(r2["failures"][0]["reason"], "RESOURCE:MEMORY");
    let arn = r["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    cp.wait_status("c", &arn, "RUNNING", 20);
    // The host hangs: no heartbeats.
    a.set_heartbeats(false);
    let t = cp.wait_status("c", &arn, "STOPPED", 30);
    assert!(t["stoppedReason"].as_str().unwrap().contains("lost"), "{t}");
    assert_eq!(t["stopCode"], "TerminationNotice");
    // The lost host gets nothing new: no capacity at all.
    let r = run(&cp, 1);
    assert_eq!(r["failures"][0]["reason"], "RESOURCE:CPU");
    // Through the CLI, the failures list is ECS's.
    let out = cp
        .aws(&[
            "run-task",
            "--cluster",
            "c",
            "--task-definition",
            "scorekeep",
            "--network-configuration",
            NET,
        ])
        .unwrap();
    assert_eq!(out["failures"][0]["reason"], "RESOURCE:CPU");
}

fn req(token: &str, cpu: u32, memory: u32, cell: Option<u32>) -> RegisterRequest {
    RegisterRequest {
        bootstrap_token: token.into(),
        hostname: "h".into(),
        availability_zone: "us-east-1a".into(),
        cpu,
        memory,
        cell,
    }
}

/// Creates a token with the operator command; returns it.
fn create_token(cp: &ControlPlane, cell: &str, max_hosts: &str, expires: &str) -> String {
    let out = cp
        .operator(&[
            "tokens",
            "create",
            "--cell",
            cell,
            "--max-hosts",
            max_hosts,
            "--expires-in",
            expires,
            "--max-cpu",
            "4096",
            "--max-memory-mib",
            "8192",
        ])
        .unwrap();
    out.trim().to_string()
}

/// Tries to open the channel; the refusal's status and message, or None if it opened.
async fn refusal(cp: &ControlPlane, host: &str, cred: &str) -> Option<(u16, String)> {
    match TestAgent::connect(&cp.addr, host, cred, 0, Duration::from_secs(1)).await {
        Ok(_) => None,
        Err(e) => Some(e.channel_refusal().expect("an HTTP refusal")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_tokens_are_bound_to_a_cell_a_count_an_expiry_and_a_capacity() {
    let cp = ControlPlane::start(&["--cells", "2"]);
    let token = create_token(&cp, "1", "3", "1h");
    assert!(token.len() >= 32, "{token}");
    // Another cell than the token's.
    let e = register(&cp.addr, &req(&token, 1024, 2048, Some(0)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("403") && e.contains("for cell 1, not cell 0"),
        "{e}"
    );
    // More than the token allows, in CPU or memory.
    let e = register(&cp.addr, &req(&token, 4097, 2048, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("403") && e.contains("4097 CPU units"), "{e}");
    let e = register(&cp.addr, &req(&token, 1024, 8193, Some(1)))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("403") && e.contains("8193 MiB"), "{e}");
    // Within: the token decides the cell.
    let ok = register(&cp.addr, &req(&token, 4096, 8192, None))
        .await
        .unwrap();
    assert_eq!(ok.cell, 1);
    assert!(ok.host_id.starts_with("h-1-"), "{}", ok.host_id);
    assert!(ok.credential_ttl_ms > 0);
    // Two slots left; 12 registrations race for them: exactly two win.
    let mut racers = vec![];
    for i in 0..12 {
        let (addr, t) = (cp.addr.clone(), token.clone());
        racers.push(tokio::spawn(async move {
            register(&addr, &req(&t, 1024 + i, 2048, None)).await
        }));
    }
    let mut won = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert!(e.to_string().contains("maximum of 3 hosts"), "{e}"),
        }
    }
    assert_eq!(won, 2, "the host count is kept atomically");
    let list = cp.operator(&["tokens", "list"]).unwrap();
    let mine: Vec<serde_json::Value> = list
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|t: &serde_json::Value| t["cell"] == 1 && t["maxHosts"] == 3)
        .collect();
    assert_eq!(mine.len(), 1, "{list}");
    assert_eq!(mine[0]["hostsRegistered"], 3, "refusals used no slot");
    assert!(!list.contains(&token), "the token itself is never stored");
    if cp.etcd.is_none() {
        let db = std::fs::read(cp.dir.join("cell-1.db")).unwrap();
        let hay = String::from_utf8_lossy(&db);
        assert!(!hay.contains(&token), "only the token's hash is on disk");
        assert!(!hay.contains(&ok.host_credential), "nor the credential");
    }
    // An expired token.
    let short = create_token(&cp, "0", "5", "1s");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let e = register(&cp.addr, &req(&short, 1024, 2048, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("403") && e.contains("expired"), "{e}");
    // A deleted token registers nothing more; an unknown one is a 401.
    let id = list
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|t| t["cell"] == 1 && t["maxHosts"] == 3)
        .and_then(|t| t["tokenId"].as_str().map(String::from))
        .unwrap();
    cp.operator(&["tokens", "delete", &id]).unwrap();
    let e = register(&cp.addr, &req(&token, 1024, 2048, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("401"), "{e}");
    // The operator's mistakes are refused with a reason.
    let e = cp
        .operator(&["tokens", "create", "--cell", "7", "--max-hosts", "1"])
        .unwrap_err();
    assert!(e.contains("--expires-in"), "{e}");
    let e = cp
        .operator(&[
            "tokens",
            "create",
            "--cell",
            "7",
            "--max-hosts",
            "1",
            "--expires-in",
            "1h",
            "--max-cpu",
            "1",
            "--max-memory-mib",
            "1",
        ])
        .unwrap_err();
    assert!(e.contains("no cell 7"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_other_hosts_credentials_are_refused() {
    let cp = ControlPlane::start(&["--cells", "2"]);
    let a = register(&cp.addr, &req(TOKEN, 1024, 2048, None))
        .await
        .unwrap();
    let b = register(&cp.addr, &req(TOKEN, 1024, 2048, None))
        .await
        .unwrap();
    let c = register(&cp.addr, &req(&token_for(1), 1024, 2048, None))
        .await
        .unwrap();
    assert_eq!(c.cell, 1);
    for (host, cred) in [
        (&a.host_id, &b.host_credential),
        (&b.host_id, &a.host_credential),
        (&a.host_id, &c.host_credential),
        (&c.host_id, &a.host_credential),
        (&a.host_id, &"0".repeat(64)),
        (&a.host_id, &String::new()),
    ] {
        let r = refusal(&cp, host, cred).await;
        let (status, msg) = r.expect("refused");
        assert_eq!(status, 401);
        assert!(msg.contains("invalid host credential"), "{msg}");
    }
    // Another cell's id with its number changed, and ids that are not ids.
    let moved = c.host_id.replacen("h-1-", "h-0-", 1);
    assert!(refusal(&cp, &moved, &c.host_credential).await.is_some());
    for id in ["h-9-x", "h--x", "x", "h-0-"] {
        assert!(refusal(&cp, id, &a.host_credential).await.is_some(), "{id}");
    }
    // Each credential opens its own host's channel only.
    assert_eq!(refusal(&cp, &a.host_id, &a.host_credential).await, None);
    assert_eq!(refusal(&cp, &c.host_id, &c.host_credential).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_rotated_over_the_channel_and_expire() {
    let cp = ControlPlane::start(&[
        "--host-credential-ttl-ms",
        "6000",
        "--host-credential-overlap-ms",
        "1000",
    ]);
    let reg = register(&cp.addr, &req(TOKEN, 1024, 2048, None))
        .await
        .unwrap();
    assert_eq!(reg.credential_ttl_ms, 6000);
    let hb = Duration::from_millis(200);
    let a = TestAgent::connect(&cp.addr, &reg.host_id, &reg.host_credential, 0, hb)
        .await
        .unwrap();
    // Not right after it was issued (at most one rotation per TTL/10).
    let e = a.rotate(Duration::from_secs(5)).await.unwrap_err();
    assert!(e.contains("rotated less than"), "{e}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let new = a.rotate(Duration::from_secs(5)).await.unwrap();
    assert_ne!(new, reg.host_credential);
    // Past the first credential's expiry, the channel that rotated stays open.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert!(a.connected(), "the rotated channel stays open");
    // Both work during the overlap; then only the new one. (A new connection
    // replaces the host's previous one.)
    let a = TestAgent::connect(&cp.addr, &reg.host_id, &new, 0, hb)
        .await
        .unwrap();
    let b = a.rotate(Duration::from_secs(5)).await.unwrap();
    assert_eq!(refusal(&cp, &reg.host_id, &new).await, None);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, msg) = refusal(&cp, &reg.host_id, &new)
        .await
        .expect("the old credential is refused after the overlap");
    assert_eq!(status, 401, "{msg}");
    assert!(msg.contains("invalid host credential"), "{msg}");
    let (status, _) = refusal(&cp, &reg.host_id, &reg.host_credential)
        .await
        .expect("and the first one too");
    assert_eq!(status, 401);
    let new = b;
    let a = TestAgent::connect(&cp.addr, &reg.host_id, &new, 0, hb)
        .await
        .unwrap();
    // Not rotated again: the new one expires, the channel is closed and the
    // credential refused; the host must register again.
    cp.wait_for(15, "the channel closed at expiry", || {
        (!a.connected()).then_some(())
    });
    let (status, msg) = refusal(&cp, &reg.host_id, &new).await.expect("refused");
    assert_eq!(status, 401);
    assert!(
        msg.contains("expired") && msg.contains("register again"),
        "{msg}"
    );
    let again = register(&cp.addr, &req(TOKEN, 1024, 2048, None))
        .await
        .unwrap();
    assert_eq!(
        refusal(&cp, &again.host_id, &again.host_credential).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_host_is_closed_stopped_and_refused() {
    let cp = ControlPlane::start(&["--heartbeat-timeout-ms", "20000"]);
    setup(&cp).await;
    let hb = Duration::from_millis(250);
    let a = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 2048, 4096, None, hb)
        .await
        .unwrap();
    let r = run(&cp, 1);
    let arn = r["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    cp.wait_status("c", &arn, "RUNNING", 20);
    let b = TestAgent::start(&cp.addr, TOKEN, "us-east-1b", 8192, 16384, None, hb)
        .await
        .unwrap();
    assert!(a.running().contains(&arn));
    let out = cp.operator(&["hosts", "revoke", &a.host_id]);
    assert!(out.is_ok(), "{out:?}");
    cp.wait_for(10, "the revoked host's channel closed", || {
        (!a.connected()).then_some(())
    });
    let t = cp.wait_status("c", &arn, "STOPPED", 10);
    assert!(
        t["stoppedReason"].as_str().unwrap().contains("revoked"),
        "{t}"
    );
    let (status, msg) = refusal(&cp, &a.host_id, &a.credential)
        .await
        .expect("a revoked host's credential is refused");
    assert_eq!(status, 401);
    assert!(msg.contains("revoked"), "{msg}");
    // Nothing more goes there: every new task lands on B.
    let r = run(&cp, 3);
    assert_eq!(r["tasks"].as_array().unwrap().len(), 3, "{r}");
    for t in r["tasks"].as_array().unwrap() {
        let arn = t["taskArn"].as_str().unwrap();
        cp.wait_status("c", arn, "RUNNING", 20);
        assert!(b.running().iter().any(|x| x == arn));
    }
    assert!(a.running().contains(&arn), "A heard nothing more");
    assert_eq!(cp.metrics().unwrap()["hostsRevoked"], 1);
    let hosts = cp.operator(&["hosts", "list"]).unwrap();
    let rec: serde_json::Value = hosts
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|h| h["hostId"] == a.host_id.as_str())
        .unwrap();
    assert!(rec["revokedAt"].as_f64().is_some(), "{rec}");
    assert_eq!(rec["status"], "INACTIVE");
    assert!(!hosts.contains(&a.credential));
    let e = cp
        .operator(&["hosts", "revoke", "h-0-nosuchhost"])
        .unwrap_err();
    assert!(e.contains("no host"), "{e}");
}
