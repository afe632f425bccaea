//! Front end and state: per-account throttles, pagination, cells, durability
//! across kill -9, clean SIGTERM.

use crate::common::*;
use controlplane::testagent::TestAgent;
use serde_json::json;
use std::time::Duration;

#[test]
fn throttles_are_per_account() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cp.json");
    std::fs::write(
        &cfg,
        json!({"throttle": {"default": {"rate": 100, "burst": 100},
                            "accounts": {ACCOUNT: {"ListClusters": {"rate": 0.01, "burst": 3}}}}})
        .to_string(),
    )
    .unwrap();
    let cp = ControlPlane::start(&["--config", cfg.to_str().unwrap()]);
    let flood = r#"
import os, boto3, botocore.config
cfg = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
ecs = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1", config=cfg)
codes = []
for i in range(10):
    try:
        ecs.list_clusters(); codes.append("OK")
    except botocore.exceptions.ClientError as e:
        codes.append(e.response["Error"]["Code"])
print(" ".join(codes))
"#;
    let (ok, out) = cp.boto3(KEY, SECRET, flood);
    assert!(ok, "{out}");
    let codes: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(codes.iter().filter(|c| **c == "OK").count(), 3, "{out}");
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == "ThrottlingException")
            .count(),
        7,
        "{out}"
    );
    // The other tenant, right after, is not affected; nor are other operations.
    let (ok, out) = cp.boto3(KEY2, SECRET2, flood);
    assert!(ok, "{out}");
    assert!(out.split_whitespace().all(|c| c == "OK"), "{out}");
    assert!(cp.call("ListTaskDefinitions", json!({})).is_ok());
}

#[test]
fn pagination_with_boto3_and_the_cli() {
    let cp = ControlPlane::start(&[]);
    for i in 0..5 {
        cp.call("CreateCluster", json!({"clusterName": format!("c{i}")}))
            .unwrap();
    }
    let (ok, out) = cp.boto3(
        KEY,
        SECRET,
        r#"
import os, boto3
ecs = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
first = ecs.list_clusters(maxResults=2)
assert len(first["clusterArns"]) == 2 and "nextToken" in first, first
seen, token = list(first["clusterArns"]), first["nextToken"]
while token:
    page = ecs.list_clusters(maxResults=2, nextToken=token)
    seen += page["clusterArns"]; token = page.get("nextToken")
assert len(seen) == len(set(seen)) == 5, seen
pages = list(ecs.get_paginator("list_clusters").paginate(PaginationConfig={"PageSize": 1}))
assert len(pages) == 5, len(pages)
print("ok")
"#,
    );
    assert!(ok && out.trim() == "ok", "{out}");
    let all = cp.aws(&["list-clusters", "--page-size", "2"]).unwrap();
    assert_eq!(all["clusterArns"].as_array().unwrap().len(), 5);
    let some = cp.aws(&["list-clusters", "--max-items", "3"]).unwrap();
    assert_eq!(some["clusterArns"].as_array().unwrap().len(), 3);
    assert!(some["NextToken"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_isolate_accounts_and_state_survives_kill9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut cp = ControlPlane::start_in(&dir, &["--cells", "2"]);
    let file = scorekeep_file(tmp.path());
    // Account 1 is assigned first (cell 0), account 2 next (cell 1).
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
    // The only host joins cell 1: only account 2 can place tasks.
    let agent = TestAgent::start(
        &cp.addr,
        &token_for(1),
        "us-east-1a",
        4096,
        8192,
        Some(1),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(agent.cell, 1);
    let run = [
        "run-task",
        "--cluster",
        "c",
        "--task-definition",
        "scorekeep",
        "--network-configuration",
        NET,
    ];
    let r1 = cp.aws_as(KEY, SECRET, &run).unwrap();
    assert_eq!(
        r1["failures"][0]["reason"], "RESOURCE:CPU",
        "account 1 lives in cell 0: {r1}"
    );
    let r2 = cp.aws_as(KEY2, SECRET2, &run).unwrap();
    assert_eq!(r2["tasks"].as_array().unwrap().len(), 1, "{r2}");

    // kill -9 right after acknowledged writes, then restart with one more cell.
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    cp.kill9();
    drop(agent);
    let mut cp = ControlPlane::start_in(&dir, &["--cells", "3"]);
    let d = cp
        .aws(&["describe-task-definition", "--task-definition", "scorekeep"])
        .unwrap();
    assert_eq!(
        d["taskDefinition"]["revision"], 2,
        "the acknowledged revision 2 survived kill -9"
    );
    let l = cp
        .aws_as(KEY2, SECRET2, &["list-tasks", "--cluster", "c"])
        .unwrap();
    assert_eq!(
        l["taskArns"].as_array().unwrap().len(),
        1,
        "account 2 still in cell 1 with its task"
    );
    let c = cp.aws(&["list-clusters"]).unwrap();
    assert_eq!(
        c["clusterArns"].as_array().unwrap().len(),
        1,
        "account 1 still in cell 0"
    );
    // The revision counter continues: revisions are never reused.
    let r3 = cp
        .aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    assert_eq!(r3["taskDefinition"]["revision"], 3);
    assert!(cp.terminate().success(), "clean exit on SIGTERM");
}
