//! DeleteTaskDefinitions, ListTasks of a service the cluster never had, and
//! the message of operations not served (AWS CLI).

use crate::common::*;
use serde_json::json;

/// Debian's botocore (1.29) and AWS CLI (2.9) predate DeleteTaskDefinitions: the
/// call itself goes through the signing client, the rest through boto3.
const AFTER: &str = r#"
import json, os, boto3, botocore.config
cfg = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
ecs = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1", config=cfg)
out = {
  "described": ecs.describe_task_definition(taskDefinition="app:1")["taskDefinition"]["status"],
  "listed": [a.split("/")[-1] for a in ecs.list_task_definitions(status="DELETE_IN_PROGRESS")["taskDefinitionArns"]],
  "inactive": ecs.list_task_definitions(status="INACTIVE")["taskDefinitionArns"],
}
for name, f in {
  "run deleted": lambda: ecs.run_task(cluster="default", taskDefinition="app:1"),
  "deregister deleted": lambda: ecs.deregister_task_definition(taskDefinition="app:1"),
  "list tasks of no service": lambda: ecs.list_tasks(cluster="default", serviceName="ghost"),
}.items():
    try:
        f(); out[name] = "OK"
    except botocore.exceptions.ClientError as e:
        out[name] = e.response["Error"]["Code"]
print(json.dumps(out))
"#;

#[test]
fn delete_task_definitions_only_takes_inactive_revisions() {
    let cp = ControlPlane::start(&[]);
    cp.aws(&["create-cluster"]).unwrap();
    let c = r#"[{"name": "a", "image": "img", "memoryReservation": 128}]"#;
    for _ in 0..3 {
        cp.aws(&[
            "register-task-definition",
            "--family",
            "app",
            "--cpu",
            "256",
            "--memory",
            "512",
            "--container-definitions",
            c,
        ])
        .unwrap();
    }
    cp.aws(&["deregister-task-definition", "--task-definition", "app:1"])
        .unwrap();
    let r = cp
        .call(
            "DeleteTaskDefinitions",
            json!({"taskDefinitions": ["app:1", "app:2", "app:9", "app"]}),
        )
        .unwrap();
    let deleted = r["taskDefinitions"].as_array().unwrap();
    assert_eq!(deleted.len(), 1, "{r}");
    assert!(deleted[0]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .ends_with("task-definition/app:1"));
    assert_eq!(deleted[0]["status"], "DELETE_IN_PROGRESS");
    let failed = r["failures"].as_array().unwrap();
    assert_eq!(failed.len(), 3, "{r}");
    assert!(failed[0]["arn"].as_str().unwrap().ends_with("app:2"));
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("ACTIVE"),
        "{r}"
    );
    for bad in [
        json!([]),
        json!((1..12).map(|i| format!("app:{i}")).collect::<Vec<_>>()),
    ] {
        let e = cp
            .call("DeleteTaskDefinitions", json!({ "taskDefinitions": bad }))
            .unwrap_err();
        assert_eq!(e.0, "InvalidParameterException", "{bad}");
    }
    let (ok, out) = cp.boto3(KEY, SECRET, AFTER);
    assert!(ok, "{out}");
    let got: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(got["described"], "DELETE_IN_PROGRESS", "{got}");
    assert_eq!(got["listed"], json!(["app:1"]));
    assert_eq!(got["inactive"], json!([]));
    assert_eq!(got["run deleted"], "ClientException");
    assert_eq!(got["deregister deleted"], "ClientException");
    assert_eq!(got["list tasks of no service"], "ServiceNotFoundException");
}

#[test]
fn operations_not_served_are_named() {
    let cp = ControlPlane::start(&[]);
    let e = cp
        .aws(&["discover-poll-endpoint", "--cluster", "default"])
        .unwrap_err();
    assert_eq!(error_type(&e), "UnknownOperationException", "{e}");
    assert!(
        e.contains("DiscoverPollEndpoint is not implemented"),
        "the message names it: {e}"
    );
    let e = cp.call("LaunchRocket", json!({})).unwrap_err();
    assert_eq!(e.0, "UnknownOperationException");
    assert_eq!(e.1, "Unknown operation LaunchRocket.");
    let e = cp
        .aws_service(
            KEY,
            SECRET,
            "logs",
            &["describe-metric-filters", "--log-group-name", "g"],
        )
        .unwrap_err();
    assert_eq!(error_type(&e), "UnknownOperationException", "{e}");
    assert!(e.contains("DescribeMetricFilters"), "{e}");
}
