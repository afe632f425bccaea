//! Body validation under fuzzing, in process over a real SQLite cell: seeded mutations
//! of RegisterTaskDefinition, RunTask and CreateService bodies go through the same
//! steps as a call on the wire (size bound, depth scan, JSON parse, typed decode,
//! validation, the handler). No case may panic or answer a 5xx, and whatever was
//! accepted must decode when read back, from the open cell and after reopening the file.
//!
//! The budget is fixed so that `cargo test` stays quick; longer runs:
//! `CONTROLPLANE_FUZZ_CASES=200000 CONTROLPLANE_FUZZ_SEED=7 cargo test -p controlplane --test body_fuzz`.
//! A failing case prints its seed and case number, and the body.
//!
//! The same file checks that every record type the control plane stores round-trips
//! through the store unchanged (`every_stored_record_round_trips`).

// The rich task definition below is one large `json!`.
#![recursion_limit = "512"]

use controlplane::api;
use controlplane::cells::{AgentConn, Cell, CellState};
use controlplane::ctx::Ctx;
use controlplane::frontend::{limits, TARGET_PREFIX};
use controlplane::host_tables::BootstrapToken;
use controlplane::model::{HostRecord, HostStatus};
use controlplane::store::sqlite::SqliteStore;
use serde_json::{json, Map, Value};
use std::path::Path;

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";

fn open(path: &Path) -> Cell {
    let store = SqliteStore::open(path).expect("open the SQLite store");
    let cell = Cell::open(0, Box::new(store), REGION).expect("open the cell");
    // Every accepted RunTask keeps its vCPUs: the account's default quota (6)
    // would be spent by the hostile seeds before the random cases run.
    cell.set_quotas(controlplane::quotas::Quotas {
        fargate_vcpus: 1_000_000,
        ..Default::default()
    });
    cell
}

/// A host with room for every task the run places.
fn add_host(
    c: &mut CellState,
) -> tokio::sync::mpsc::UnboundedReceiver<agent_proto::ControlMessage> {
    let rec = HostRecord {
        host_id: "h-0-fuzz".into(),
        hostname: "fuzz".into(),
        availability_zone: "us-east-1a".into(),
        cpu: 4_000_000,
        memory: 8_000_000,
        credential_sha256: "00".repeat(32),
        registered_at: 0.0,
        status: HostStatus::Active,
        token_id: "fuzz".into(),
        credential_issued_at: 0.0,
        credential_expires_at: f64::MAX,
        previous_credential_sha256: None,
        previous_valid_until: 0.0,
        revoked_at: None,
    };
    let token = BootstrapToken {
        token_id: "fuzz".into(),
        cell: 0,
        max_hosts: 1,
        hosts_registered: 1,
        max_cpu: rec.cpu,
        max_memory: rec.memory,
        created_at: 0.0,
        expires_at: f64::MAX,
    };
    c.register_host(&rec, &"11".repeat(32), &token)
        .expect("register the host");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    c.connect_host(
        &rec.host_id,
        AgentConn {
            conn_id: 1,
            tx,
            valid_until: f64::MAX,
        },
    );
    rx
}

/// One call as the front end makes it, after authentication: (HTTP status, answer).
fn call(cell: &Cell, op: &str, body: &[u8]) -> (u16, Value) {
    let ctx = Ctx {
        account: ACCOUNT,
        region: REGION,
    };
    if body.len() > limits::max_body(&format!("{TARGET_PREFIX}{op}")) {
        return (400, Value::Null);
    }
    let r = limits::parse(body).and_then(|v| {
        let mut c = cell.lock();
        api::dispatch(op, &ctx, &mut c, v)
    });
    match r {
        Ok(v) => (200, v),
        Err(e) => (e.status, json!({"__type": e.kind, "message": e.message})),
    }
}

/// A task definition using every structure the model types.
fn rich_task_definition(family: &str) -> Value {
    json!({
        "family": family, "cpu": "1 vCPU", "memory": "2 GB",
        "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "taskRoleArn": "arn:aws:iam::111122223333:role/task",
        "executionRoleArn": "ecsTaskExecutionRole",
        "pidMode": "task",
        "ephemeralStorage": {"sizeInGiB": 40},
        "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        "volumes": [{"name": "shared"}, {"name": "scratch", "host": {}}],
        "placementConstraints": [{"type": "memberOf", "expression": "attribute:x == y"}],
        "proxyConfiguration": {"type": "APPMESH", "containerName": "web",
                               "properties": [{"name": "IgnoredUID", "value": "1337"}]},
        "tags": [{"key": "team", "value": "web"}],
        "containerDefinitions": [
            {"name": "web", "image": "public.ecr.aws/x/web:1", "cpu": 512, "memory": 1024,
             "memoryReservation": 512, "essential": true,
             "repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:111122223333:secret:x"},
             "restartPolicy": {"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60},
             "portMappings": [{"containerPort": 80, "protocol": "tcp", "name": "http", "appProtocol": "http"}],
             "entryPoint": ["sh", "-c"], "command": ["httpd -f"],
             "environment": [{"name": "A", "value": "1"}],
             "environmentFiles": [{"value": "arn:aws:s3:::bucket/env", "type": "s3"}],
             "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data", "readOnly": false}],
             "linuxParameters": {"capabilities": {"add": ["SYS_PTRACE"], "drop": ["NET_RAW"]},
                                 "initProcessEnabled": true},
             "secrets": [{"name": "DB", "valueFrom": "arn:aws:ssm:us-east-1:111122223333:parameter/db"}],
             "startTimeout": 30, "stopTimeout": 20,
             "user": "1000", "workingDirectory": "/data",
             "readonlyRootFilesystem": false, "interactive": false, "pseudoTerminal": false,
             "dockerLabels": {"a": "b"},
             "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
             "logConfiguration": {"logDriver": "awslogs",
                                  "options": {"awslogs-group": "g", "awslogs-stream-prefix": "p"},
                                  "secretOptions": [{"name": "k", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/k"}]},
             "healthCheck": {"command": ["CMD", "true"], "interval": 30, "timeout": 5,
                             "retries": 3, "startPeriod": 10},
             "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}]},
            {"name": "side", "image": "busybox", "essential": false,
             "dependsOn": [{"containerName": "web", "condition": "HEALTHY"}],
             "firelensConfiguration": {"type": "fluentbit", "options": {"enable-ecs-log-metadata": "true"}}}
        ]
    })
}

fn run_task(td: &str) -> Value {
    json!({
        "cluster": "c1", "taskDefinition": td, "count": 1, "launchType": "FARGATE",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"],
            "securityGroups": ["sg-0a1b2c3d"], "assignPublicIp": "ENABLED"}},
        "overrides": {"containerOverrides": [{"name": "web", "command": ["echo", "hi"],
                        "environment": [{"name": "B", "value": "2"}], "cpu": 256, "memory": 512,
                        "environmentFiles": [{"value": "arn:aws:s3:::b/e", "type": "s3"}]}],
                      "cpu": "1024", "memory": "2048", "taskRoleArn": "arn:aws:iam::1:role/r",
                      "ephemeralStorage": {"sizeInGiB": 30}},
        "startedBy": "fuzz/run_1", "group": "family:rich",
        "tags": [{"key": "k", "value": "v"}]
    })
}

fn create_service(name: &str, td: &str) -> Value {
    json!({
        "cluster": "c1", "serviceName": name, "taskDefinition": td, "desiredCount": 0,
        "launchType": "FARGATE", "schedulingStrategy": "REPLICA",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}},
        "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 50},
        "loadBalancers": [{"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t/1",
                           "containerName": "web", "containerPort": 80}],
        "tags": [{"key": "k", "value": "v"}]
    })
}

/// A random JSON value: scalars of every type and edge, and containers (shallow or deep).
fn random_value(rng: &mut fastrand::Rng, depth: usize) -> Value {
    match rng.u8(0..14) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!([0, -1, 1, 65535, 65536, i32::MAX as i64 + 1, i64::MIN][rng.usize(0..7)]),
        4 => json!(rng.f64() * 1e12),
        5 => json!(""),
        6 => json!("x".repeat(rng.usize(0..70_000))),
        7 => json!(
            [
                "FARGATE",
                "awsvpc",
                "CMD",
                "SYS_ADMIN",
                "HEALTHY",
                "aws:k",
                "subnet-1",
                "a\u{0}b",
                "arn:aws:iam::1:role/r",
                "1 vCPU",
                "\u{202e}",
                "web"
            ][rng.usize(0..12)]
        ),
        8 => json!(format!("subnet-{}", "a".repeat(rng.usize(0..300)))),
        9 if depth < 40 => Value::Array(
            (0..rng.usize(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        10 if depth < 40 => {
            let mut m = Map::new();
            for _ in 0..rng.usize(0..4) {
                m.insert(random_key(rng), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
        11 => {
            let mut v = json!(1);
            for _ in 0..rng.usize(0..300) {
                v = json!({ "a": v });
            }
            v
        }
        _ => json!(rng.u32(..)),
    }
}

/// A key: usually one the model knows, sometimes an unknown one.
fn random_key(rng: &mut fastrand::Rng) -> String {
    const KNOWN: &[&str] = &[
        "name",
        "image",
        "cpu",
        "memory",
        "linuxParameters",
        "healthCheck",
        "ulimits",
        "logConfiguration",
        "overrides",
        "containerOverrides",
        "portMappings",
        "containerPort",
        "environment",
        "command",
        "tags",
        "key",
        "value",
        "subnets",
        "securityGroups",
        "capabilities",
        "add",
        "devices",
        "volumes",
        "family",
        "loadBalancers",
        "secrets",
        "dependsOn",
        "condition",
        "options",
        "ephemeralStorage",
        "sizeInGiB",
    ];
    if rng.u8(0..4) == 0 {
        format!("unknown{}", rng.u16(..))
    } else {
        KNOWN[rng.usize(0..KNOWN.len())].to_string()
    }
}

/// Mutates one node of `v` (chosen by a random walk).
fn mutate(rng: &mut fastrand::Rng, v: &mut Value) {
    let descend = rng.u8(0..3) != 0;
    match v {
        Value::Object(m) if descend && !m.is_empty() => {
            let k = m
                .keys()
                .nth(rng.usize(0..m.len()))
                .cloned()
                .unwrap_or_default();
            if let Some(x) = m.get_mut(&k) {
                return mutate(rng, x);
            }
        }
        Value::Array(a) if descend && !a.is_empty() => {
            let i = rng.usize(0..a.len());
            return mutate(rng, &mut a[i]);
        }
        _ => {}
    }
    match (rng.u8(0..6), &mut *v) {
        // Nest the node deep: past the depth bound, and past serde_json's own limit.
        (5, _) => {
            for _ in 0..rng.usize(1..140) {
                *v = json!({ random_key(rng): v.take() });
            }
        }
        (0, Value::Object(m)) if !m.is_empty() => {
            let k = m
                .keys()
                .nth(rng.usize(0..m.len()))
                .cloned()
                .unwrap_or_default();
            m.remove(&k);
        }
        (1, Value::Object(m)) => {
            m.insert(random_key(rng), random_value(rng, 0));
        }
        (2, Value::Array(a)) if !a.is_empty() => {
            let x = a[rng.usize(0..a.len())].clone();
            for _ in 0..rng.usize(1..20) {
                a.push(x.clone());
            }
        }
        _ => *v = random_value(rng, 0),
    }
}

/// Byte-level damage to a serialized body.
fn damage(rng: &mut fastrand::Rng, body: &mut Vec<u8>) {
    if body.is_empty() {
        return;
    }
    let i = rng.usize(0..body.len());
    match rng.u8(0..4) {
        0 => body.truncate(i),
        1 => body[i] = rng.u8(..),
        2 => {
            let n = rng.usize(1..100);
            body.splice(i..i, std::iter::repeat_n(b'[', n));
        }
        _ => body
            .splice(i..i, b"\"\\u0000\"".iter().copied())
            .for_each(drop),
    }
}

/// Reads every record back, from the open cell: all must decode.
fn read_back(cell: &Cell) {
    let c = cell.lock();
    let tds = c
        .task_definitions()
        .listing(ACCOUNT, None)
        .expect("task definitions decode");
    for (_, td) in &tds {
        // What is stored is also what a new registration accepts.
        let v = serde_json::to_value(td).expect("encode");
        serde_json::from_value::<controlplane::model::TaskDefinition>(v).expect("re-decode");
    }
    c.tasks().all().expect("tasks decode");
    c.services().all().expect("services decode");
    c.clusters().of_account(ACCOUNT).expect("clusters decode");
    c.hosts().all().expect("hosts decode");
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn fuzzed_bodies_never_panic_or_fail_and_what_is_stored_decodes() {
    let cases = env_or("CONTROLPLANE_FUZZ_CASES", 1500);
    let seed = env_or("CONTROLPLANE_FUZZ_SEED", 16_0616);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cell-0.db");
    let cell = open(&path);
    let _rx = add_host(&mut cell.lock());
    for (op, body) in [
        ("RegisterTaskDefinition", rich_task_definition("rich")),
        ("CreateCluster", json!({"clusterName": "c1"})),
        ("RunTask", run_task("rich")),
        ("CreateService", create_service("s0", "rich")),
    ] {
        let (status, v) = call(&cell, op, body.to_string().as_bytes());
        assert_eq!(status, 200, "the seed {op} is accepted: {v}");
    }
    // Hostile seeds first: values nested around the depth bound and around
    // serde_json's own recursion limit, under known and unknown keys at every level
    // of each operation's body.
    let bases = [
        ("RegisterTaskDefinition", rich_task_definition("deep")),
        ("RunTask", run_task("rich")),
        ("CreateService", create_service("deep", "rich")),
    ];
    for (op, base) in &bases {
        for depth in [
            31, 33, 100, 118, 120, 121, 122, 123, 124, 125, 126, 127, 200, 1000,
        ] {
            for at in [
                "/unknownTop",
                "/overrides/unknown",
                "/tags/0/unknown",
                "/containerDefinitions/0/linuxParameters/unknown",
                "/networkConfiguration/awsvpcConfiguration/unknown",
            ] {
                let mut body = base.clone();
                let (parent, key) = at.rsplit_once('/').unwrap_or(("", at));
                if let Some(Value::Object(m)) = body.pointer_mut(parent) {
                    let mut v = json!(1);
                    for _ in 0..depth {
                        v = json!({ "unknown": v });
                    }
                    m.insert(key.to_string(), v);
                }
                let (status, answer) = call(&cell, op, body.to_string().as_bytes());
                assert!(status < 500, "{op} {at} {depth} deep: {status} {answer}");
            }
        }
    }
    read_back(&cell);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut accepted = [0u32; 3];
    for case in 0..cases {
        let k = rng.usize(0..3);
        let (op, mut body) = match k {
            0 => (
                "RegisterTaskDefinition",
                rich_task_definition(&format!("f{}", rng.u8(0..8))),
            ),
            1 => ("RunTask", run_task("rich")),
            _ => ("CreateService", create_service(&format!("s{case}"), "rich")),
        };
        for _ in 0..rng.usize(1..4) {
            mutate(&mut rng, &mut body);
        }
        let mut bytes = body.to_string().into_bytes();
        if rng.u8(0..8) == 0 {
            damage(&mut rng, &mut bytes);
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(&cell, op, &bytes)));
        let show = || String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned();
        let (status, answer) =
            r.unwrap_or_else(|_| panic!("seed {seed} case {case}: {op} panicked on {}", show()));
        assert!(
            status < 500,
            "seed {seed} case {case}: {op} answered {status} {answer} to {}",
            show()
        );
        if status == 200 {
            accepted[k] += 1;
            // The answer itself decodes as the stored type it shows.
            if op == "RegisterTaskDefinition" {
                serde_json::from_value::<controlplane::model::TaskDefinition>(
                    answer["taskDefinition"].clone(),
                )
                .unwrap_or_else(|e| panic!("seed {seed} case {case}: answer does not decode: {e}"));
            }
        }
        if case % 250 == 0 {
            read_back(&cell);
        }
    }
    read_back(&cell);
    drop(cell);
    // Reopening loads every host and task (a record that does not decode fails here).
    let cell = open(&path);
    read_back(&cell);
    println!(
        "fuzz: seed {seed}, {cases} cases, accepted (RegisterTaskDefinition, RunTask, CreateService) = {accepted:?}"
    );
    assert!(
        accepted.iter().all(|&n| n > 0) || cases < 100,
        "the mutations should leave some bodies valid: {accepted:?}"
    );
}

#[test]
fn every_stored_record_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cell-0.db");
    let cell = open(&path);
    let _rx = add_host(&mut cell.lock());
    let cluster = json!({"clusterName": "c1", "tags": [{"key": "k", "value": "v"}],
                         "settings": [{"name": "containerInsights", "value": "enabled"}],
                         "capacityProviders": ["FARGATE", "FARGATE_SPOT"]});
    for (op, body) in [
        ("CreateCluster", cluster),
        ("RegisterTaskDefinition", rich_task_definition("rich")),
        ("RunTask", run_task("rich")),
        ("CreateService", create_service("s1", "rich")),
    ] {
        let (status, v) = call(&cell, op, body.to_string().as_bytes());
        assert_eq!(status, 200, "{op}: {v}");
    }
    let snapshot = |cell: &Cell| {
        let c = cell.lock();
        (
            c.task_definitions().listing(ACCOUNT, None).unwrap(),
            c.tasks().all().unwrap(),
            c.services().all().unwrap(),
            c.clusters().of_account(ACCOUNT).unwrap(),
            c.hosts().all().unwrap(),
        )
    };
    let before = snapshot(&cell);
    assert_eq!(before.0.len(), 1);
    assert_eq!(before.1.len(), 1);
    assert_eq!(before.2.len(), 1);
    assert_eq!(before.3.len(), 1);
    assert_eq!(before.4.len(), 1);
    // Every typed structure was kept (none dropped as unknown).
    let td = serde_json::to_value(&before.0[0].1).unwrap();
    let web = &td["containerDefinitions"][0];
    for k in [
        "linuxParameters",
        "healthCheck",
        "ulimits",
        "logConfiguration",
        "secrets",
        "restartPolicy",
        "environmentFiles",
        "repositoryCredentials",
        "systemControls",
        "dockerLabels",
    ] {
        assert!(web.get(k).is_some(), "{k} kept: {web}");
    }
    for k in [
        "ephemeralStorage",
        "runtimePlatform",
        "proxyConfiguration",
        "taskRoleArn",
    ] {
        assert!(td.get(k).is_some(), "{k} kept: {td}");
    }
    let task = serde_json::to_value(&before.1[0].1.task).unwrap();
    assert_eq!(
        task["overrides"]["ephemeralStorage"]["sizeInGiB"], 30,
        "{task}"
    );
    drop(cell);
    let cell = open(&path);
    let after = snapshot(&cell);
    assert_eq!(before.0, after.0, "task definitions");
    assert_eq!(before.1.len(), after.1.len());
    for ((k1, t1), (k2, t2)) in before.1.iter().zip(&after.1) {
        assert_eq!((k1.as_str(), t1), (k2.as_str(), t2), "tasks");
    }
    assert_eq!(before.2.len(), after.2.len());
    for ((_, s1), (_, s2)) in before.2.iter().zip(&after.2) {
        assert_eq!(s1, s2, "services");
    }
    assert_eq!(before.3, after.3, "clusters");
    assert_eq!(before.4, after.4, "hosts");
}
