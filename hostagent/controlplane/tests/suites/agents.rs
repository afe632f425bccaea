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
