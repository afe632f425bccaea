//! Account quotas, configured small: under a quota a call is accepted, over it the
//! AWS CLI gets ECS's `LimitExceededException` and its message, and deleting (or
//! stopping) frees the quota again.

use crate::common::*;
use controlplane::testagent::TestAgent;
use serde_json::json;
use std::time::Duration;

/// The error type and message of a refused CLI call.
fn refused(r: Result<serde_json::Value, String>) -> (String, String) {
    let e = r.expect_err("refused");
    let msg = e
        .split_once("): ")
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    (error_type(&e), msg)
}

fn td_file(dir: &std::path::Path, family: &str, cpu: &str) -> String {
    json_file(
        dir,
        &format!("{family}.json"),
        &json!({"family": family, "cpu": cpu, "memory": "1024", "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "containerDefinitions": [{"name": "app", "image": "busybox"}]}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_services_and_desired_count_quotas() {
    let cp = ControlPlane::start(&[
        "--quota-clusters-per-account",
        "2",
        "--quota-services-per-cluster",
        "1",
        "--quota-tasks-per-service",
        "3",
        "--scheduler-interval-ms",
        "100",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    // Clusters per account.
    for c in ["a", "b"] {
        cp.aws(&["create-cluster", "--cluster-name", c]).unwrap();
    }
    cp.aws(&["create-cluster", "--cluster-name", "a"])
        .expect("creating an existing cluster again is no new cluster");
    let (t, m) = refused(cp.aws(&["create-cluster", "--cluster-name", "c"]));
    assert_eq!(t, "LimitExceededException");
    assert_eq!(
        m,
        "The limit for the resource was exceeded: an account can have at most 2 clusters."
    );
    for c in ["a", "b"] {
        cp.aws_as(KEY2, SECRET2, &["create-cluster", "--cluster-name", c])
            .expect("the quota is per account");
    }
    cp.aws(&["delete-cluster", "--cluster", "b"]).unwrap();
    cp.aws(&["create-cluster", "--cluster-name", "c"])
        .expect("deleting a cluster frees its place");

    // Services per cluster.
    cp.aws(&[
        "register-task-definition",
        "--cli-input-json",
        &td_file(tmp.path(), "web", "256"),
    ])
    .unwrap();
    let create = |cluster: &str, name: &str, desired: &str| {
        cp.aws(&[
            "create-service",
            "--cluster",
            cluster,
            "--service-name",
            name,
            "--task-definition",
            "web",
            "--desired-count",
            desired,
            "--network-configuration",
            NET,
        ])
    };
    create("a", "s1", "0").unwrap();
    let (t, m) = refused(create("a", "s2", "0"));
    assert_eq!(t, "LimitExceededException");
    assert!(m.contains("at most 1 services"), "{m}");
    create("c", "s2", "0").expect("the quota is per cluster");
    cp.aws(&["delete-service", "--cluster", "a", "--service", "s1"])
        .unwrap();
    cp.wait_for(20, "the deleted service to free its place", || {
        create("a", "s3", "0").ok()
    });

    // Tasks per service (desiredCount).
    let (t, m) = refused(create("c", "s4", "4"));
    assert_eq!(
        (t.as_str(), m.contains("at most 3 tasks")),
        ("LimitExceededException", true)
    );
    let update = |desired: &str| {
        cp.aws(&[
            "update-service",
            "--cluster",
            "c",
            "--service",
            "s2",
            "--desired-count",
            desired,
        ])
    };
    update("3").expect("at the quota");
    let (t, _) = refused(update("4"));
    assert_eq!(t, "LimitExceededException");
    let d = cp
        .aws(&["describe-services", "--cluster", "c", "--services", "s2"])
        .unwrap();
    assert_eq!(
        d["services"][0]["desiredCount"], 3,
        "the refused update changed nothing"
    );
    update("0").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fargate_vcpu_quota_per_account() {
    let cp = ControlPlane::start(&[
        "--quota-fargate-vcpus",
        "1",
        "--scheduler-interval-ms",
        "100",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let hb = Duration::from_millis(300);
    let agent = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 8192, 16384, None, hb)
        .await
        .unwrap();
    let file = td_file(tmp.path(), "half", "512");
    for (k, s) in [(KEY, SECRET), (KEY2, SECRET2)] {
        cp.aws_as(
            k,
            s,
            &["register-task-definition", "--cli-input-json", &file],
        )
        .unwrap();
        cp.aws_as(k, s, &["create-cluster", "--cluster-name", "c"])
            .unwrap();
    }
    let run = |k: &str, s: &str, count: &str| {
        cp.aws_as(
            k,
            s,
            &[
                "run-task",
                "--cluster",
                "c",
                "--task-definition",
                "half",
                "--count",
                count,
                "--network-configuration",
                NET,
            ],
        )
    };
    // Three half-vCPU tasks in one call do not fit one vCPU: none runs.
    let (t, m) = refused(run(KEY, SECRET, "3"));
    assert_eq!(t, "LimitExceededException");
    assert!(
        m.starts_with("You've reached the limit on the number of vCPUs you can run concurrently"),
        "{m}"
    );
    let l = cp.aws(&["list-tasks", "--cluster", "c"]).unwrap();
    assert_eq!(l["taskArns"].as_array().unwrap().len(), 0, "all or nothing");
    let r = run(KEY, SECRET, "2").expect("two fit");
    assert_eq!(r["tasks"].as_array().unwrap().len(), 2, "{r}");
    let (t, _) = refused(run(KEY, SECRET, "1"));
    assert_eq!(t, "LimitExceededException");
    // Another account has its own vCPUs.
    run(KEY2, SECRET2, "2").expect("per account");
    // A service over the quota tells why in its events, and starts nothing.
    cp.aws(&[
        "create-service",
        "--cluster",
        "c",
        "--service-name",
        "svc",
        "--task-definition",
        "half",
        "--desired-count",
        "1",
        "--network-configuration",
        NET,
    ])
    .unwrap();
    cp.wait_for(20, "the service's quota event", || {
        let d = cp
            .aws(&["describe-services", "--cluster", "c", "--services", "svc"])
            .ok()?;
        let ev = d["services"][0]["events"][0]["message"]
            .as_str()?
            .to_string();
        ev.contains("limit on the number of vCPUs").then_some(())
    });
    assert_eq!(cp.service_tasks("c", "svc").len(), 0);
    // Stopping a task gives its vCPUs back (once STOPPED): the service gets one.
    let victim = r["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    cp.aws(&["stop-task", "--cluster", "c", "--task", &victim])
        .unwrap();
    cp.wait_status("c", &victim, "STOPPED", 20);
    cp.wait_for(20, "the service's task", || {
        (cp.service_tasks("c", "svc").len() == 1).then_some(())
    });
    let (t, _) = refused(run(KEY, SECRET, "1"));
    assert_eq!(
        t, "LimitExceededException",
        "the service took the freed half"
    );
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_per_family_quota() {
    let cp = ControlPlane::start(&["--quota-revisions-per-family", "2"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = td_file(tmp.path(), "fam", "256");
    let register = || cp.aws(&["register-task-definition", "--cli-input-json", &file]);
    register().unwrap();
    register().unwrap();
    let (t, m) = refused(register());
    assert_eq!(t, "LimitExceededException");
    assert_eq!(
        m,
        "The limit for the resource was exceeded: a task definition family can have at most 2 revisions."
    );
    // As in ECS, a deregistered revision still counts.
    cp.aws(&["deregister-task-definition", "--task-definition", "fam:1"])
        .unwrap();
    assert_eq!(refused(register()).0, "LimitExceededException");
    let other = td_file(tmp.path(), "other", "256");
    cp.aws(&["register-task-definition", "--cli-input-json", &other])
        .expect("the quota is per family");
}
