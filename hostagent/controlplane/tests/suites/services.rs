//! Services: desiredCount kept, stopped tasks replaced, rolling deployment to a new
//! revision within minimumHealthyPercent / maximumPercent, AZ spread.

use crate::common::*;
use controlplane::testagent::TestAgent;
use serde_json::json;
use std::time::Duration;

fn running(cp: &ControlPlane, svc: &str) -> Vec<serde_json::Value> {
    cp.service_tasks("web", svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_heals_and_rolls_to_new_revision() {
    let cp = ControlPlane::start(&["--scheduler-interval-ms", "200"]);
    let tmp = tempfile::tempdir().unwrap();
    let hb = Duration::from_millis(500);
    let _a = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 8192, 16384, None, hb)
        .await
        .unwrap();
    let _b = TestAgent::start(&cp.addr, TOKEN, "us-east-1b", 8192, 16384, None, hb)
        .await
        .unwrap();
    let file = scorekeep_file(tmp.path());
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    cp.aws(&["create-cluster", "--cluster-name", "web"])
        .unwrap();
    let s = cp
        .aws(&[
            "create-service",
            "--cluster",
            "web",
            "--service-name",
            "scorekeep",
            "--task-definition",
            "scorekeep:1",
            "--desired-count",
            "2",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            NET,
            "--deployment-configuration",
            "maximumPercent=200,minimumHealthyPercent=50",
        ])
        .unwrap();
    assert_eq!(
        s["service"]["serviceArn"],
        format!("arn:aws:ecs:us-east-1:{ACCOUNT}:service/web/scorekeep")
    );
    assert_eq!(s["service"]["deployments"][0]["status"], "PRIMARY");

    let tasks = cp.wait_for(30, "2 running service tasks", || {
        let t = running(&cp, "scorekeep");
        (t.len() == 2 && t.iter().all(|t| t["lastStatus"] == "RUNNING")).then_some(t)
    });
    let azs: std::collections::HashSet<_> = tasks
        .iter()
        .map(|t| t["availabilityZone"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(azs.len(), 2, "service tasks spread across AZs");
    assert_eq!(tasks[0]["group"], "service:scorekeep");
    let d = cp
        .aws(&[
            "describe-services",
            "--cluster",
            "web",
            "--services",
            "scorekeep",
        ])
        .unwrap();
    assert_eq!(d["services"][0]["runningCount"], 2);

    // Heal: a stopped task is replaced.
    let victim = tasks[0]["taskArn"].as_str().unwrap().to_string();
    cp.aws(&["stop-task", "--cluster", "web", "--task", &victim])
        .unwrap();
    let healed = cp.wait_for(30, "replacement task", || {
        let t = running(&cp, "scorekeep");
        (t.len() == 2
            && t.iter()
                .all(|t| t["lastStatus"] == "RUNNING" && t["taskArn"] != victim.as_str()))
        .then_some(t)
    });
    assert!(healed.iter().all(|t| t["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .ends_with("scorekeep:1")));
    let v = cp.task("web", &victim);
    assert_eq!(v["lastStatus"], "STOPPED");

    // Roll to revision 2.
    let u = cp
        .aws(&[
            "update-service",
            "--cluster",
            "web",
            "--service",
            "scorekeep",
            "--task-definition",
            "scorekeep:2",
        ])
        .unwrap();
    assert_eq!(u["service"]["deployments"].as_array().unwrap().len(), 2);
    assert_eq!(
        u["service"]["deployments"][0]["taskDefinition"],
        format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/scorekeep:2")
    );
    let mut max_seen = 0;
    let mut min_running = usize::MAX;
    cp.wait_for(40, "rollout to revision 2", || {
        let t = running(&cp, "scorekeep");
        max_seen = max_seen.max(t.len());
        min_running = min_running.min(t.iter().filter(|t| t["lastStatus"] == "RUNNING").count());
        (t.len() == 2
            && t.iter().all(|t| {
                t["lastStatus"] == "RUNNING"
                    && t["taskDefinitionArn"]
                        .as_str()
                        .unwrap()
                        .ends_with("scorekeep:2")
            }))
        .then_some(())
    });
    assert!(
        max_seen <= 4,
        "maximumPercent=200 allows at most 4 tasks, saw {max_seen}"
    );
    assert!(
        min_running >= 1,
        "minimumHealthyPercent=50 keeps 1 task running"
    );
    let d = cp.wait_for(20, "deployment completed", || {
        let d = cp
            .call(
                "DescribeServices",
                json!({"cluster": "web", "services": ["scorekeep"]}),
            )
            .unwrap();
        (d["services"][0]["deployments"].as_array().unwrap().len() == 1).then_some(d)
    });
    assert_eq!(
        d["services"][0]["deployments"][0]["rolloutState"],
        "COMPLETED"
    );

    // Delete: refused while scaled up, then forced; tasks drain.
    let e = cp
        .aws(&[
            "delete-service",
            "--cluster",
            "web",
            "--service",
            "scorekeep",
        ])
        .unwrap_err();
    assert_eq!(error_type(&e), "InvalidParameterException");
    let del = cp
        .aws(&[
            "delete-service",
            "--cluster",
            "web",
            "--service",
            "scorekeep",
            "--force",
        ])
        .unwrap();
    assert_eq!(del["service"]["status"], "DRAINING");
    cp.wait_for(30, "service drained", || {
        running(&cp, "scorekeep").is_empty().then_some(())
    });
    let l = cp.aws(&["list-services", "--cluster", "web"]).unwrap();
    assert_eq!(l["serviceArns"], json!([]));
}
