//! A draining host (its agent says so on the channel): nothing new is placed on it, its
//! service tasks move to other hosts within the service's deployment limits, other tasks
//! run on, and the container instances show it DRAINING.

mod common;

use agent_proto::AgentMessage;
use common::*;
use controlplane::testagent::TestAgent;
use serde_json::json;
use std::time::Duration;

fn service_tasks(cp: &ControlPlane) -> Vec<serde_json::Value> {
    cp.service_tasks("web", "svc")
}

fn run_one(cp: &ControlPlane) -> String {
    let r = cp
        .aws(&[
            "run-task",
            "--cluster",
            "web",
            "--task-definition",
            "scorekeep",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            NET,
        ])
        .unwrap();
    assert_eq!(r["failures"].as_array().map(Vec::len), Some(0), "{r}");
    r["tasks"][0]["taskArn"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_hosts_service_tasks_move_and_nothing_new_lands_there() {
    let cp = ControlPlane::start(&[
        "--scheduler-interval-ms",
        "200",
        "--heartbeat-timeout-ms",
        "30000",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let hb = Duration::from_millis(500);
    // Only host a at first: the service task and a standalone task land there.
    let a = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 8192, 16384, None, hb)
        .await
        .unwrap();
    let file = scorekeep_file(tmp.path());
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    cp.aws(&["create-cluster", "--cluster-name", "web"])
        .unwrap();
    cp.aws(&[
        "create-service",
        "--cluster",
        "web",
        "--service-name",
        "svc",
        "--task-definition",
        "scorekeep",
        "--desired-count",
        "1",
        "--launch-type",
        "FARGATE",
        "--network-configuration",
        NET,
        "--deployment-configuration",
        "maximumPercent=200,minimumHealthyPercent=100",
    ])
    .unwrap();
    let first = cp.wait_for(30, "the service task running on host a", || {
        let t = service_tasks(&cp);
        (t.len() == 1 && t[0]["lastStatus"] == "RUNNING")
            .then(|| t[0]["taskArn"].as_str().unwrap().to_string())
    });
    assert!(a.running().contains(&first));
    let standalone = run_one(&cp);
    cp.wait_status("web", &standalone, "RUNNING", 20);

    let b = TestAgent::start(&cp.addr, TOKEN, "us-east-1b", 8192, 16384, None, hb)
        .await
        .unwrap();
    a.send(AgentMessage::Draining);

    // The service task is replaced on b, then the one on a stops (never below 100 %).
    let moved = cp.wait_for(30, "the service task moved to host b", || {
        let t = service_tasks(&cp);
        let arn = t.first()?["taskArn"].as_str()?.to_string();
        (t.len() == 1 && t[0]["lastStatus"] == "RUNNING" && arn != first).then_some(arn)
    });
    assert!(b.running().contains(&moved), "replacement placed on b");
    let old = cp.wait_status("web", &first, "STOPPED", 20);
    assert_eq!(old["stopCode"], "ServiceSchedulerInitiated", "{old}");
    assert!(
        old["stoppedReason"].as_str().unwrap().contains("draining"),
        "{old}"
    );
    // The standalone task runs on where it is.
    assert_eq!(cp.task("web", &standalone)["lastStatus"], "RUNNING");
    assert!(a.running().contains(&standalone));

    // Nothing new lands on the draining host.
    for _ in 0..3 {
        let arn = run_one(&cp);
        cp.wait_status("web", &arn, "RUNNING", 20);
        assert!(
            b.running().contains(&arn),
            "{arn} placed on the draining host"
        );
    }

    // The container instances say which host drains.
    let draining = cp
        .call(
            "ListContainerInstances",
            json!({"cluster": "web", "status": "DRAINING"}),
        )
        .unwrap();
    let arns = draining["containerInstanceArns"].as_array().unwrap();
    assert_eq!(arns.len(), 1, "{draining}");
    assert!(
        arns[0].as_str().unwrap().ends_with(&a.host_id),
        "{draining}"
    );
    let all = cp
        .call("ListContainerInstances", json!({"cluster": "web"}))
        .unwrap();
    assert_eq!(
        all["containerInstanceArns"].as_array().map(Vec::len),
        Some(2),
        "{all}"
    );
    let d = cp
        .call(
            "DescribeContainerInstances",
            json!({"cluster": "web", "containerInstances": arns}),
        )
        .unwrap();
    assert_eq!(d["containerInstances"][0]["status"], "DRAINING", "{d}");
}
