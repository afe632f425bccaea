//! The front door's bounds, played as an attacker: bodies nested too deep, too large,
//! ids too long, fields of the wrong type, unknown keys. Each is refused with ECS's
//! error (or the unknown key dropped), nothing it carried is stored, and a restart
//! afterwards serves every account. The ECS structures Fargate takes
//! (`linuxParameters`, `healthCheck`, `ulimits`) round-trip through real boto3.

use crate::common::*;
use controlplane::testagent::TestAgent;
use serde_json::{json, Value};
use std::time::Duration;

fn td(family: &str) -> Value {
    json!({
        "family": family, "cpu": "256", "memory": "512",
        "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "containerDefinitions": [{"name": "app", "image": "busybox", "command": ["sleep", "1"]}]
    })
}

fn net() -> Value {
    json!({"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"], "securityGroups": ["sg-0a1b2c3d"]}})
}

/// `{"a": {"a": ... {} }}`, `depth` objects deep.
fn nested(depth: usize) -> Value {
    let mut v = json!({});
    for _ in 1..depth {
        v = json!({ "a": v });
    }
    v
}

fn assert_refused(r: Result<Value, (String, String)>, kind: &str, needle: &str, what: &str) {
    match r {
        Ok(v) => panic!("{what}: accepted: {v}"),
        Err((k, m)) => assert!(
            k == kind && m.contains(needle),
            "{what}: wanted {kind} naming '{needle}', got {k}: {m}"
        ),
    }
}

/// Every string key anywhere in `v`.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_are_refused_and_a_restart_serves_every_account() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut cp = ControlPlane::start_in(&dir, &["--heartbeat-timeout-ms", "30000"]);
    let agent = TestAgent::start(
        &cp.addr,
        TOKEN,
        "us-east-1a",
        4096,
        8192,
        None,
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    cp.call("RegisterTaskDefinition", td("web")).unwrap();
    cp.call("CreateCluster", json!({"clusterName": "c1"}))
        .unwrap();
    let other = cp.client(KEY2, SECRET2);
    other
        .call("CreateCluster", &json!({"clusterName": "theirs"}))
        .await
        .unwrap();

    // The attack of the issue: overrides ~120 deep, and a 1,000-deep body.
    for depth in [120, 1000] {
        let run = json!({"cluster": "c1", "taskDefinition": "web",
                         "networkConfiguration": net(), "overrides": nested(depth)});
        assert_refused(
            cp.call("RunTask", run),
            "SerializationException",
            "deeper than 32",
            &format!("RunTask with overrides {depth} deep"),
        );
    }
    assert_refused(
        cp.call("CreateCluster", json!({"tags": nested(1000)})),
        "SerializationException",
        "deeper than 32",
        "1,000-deep CreateCluster",
    );

    // A 65 KiB task definition (ECS: at most 64 KiB).
    let mut big = td("big");
    big["containerDefinitions"][0]["environment"] =
        json!([{"name": "PAD", "value": "x".repeat(65 * 1024)}]);
    assert_refused(
        cp.call("RegisterTaskDefinition", big),
        "ClientException",
        "65536",
        "65 KiB task definition",
    );

    // A 256-character subnet id, and a 10 KB one.
    for n in [256, 10_000] {
        let id = format!("subnet-{}", "a".repeat(n - 7));
        let run = json!({"cluster": "c1", "taskDefinition": "web",
                         "networkConfiguration": {"awsvpcConfiguration": {"subnets": [id]}}});
        assert_refused(
            cp.call("RunTask", run),
            "InvalidParameterException",
            "subnet",
            &format!("{n}-character subnet id"),
        );
    }

    // Fields of the wrong JSON type: SerializationException naming the field.
    let mut wrong = td("wrong");
    wrong["containerDefinitions"][0]["linuxParameters"] = json!("privileged please");
    assert_refused(
        cp.call("RegisterTaskDefinition", wrong),
        "SerializationException",
        "containerDefinitions[0].linuxParameters",
        "linuxParameters of the wrong type",
    );
    let mut wrong = td("wrong");
    wrong["containerDefinitions"][0]["ulimits"] = json!([{"name": "nofile", "softLimit": "lots"}]);
    assert_refused(
        cp.call("RegisterTaskDefinition", wrong),
        "SerializationException",
        "ulimits[0].softLimit",
        "ulimit of the wrong type",
    );
    assert_refused(
        cp.call(
            "RunTask",
            json!({"cluster": "c1", "taskDefinition": "web", "networkConfiguration": net(),
                   "overrides": {"containerOverrides": {"name": "app"}}}),
        ),
        "SerializationException",
        "overrides.containerOverrides",
        "containerOverrides of the wrong type",
    );
    // Values out of the model's rules: ClientException naming the field.
    for (field, value, needle) in [
        (
            "linuxParameters",
            json!({"capabilities": {"add": ["SYS_ADMIN"]}}),
            "linuxParameters.capabilities.add[0]",
        ),
        (
            "linuxParameters",
            json!({"devices": [{"hostPath": "/dev/kvm"}]}),
            "devices",
        ),
        (
            "logConfiguration",
            json!({"logDriver": "json-file"}),
            "logConfiguration.logDriver",
        ),
        ("healthCheck", json!({"command": []}), "healthCheck.command"),
        (
            "portMappings",
            json!([{"containerPort": 70000}]),
            "containerPort",
        ),
        ("image", json!("x".repeat(300)), "image"),
        ("name", json!("a".repeat(256)), "container name"),
    ] {
        let mut bad = td("bad");
        bad["containerDefinitions"][0][field] = value;
        assert_refused(
            cp.call("RegisterTaskDefinition", bad),
            "ClientException",
            needle,
            field,
        );
    }
    let mut bad = td(&"f".repeat(256));
    bad["tags"] = json!([]);
    assert_refused(
        cp.call("RegisterTaskDefinition", bad),
        "ClientException",
        "Family",
        "256-character family",
    );
    assert_refused(
        cp.call(
            "CreateCluster",
            json!({"clusterName": "t", "tags": [{"key": "aws:owner", "value": "me"}]}),
        ),
        "InvalidParameterException",
        "tags[0].key",
        "reserved tag key",
    );

    // Unknown keys are dropped: neither stored nor echoed.
    let mut odd = td("odd");
    odd["bogusTop"] = nested(20);
    odd["containerDefinitions"][0]["bogusContainer"] = json!(1);
    odd["containerDefinitions"][0]["linuxParameters"] =
        json!({"initProcessEnabled": true, "bogusLinux": [1, 2]});
    let r = cp.call("RegisterTaskDefinition", odd).unwrap();
    let run = json!({"cluster": "c1", "taskDefinition": "odd", "networkConfiguration": net(),
                     "bogusRun": "x",
                     "overrides": {"bogusOverride": nested(10),
                                   "containerOverrides": [{"name": "app", "bogus": true,
                                                           "command": ["true"]}]}});
    let t = cp.call("RunTask", run).unwrap();
    let arn = t["tasks"][0]["taskArn"]
        .as_str()
        .expect("a task")
        .to_string();
    let d = cp
        .call("DescribeTaskDefinition", json!({"taskDefinition": "odd"}))
        .unwrap();
    let dt = cp
        .call("DescribeTasks", json!({"cluster": "c1", "tasks": [arn]}))
        .unwrap();
    for v in [&r, &t, &d, &dt] {
        let mut all = vec![];
        keys(v, &mut all);
        assert!(
            !all.iter().any(|k| k.starts_with("bogus")),
            "an unknown key came back: {v}"
        );
    }
    assert_eq!(
        d["taskDefinition"]["containerDefinitions"][0]["linuxParameters"],
        json!({"initProcessEnabled": true})
    );
    assert_eq!(
        dt["tasks"][0]["overrides"]["containerOverrides"][0]["command"],
        json!(["true"])
    );

    // Nothing refused was stored; a restart on the same store serves every account.
    drop(agent);
    assert!(cp.terminate().success(), "clean exit on SIGTERM");
    let cp = ControlPlane::start_in(&dir, &[]);
    let l = cp.call("ListTaskDefinitionFamilies", json!({})).unwrap();
    assert_eq!(l["families"], json!(["odd", "web"]), "{l}");
    let dt = cp
        .call("DescribeTasks", json!({"cluster": "c1", "tasks": [arn]}))
        .unwrap();
    assert_eq!(dt["tasks"].as_array().map(Vec::len), Some(1), "{dt}");
    let c = cp.aws(&["list-clusters"]).unwrap();
    assert_eq!(c["clusterArns"].as_array().map(Vec::len), Some(1), "{c}");
    let c2 = cp.aws_as(KEY2, SECRET2, &["list-clusters"]).unwrap();
    assert_eq!(c2["clusterArns"].as_array().map(Vec::len), Some(1), "{c2}");
}

/// A task definition with `linuxParameters`, `healthCheck`, `ulimits` (and the other
/// typed structures) registered and described with real boto3: botocore parses every
/// answer against the ECS model, and the fields come back as given.
const BOTO3_ROUND_TRIP: &str = r#"
import json, os, boto3
ecs = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
c = {
    "name": "web", "image": "busybox", "essential": True,
    "command": ["httpd", "-f"],
    "linuxParameters": {"capabilities": {"add": ["SYS_PTRACE"], "drop": ["NET_RAW"]},
                        "initProcessEnabled": True},
    "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10, "timeout": 5,
                    "retries": 3, "startPeriod": 0},
    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
    "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
    "secrets": [{"name": "DB", "valueFrom": "arn:aws:ssm:us-east-1:111122223333:parameter/db"}],
    "portMappings": [{"containerPort": 8080, "protocol": "tcp", "name": "http", "appProtocol": "http"}],
    "dockerLabels": {"team": "web"},
    "stopTimeout": 10,
}
r = ecs.register_task_definition(family="rt", cpu="256", memory="512", networkMode="awsvpc",
    requiresCompatibilities=["FARGATE"], containerDefinitions=[c],
    executionRoleArn="arn:aws:iam::111122223333:role/ecsTaskExecutionRole",
    ephemeralStorage={"sizeInGiB": 30},
    runtimePlatform={"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"})
d = ecs.describe_task_definition(taskDefinition="rt")["taskDefinition"]
got = d["containerDefinitions"][0]
out = {k: got.get(k) for k in ["linuxParameters", "healthCheck", "ulimits", "logConfiguration",
                               "secrets", "dockerLabels", "stopTimeout"]}
out["ephemeralStorage"] = d.get("ephemeralStorage")
out["runtimePlatform"] = d.get("runtimePlatform")
out["executionRoleArn"] = d.get("executionRoleArn")
out["port"] = got["portMappings"][0]
print(json.dumps(out))
"#;

#[test]
fn typed_structures_round_trip_through_boto3() {
    let cp = ControlPlane::start(&[]);
    let (ok, out) = cp.boto3(KEY, SECRET, BOTO3_ROUND_TRIP);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out}: {e}"));
    assert_eq!(
        v["linuxParameters"],
        json!({"capabilities": {"add": ["SYS_PTRACE"], "drop": ["NET_RAW"]},
               "initProcessEnabled": true})
    );
    assert_eq!(
        v["healthCheck"],
        json!({"command": ["CMD-SHELL", "true"], "interval": 10, "timeout": 5,
               "retries": 3, "startPeriod": 0})
    );
    assert_eq!(
        v["ulimits"],
        json!([{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}])
    );
    assert_eq!(
        v["logConfiguration"],
        json!({"logDriver": "awslogs", "options": {"awslogs-group": "g"}})
    );
    assert_eq!(v["secrets"][0]["name"], "DB");
    assert_eq!(v["dockerLabels"], json!({"team": "web"}));
    assert_eq!(v["stopTimeout"], 10);
    assert_eq!(v["ephemeralStorage"], json!({"sizeInGiB": 30}));
    assert_eq!(v["runtimePlatform"]["cpuArchitecture"], "X86_64");
    assert_eq!(
        v["executionRoleArn"],
        "arn:aws:iam::111122223333:role/ecsTaskExecutionRole"
    );
    assert_eq!(
        v["port"],
        json!({"containerPort": 8080, "hostPort": 8080, "protocol": "tcp",
               "name": "http", "appProtocol": "http"})
    );
}
