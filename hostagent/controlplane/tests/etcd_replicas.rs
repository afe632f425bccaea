//! Several controlplane replicas over one real etcd (Debian's `/usr/bin/etcd`):
//! one leader per cell, a takeover when the leader is killed, and the fence that
//! keeps a deposed leader from writing.

mod common;

use common::*;
use controlplane::leader::{leader_key, Campaign, Leadership, Role};
use controlplane::store::etcd::{connect, EtcdStore, Fence};
use controlplane::store::etcd_process::EtcdProcess;
use controlplane::store::{Store, StoreError, StoreExt};
use controlplane::testagent::TestAgent;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn replica(etcd: &EtcdProcess) -> ControlPlane {
    let mut flags = etcd.client_flags();
    flags.extend(
        [
            "--etcd-prefix",
            etcd::PREFIX,
            "--lease-ttl-ms",
            etcd::LEASE_TTL_MS,
            "--heartbeat-timeout-ms",
            "20000",
        ]
        .map(String::from),
    );
    ControlPlane::start(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

fn cells_led(cp: &ControlPlane) -> Option<u64> {
    cp.metrics()?["cellsLed"].as_u64()
}

fn run_one(cp: &ControlPlane) -> Result<Value, (String, String)> {
    cp.call(
        "RunTask",
        json!({"cluster": "c", "taskDefinition": "scorekeep", "count": 1,
               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_second_replica_takes_over_and_keeps_placing() {
    if etcd::skip_without_etcd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&tmp.path().join("etcd")).unwrap();
    let mut a = replica(&etcd);
    a.wait_for(20, "replica A leads", || {
        (cells_led(&a)? == 1).then_some(())
    });
    let b = replica(&etcd);
    assert_eq!(cells_led(&b), Some(0), "one leader per cell");

    // Writes go to the leader; the other replica reads them and refuses writes,
    // naming the leader.
    let file = scorekeep_file(tmp.path());
    a.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    a.aws(&["create-cluster", "--cluster-name", "c"]).unwrap();
    let seen = b.aws(&["describe-clusters", "--clusters", "c"]).unwrap();
    assert_eq!(seen["clusters"][0]["status"], "ACTIVE", "{seen}");
    let e = b
        .aws(&["create-cluster", "--cluster-name", "other"])
        .unwrap_err();
    assert_eq!(error_type(&e), "ServerException", "{e}");
    assert!(e.contains("not the leader") && e.contains(&a.addr), "{e}");

    // Two hosts, each with room for exactly one scorekeep task (1 vCPU, 2 GiB).
    let hb = Duration::from_millis(500);
    let h1 = TestAgent::start(&a.addr, TOKEN, "us-east-1a", 1024, 2048, Some(0), hb)
        .await
        .unwrap();
    let h2 = TestAgent::start(&a.addr, TOKEN, "us-east-1b", 1024, 2048, Some(0), hb)
        .await
        .unwrap();
    // A host can neither register nor hold its channel on a replica that does not
    // lead its cell.
    let refused = TestAgent::connect(&b.addr, &h1.host_id, &h1.credential, 0, hb).await;
    assert!(refused.is_err(), "the follower accepted an agent channel");
    let e = TestAgent::start(&b.addr, TOKEN, "us-east-1c", 1024, 2048, Some(0), hb)
        .await
        .err()
        .expect("the follower registered a host")
        .to_string();
    assert!(e.contains("503") && e.contains(&a.addr), "{e}");
    let first = run_one(&a).unwrap();
    let first_arn = first["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    a.wait_status("c", &first_arn, "RUNNING", 20);

    // kill -9 the leader: the follower takes over once its lease has run out.
    let creds = [
        (h1.host_id.clone(), h1.credential.clone()),
        (h2.host_id.clone(), h2.credential.clone()),
    ];
    drop((h1, h2));
    let killed = Instant::now();
    a.kill9();
    b.wait_for(20, "replica B leads", || {
        (cells_led(&b)? == 1).then_some(())
    });
    eprintln!(
        "takeover after {} ms (lease TTL {} ms)",
        killed.elapsed().as_millis(),
        etcd::LEASE_TTL_MS
    );
    let mut hosts = vec![];
    for (id, cred) in &creds {
        hosts.push(TestAgent::connect(&b.addr, id, cred, 0, hb).await.unwrap());
    }

    // The new leader knows the task the old one placed: it is still RUNNING and
    // holds its host, so one more task fits and the next one does not.
    assert_eq!(b.task("c", &first_arn)["lastStatus"], "RUNNING");
    let second = run_one(&b).unwrap();
    assert_eq!(second["failures"], json!([]), "{second}");
    let second_arn = second["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let t = b.wait_status("c", &second_arn, "RUNNING", 20);
    let running: Vec<String> = hosts.iter().flat_map(|h| h.running()).collect();
    assert!(running.contains(&second_arn), "{running:?} {t}");
    assert!(
        running.contains(&first_arn),
        "resync after reconnect: {running:?}"
    );
    let third = run_one(&b).unwrap();
    assert_eq!(third["tasks"], json!([]), "{third}");
    assert_eq!(third["failures"][0]["reason"], "RESOURCE:CPU", "{third}");

    // The killed replica comes back as a follower: it reads, it does not write.
    let a2 = replica(&etcd);
    assert_eq!(cells_led(&a2), Some(0));
    let e = a2.call("StopTask", json!({"cluster": "c", "task": second_arn}));
    let (kind, msg) = e.unwrap_err();
    assert_eq!(kind, "ServerException");
    assert!(msg.contains(&b.addr), "{msg}");
    assert_eq!(a2.task("c", &second_arn)["lastStatus"], "RUNNING");
}

fn campaign(client: &etcd_client::Client, advertise: &str) -> (Arc<Fence>, Arc<Role>, Leadership) {
    let key = leader_key(etcd::PREFIX, 0);
    let fence = Arc::new(Fence::new(key.clone()));
    let role = Role::fenced(fence.clone());
    let l = Leadership::start(Campaign {
        client: client.clone(),
        cells: vec![(key, role.clone())],
        ttl: Duration::from_secs(2),
        advertise: advertise.into(),
    });
    (fence, role, l)
}

#[test]
fn a_deposed_leaders_write_is_refused() {
    if etcd::skip_without_etcd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&tmp.path().join("etcd")).unwrap();
    let client = connect(
        std::slice::from_ref(&etcd.endpoint),
        &etcd.client_tls,
        Duration::from_secs(5),
    )
    .unwrap();
    let (fence_a, role_a, lead_a) = campaign(&client, "replica-a");
    assert!(role_a.is_leader(), "the first replica leads");
    let store_a = EtcdStore::new(client.clone(), etcd::PREFIX, "0", Some(fence_a.clone()));
    // Won, but not yet reloaded: writes wait for the cell to activate the fence.
    assert!(matches!(
        store_a.put_json("task", "k", &"early"),
        Err(StoreError::NotLeader { .. })
    ));
    role_a.activate(); // what `Cell::lock` does after reloading
    store_a.put_json("task", "k", &"from A").unwrap();

    let (fence_b, role_b, _lead_b) = campaign(&client, "replica-b");
    assert!(!role_b.is_leader());
    let store_b = EtcdStore::new(client.clone(), etcd::PREFIX, "0", Some(fence_b));
    match store_b.put_json("task", "k", &"from B") {
        Err(StoreError::NotLeader { leader }) => assert_eq!(leader.as_deref(), Some("replica-a")),
        other => panic!("a follower's write went through: {other:?}"),
    }

    // A stalls (think: a long GC pause) holding what it believes is the leadership;
    // meanwhile its leadership ends and B takes over.
    let stale = fence_a.revision();
    drop(lead_a); // revokes A's lease: the leadership key goes away
    let deadline = Instant::now() + Duration::from_secs(10);
    while !role_b.is_leader() {
        assert!(Instant::now() < deadline, "B did not take over");
        std::thread::sleep(Duration::from_millis(50));
    }
    role_b.activate();
    store_b.put_json("task", "k", &"from B").unwrap();
    // A wakes up and writes with its old fence: refused, B's state intact.
    let zombie = Arc::new(Fence::new(leader_key(etcd::PREFIX, 0)));
    zombie.set_revision(stale);
    let store_zombie = EtcdStore::new(client.clone(), etcd::PREFIX, "0", Some(zombie.clone()));
    let r = store_zombie.write(vec![
        controlplane::store::Write::put("task", "k", &"from deposed A").unwrap(),
        controlplane::store::Write::put("task", "new", &1).unwrap(),
    ]);
    assert!(matches!(r, Err(StoreError::NotLeader { .. })), "{r:?}");
    assert_eq!(zombie.revision(), 0, "a refused leader stops acting as one");
    assert_eq!(
        store_b.get_json::<String>("task", "k").unwrap().as_deref(),
        Some("from B")
    );
    assert_eq!(
        store_b.get("task", "new").unwrap(),
        None,
        "nothing of the batch"
    );
}

fn replica_with_ttl(etcd: &EtcdProcess, ttl_ms: &str) -> ControlPlane {
    let mut flags = etcd.client_flags();
    flags.extend(["--etcd-prefix", etcd::PREFIX, "--lease-ttl-ms", ttl_ms].map(String::from));
    ControlPlane::start(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_leader_stopped_with_sigterm_hands_over_without_waiting_for_its_lease() {
    if etcd::skip_without_etcd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&tmp.path().join("etcd")).unwrap();
    // A long lease: only the revocation on SIGTERM lets B lead within it.
    let mut a = replica_with_ttl(&etcd, "30000");
    a.wait_for(20, "replica A leads", || {
        (cells_led(&a)? == 1).then_some(())
    });
    let b = replica_with_ttl(&etcd, "30000");
    assert_eq!(cells_led(&b), Some(0));
    let stopped = Instant::now();
    assert!(a.terminate().success(), "clean exit on SIGTERM");
    b.wait_for(15, "replica B leads before A's lease would expire", || {
        (cells_led(&b)? == 1).then_some(())
    });
    eprintln!("handover after {} ms", stopped.elapsed().as_millis());
    b.call("CreateCluster", json!({"clusterName": "after"}))
        .expect("the new leader writes");
}
