//! Tags with the real AWS CLI: on create calls, TagResource / UntagResource /
//! ListTagsForResource on clusters, services, task definitions and tasks (kept across
//! a restart), `include: ["TAGS"]`, `propagateTags`, `enableECSManagedTags`, ECS's
//! limits, and another account's ARNs answering as missing ones.

use crate::common::*;
use controlplane::testagent::TestAgent;
use serde_json::Value;
use std::time::Duration;

/// `list-tags-for-resource` as sorted `key=value` strings.
fn tags_of(cp: &ControlPlane, arn: &str) -> Vec<String> {
    let v = cp
        .aws(&["list-tags-for-resource", "--resource-arn", arn])
        .unwrap();
    sorted(&v["tags"])
}

fn sorted(tags: &Value) -> Vec<String> {
    let mut out: Vec<String> = tags
        .as_array()
        .unwrap_or_else(|| panic!("no tags in {tags}"))
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                t["key"].as_str().unwrap(),
                t["value"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_on_every_resource_propagate_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut cp = ControlPlane::start_in(&dir, &["--scheduler-interval-ms", "200"]);
    let hb = Duration::from_millis(300);
    let agent = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 8192, 16384, None, hb)
        .await
        .unwrap();
    let file = scorekeep_file(tmp.path());
    let td = cp
        .aws(&[
            "register-task-definition",
            "--cli-input-json",
            &file,
            "--tags",
            "key=team,value=web",
            "key=from,value=td",
        ])
        .unwrap();
    let td_arn = td["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sorted(&td["tags"]), ["from=td", "team=web"]);
    let cl = cp
        .aws(&[
            "create-cluster",
            "--cluster-name",
            "web",
            "--tags",
            "key=env,value=prod",
        ])
        .unwrap();
    let cl_arn = cl["cluster"]["clusterArn"].as_str().unwrap().to_string();
    assert_eq!(sorted(&cl["cluster"]["tags"]), ["env=prod"]);

    // Shown where asked for only.
    let d = cp.aws(&["describe-clusters", "--clusters", "web"]).unwrap();
    assert!(d["clusters"][0].get("tags").is_none(), "{d}");
    let d = cp
        .aws(&[
            "describe-clusters",
            "--clusters",
            "web",
            "--include",
            "TAGS",
        ])
        .unwrap();
    assert_eq!(sorted(&d["clusters"][0]["tags"]), ["env=prod"]);
    let d = cp
        .aws(&["describe-task-definition", "--task-definition", "scorekeep"])
        .unwrap();
    assert!(d.get("tags").is_none(), "{d}");
    let d = cp
        .aws(&[
            "describe-task-definition",
            "--task-definition",
            "scorekeep",
            "--include",
            "TAGS",
        ])
        .unwrap();
    assert_eq!(sorted(&d["tags"]), ["from=td", "team=web"]);

    // RunTask: given tags win over the task definition's, plus the managed tag.
    let r = cp
        .aws(&[
            "run-task",
            "--cluster",
            "web",
            "--task-definition",
            "scorekeep",
            "--network-configuration",
            NET,
            "--tags",
            "key=team,value=batch",
            "--propagate-tags",
            "TASK_DEFINITION",
            "--enable-ecs-managed-tags",
        ])
        .unwrap();
    let task_arn = r["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert_eq!(
        sorted(&r["tasks"][0]["tags"]),
        ["aws:ecs:clusterName=web", "from=td", "team=batch"]
    );
    let d = cp
        .aws(&[
            "describe-tasks",
            "--cluster",
            "web",
            "--tasks",
            &task_arn,
            "--include",
            "TAGS",
        ])
        .unwrap();
    assert_eq!(
        sorted(&d["tasks"][0]["tags"]),
        sorted(&r["tasks"][0]["tags"])
    );
    let e = cp
        .aws(&[
            "run-task",
            "--cluster",
            "web",
            "--task-definition",
            "scorekeep",
            "--network-configuration",
            NET,
            "--propagate-tags",
            "SERVICE",
        ])
        .unwrap_err();
    assert_eq!(error_type(&e), "InvalidParameterException", "{e}");

    // A service propagating its own tags, with the managed ones.
    let s = cp
        .aws(&[
            "create-service",
            "--cluster",
            "web",
            "--service-name",
            "api",
            "--task-definition",
            "scorekeep",
            "--desired-count",
            "1",
            "--network-configuration",
            NET,
            "--tags",
            "key=svc,value=api",
            "--propagate-tags",
            "SERVICE",
            "--enable-ecs-managed-tags",
        ])
        .unwrap();
    let svc_arn = s["service"]["serviceArn"].as_str().unwrap().to_string();
    assert_eq!(s["service"]["propagateTags"], "SERVICE");
    assert_eq!(s["service"]["enableECSManagedTags"], true);
    assert_eq!(sorted(&s["service"]["tags"]), ["svc=api"]);
    let svc_task = cp.wait_for(30, "a service task", || {
        cp.service_tasks("web", "api").into_iter().next()
    });
    let svc_task_arn = svc_task["taskArn"].as_str().unwrap().to_string();
    assert_eq!(
        tags_of(&cp, &svc_task_arn),
        [
            "aws:ecs:clusterName=web",
            "aws:ecs:serviceName=api",
            "svc=api"
        ]
    );
    let d = cp
        .aws(&["describe-services", "--cluster", "web", "--services", "api"])
        .unwrap();
    assert!(d["services"][0].get("tags").is_none(), "{d}");
    let d = cp
        .aws(&[
            "describe-services",
            "--cluster",
            "web",
            "--services",
            "api",
            "--include",
            "TAGS",
        ])
        .unwrap();
    assert_eq!(sorted(&d["services"][0]["tags"]), ["svc=api"]);

    // Tag and untag every kind of resource.
    for arn in [&cl_arn, &svc_arn, &td_arn, &task_arn] {
        cp.aws(&[
            "tag-resource",
            "--resource-arn",
            arn,
            "--tags",
            "key=owner,value=alice",
            "key=cost,value=42",
        ])
        .unwrap();
        cp.aws(&[
            "untag-resource",
            "--resource-arn",
            arn,
            "--tag-keys",
            "cost",
            "not-there",
        ])
        .unwrap();
        assert!(
            tags_of(&cp, arn).contains(&"owner=alice".to_string()),
            "{arn}"
        );
        assert!(!tags_of(&cp, arn).iter().any(|t| t.starts_with("cost=")));
    }
    // A value replaced, not added.
    cp.aws(&[
        "tag-resource",
        "--resource-arn",
        &cl_arn,
        "--tags",
        "key=owner,value=bob",
    ])
    .unwrap();
    assert_eq!(tags_of(&cp, &cl_arn), ["env=prod", "owner=bob"]);

    // ECS's limits.
    let long_key = format!("key={},value=v", "k".repeat(129));
    let long_value = format!("key=k,value={}", "v".repeat(257));
    for bad in [
        vec![long_key.as_str()],
        vec![long_value.as_str()],
        vec!["key=aws:mine,value=v"],
        vec!["key=AWS:mine,value=v"],
    ] {
        let mut args = vec!["tag-resource", "--resource-arn", &cl_arn, "--tags"];
        args.extend(bad.iter().copied());
        let e = cp.aws(&args).unwrap_err();
        assert_eq!(error_type(&e), "InvalidParameterException", "{bad:?}: {e}");
    }
    let e = cp
        .aws(&[
            "untag-resource",
            "--resource-arn",
            &task_arn,
            "--tag-keys",
            "aws:ecs:clusterName",
        ])
        .unwrap_err();
    assert_eq!(error_type(&e), "InvalidParameterException", "{e}");
    // 50 user tags at most, counted after the merge; the managed ones do not count.
    let many: Vec<String> = (0..47).map(|i| format!("key=k{i},value=v")).collect();
    let mut args = vec![
        "tag-resource",
        "--resource-arn",
        task_arn.as_str(),
        "--tags",
    ];
    args.extend(many.iter().map(String::as_str));
    cp.aws(&args).unwrap();
    assert_eq!(
        tags_of(&cp, &task_arn).len(),
        47 + 3 + 1,
        "47 + from, team, owner + managed"
    );
    let e = cp
        .aws(&[
            "tag-resource",
            "--resource-arn",
            &task_arn,
            "--tags",
            "key=one-more,value=v",
        ])
        .unwrap_err();
    assert_eq!(error_type(&e), "InvalidParameterException", "{e}");

    // Another account's ARNs answer exactly as missing resources do.
    let missing = [
        cl_arn.replace(":cluster/web", ":cluster/nope"),
        svc_arn.replace("/api", "/nope"),
        td_arn.replace(":1", ":99"),
        task_arn.replace("/web/", "/web/0").to_string(),
    ];
    for (own, missing) in [&cl_arn, &svc_arn, &td_arn, &task_arn].iter().zip(&missing) {
        let e_other = cp
            .aws_as(
                KEY2,
                SECRET2,
                &["list-tags-for-resource", "--resource-arn", own],
            )
            .unwrap_err();
        let e_missing = cp
            .aws(&["list-tags-for-resource", "--resource-arn", missing])
            .unwrap_err();
        assert_eq!(error_type(&e_other), error_type(&e_missing), "{own}");
        let want = if own.contains(":cluster/") {
            "ClusterNotFoundException"
        } else {
            "ResourceNotFoundException"
        };
        assert_eq!(error_type(&e_other), want, "{own}: {e_other}");
        let e = cp
            .aws_as(
                KEY2,
                SECRET2,
                &[
                    "tag-resource",
                    "--resource-arn",
                    own,
                    "--tags",
                    "key=x,value=y",
                ],
            )
            .unwrap_err();
        assert_eq!(error_type(&e), want, "{e}");
    }
    let e = cp
        .aws(&[
            "list-tags-for-resource",
            "--resource-arn",
            "arn:aws:ecs:us-east-1:111122223333:container-instance/web/abc",
        ])
        .unwrap_err();
    assert_eq!(error_type(&e), "InvalidParameterException", "{e}");

    // Stored: every tag decodes after a kill -9 and restart.
    let before: Vec<Vec<String>> = [&cl_arn, &svc_arn, &td_arn, &task_arn]
        .iter()
        .map(|a| tags_of(&cp, a))
        .collect();
    cp.kill9();
    drop(agent);
    let cp = ControlPlane::start_in(&dir, &[]);
    let after: Vec<Vec<String>> = [&cl_arn, &svc_arn, &td_arn, &task_arn]
        .iter()
        .map(|a| tags_of(&cp, a))
        .collect();
    assert_eq!(before, after);
}
