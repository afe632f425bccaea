//! Bad inputs of every operation get ECS errors (boto3 for the table, the AWS CLI
//! for a sample), and unsigned or badly signed calls are refused.

use crate::common::*;

const BAD_CALLS: &str = r#"
import json, os, boto3, botocore.config
cfg = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
ecs = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1", config=cfg)
net = {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"], "securityGroups": ["sg-01"]}}
c = lambda n, m: {"name": n, "image": "img", "memoryReservation": m}
good = dict(family="ok", cpu="256", memory="512", containerDefinitions=[c("a", 128)])
ecs.register_task_definition(**good)
ecs.create_cluster(clusterName="c1")
cases = {
 "RegisterTaskDefinition bad size": lambda: ecs.register_task_definition(**dict(good, cpu="256", memory="4096")),
 "RegisterTaskDefinition no cpu": lambda: ecs.register_task_definition(family="x", memory="512", containerDefinitions=[c("a", 1)]),
 "RegisterTaskDefinition 11 containers": lambda: ecs.register_task_definition(**dict(good, containerDefinitions=[c("c%d" % i, 6) for i in range(11)])),
 "RegisterTaskDefinition container cpu > task": lambda: ecs.register_task_definition(**dict(good, containerDefinitions=[dict(c("a", 64), cpu=512)])),
 "RegisterTaskDefinition reservations > task": lambda: ecs.register_task_definition(**dict(good, containerDefinitions=[c("a", 300), c("b", 300)])),
 "RegisterTaskDefinition bad family": lambda: ecs.register_task_definition(**dict(good, family="bad name!")),
 "RegisterTaskDefinition bridge": lambda: ecs.register_task_definition(**dict(good, networkMode="bridge")),
 "RegisterTaskDefinition no image": lambda: ecs.register_task_definition(**dict(good, containerDefinitions=[{"name": "a", "image": ""}])),
 "RegisterTaskDefinition host port": lambda: ecs.register_task_definition(**dict(good, containerDefinitions=[dict(c("a", 64), portMappings=[{"containerPort": 80, "hostPort": 81}])])),
 "DescribeTaskDefinition missing": lambda: ecs.describe_task_definition(taskDefinition="nope:3"),
 "ListTaskDefinitions bad status": lambda: ecs.list_task_definitions(status="GONE"),
 "ListTaskDefinitions bad maxResults": lambda: ecs.list_task_definitions(maxResults=1000),
 "ListTaskDefinitionFamilies bad token": lambda: ecs.list_task_definition_families(nextToken="zz"),
 "DeregisterTaskDefinition no revision": lambda: ecs.deregister_task_definition(taskDefinition="ok"),
 "DeregisterTaskDefinition missing": lambda: ecs.deregister_task_definition(taskDefinition="ok:9"),
 "CreateCluster bad name": lambda: ecs.create_cluster(clusterName="a/b"),
 "DescribeClusters too many": lambda: ecs.describe_clusters(clusters=["c%d" % i for i in range(101)]),
 "ListClusters bad maxResults": lambda: ecs.list_clusters(maxResults=0),
 "DeleteCluster missing": lambda: ecs.delete_cluster(cluster="nope"),
 "RunTask no cluster": lambda: ecs.run_task(cluster="nope", taskDefinition="ok", networkConfiguration=net),
 "RunTask count": lambda: ecs.run_task(cluster="c1", taskDefinition="ok", count=11, networkConfiguration=net),
 "RunTask EC2": lambda: ecs.run_task(cluster="c1", taskDefinition="ok", launchType="EC2", networkConfiguration=net),
 "RunTask no network": lambda: ecs.run_task(cluster="c1", taskDefinition="ok"),
 "RunTask bad subnet": lambda: ecs.run_task(cluster="c1", taskDefinition="ok", networkConfiguration={"awsvpcConfiguration": {"subnets": ["vpc-1"]}}),
 "RunTask unknown td": lambda: ecs.run_task(cluster="c1", taskDefinition="nope", networkConfiguration=net),
 "RunTask bad override": lambda: ecs.run_task(cluster="c1", taskDefinition="ok", networkConfiguration=net, overrides={"containerOverrides": [{"name": "zz", "command": ["x"]}]}),
 "StopTask missing": lambda: ecs.stop_task(cluster="c1", task="0123456789abcdef0123456789abcdef"),
 "DescribeTasks empty": lambda: ecs.describe_tasks(cluster="c1", tasks=[]),
 "ListTasks bad status": lambda: ecs.list_tasks(cluster="c1", desiredStatus="ALIVE"),
 "CreateService no count": lambda: ecs.create_service(cluster="c1", serviceName="s", taskDefinition="ok", networkConfiguration=net),
 "CreateService bad percent": lambda: ecs.create_service(cluster="c1", serviceName="s", taskDefinition="ok", desiredCount=1, networkConfiguration=net, deploymentConfiguration={"maximumPercent": 100, "minimumHealthyPercent": 100}),
 "CreateService DAEMON": lambda: ecs.create_service(cluster="c1", serviceName="s", taskDefinition="ok", desiredCount=1, networkConfiguration=net, schedulingStrategy="DAEMON"),
 "UpdateService missing": lambda: ecs.update_service(cluster="c1", service="nope", desiredCount=1),
 "DescribeServices empty": lambda: ecs.describe_services(cluster="c1", services=[]),
 "ListServices no cluster": lambda: ecs.list_services(cluster="nope"),
 "DeleteService missing": lambda: ecs.delete_service(cluster="c1", service="nope"),
 "ListContainerInstances bad status": lambda: ecs.list_container_instances(cluster="c1", status="WHATEVER"),
 "DescribeContainerInstances empty": lambda: ecs.describe_container_instances(cluster="c1", containerInstances=[]),
}
out = {}
for name, f in cases.items():
    try:
        f()
        out[name] = "OK"
    except botocore.exceptions.ClientError as e:
        out[name] = e.response["Error"]["Code"]
# An idempotency violation needs a first service.
ecs.create_service(cluster="c1", serviceName="dup", taskDefinition="ok", desiredCount=0, networkConfiguration=net)
try:
    ecs.create_service(cluster="c1", serviceName="dup", taskDefinition="ok", desiredCount=1, networkConfiguration=net)
    out["CreateService twice"] = "OK"
except botocore.exceptions.ClientError as e:
    out["CreateService twice"] = e.response["Error"]["Code"] + ": " + e.response["Error"]["Message"]
try:
    ecs.delete_cluster(cluster="c1")
    out["DeleteCluster with service"] = "OK"
except botocore.exceptions.ClientError as e:
    out["DeleteCluster with service"] = e.response["Error"]["Code"]
print(json.dumps(out))
"#;

#[test]
fn bad_inputs_of_every_operation_get_ecs_errors() {
    let cp = ControlPlane::start(&[]);
    let (ok, out) = cp.boto3(KEY, SECRET, BAD_CALLS);
    assert!(ok, "{out}");
    let got: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let expect = |case: &str, kind: &str| {
        let g = got[case]
            .as_str()
            .unwrap_or_else(|| panic!("no result for {case}: {got}"));
        assert!(g.starts_with(kind), "{case}: expected {kind}, got {g}");
    };
    for case in [
        "RegisterTaskDefinition bad size",
        "RegisterTaskDefinition no cpu",
        "RegisterTaskDefinition 11 containers",
        "RegisterTaskDefinition container cpu > task",
        "RegisterTaskDefinition reservations > task",
        "RegisterTaskDefinition bad family",
        "RegisterTaskDefinition bridge",
        "RegisterTaskDefinition no image",
        "RegisterTaskDefinition host port",
        "DescribeTaskDefinition missing",
        "DeregisterTaskDefinition no revision",
        "DeregisterTaskDefinition missing",
        "RunTask unknown td",
    ] {
        expect(case, "ClientException");
    }
    for case in [
        "ListTaskDefinitions bad status",
        "ListTaskDefinitions bad maxResults",
        "ListTaskDefinitionFamilies bad token",
        "CreateCluster bad name",
        "DescribeClusters too many",
        "ListClusters bad maxResults",
        "RunTask count",
        "RunTask EC2",
        "RunTask no network",
        "RunTask bad subnet",
        "RunTask bad override",
        "StopTask missing",
        "DescribeTasks empty",
        "ListTasks bad status",
        "CreateService no count",
        "CreateService bad percent",
        "CreateService DAEMON",
        "DescribeServices empty",
        "ListContainerInstances bad status",
        "DescribeContainerInstances empty",
    ] {
        expect(case, "InvalidParameterException");
    }
    for case in [
        "DeleteCluster missing",
        "RunTask no cluster",
        "ListServices no cluster",
    ] {
        expect(case, "ClusterNotFoundException");
    }
    expect("UpdateService missing", "ServiceNotFoundException");
    expect("DeleteService missing", "ServiceNotFoundException");
    expect(
        "CreateService twice",
        "InvalidParameterException: Creation of service was not idempotent.",
    );
    expect(
        "DeleteCluster with service",
        "ClusterContainsServicesException",
    );

    // The same shapes through the AWS CLI.
    let e = cp
        .aws(&["describe-task-definition", "--task-definition", "nope"])
        .unwrap_err();
    assert_eq!(error_type(&e), "ClientException", "{e}");
    let e = cp
        .aws(&[
            "run-task",
            "--cluster",
            "c1",
            "--task-definition",
            "ok",
            "--count",
            "0",
            "--network-configuration",
            NET,
        ])
        .unwrap_err();
    assert_eq!(error_type(&e), "InvalidParameterException", "{e}");
}

#[test]
fn unsigned_and_badly_signed_calls_are_refused() {
    let cp = ControlPlane::start(&[]);
    let e = cp.aws(&["list-clusters", "--no-sign-request"]).unwrap_err();
    assert_eq!(error_type(&e), "MissingAuthenticationTokenException", "{e}");
    let e = cp
        .aws_as(KEY, "not-the-secret", &["list-clusters"])
        .unwrap_err();
    assert_eq!(error_type(&e), "InvalidSignatureException", "{e}");
    let e = cp
        .aws_as("AKIDUNKNOWN", SECRET, &["list-clusters"])
        .unwrap_err();
    assert_eq!(error_type(&e), "UnrecognizedClientException", "{e}");
    // Signed for another region: the credential scope is checked.
    let (ok, out) = cp.boto3(
        KEY,
        SECRET,
        r#"
import os, boto3, botocore
ecs = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="eu-west-1")
try:
    ecs.list_clusters(); print("OK")
except botocore.exceptions.ClientError as e:
    print(e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
"#,
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "InvalidSignatureException 403");
    // A good signature works, and the account comes from the key.
    let v = cp
        .aws(&["create-cluster", "--cluster-name", "mine"])
        .unwrap();
    assert_eq!(
        v["cluster"]["clusterArn"],
        format!("arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/mine")
    );
    let other = cp.aws_as(KEY2, SECRET2, &["list-clusters"]).unwrap();
    assert_eq!(
        other["clusterArns"],
        serde_json::json!([]),
        "accounts do not see each other"
    );
    // Unknown operation.
    let e = cp.call("LaunchRocket", serde_json::json!({})).unwrap_err();
    assert_eq!(e.0, "UnknownOperationException");
}
