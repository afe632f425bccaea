//! A store no record can poison: records of several tables are overwritten with
//! garbage straight in the store (SQLite file or etcd) while the control plane is
//! down; it restarts, sets them aside into the quarantine table, counts them, and
//! serves every other record of every account.

use crate::common::*;
use controlplane::model::TaskRecord;
use controlplane::store::etcd::{block_on, connect, EtcdStore};
use controlplane::store::quarantine::{QuarantinedRecord, TABLE};
use controlplane::store::sqlite::SqliteStore;
use controlplane::store::{Store, StoreExt};
use controlplane::testagent::TestAgent;
use serde_json::{json, Value};
use std::time::Duration;

/// The store of cell 0 of `cp`'s data, opened beside it (SQLite file or etcd).
fn cell_store(cp: &ControlPlane) -> Box<dyn Store> {
    match &cp.etcd {
        Some(e) => {
            let client = connect(
                std::slice::from_ref(&e.endpoint),
                &e.client_tls,
                Duration::from_secs(5),
            )
            .expect("etcd client");
            Box::new(EtcdStore::new(client, etcd::PREFIX, "0", None))
        }
        None => Box::new(SqliteStore::open(&cp.dir.join("cell-0.db")).expect("cell-0.db")),
    }
}

/// Overwrites `table/key` of cell 0 with `bytes`, whatever they are.
fn corrupt(cp: &ControlPlane, table: &str, key: &str, bytes: &[u8]) {
    match &cp.etcd {
        Some(e) => {
            let k = format!("{}/0/{table}/{key}", etcd::PREFIX);
            let v = bytes.to_vec();
            let mut c = connect(
                std::slice::from_ref(&e.endpoint),
                &e.client_tls,
                Duration::from_secs(5),
            )
            .expect("etcd client");
            block_on(async move { c.put(k, v, None).await.map(|_| ()) }).expect("etcd put");
        }
        None => {
            let c = rusqlite::Connection::open(cp.dir.join("cell-0.db")).expect("open");
            c.busy_timeout(Duration::from_secs(5)).unwrap();
            let n = c
                .execute(
                    "UPDATE kv SET value = ?3 WHERE tbl = ?1 AND key = ?2",
                    rusqlite::params![table, key, bytes],
                )
                .expect("update");
            assert_eq!(n, 1, "{table}/{key} exists");
        }
    }
}

fn quarantined(cp: &ControlPlane) -> u64 {
    cp.metrics().expect("metrics")["storeRecordsQuarantined"]
        .as_u64()
        .expect("storeRecordsQuarantined")
}

fn td(family: &str) -> Value {
    json!({"family": family, "cpu": "256", "memory": "512", "networkMode": "awsvpc",
           "requiresCompatibilities": ["FARGATE"],
           "containerDefinitions": [{"name": "app", "image": "busybox"}]})
}

fn net() -> Value {
    json!({"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}})
}

fn arns(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_quarantined_and_everyone_else_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut cp = ControlPlane::start_in(&dir, &[]);
    let hb = Duration::from_millis(300);
    let busy = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 4096, 8192, None, hb)
        .await
        .unwrap();
    let idle = TestAgent::start(&cp.addr, TOKEN, "us-east-1b", 4096, 8192, None, hb)
        .await
        .unwrap();
    // Account 1: two families, two clusters, two services, two tasks.
    for f in ["web", "web", "bad"] {
        cp.call("RegisterTaskDefinition", td(f)).unwrap();
    }
    for c in ["c1", "c2"] {
        cp.call("CreateCluster", json!({"clusterName": c})).unwrap();
    }
    for s in ["s1", "s2"] {
        cp.call(
            "CreateService",
            json!({"cluster": "c1", "serviceName": s, "taskDefinition": "web:2",
                   "desiredCount": 0, "networkConfiguration": net()}),
        )
        .unwrap();
    }
    let run = cp
        .call(
            "RunTask",
            json!({"cluster": "c1", "taskDefinition": "web", "count": 2,
                   "networkConfiguration": net()}),
        )
        .unwrap();
    let tasks: Vec<String> = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tasks.len(), 2, "{run}");
    let id = |arn: &str| arn.rsplit('/').next().unwrap().to_string();
    // Account 2 (same cell): its own family, cluster, service and task.
    let a2 = |args: &[&str]| cp.aws_as(KEY2, SECRET2, args).unwrap();
    let tmpf = json_file(tmp.path(), "td2.json", &td("other"));
    a2(&["register-task-definition", "--cli-input-json", &tmpf]);
    a2(&["create-cluster", "--cluster-name", "c1"]);
    a2(&[
        "create-service",
        "--cluster",
        "c1",
        "--service-name",
        "s1",
        "--task-definition",
        "other",
        "--desired-count",
        "0",
        "--network-configuration",
        NET,
    ]);
    let r2 = a2(&[
        "run-task",
        "--cluster",
        "c1",
        "--task-definition",
        "other",
        "--network-configuration",
        NET,
    ]);
    let task2 = r2["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert!(busy.running().len() + idle.running().len() >= 3);

    // Down; garbage straight into records of five tables (and a family counter).
    cp.terminate();
    drop((busy, idle));
    let bad_task = format!("{ACCOUNT}/c1/{}", id(&tasks[0]));
    let bad_host = {
        // A host other than the one of account 1's task that stays.
        let s = cell_store(&cp);
        let keep = s
            .get_json::<TaskRecord>("task", &format!("{ACCOUNT}/c1/{}", id(&tasks[1])))
            .unwrap()
            .expect("task record")
            .host_id;
        s.scan("host", "")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .find(|k| *k != keep)
            .expect("a second host")
    };
    let garbage: Vec<(&str, String, Vec<u8>)> = vec![
        ("task", bad_task.clone(), b"{\"account\": \"1111".to_vec()),
        (
            "service",
            format!("{ACCOUNT}/c1/s2"),
            br#"{"serviceName": 5}"#.to_vec(),
        ),
        ("cluster", format!("{ACCOUNT}/c2"), b"[1, 2, 3]".to_vec()),
        (
            "taskdef",
            format!("{ACCOUNT}/bad/{:010}", 1),
            b"{\"family\": \"bad\", \"revis".to_vec(),
        ),
        (
            "taskdef",
            format!("{ACCOUNT}/web/{:010}", 1),
            b"{\"family\": \"\xff\xfe\"}".to_vec(),
        ),
        ("family", format!("{ACCOUNT}/bad"), b"\"one\"".to_vec()),
        ("host", bad_host.clone(), b"null".to_vec()),
    ];
    for (t, k, v) in &garbage {
        corrupt(&cp, t, k, v);
    }

    // Up again: it starts, sets the seven aside, and serves everything else.
    // (The hosts do not come back: a long heartbeat timeout keeps their tasks.)
    let cp2 = ControlPlane::start_in(&dir, &["--heartbeat-timeout-ms", "600000"]);
    cp2.wait_for(30, "7 records quarantined", || {
        (quarantined(&cp2) == 7).then_some(())
    });
    // Account 2 is untouched.
    let a2 = |args: &[&str]| cp2.aws_as(KEY2, SECRET2, args).unwrap();
    assert_eq!(arns(&a2(&["list-clusters"]), "clusterArns").len(), 1);
    assert_eq!(
        arns(&a2(&["list-services", "--cluster", "c1"]), "serviceArns").len(),
        1
    );
    assert_eq!(
        arns(&a2(&["list-tasks", "--cluster", "c1"]), "taskArns"),
        vec![task2.clone()]
    );
    let d = a2(&["describe-task-definition", "--task-definition", "other"]);
    assert_eq!(d["taskDefinition"]["revision"], 1);
    // Account 1: the other records are served; the bad ones read as absent.
    let l = cp2.aws(&["list-clusters"]).unwrap();
    assert_eq!(arns(&l, "clusterArns").len(), 1, "{l}");
    let d = cp2
        .aws(&["describe-clusters", "--clusters", "c1", "c2"])
        .unwrap();
    assert_eq!(d["clusters"][0]["clusterName"], "c1");
    assert_eq!(d["failures"][0]["reason"], "MISSING", "{d}");
    let l = cp2.aws(&["list-services", "--cluster", "c1"]).unwrap();
    assert_eq!(arns(&l, "serviceArns").len(), 1, "{l}");
    let d = cp2
        .aws(&[
            "describe-services",
            "--cluster",
            "c1",
            "--services",
            "s1",
            "s2",
        ])
        .unwrap();
    assert_eq!(d["services"][0]["serviceName"], "s1");
    assert_eq!(d["failures"][0]["reason"], "MISSING", "{d}");
    let l = cp2.aws(&["list-tasks", "--cluster", "c1"]).unwrap();
    assert_eq!(arns(&l, "taskArns"), vec![tasks[1].clone()], "{l}");
    let d = cp2
        .aws(&[
            "describe-tasks",
            "--cluster",
            "c1",
            "--tasks",
            &tasks[0],
            &tasks[1],
        ])
        .unwrap();
    assert_eq!(d["tasks"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["failures"][0]["reason"], "MISSING", "{d}");
    let d = cp2
        .aws(&["describe-task-definition", "--task-definition", "web"])
        .unwrap();
    assert_eq!(d["taskDefinition"]["revision"], 2);
    let e = cp2
        .aws(&["describe-task-definition", "--task-definition", "web:1"])
        .unwrap_err();
    assert_eq!(error_type(&e), "ClientException", "{e}");
    let l = cp2.aws(&["list-task-definitions"]).unwrap();
    assert_eq!(arns(&l, "taskDefinitionArns").len(), 1, "only web:2: {l}");
    // A family whose counter and only revision were set aside never reuses it.
    let r = cp2.call("RegisterTaskDefinition", td("bad")).unwrap();
    assert_eq!(r["taskDefinition"]["revision"], 2, "{r}");

    // The quarantine holds each record with its key, reason and raw bytes.
    let q: Vec<(String, QuarantinedRecord)> = cell_store(&cp2).scan_json(TABLE, "").unwrap();
    let mut keys: Vec<String> = q.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    let mut want: Vec<String> = garbage.iter().map(|(t, k, _)| format!("{t}/{k}")).collect();
    want.sort();
    assert_eq!(keys, want);
    let cl = &q.iter().find(|(k, _)| k.starts_with("cluster/")).unwrap().1;
    assert_eq!((cl.raw.as_str(), cl.utf8), ("[1, 2, 3]", true));
    assert!(cl.reason.contains("invalid type"), "{cl:?}");
    let web1 = &q.iter().find(|(k, _)| k.contains("/web/")).unwrap().1;
    assert!(!web1.utf8, "{web1:?}");
    assert!(!q.iter().any(|(_, r)| r.reason.is_empty()));

    // A record damaged while running is set aside when it is read.
    corrupt(
        &cp2,
        "cluster",
        &format!("{ACCOUNT2}/c1"),
        b"{\"clusterName\":",
    );
    let l = cp2.aws_as(KEY2, SECRET2, &["list-clusters"]).unwrap();
    assert_eq!(arns(&l, "clusterArns").len(), 0, "{l}");
    cp2.wait_for(10, "8 records quarantined", || {
        (quarantined(&cp2) == 8).then_some(())
    });
    assert_eq!(
        arns(&cp2.aws(&["list-clusters"]).unwrap(), "clusterArns").len(),
        1,
        "account 1 still served"
    );
    drop(cp);
}
