//! The `hostagent` binary against the real `controlplane` binary, over days: the
//! records of stopped tasks are pruned after the retention, and a credential the
//! control plane refuses is retried with growing, jittered delays (said in the log).

mod channel_support;

use channel_support::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn call(cp: &ControlPlane, op: &str, input: Value) -> Value {
    cp.client()
        .call(op, &input)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e:?}"))
}

fn records(state: &std::path::Path) -> usize {
    std::fs::read_dir(state.join("tasks"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_task_records_are_pruned_after_the_retention() {
    let Some(bin) = controlplane_bin() else {
        eprintln!("SKIPPED: no controlplane binary");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (data, state) = (tmp.path().join("cp"), tmp.path().join("state"));
    let addr = format!("127.0.0.1:{}", free_port());
    let cp = ControlPlane::start(&bin, &addr, &data);
    let agent = HostAgent::start(
        &addr,
        &state,
        &tmp.path().join("a.log"),
        &[
            "--bootstrap-token",
            TOKEN,
            "--task-record-retention-ms",
            "3000",
        ],
    );
    wait_for(30, "agent to connect", || cp.connected() == 1);
    call(&cp, "CreateCluster", json!({"clusterName": "c1"})).await;
    call(
        &cp,
        "RegisterTaskDefinition",
        json!({"family": "web", "cpu": "256", "memory": "512", "networkMode": "awsvpc",
               "requiresCompatibilities": ["FARGATE"],
               "containerDefinitions": [{"name": "web", "image": "127.0.0.1:5000/busybox:v1", "essential": true}]}),
    )
    .await;
    let r = call(
        &cp,
        "RunTask",
        json!({"cluster": "c1", "taskDefinition": "web", "count": 3,
               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}}}),
    )
    .await;
    assert_eq!(r["failures"], json!([]), "{r}");
    // Without a microVM runtime every launch is answered STOPPED at once; the
    // records stay within the retention...
    wait_for(10, "three task records", || records(&state) == 3);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(records(&state), 3, "{}", agent.log_text());
    // ... and are gone after it.
    wait_for(15, "the records pruned", || records(&state) == 0);
    assert!(agent.log_text().contains("pruned"), "{}", agent.log_text());
}

/// The delays of the `backing off N ms` lines of an agent's log.
fn backoff_delays(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("refused the host credential"))
        .filter_map(|l| {
            let rest = l.split("backing off ").nth(1)?;
            rest.split(" ms").next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_credential_is_retried_with_growing_jittered_delays() {
    let Some(bin) = controlplane_bin() else {
        eprintln!("SKIPPED: no controlplane binary");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cp = ControlPlane::start(&bin, &addr, &tmp.path().join("cp"));
    let mut agent = HostAgent::start(
        &addr,
        &state,
        &tmp.path().join("a.log"),
        &["--bootstrap-token", TOKEN, "--max-backoff-ms", "8000"],
    );
    wait_for(30, "agent to connect", || cp.connected() == 1);
    // The control plane loses its state: a new one on the same address knows no host.
    cp.kill9();
    let _cp = ControlPlane::start(&bin, &addr, &tmp.path().join("cp-new"));
    wait_for(20, "three refusals logged", || {
        backoff_delays(&agent.log_text()).len() >= 3
    });
    let d = backoff_delays(&agent.log_text());
    // Attempt n waits in the upper half of 1 s * 2^n: the windows do not overlap,
    // so the delays grow.
    for (n, ms) in d.iter().take(3).enumerate() {
        let window = 1000u64 << n;
        assert!(
            (window / 2..=window).contains(ms),
            "delay {n}: {ms} ms, window {window} ms: {}",
            agent.log_text()
        );
    }
    assert!(agent.child.try_wait().unwrap().is_none(), "still running");
    assert!(
        agent.log_text().contains("invalid host credential"),
        "{}",
        agent.log_text()
    );
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit(15).success(), "{}", agent.log_text());
}
