//! Capacity providers with the real AWS CLI: the built-in FARGATE and FARGATE_SPOT,
//! a cluster's providers and default strategy, RunTask and CreateService on a
//! strategy (base, then weight), each task showing its provider, and the refusals.

use crate::common::*;
use controlplane::testagent::TestAgent;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

fn per_provider(tasks: &[Value]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for t in tasks {
        let p = t["capacityProviderName"]
            .as_str()
            .unwrap_or_else(|| panic!("no capacityProviderName: {t}"));
        *m.entry(p.to_string()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_place_by_base_then_weight() {
    let cp = ControlPlane::start(&["--scheduler-interval-ms", "200"]);
    let hb = Duration::from_millis(300);
    let _a = TestAgent::start(&cp.addr, TOKEN, "us-east-1a", 8192, 16384, None, hb)
        .await
        .unwrap();
    cp.aws(&[
        "register-task-definition",
        "--family",
        "small",
        "--cpu",
        "256",
        "--memory",
        "512",
        "--container-definitions",
        r#"[{"name": "a", "image": "img", "memoryReservation": 128}]"#,
    ])
    .unwrap();

    // The built-in providers.
    let d = cp.aws(&["describe-capacity-providers"]).unwrap();
    let names: Vec<&str> = d["capacityProviders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["FARGATE", "FARGATE_SPOT"]);
    assert_eq!(
        d["capacityProviders"][1]["capacityProviderArn"],
        format!("arn:aws:ecs:us-east-1:{ACCOUNT}:capacity-provider/FARGATE_SPOT")
    );
    let d = cp
        .aws(&[
            "describe-capacity-providers",
            "--capacity-providers",
            "FARGATE_SPOT",
            "mine",
        ])
        .unwrap();
    assert_eq!(d["capacityProviders"].as_array().unwrap().len(), 1);
    assert_eq!(d["failures"][0]["reason"], "MISSING");

    // A cluster with both and a default strategy: FARGATE base 1, then 1:3.
    let cl = cp
        .aws(&[
            "create-cluster",
            "--cluster-name",
            "mixed",
            "--capacity-providers",
            "FARGATE",
            "FARGATE_SPOT",
            "--default-capacity-provider-strategy",
            "capacityProvider=FARGATE,base=1,weight=1",
            "capacityProvider=FARGATE_SPOT,weight=3",
        ])
        .unwrap();
    assert_eq!(
        cl["cluster"]["defaultCapacityProviderStrategy"][0]["base"],
        1
    );
    let r = cp
        .aws(&[
            "run-task",
            "--cluster",
            "mixed",
            "--task-definition",
            "small",
            "--count",
            "9",
            "--network-configuration",
            NET,
        ])
        .unwrap();
    let tasks = r["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 9, "{r}");
    let m = per_provider(tasks);
    assert_eq!((m["FARGATE"], m["FARGATE_SPOT"]), (3, 6), "{m:?}");
    let d = cp.task("mixed", tasks[0]["taskArn"].as_str().unwrap());
    assert_eq!(d["capacityProviderName"], "FARGATE");
    // An explicit launch type: no provider.
    let r = cp
        .aws(&[
            "run-task",
            "--cluster",
            "mixed",
            "--task-definition",
            "small",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            NET,
        ])
        .unwrap();
    assert!(r["tasks"][0].get("capacityProviderName").is_none(), "{r}");

    // A service on its own strategy, on a cluster given providers afterwards.
    cp.aws(&["create-cluster", "--cluster-name", "plain"])
        .unwrap();
    let spot_only = [
        "--capacity-provider-strategy",
        "capacityProvider=FARGATE_SPOT,weight=1",
    ];
    let mut args = vec![
        "create-service",
        "--cluster",
        "plain",
        "--service-name",
        "spot",
        "--task-definition",
        "small",
        "--desired-count",
        "2",
        "--network-configuration",
        NET,
    ];
    args.extend(spot_only);
    let e = cp.aws(&args).unwrap_err();
    assert_eq!(
        error_type(&e),
        "InvalidParameterException",
        "not associated: {e}"
    );
    let cl = cp
        .aws(&[
            "put-cluster-capacity-providers",
            "--cluster",
            "plain",
            "--capacity-providers",
            "FARGATE_SPOT",
            "--default-capacity-provider-strategy",
            "capacityProvider=FARGATE_SPOT,weight=1",
        ])
        .unwrap();
    assert_eq!(cl["cluster"]["capacityProviders"][0], "FARGATE_SPOT");
    let s = cp.aws(&args).unwrap();
    assert_eq!(
        s["service"]["capacityProviderStrategy"][0]["capacityProvider"],
        "FARGATE_SPOT"
    );
    let svc_tasks = cp.wait_for(30, "2 service tasks", || {
        let t = cp.service_tasks("plain", "spot");
        (t.len() == 2).then_some(t)
    });
    assert_eq!(per_provider(&svc_tasks)["FARGATE_SPOT"], 2);
    // The provider cannot be taken away while the service uses it.
    let e = cp
        .aws(&[
            "put-cluster-capacity-providers",
            "--cluster",
            "plain",
            "--capacity-providers",
            "FARGATE",
            "--default-capacity-provider-strategy",
            "capacityProvider=FARGATE,weight=1",
        ])
        .unwrap_err();
    assert_eq!(error_type(&e), "ClientException", "{e}");

    // Refusals.
    let run = |extra: &[&str]| {
        let mut a = vec![
            "run-task",
            "--cluster",
            "mixed",
            "--task-definition",
            "small",
            "--network-configuration",
            NET,
        ];
        a.extend(extra);
        cp.aws(&a)
    };
    for extra in [
        vec![
            "--launch-type",
            "FARGATE",
            "--capacity-provider-strategy",
            "capacityProvider=FARGATE,weight=1",
        ],
        vec![
            "--capacity-provider-strategy",
            "capacityProvider=FARGATE,base=1,weight=1",
            "capacityProvider=FARGATE_SPOT,base=1,weight=1",
        ],
        vec![
            "--capacity-provider-strategy",
            "capacityProvider=FARGATE,weight=0",
        ],
        vec![
            "--capacity-provider-strategy",
            "capacityProvider=FARGATE,weight=1001",
        ],
        vec![
            "--capacity-provider-strategy",
            "capacityProvider=FARGATE,base=100001,weight=1",
        ],
        vec![
            "--capacity-provider-strategy",
            "capacityProvider=MINE,weight=1",
        ],
    ] {
        let e = run(&extra).unwrap_err();
        assert_eq!(
            error_type(&e),
            "InvalidParameterException",
            "{extra:?}: {e}"
        );
    }
    let e = cp
        .aws(&[
            "create-cluster",
            "--cluster-name",
            "x",
            "--capacity-providers",
            "MY_ASG",
        ])
        .unwrap_err();
    assert_eq!(error_type(&e), "InvalidParameterException", "{e}");
}
