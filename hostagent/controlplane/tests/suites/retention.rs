//! Retention: STOPPED tasks stay visible for the configured time, then the cell's
//! loop prunes them in bounded batches (also across a restart).

use crate::common::*;
use controlplane::testagent::TestAgent;
use serde_json::{json, Value};
use std::time::Duration;

const FLAGS: &[&str] = &[
    "--stopped-task-retention-ms",
    "6000",
    "--prune-batch",
    "5",
    "--quota-fargate-vcpus",
    "64",
    "--heartbeat-timeout-ms",
    "30000",
];

fn describe(cp: &ControlPlane, arns: &[String]) -> Value {
    cp.call("DescribeTasks", json!({"cluster": "c", "tasks": arns}))
        .unwrap()
}

/// Waits until every task of `arns` has lastStatus `status` (one DescribeTasks per try).
fn wait_all(cp: &ControlPlane, arns: &[String], status: &str) {
    cp.wait_for(30, &format!("{} tasks {status}", arns.len()), || {
        let d = describe(cp, arns);
        let tasks = d["tasks"].as_array()?;
        (tasks.len() == arns.len() && tasks.iter().all(|t| t["lastStatus"] == status)).then_some(())
    });
}

fn listed_stopped(cp: &ControlPlane) -> usize {
    let l = cp
        .call(
            "ListTasks",
            json!({"cluster": "c", "desiredStatus": "STOPPED", "maxResults": 100}),
        )
        .unwrap();
    l["taskArns"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_tasks_are_visible_then_pruned_in_batches_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut cp = ControlPlane::start_in(&dir, FLAGS);
    let file = scorekeep_file(tmp.path());
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    cp.call("CreateCluster", json!({"clusterName": "c"}))
        .unwrap();
    let hb = Duration::from_millis(250);
    let agent = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 65536, 131072, None, hb)
        .await
        .unwrap();
    // A backlog of 30 tasks (six times the prune batch), all stopped.
    let mut arns = vec![];
    for _ in 0..3 {
        let r = cp
            .call(
                "RunTask",
                json!({"cluster": "c", "taskDefinition": "scorekeep", "count": 10,
                   "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}}}),
            )
            .unwrap();
        assert_eq!(r["failures"].as_array().map(Vec::len), Some(0), "{r}");
        for t in r["tasks"].as_array().unwrap() {
            arns.push(t["taskArn"].as_str().unwrap().to_string());
        }
    }
    wait_all(&cp, &arns, "RUNNING");
    // A running task is never pruned, however old.
    let keep = cp
        .call(
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "scorekeep", "count": 1,
               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}}}),
        )
        .unwrap()["tasks"][0]["taskArn"]
        .as_str()
        .unwrap()
        .to_string();
    for a in &arns {
        cp.call("StopTask", json!({"cluster": "c", "task": a}))
            .unwrap();
    }
    wait_all(&cp, &arns, "STOPPED");
    // Within the retention: every one is described and listed, as ECS does.
    let d = describe(&cp, &arns);
    assert_eq!(d["tasks"].as_array().map(Vec::len), Some(30), "{d}");
    assert_eq!(d["failures"].as_array().map(Vec::len), Some(0), "{d}");
    assert_eq!(listed_stopped(&cp), 30);

    // A restart in the middle: the new process prunes them all the same.
    drop(agent);
    assert!(cp.terminate().success(), "clean exit on SIGTERM");
    let cp = ControlPlane::start_in(&dir, FLAGS);
    let agent = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 65536, 131072, None, hb)
        .await
        .unwrap();
    // Pruned in batches of 5, one per tick of the cell's loop (1 s): the listing
    // shrinks in steps, never all at once.
    let mut seen = vec![listed_stopped(&cp)];
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while seen.last() != Some(&0) {
        assert!(std::time::Instant::now() < deadline, "not pruned: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = listed_stopped(&cp);
        if seen.last() != Some(&n) {
            seen.push(n);
        }
    }
    let steps: Vec<usize> = seen.windows(2).map(|w| w[0] - w[1]).collect();
    assert!(
        steps.iter().all(|&d| d <= 10),
        "at most a batch (two if a poll was late) at a time: {seen:?}"
    );
    assert!(seen.len() >= 4, "several batches: {seen:?}");
    let d = describe(&cp, &arns);
    assert_eq!(d["tasks"].as_array().map(Vec::len), Some(0), "{d}");
    let failures = d["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 30, "{d}");
    assert!(failures.iter().all(|f| f["reason"] == "MISSING"), "{d}");
    // The running task is still there, and the vCPU quota counts it alone: 63 of
    // 64 vCPUs are free for new tasks, and not one more.
    let t = cp.task_fast("c", &keep);
    assert_eq!(t["lastStatus"], "RUNNING", "{t}");
    let run = |count: u32| {
        cp.call(
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "scorekeep", "count": count,
               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}}}),
        )
    };
    for _ in 0..7 {
        let r = run(9).unwrap();
        assert_eq!(r["tasks"].as_array().map(Vec::len), Some(9), "{r}");
    }
    let e = run(1).expect_err("the 65th vCPU is over the quota");
    assert_eq!(e.0, "LimitExceededException", "{e:?}");
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_keeps_its_newest_100_events() {
    // No host: every scheduler pass (20 ms) adds an "unable to place" event.
    let cp = ControlPlane::start(&["--scheduler-interval-ms", "20"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = scorekeep_file(tmp.path());
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    cp.call("CreateCluster", json!({"clusterName": "c"}))
        .unwrap();
    cp.call(
        "CreateService",
        json!({"cluster": "c", "serviceName": "s", "taskDefinition": "scorekeep",
               "desiredCount": 1, "launchType": "FARGATE",
               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}}}),
    )
    .unwrap();
    let events = || {
        let d = cp
            .call(
                "DescribeServices",
                json!({"cluster": "c", "services": ["s"]}),
            )
            .unwrap();
        d["services"][0]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    cp.wait_for(30, "100 service events", || {
        (events().len() >= 100).then_some(())
    });
    let first = events();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later = events();
    assert_eq!(first.len(), 100);
    assert_eq!(later.len(), 100, "still the newest 100 after more passes");
    assert_ne!(
        first[0]["id"], later[0]["id"],
        "newer events replaced older ones"
    );
    assert!(
        later[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("unable to place"),
        "{}",
        later[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_services_and_clusters_are_pruned_task_definitions_kept() {
    let cp = ControlPlane::start(&[
        "--inactive-retention-ms",
        "3000",
        "--scheduler-interval-ms",
        "100",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let file = scorekeep_file(tmp.path());
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    for name in ["c", "gone", "back"] {
        cp.call("CreateCluster", json!({"clusterName": name}))
            .unwrap();
    }
    cp.call(
        "CreateService",
        json!({"cluster": "c", "serviceName": "s", "taskDefinition": "scorekeep:1",
               "desiredCount": 0, "launchType": "FARGATE",
               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}}}),
    )
    .unwrap();
    cp.call(
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "scorekeep:1"}),
    )
    .unwrap();
    cp.call("DeleteService", json!({"cluster": "c", "service": "s"}))
        .unwrap();
    cp.call("DeleteCluster", json!({"cluster": "gone"}))
        .unwrap();
    // Deleted and created again: ACTIVE, never pruned.
    cp.call("DeleteCluster", json!({"cluster": "back"}))
        .unwrap();
    cp.call("CreateCluster", json!({"clusterName": "back"}))
        .unwrap();
    let service = || {
        cp.call(
            "DescribeServices",
            json!({"cluster": "c", "services": ["s"]}),
        )
        .unwrap()
    };
    let clusters = || {
        cp.call("DescribeClusters", json!({"clusters": ["gone", "back"]}))
            .unwrap()
    };
    cp.wait_for(10, "the service INACTIVE", || {
        (service()["services"][0]["status"] == "INACTIVE").then_some(())
    });
    let cl = clusters();
    assert_eq!(cl["clusters"].as_array().map(Vec::len), Some(2), "{cl}");
    assert!(
        cl["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["clusterName"] == "gone" && c["status"] == "INACTIVE"),
        "{cl}"
    );
    cp.wait_for(20, "the INACTIVE service pruned", || {
        (service()["failures"][0]["reason"] == "MISSING").then_some(())
    });
    cp.wait_for(20, "the INACTIVE cluster pruned", || {
        let cl = clusters();
        (cl["clusters"].as_array().map(Vec::len) == Some(1)).then_some(cl)
    });
    let cl = clusters();
    assert_eq!(cl["clusters"][0]["clusterName"], "back", "{cl}");
    assert_eq!(cl["clusters"][0]["status"], "ACTIVE", "{cl}");
    assert_eq!(cl["failures"][0]["reason"], "MISSING", "{cl}");
    // The INACTIVE task definition is kept, as ECS does.
    let td = cp
        .call(
            "DescribeTaskDefinition",
            json!({"taskDefinition": "scorekeep:1"}),
        )
        .unwrap();
    assert_eq!(td["taskDefinition"]["status"], "INACTIVE", "{td}");
}
