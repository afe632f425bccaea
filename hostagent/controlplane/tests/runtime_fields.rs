//! The container fields the guest init acts on (dependsOn, healthCheck, mountPoints,
//! ulimits, workingDirectory, user) and the task's volumes, registered with the real AWS
//! CLI, reach the host in the launch; definitions the guest would refuse are refused at
//! registration.

mod common;

use common::*;
use controlplane::testagent::TestAgent;
use std::time::Duration;

fn write_td(dir: &std::path::Path, td: serde_json::Value) -> String {
    let path = dir.join("td.json");
    std::fs::write(&path, td.to_string()).unwrap();
    format!("file://{}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_fields_reach_the_host() {
    let cp = ControlPlane::start(&["--heartbeat-timeout-ms", "30000"]);
    let tmp = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(
        &cp.addr,
        TOKEN,
        "us-east-1a",
        4096,
        8192,
        None,
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let file = write_td(
        tmp.path(),
        serde_json::json!({
            "family": "web-with-sidecar",
            "cpu": "512", "memory": "1024",
            "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "volumes": [{"name": "shared"}],
            "containerDefinitions": [
                {"name": "web", "image": "busybox", "essential": true,
                 "command": ["httpd", "-f", "-p", "8080"],
                 "healthCheck": {"command": ["CMD-SHELL", "wget -q -O- http://127.0.0.1:8080/"],
                                 "interval": 5, "retries": 2},
                 "mountPoints": [{"sourceVolume": "shared", "containerPath": "/www"}],
                 "workingDirectory": "/www", "user": "1000:1000",
                 "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}]},
                {"name": "sidecar", "image": "busybox", "essential": false,
                 "command": ["sh", "-c", "echo hi > /data/index.html"],
                 "dependsOn": [{"containerName": "web", "condition": "HEALTHY"}],
                 "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data",
                                  "readOnly": false}]}
            ]
        }),
    );
    let r = cp
        .aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    let defs = &r["taskDefinition"]["containerDefinitions"];
    assert_eq!(defs[0]["healthCheck"]["interval"], 5, "{r}");
    assert_eq!(defs[1]["dependsOn"][0]["condition"], "HEALTHY", "{r}");
    cp.aws(&["create-cluster", "--cluster-name", "c1"]).unwrap();
    let run = cp
        .aws(&[
            "run-task",
            "--cluster",
            "c1",
            "--task-definition",
            "web-with-sidecar",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            NET,
        ])
        .unwrap();
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let spec = cp.wait_for(20, "the launch on the host", || {
        agent.state.lock().unwrap().running.get(&arn).cloned()
    });
    assert_eq!(spec.volumes, vec!["shared".to_string()]);
    let (web, side) = (&spec.containers[0], &spec.containers[1]);
    let hc = web
        .health_check
        .as_ref()
        .expect("healthCheck in the launch");
    assert_eq!(hc.command[0], "CMD-SHELL");
    assert_eq!((hc.interval, hc.retries), (Some(5), Some(2)));
    assert_eq!(web.mount_points[0].container_path, "/www");
    assert_eq!(web.working_directory.as_deref(), Some("/www"));
    assert_eq!(web.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        (web.ulimits[0].soft_limit, web.ulimits[0].hard_limit),
        (1024, 2048)
    );
    assert_eq!(side.depends_on[0].container_name, "web");
    assert_eq!(
        side.depends_on[0].condition,
        agent_proto::Condition::Healthy
    );
    assert_eq!(side.mount_points[0].source_volume, "shared");
    assert!(side.health_check.is_none() && side.ulimits.is_empty());
}

#[test]
fn definitions_the_guest_would_refuse_are_refused() {
    let cp = ControlPlane::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let base = |containers: serde_json::Value, volumes: serde_json::Value| {
        serde_json::json!({"family": "bad", "cpu": "256", "memory": "512",
                           "containerDefinitions": containers, "volumes": volumes})
    };
    let c = |extra: serde_json::Value| {
        let mut v = serde_json::json!({"name": "a", "image": "busybox", "command": ["true"]});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let none = serde_json::json!([]);
    let b = serde_json::json!({"name": "b", "image": "busybox", "essential": false,
                               "dependsOn": [{"containerName": "a", "condition": "START"}]});
    let cases = [
        (
            "dependsOn unknown",
            base(
                serde_json::json!([c(
                    serde_json::json!({"dependsOn": [{"containerName": "zz", "condition": "START"}]})
                )]),
                none.clone(),
            ),
            "unknown container",
        ),
        (
            "dependsOn cycle",
            base(
                serde_json::json!([
                    c(
                        serde_json::json!({"dependsOn": [{"containerName": "b", "condition": "START"}]})
                    ),
                    b
                ]),
                none.clone(),
            ),
            "cycle",
        ),
        (
            "HEALTHY without healthCheck",
            base(
                serde_json::json!([c(serde_json::json!({})), {"name": "b", "image": "busybox", "dependsOn": [{"containerName": "a", "condition": "HEALTHY"}]}]),
                none.clone(),
            ),
            "no healthCheck",
        ),
        (
            "undeclared volume",
            base(
                serde_json::json!([c(
                    serde_json::json!({"mountPoints": [{"sourceVolume": "v", "containerPath": "/v"}]})
                )]),
                none.clone(),
            ),
            "undeclared volume",
        ),
        (
            "efs volume",
            base(
                serde_json::json!([c(serde_json::json!({}))]),
                serde_json::json!([{"name": "v", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]),
            ),
            "efsVolumeConfiguration",
        ),
        (
            "healthCheck interval",
            base(
                serde_json::json!([c(
                    serde_json::json!({"healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 1}})
                )]),
                none.clone(),
            ),
            "interval",
        ),
        (
            "unknown ulimit",
            base(
                serde_json::json!([c(
                    serde_json::json!({"ulimits": [{"name": "bogus", "softLimit": 1, "hardLimit": 1}]})
                )]),
                none.clone(),
            ),
            "unknown ulimit",
        ),
        (
            "bad condition",
            base(
                serde_json::json!([c(serde_json::json!({})), {"name": "b", "image": "busybox", "dependsOn": [{"containerName": "a", "condition": "SOMETIME"}]}]),
                none.clone(),
            ),
            "dependsOn",
        ),
        (
            "volumesFrom",
            base(
                serde_json::json!([c(
                    serde_json::json!({"volumesFrom": [{"sourceContainer": "x"}]})
                )]),
                none.clone(),
            ),
            "volumesFrom",
        ),
    ];
    for (what, td, needle) in cases {
        let file = write_td(tmp.path(), td);
        let err = cp
            .aws(&["register-task-definition", "--cli-input-json", &file])
            .expect_err(what);
        assert!(
            err.contains("ClientException") && err.contains(needle),
            "{what}: {err}"
        );
    }
    // Nothing was registered.
    let l = cp.aws(&["list-task-definitions"]).unwrap();
    assert_eq!(
        l["taskDefinitionArns"].as_array().map(Vec::len),
        Some(0),
        "{l}"
    );
}
