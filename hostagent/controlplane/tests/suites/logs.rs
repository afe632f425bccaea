//! Container logs and task metrics: lines sent over the real agent channel come back
//! through the CloudWatch Logs API with the real AWS CLI (`aws logs ...`), only for
//! the task's own account and only from the host that runs the task.

use crate::common::*;
use agent_proto::{AgentMessage, LogLine, LogStream};
use controlplane::testagent::TestAgent;
use serde_json::{json, Value};
use std::time::Duration;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

fn line(task: &str, container: &str, ts: u64, text: &str) -> LogLine {
    LogLine {
        task_arn: task.into(),
        container: container.into(),
        stream: LogStream::Stdout,
        timestamp: ts,
        line: text.into(),
    }
}

fn task_def(dir: &std::path::Path, family: &str, group: &str, create: bool) -> String {
    let mut opts = json!({"awslogs-group": group, "awslogs-region": "us-east-1",
                          "awslogs-stream-prefix": "app"});
    if create {
        opts["awslogs-create-group"] = json!("true");
    }
    let td = json!({
        "family": family, "cpu": "256", "memory": "512", "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "containerDefinitions": [
            {"name": "web", "image": "busybox", "essential": true,
             "logConfiguration": {"logDriver": "awslogs", "options": opts}},
            {"name": "sidecar", "image": "busybox", "essential": false}
        ]
    });
    json_file(dir, &format!("{family}.json"), &td)
}

fn run_task(cp: &ControlPlane, family: &str) -> String {
    let r = cp
        .aws(&[
            "run-task",
            "--cluster",
            "c",
            "--task-definition",
            family,
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            NET,
        ])
        .unwrap();
    let arn = r["tasks"][0]["taskArn"]
        .as_str()
        .expect("taskArn")
        .to_string();
    cp.wait_status("c", &arn, "RUNNING", 20);
    arn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_logs_through_the_aws_cli_only_for_their_account_and_host() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cfg.json");
    let throttle =
        json!({"throttle": {"operations": {"DescribeLogGroups": {"rate": 0.01, "burst": 3}}}});
    std::fs::write(&cfg, throttle.to_string()).unwrap();
    let cp = ControlPlane::start(&["--config", cfg.to_str().unwrap()]);
    let hb = Duration::from_millis(500);
    let a = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 4096, 8192, None, hb)
        .await
        .unwrap();
    cp.aws(&["create-cluster", "--cluster-name", "c"]).unwrap();
    let file = task_def(tmp.path(), "web", "/ecs/web", true);
    let td = cp
        .aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    assert_eq!(
        td["taskDefinition"]["containerDefinitions"][0]["logConfiguration"]["options"]
            ["awslogs-group"],
        "/ecs/web"
    );
    let arn = run_task(&cp, "web");
    let task_id = arn.rsplit('/').next().unwrap().to_string();
    let stream = format!("app/web/{task_id}");
    // The launch the host got carries the awslogs options.
    let spec = a.state.lock().unwrap().running[&arn].clone();
    let lc = spec.containers[0]
        .log_configuration
        .clone()
        .expect("logConfiguration");
    assert_eq!(lc.options["awslogs-stream-prefix"], "app");
    assert_eq!(spec.containers[1].log_configuration, None);

    // A host that does not run the task cannot inject lines.
    let b = TestAgent::start(&cp.addr, TOKEN, "us-east-1b", 4096, 8192, None, hb)
        .await
        .unwrap();
    let t0 = now_ms() - 10_000;
    b.send(AgentMessage::Logs {
        lines: vec![line(&arn, "web", t0, "INJECTED by another host")],
        dropped: 0,
    });
    // The host that runs it ships lines (one batch; one line of a container without
    // awslogs, which is discarded as ECS does).
    let texts = [
        "INFO starting",
        "WARN slow disk",
        "ERROR disk full",
        "INFO request /",
        "ERROR net down",
    ];
    let mut lines: Vec<LogLine> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| line(&arn, "web", t0 + i as u64 * 1000, t))
        .collect();
    lines.insert(2, line(&arn, "sidecar", t0 + 1500, "sidecar output"));
    a.send(AgentMessage::Logs { lines, dropped: 3 });
    cp.wait_for(20, "lines stored", || {
        cp.metrics()
            .filter(|m| m["logEventsStored"] == 5 && m["logLinesRejected"] == 1)
    });
    assert!(
        b.errors()
            .iter()
            .any(|e| e.contains("not assigned to this host")),
        "{:?}",
        b.errors()
    );
    let m = cp.metrics().unwrap();
    assert_eq!(m["logLinesDiscarded"], 1, "{m}");
    assert_eq!(m["logLinesDroppedByAgents"], 3, "{m}");

    // get-log-events: all of them in order with their timestamps.
    let g = logs(
        &cp,
        &[
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            &stream,
            "--start-from-head",
        ],
    )
    .unwrap();
    assert_eq!(messages(&g), texts);
    let ts: Vec<u64> = g["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["timestamp"].as_u64().unwrap())
        .collect();
    assert_eq!(ts, (0..5).map(|i| t0 + i * 1000).collect::<Vec<_>>());
    assert!(g["events"][0]["ingestionTime"].as_u64().unwrap() >= t0);
    // Without --start-from-head and a limit: the newest ones; the backward token
    // pages towards the older ones, the forward token is at the end.
    let last = logs(
        &cp,
        &[
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            &stream,
            "--limit",
            "2",
        ],
    )
    .unwrap();
    assert_eq!(messages(&last), ["INFO request /", "ERROR net down"]);
    let back = last["nextBackwardToken"].as_str().unwrap();
    let older = logs(
        &cp,
        &[
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            &stream,
            "--limit",
            "2",
            "--next-token",
            back,
        ],
    )
    .unwrap();
    assert_eq!(messages(&older), ["WARN slow disk", "ERROR disk full"]);
    let fwd = last["nextForwardToken"].as_str().unwrap();
    let tail = logs(
        &cp,
        &[
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            &stream,
            "--next-token",
            fwd,
        ],
    )
    .unwrap();
    assert_eq!(messages(&tail), Vec::<String>::new());
    assert_eq!(tail["nextForwardToken"], fwd, "end of stream: same token");
    // startTime inclusive, endTime exclusive.
    let (s, e) = ((t0 + 1000).to_string(), (t0 + 3000).to_string());
    let w = logs(
        &cp,
        &[
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            &stream,
            "--start-from-head",
            "--start-time",
            &s,
            "--end-time",
            &e,
        ],
    )
    .unwrap();
    assert_eq!(messages(&w), ["WARN slow disk", "ERROR disk full"]);

    // filter-log-events: terms, OR terms, exclusions, stream prefix, pagination.
    let f = logs(
        &cp,
        &[
            "filter-log-events",
            "--log-group-name",
            "/ecs/web",
            "--filter-pattern",
            "ERROR",
        ],
    )
    .unwrap();
    assert_eq!(messages(&f), ["ERROR disk full", "ERROR net down"]);
    assert_eq!(f["events"][0]["logStreamName"], stream.as_str());
    let f = logs(
        &cp,
        &[
            "filter-log-events",
            "--log-group-name",
            "/ecs/web",
            "--filter-pattern",
            "?WARN ?ERROR -net",
            "--log-stream-name-prefix",
            "app/web/",
        ],
    )
    .unwrap();
    assert_eq!(messages(&f), ["WARN slow disk", "ERROR disk full"]);
    let f = logs(
        &cp,
        &[
            "filter-log-events",
            "--log-group-name",
            "/ecs/web",
            "--page-size",
            "2",
        ],
    )
    .unwrap();
    assert_eq!(messages(&f), texts, "the CLI follows nextToken");
    let f = logs(
        &cp,
        &[
            "filter-log-events",
            "--log-group-name",
            "/ecs/web",
            "--filter-pattern",
            "{ $.level = \"x\" }",
        ],
    )
    .unwrap_err();
    assert_eq!(error_type(&f), "InvalidParameterException", "{f}");

    // `aws logs tail` (FilterLogEvents underneath) prints them with their stream.
    let out = std::process::Command::new(AWS)
        .args(["--endpoint-url", &cp.endpoint(), "--region", "us-east-1"])
        .args(["logs", "tail", "/ecs/web", "--since", "1h"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tailed: Vec<&str> = text.lines().collect();
    assert_eq!(tailed.len(), 5, "{text}");
    assert!(
        tailed[2].contains(&stream) && tailed[2].ends_with("ERROR disk full"),
        "{text}"
    );

    // describe-log-groups / describe-log-streams.
    let d = logs(&cp, &["describe-log-groups"]).unwrap();
    assert_eq!(d["logGroups"][0]["logGroupName"], "/ecs/web", "{d}");
    assert_eq!(
        d["logGroups"][0]["arn"],
        format!("arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/ecs/web:*")
    );
    let d = logs(
        &cp,
        &["describe-log-streams", "--log-group-name", "/ecs/web"],
    )
    .unwrap();
    let st = &d["logStreams"][0];
    assert_eq!(st["logStreamName"], stream.as_str(), "{d}");
    assert_eq!(st["firstEventTimestamp"], t0);
    assert_eq!(st["lastEventTimestamp"], t0 + 4000);

    // Errors with CloudWatch's shapes.
    let e = logs(&cp, &["create-log-group", "--log-group-name", "/ecs/web"]).unwrap_err();
    assert_eq!(error_type(&e), "ResourceAlreadyExistsException", "{e}");
    let e = logs(
        &cp,
        &[
            "get-log-events",
            "--log-group-name",
            "/nope",
            "--log-stream-name",
            &stream,
        ],
    )
    .unwrap_err();
    assert_eq!(error_type(&e), "ResourceNotFoundException", "{e}");
    let e = logs(
        &cp,
        &[
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            "nope",
        ],
    )
    .unwrap_err();
    assert_eq!(error_type(&e), "ResourceNotFoundException", "{e}");
    assert!(e.contains("log stream does not exist"), "{e}");
    let e = logs(&cp, &["create-log-group", "--log-group-name", "bad name"]).unwrap_err();
    assert_eq!(error_type(&e), "InvalidParameterException", "{e}");

    // Another account's keys see nothing of it; its own group of the same name is
    // its own.
    let e = logs2(
        &cp,
        &[
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            &stream,
        ],
    )
    .unwrap_err();
    assert_eq!(error_type(&e), "ResourceNotFoundException", "{e}");
    let e = logs2(&cp, &["filter-log-events", "--log-group-name", "/ecs/web"]).unwrap_err();
    assert_eq!(error_type(&e), "ResourceNotFoundException", "{e}");
    let d2 = logs2(&cp, &["describe-log-groups"]).unwrap();
    assert_eq!(d2["logGroups"], json!([]), "{d2}");
    logs2(&cp, &["create-log-group", "--log-group-name", "/ecs/web"]).unwrap();
    let f = logs2(&cp, &["filter-log-events", "--log-group-name", "/ecs/web"]).unwrap();
    assert_eq!(messages(&f), Vec::<String>::new());

    // Throttled per account and operation, as the ECS front end: 3 calls of
    // DescribeLogGroups were allowed, the next one is not; the other account's are.
    for _ in 0..2 {
        logs(&cp, &["describe-log-groups"]).unwrap();
    }
    let e = logs(&cp, &["describe-log-groups"]).unwrap_err();
    assert_eq!(error_type(&e), "ThrottlingException", "{e}");
    logs2(&cp, &["describe-log-groups"]).unwrap();

    // Without awslogs-create-group the group must exist: lines before
    // create-log-group are refused, lines after it are kept.
    let file = task_def(tmp.path(), "quiet", "/ecs/quiet", false);
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    let q = run_task(&cp, "quiet");
    assert!(a.running().contains(&q), "placed on host a");
    a.send(AgentMessage::Logs {
        lines: vec![line(&q, "web", now_ms(), "too early")],
        dropped: 0,
    });
    cp.wait_for(20, "line refused", || {
        cp.metrics().filter(|m| m["logLinesRejected"] == 2)
    });
    logs(&cp, &["create-log-group", "--log-group-name", "/ecs/quiet"]).unwrap();
    a.send(AgentMessage::Logs {
        lines: vec![line(&q, "web", now_ms(), "kept")],
        dropped: 0,
    });
    let qs = format!("app/web/{}", q.rsplit('/').next().unwrap());
    let g = cp.wait_for(20, "line kept", || {
        logs(
            &cp,
            &[
                "get-log-events",
                "--log-group-name",
                "/ecs/quiet",
                "--log-stream-name",
                &qs,
            ],
        )
        .ok()
    });
    assert_eq!(messages(&g), ["kept"]);

    // A registration with awslogs but no group is refused.
    let bad = json!({"family": "nogroup", "cpu": "256", "memory": "512",
        "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "containerDefinitions": [{"name": "web", "image": "busybox",
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-stream-prefix": "p"}}}]});
    let f = json_file(tmp.path(), "nogroup.json", &bad);
    let e = cp
        .aws(&["register-task-definition", "--cli-input-json", &f])
        .unwrap_err();
    assert_eq!(error_type(&e), "ClientException", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_metrics_show_as_task_attributes_only_from_the_tasks_host() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&[]);
    let hb = Duration::from_millis(500);
    let a = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 4096, 8192, None, hb)
        .await
        .unwrap();
    cp.aws(&["create-cluster", "--cluster-name", "c"]).unwrap();
    let file = task_def(tmp.path(), "web", "/ecs/web", true);
    cp.aws(&["register-task-definition", "--cli-input-json", &file])
        .unwrap();
    let arn = run_task(&cp, "web");
    assert!(cp.task("c", &arn).get("attributes").is_none());
    let b = TestAgent::start(&cp.addr, TOKEN, "us-east-1b", 4096, 8192, None, hb)
        .await
        .unwrap();
    let sample = |cpu: f64| AgentMessage::TaskMetrics {
        task_arn: arn.clone(),
        cpu_utilization: cpu,
        memory_utilization: 41.5,
        timestamp: now_ms(),
    };
    b.send(sample(99.0));
    a.send(sample(12.25));
    a.send(AgentMessage::TaskMetrics {
        task_arn: arn.clone(),
        cpu_utilization: 5000.0,
        memory_utilization: 1.0,
        timestamp: 0,
    });
    cp.wait_for(20, "metrics attributes", || {
        let t = cp.task_fast("c", &arn);
        t.get("attributes").is_some().then_some(())
    });
    let t = cp.task("c", &arn);
    let attr = |n: &str| {
        t["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == n)
            .map(|a| a["value"].as_str().unwrap().to_string())
    };
    assert_eq!(
        attr("ecs.task.cpu-utilization").as_deref(),
        Some("12.25"),
        "{t}"
    );
    assert_eq!(
        attr("ecs.task.memory-utilization").as_deref(),
        Some("41.50")
    );
    assert!(
        b.errors().iter().any(|e| e.contains("not assigned")),
        "{:?}",
        b.errors()
    );
    cp.wait_for(10, "out-of-range sample refused", || {
        a.errors()
            .iter()
            .any(|e| e.contains("out of range"))
            .then_some(())
    });
    // Once stopped, the sample is gone.
    cp.aws(&["stop-task", "--cluster", "c", "--task", &arn])
        .unwrap();
    let t = cp.wait_status("c", &arn, "STOPPED", 20);
    assert!(t.get("attributes").is_none(), "{t}");
}
