//! The scorekeep walk-through with the real AWS CLI and simulated hosts (real
//! clients of the agent channel).

use crate::common::*;
use controlplane::testagent::TestAgent;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scorekeep_register_run_describe_stop() {
    let cp = ControlPlane::start(&["--heartbeat-timeout-ms", "30000"]);
    let tmp = tempfile::tempdir().unwrap();
    let hb = Duration::from_millis(500);
    let a = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 4096, 8192, None, hb)
        .await
        .unwrap();
    let b = TestAgent::start(&cp.addr, TOKEN, "us-east-1b", 4096, 8192, None, hb)
        .await
        .unwrap();

    // Register twice: revisions 1 and 2 of an immutable family.
    let file = scorekeep_file(tmp.path());
    let r1 = cp
        .aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    let td = &r1["taskDefinition"];
    assert_eq!(
        td["taskDefinitionArn"],
        format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/scorekeep:1")
    );
    assert_eq!(td["cpu"], "1024");
    assert_eq!(td["memory"], "2048");
    assert_eq!(td["networkMode"], "awsvpc");
    assert_eq!(td["status"], "ACTIVE");
    assert_eq!(
        td["containerDefinitions"][0]["portMappings"][0]["hostPort"],
        8080
    );
    assert_eq!(
        td["containerDefinitions"][1]["logConfiguration"]["logDriver"],
        "awslogs"
    );
    assert_eq!(
        td["executionRoleArn"],
        "arn:aws:iam::111122223333:role/ecsTaskExecutionRole"
    );
    let r2 = cp
        .aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    assert_eq!(r2["taskDefinition"]["revision"], 2);
    let d = cp
        .aws(&["describe-task-definition", "--task-definition", "scorekeep"])
        .unwrap();
    assert_eq!(
        d["taskDefinition"]["revision"], 2,
        "bare family means the latest ACTIVE revision"
    );
    let d1 = cp
        .aws(&[
            "describe-task-definition",
            "--task-definition",
            "scorekeep:1",
        ])
        .unwrap();
    assert_eq!(
        d1["taskDefinition"]["containerDefinitions"], td["containerDefinitions"],
        "revision 1 unchanged"
    );
    let l = cp
        .aws(&[
            "list-task-definitions",
            "--family-prefix",
            "scorekeep",
            "--sort",
            "DESC",
        ])
        .unwrap();
    assert_eq!(l["taskDefinitionArns"].as_array().unwrap().len(), 2);
    assert!(l["taskDefinitionArns"][0]
        .as_str()
        .unwrap()
        .ends_with("scorekeep:2"));
    let f = cp.aws(&["list-task-definition-families"]).unwrap();
    assert_eq!(f["families"], serde_json::json!(["scorekeep"]));

    // Cluster and tasks.
    let c = cp
        .aws(&["create-cluster", "--cluster-name", "scorekeep-cluster"])
        .unwrap();
    assert_eq!(
        c["cluster"]["clusterArn"],
        format!("arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/scorekeep-cluster")
    );
    let run = cp
        .aws(&[
            "run-task", "--cluster", "scorekeep-cluster", "--task-definition", "scorekeep:1",
            "--launch-type", "FARGATE", "--count", "2", "--network-configuration", NET,
            "--overrides", r#"{"containerOverrides":[{"name":"scorekeep-api","command":["serve","--port","5000"],"environment":[{"name":"MODE","value":"test"}]}]}"#,
        ])
        .unwrap();
    assert_eq!(run["failures"].as_array().unwrap().len(), 0, "{run}");
    let tasks = run["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    let arn = tasks[0]["taskArn"].as_str().unwrap().to_string();
    assert!(
        arn.starts_with(&format!(
            "arn:aws:ecs:us-east-1:{ACCOUNT}:task/scorekeep-cluster/"
        )),
        "{arn}"
    );
    assert_eq!(tasks[0]["lastStatus"], "PROVISIONING");
    assert_eq!(tasks[0]["desiredStatus"], "RUNNING");
    assert_eq!(tasks[0]["launchType"], "FARGATE");
    assert_eq!(tasks[0]["group"], "family:scorekeep");

    // The hosts report PENDING then RUNNING with the ENI's address.
    let t = cp.wait_status("scorekeep-cluster", &arn, "RUNNING", 20);
    assert!(
        t["startedAt"].is_string() && t["pullStartedAt"].is_string() && t["createdAt"].is_string()
    );
    assert_eq!(t["connectivity"], "CONNECTED");
    assert!(
        t["containers"][0]["networkInterfaces"][0]["privateIpv4Address"]
            .as_str()
            .unwrap()
            .starts_with("10.0.")
    );
    assert_eq!(t["containers"][1]["lastStatus"], "RUNNING");
    let details = t["attachments"][0]["details"].as_array().unwrap();
    assert!(details
        .iter()
        .any(|d| d["name"] == "subnetId" && d["value"] == "subnet-0a1b2c3d"));
    // The launch the host got carries the overrides merged into the task definition.
    let host_of = |x: &TestAgent| x.running().contains(&arn);
    let holder = if host_of(&a) { &a } else { &b };
    let spec = holder.state.lock().unwrap().running[&arn].clone();
    let api = spec
        .containers
        .iter()
        .find(|c| c.name == "scorekeep-api")
        .unwrap();
    assert_eq!(api.command, vec!["serve", "--port", "5000"]);
    assert!(api
        .environment
        .iter()
        .any(|e| e.name == "MODE" && e.value == "test"));
    assert!(api.environment.iter().any(|e| e.name == "AWS_REGION"));
    assert_eq!((spec.cpu, spec.memory), (1024, 2048));

    cp.wait_for(20, "both tasks running", || {
        let cl = cp
            .call(
                "DescribeClusters",
                serde_json::json!({"clusters": ["scorekeep-cluster"]}),
            )
            .unwrap();
        (cl["clusters"][0]["runningTasksCount"] == 2).then_some(())
    });
    let cl = cp
        .aws(&["describe-clusters", "--clusters", "scorekeep-cluster"])
        .unwrap();
    assert_eq!(cl["clusters"][0]["runningTasksCount"], 2);
    assert_eq!(cl["clusters"][0]["status"], "ACTIVE");
    let lt = cp
        .aws(&["list-tasks", "--cluster", "scorekeep-cluster"])
        .unwrap();
    assert_eq!(lt["taskArns"].as_array().unwrap().len(), 2);

    // Container instances: the hosts running this cluster's tasks.
    let ci = cp
        .aws(&["list-container-instances", "--cluster", "scorekeep-cluster"])
        .unwrap();
    let cis = ci["containerInstanceArns"].as_array().unwrap();
    assert!(!cis.is_empty());
    let dci = cp
        .aws(&[
            "describe-container-instances",
            "--cluster",
            "scorekeep-cluster",
            "--container-instances",
            cis[0].as_str().unwrap(),
        ])
        .unwrap();
    assert_eq!(dci["containerInstances"][0]["agentConnected"], true);
    assert_eq!(
        dci["containerInstances"][0]["registeredResources"][0]["integerValue"],
        4096
    );

    // Stop: desiredStatus STOPPED at once, the host stops it, exit codes recorded.
    let s = cp
        .aws(&[
            "stop-task",
            "--cluster",
            "scorekeep-cluster",
            "--task",
            &arn,
            "--reason",
            "scaling down",
        ])
        .unwrap();
    assert_eq!(s["task"]["desiredStatus"], "STOPPED");
    assert_eq!(s["task"]["stopCode"], "UserInitiated");
    let t = cp.wait_status("scorekeep-cluster", &arn, "STOPPED", 20);
    assert_eq!(t["stoppedReason"], "scaling down");
    assert_eq!(t["containers"][0]["exitCode"], 143);
    assert!(t["stoppedAt"].is_string() && t["stoppingAt"].is_string());
    assert!(!a.running().contains(&arn) && !b.running().contains(&arn));
    let stopped = cp
        .aws(&[
            "list-tasks",
            "--cluster",
            "scorekeep-cluster",
            "--desired-status",
            "STOPPED",
        ])
        .unwrap();
    assert_eq!(stopped["taskArns"], serde_json::json!([arn]));

    // The other task's essential container exits on its own.
    let other = tasks[1]["taskArn"].as_str().unwrap().to_string();
    let holder = if a.running().contains(&other) { &a } else { &b };
    holder.exit_task(&other, 3);
    let t = cp.wait_status("scorekeep-cluster", &other, "STOPPED", 20);
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_eq!(t["containers"][1]["exitCode"], 3);

    // With nothing running, the cluster can go; the task definition too.
    let del = cp
        .aws(&["delete-cluster", "--cluster", "scorekeep-cluster"])
        .unwrap();
    assert_eq!(del["cluster"]["status"], "INACTIVE");
    let dr = cp
        .aws(&[
            "deregister-task-definition",
            "--task-definition",
            "scorekeep:1",
        ])
        .unwrap();
    assert_eq!(dr["taskDefinition"]["status"], "INACTIVE");
    let inactive = cp
        .aws(&["list-task-definitions", "--status", "INACTIVE"])
        .unwrap();
    assert_eq!(inactive["taskDefinitionArns"].as_array().unwrap().len(), 1);
}
