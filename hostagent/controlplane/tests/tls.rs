//! TLS on the front door: the real AWS CLI over HTTPS with `--ca-bundle`, the agent
//! channel over wss:// (a client trusting another CA is refused), and the listener
//! flags (plain HTTP only on loopback, HTTPS needs its certificate and key).

mod common;

use common::*;
use controlplane::client::Endpoint;
use controlplane::testagent::TestAgent;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_aws_cli_works_over_https_with_the_ca_bundle() {
    let cp = ControlPlane::start_tls(&[]);
    assert!(cp.endpoint().starts_with("https://"));
    let v = cp
        .aws(&["create-cluster", "--cluster-name", "tls"])
        .expect("create-cluster over HTTPS");
    assert_eq!(v["cluster"]["clusterName"], "tls");
    let v = cp.aws(&["list-clusters"]).expect("list-clusters");
    assert_eq!(v["clusterArns"].as_array().map(Vec::len), Some(1));

    // Without the CA bundle the CLI does not trust the certificate.
    let out = Command::new(AWS)
        .args(["--endpoint-url", &cp.endpoint(), "--region", "us-east-1"])
        .args(["ecs", "list-clusters"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("run aws");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "trusted without the CA: {err}");
    assert!(
        err.contains("SSL") || err.contains("certificate"),
        "not a certificate failure: {err}"
    );

    // Plain HTTP to the HTTPS port gets no ECS answer.
    let out = Command::new(AWS)
        .args(["--endpoint-url", &format!("http://{}", cp.addr)])
        .args(["--region", "us-east-1", "ecs", "list-clusters"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("run aws");
    assert!(!out.status.success(), "plain HTTP answered on the TLS port");
    // The listener still serves after those failed handshakes.
    cp.aws(&["list-clusters"])
        .expect("list-clusters after bad clients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_connect_over_wss_and_a_client_with_another_ca_is_refused() {
    let cp = ControlPlane::start_tls(&["--heartbeat-interval-ms", "500"]);
    let hb = Duration::from_millis(500);
    let agent = TestAgent::start(cp.conn(), TOKEN, "us-east-1a", 4096, 8192, None, hb)
        .await
        .expect("register and connect over wss://");
    cp.wait_for(20, "the agent over wss://", || {
        (cp.metrics()?["agentsConnected"].as_u64()? == 1).then_some(())
    });
    assert!(agent.connected());

    // A task reaches the host over the TLS channel and comes back RUNNING.
    let dir = tempfile::tempdir().unwrap();
    cp.aws(&["create-cluster", "--cluster-name", "c"]).unwrap();
    cp.aws(&[
        "register-task-definition",
        "--cli-input-json",
        &scorekeep_file(dir.path()),
    ])
    .unwrap();
    let v = cp
        .aws(&[
            "run-task",
            "--cluster",
            "c",
            "--task-definition",
            "scorekeep",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            NET,
        ])
        .expect("run-task");
    let arn = v["tasks"][0]["taskArn"]
        .as_str()
        .expect("a task")
        .to_string();
    cp.wait_status("c", &arn, "RUNNING", 20);

    // A client that trusts another CA: the handshake fails, nothing registers.
    let other = tempfile::tempdir().unwrap();
    controlplane::certs::generate(
        other.path(),
        &controlplane::certs::CertsSpec {
            hosts: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            days: 1,
        },
    )
    .unwrap();
    let wrong = controlplane::tls::client_config(&other.path().join("ca.pem")).unwrap();
    let e = TestAgent::start(
        Endpoint::tls(&cp.addr, wrong.clone()),
        TOKEN,
        "us-east-1b",
        4096,
        8192,
        None,
        hb,
    )
    .await
    .err()
    .expect("registered while trusting another CA");
    let text = e.to_string();
    assert!(
        text.contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );
    // The channel itself (an already registered host) is refused the same way.
    assert!(
        TestAgent::connect(Endpoint::tls(&cp.addr, wrong), "h", "c", 0, hb)
            .await
            .is_err()
    );
    // So is plain ws:// to the TLS listener.
    assert!(TestAgent::connect(cp.addr.as_str(), "h", "c", 0, hb)
        .await
        .is_err());
    assert_eq!(cp.metrics().unwrap()["agentsConnected"], 1);
}

fn run_controlplane(args: &[&str]) -> (i32, String) {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_controlplane"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["--account", &format!("{ACCOUNT}:{KEY}:{SECRET}")])
        .args(args)
        .output()
        .expect("run controlplane");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plain_http_only_on_loopback_and_https_needs_its_files() {
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let (code, err) = run_controlplane(&["--dev-plain-http", "--listen", addr]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("loopback"), "{err}");
    }
    let (code, err) = run_controlplane(&["--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
    // A key that does not exist: the control plane does not start.
    let (code, err) = run_controlplane(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        "/nonexistent/server.pem",
        "--tls-key",
        "/nonexistent/server-key.pem",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/server.pem"), "{err}");
}
