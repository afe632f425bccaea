//! Test harness: starts the real controlplane binary on a free loopback port with a
//! temporary data directory, and drives it with Debian's AWS CLI and boto3.
#![allow(dead_code)]

pub mod etcd;
// One parser for every crate's metrics tests.
#[path = "../../../../tests/support/prom.rs"]
pub mod prom;

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCOUNT: &str = "111122223333";
pub const KEY: &str = "AKIDCONTROLPLANE1";
pub const SECRET: &str = "s3cret/one+key";
pub const ACCOUNT2: &str = "444455556666";
pub const KEY2: &str = "AKIDCONTROLPLANE2";
pub const SECRET2: &str = "s3cret-two";
/// The bootstrap token of cell 0 the harness creates (`token_for` the others').
pub const TOKEN: &str = "bootstrap-token-for-tests";
pub const AWS: &str = "/usr/bin/aws";
pub const NET: &str = "awsvpcConfiguration={subnets=[subnet-0a1b2c3d],securityGroups=[sg-0a1b2c3d],assignPublicIp=DISABLED}";

/// The bootstrap token the harness creates for cell `n` (TOKEN for cell 0).
pub fn token_for(cell: u32) -> String {
    if cell == 0 {
        TOKEN.to_string()
    } else {
        format!("{TOKEN}-cell{cell}")
    }
}

/// Runs `controlplane ARGS` (an operator command); Ok(stdout) or Err(stderr).
pub fn operator(args: &[String]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_controlplane"))
        .args(args)
        .output()
        .expect("run controlplane");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub struct ControlPlane {
    pub addr: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Child,
    extra: Vec<String>,
    /// The flags that name its store (for operator commands).
    pub store_flags: Vec<String>,
    /// The etcd it runs over (test binaries named `etcd*`; see `etcd.rs`).
    pub etcd: Option<std::sync::Arc<controlplane::store::etcd_process::EtcdProcess>>,
    /// The CA of its HTTPS listener (started by [`ControlPlane::start_tls`]); None:
    /// plain HTTP on loopback (`--dev-plain-http`).
    pub ca: Option<PathBuf>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl ControlPlane {
    /// Starts a control plane with the two test accounts and `extra` flags.
    pub fn start(extra: &[&str]) -> ControlPlane {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut cp = Self::start_in(&dir, extra);
        cp._tmp = Some(tmp);
        cp
    }

    /// Starts a control plane serving HTTPS with a throwaway CA's certificate
    /// (`controlplane certs`, in the temporary directory).
    pub fn start_tls(extra: &[&str]) -> ControlPlane {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tls = tmp.path().join("tls");
        let out = Command::new(env!("CARGO_BIN_EXE_controlplane"))
            .args(["certs", "--out"])
            .arg(&tls)
            .args(["--host", "localhost", "--ip", "127.0.0.1"])
            .output()
            .expect("controlplane certs");
        assert!(out.status.success(), "controlplane certs: {out:?}");
        let (cert, key) = (tls.join("server.pem"), tls.join("server-key.pem"));
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        let mut flags = vec!["--tls-cert", &cert, "--tls-key", &key];
        flags.extend(extra);
        let mut cp = Self::start_in(&tmp.path().join("data"), &flags);
        cp.ca = Some(tls.join("ca.pem"));
        cp._tmp = Some(tmp);
        cp
    }

    /// The client TLS configuration that trusts its CA (None: plain HTTP).
    pub fn tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        let ca = self.ca.as_ref()?;
        Some(controlplane::tls::client_config(ca).expect("client TLS config"))
    }

    /// How a Rust client (signing client, test agent) reaches it.
    pub fn conn(&self) -> controlplane::client::Endpoint {
        controlplane::client::Endpoint {
            addr: self.addr.clone(),
            tls: self.tls(),
        }
    }

    /// Starts one over an existing data directory.
    pub fn start_in(dir: &Path, extra: &[&str]) -> ControlPlane {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_controlplane"));
        cmd.args(["--listen", &addr, "--data-dir"])
            .arg(dir)
            .args(["--account", &format!("{ACCOUNT}:{KEY}:{SECRET}")])
            .args(["--account", &format!("{ACCOUNT2}:{KEY2}:{SECRET2}")])
            .args(["--log-level", "warn"])
            .args(extra)
            .args(
                (!extra.contains(&"--tls-cert"))
                    .then_some("--dev-plain-http")
                    .iter(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let own_etcd = !extra.contains(&"--etcd-endpoint");
        let etcd = (etcd::etcd_mode() && own_etcd && !etcd::skip_without_etcd())
            .then(|| etcd::etcd_for(dir));
        if let Some(e) = &etcd {
            cmd.args(etcd::flags(e));
        }
        // One bootstrap token per cell (generous limits; tests of the limits make
        // their own), created with the operator command as an operator would.
        let cells: u32 = extra
            .iter()
            .position(|a| *a == "--cells")
            .and_then(|i| extra.get(i + 1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let mut store_flags: Vec<String> = vec!["--data-dir".into(), dir.display().to_string()];
        store_flags.extend(extra.iter().map(|s| s.to_string()));
        if let Some(e) = &etcd {
            store_flags.extend(etcd::flags(e));
        }
        for cell in 0..cells {
            let mut a: Vec<String> = ["tokens", "create", "--max-hosts", "1000", "--expires-in"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            a.extend(
                ["1d", "--max-cpu", "1048576", "--max-memory-mib", "16777216"].map(String::from),
            );
            a.extend([
                "--cell".into(),
                cell.to_string(),
                "--token".into(),
                token_for(cell),
            ]);
            a.extend(store_flags.iter().cloned());
            if let Err(e) = operator(&a) {
                assert!(e.contains("already exists"), "tokens create: {e}");
            }
        }
        let ca = extra
            .iter()
            .position(|a| *a == "--tls-cert")
            .and_then(|i| extra.get(i + 1))
            .map(|c| Path::new(c).with_file_name("ca.pem"));
        let child = cmd.spawn().expect("spawn controlplane");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "controlplane did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let cp = ControlPlane {
            addr,
            dir: dir.to_path_buf(),
            _tmp: None,
            child,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            store_flags,
            etcd,
            ca,
        };
        if cp.etcd.is_some() {
            // A replica restarted over the etcd of a killed one leads once the
            // killed one's lease has run out.
            cp.wait_for(30, "leadership of every cell", || {
                let m = cp.metrics()?;
                (m["cellsLed"].as_u64()? == m["cells"].as_u64()?).then_some(())
            });
            assert!(
                !dir.join("cell-0.db").exists(),
                "over etcd, no SQLite cell file is written"
            );
        }
        cp
    }

    /// Runs the operator command `controlplane ARGS --data-dir ... [store flags]`
    /// over this control plane's store; Ok(stdout) or Err(stderr).
    pub fn operator(&self, args: &[&str]) -> Result<String, String> {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend(self.store_flags.iter().cloned());
        operator(&a)
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Runs `aws ecs ARGS` as the first account; returns (ok, json or stderr).
    pub fn aws(&self, args: &[&str]) -> Result<Value, String> {
        self.aws_as(KEY, SECRET, args)
    }

    pub fn aws_as(&self, key: &str, secret: &str, args: &[&str]) -> Result<Value, String> {
        self.aws_service(key, secret, "ecs", args)
    }

    /// Runs `aws SERVICE ARGS` with these credentials; returns (ok, json or stderr).
    pub fn aws_service(
        &self,
        key: &str,
        secret: &str,
        service: &str,
        args: &[&str],
    ) -> Result<Value, String> {
        let mut cmd = Command::new(AWS);
        if let Some(ca) = &self.ca {
            cmd.arg("--ca-bundle").arg(ca);
        }
        let out = cmd
            .args([
                "--endpoint-url",
                &self.endpoint(),
                "--region",
                "us-east-1",
                "--output",
                "json",
                service,
            ])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_RETRY_MODE", "standard")
            .env("AWS_PAGER", "")
            .output()
            .expect("run /usr/bin/aws");
        if out.status.success() {
            let s = String::from_utf8_lossy(&out.stdout);
            if s.trim().is_empty() {
                return Ok(Value::Null);
            }
            Ok(serde_json::from_str(&s).unwrap_or_else(|e| panic!("aws output {s}: {e}")))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs a Python/boto3 script with `ENDPOINT`, key and secret in its environment.
    pub fn boto3(&self, key: &str, secret: &str, script: &str) -> (bool, String) {
        let out = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("ENDPOINT", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .expect("run python3");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Polls `f` until it returns Some, or panics after `secs`.
    pub fn wait_for<T>(&self, secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(t) = f() {
                return t;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// describe-tasks of one task.
    pub fn task(&self, cluster: &str, arn: &str) -> Value {
        let v = self
            .aws(&["describe-tasks", "--cluster", cluster, "--tasks", arn])
            .expect("describe-tasks");
        v["tasks"][0].clone()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The error type of a failed CLI call (`An error occurred (X) when ...`).
pub fn error_type(stderr: &str) -> String {
    stderr
        .split_once("An error occurred (")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(t, _)| t.to_string())
        .unwrap_or_else(|| format!("<no ECS error in: {stderr}>"))
}

/// The scorekeep task definition of Fargate's introduction: two containers,
/// 1 vCPU / 2 GB, awsvpc, port mappings, awslogs.
pub fn scorekeep_file(dir: &Path) -> String {
    let td = serde_json::json!({
        "family": "scorekeep",
        "cpu": "1 vCpu",
        "memory": "2 gb",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "executionRoleArn": "arn:aws:iam::111122223333:role/ecsTaskExecutionRole",
        "containerDefinitions": [
            {
                "name": "scorekeep-frontend",
                "image": "xxx.dkr.ecr.us-east-1.amazonaws.com/fe",
                "cpu": 256,
                "memoryReservation": 512,
                "portMappings": [{"containerPort": 8080}],
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": "scorekeep", "awslogs-region": "us-east-1",
                    "awslogs-stream-prefix": "scorekeep-frontend"}}
            },
            {
                "name": "scorekeep-api",
                "image": "xxx.dkr.ecr.us-east-1.amazonaws.com/api",
                "cpu": 768,
                "memoryReservation": 512,
                "portMappings": [{"containerPort": 5000}],
                "environment": [{"name": "AWS_REGION", "value": "us-east-1"}],
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": "scorekeep", "awslogs-region": "us-east-1",
                    "awslogs-stream-prefix": "scorekeep-api"}}
            }
        ]
    });
    let p = dir.join("scorekeep.json");
    std::fs::write(&p, td.to_string()).expect("write task def");
    format!("file://{}", p.display())
}

/// Writes `v` as JSON into `dir/name` and returns a `file://` URL.
pub fn json_file(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).expect("write json");
    format!("file://{}", p.display())
}

impl ControlPlane {
    /// A signing client of this control plane, as the account of `key`.
    pub fn client(&self, key: &str, secret: &str) -> controlplane::client::Client {
        controlplane::client::Client {
            addr: self.addr.clone(),
            tls: self.tls(),
            region: "us-east-1".into(),
            key: key.into(),
            secret: secret.into(),
        }
    }

    /// A quick signed ECS call from Rust (for polling; the assertions that matter use
    /// the AWS CLI and boto3), as the first account. Err: (error type, message).
    /// It blocks, on a thread of its own, so async tests can call it too.
    pub fn call(&self, op: &str, input: Value) -> Result<Value, (String, String)> {
        let client = self.client(KEY, SECRET);
        std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(client.call(op, &input))
            })
            .join()
            .expect("client thread")
        })
    }

    /// The described tasks of a service (ListTasks + DescribeTasks).
    pub fn service_tasks(&self, cluster: &str, service: &str) -> Vec<Value> {
        let l = self
            .call(
                "ListTasks",
                serde_json::json!({"cluster": cluster, "serviceName": service}),
            )
            .unwrap();
        let arns = l["taskArns"].as_array().unwrap().clone();
        if arns.is_empty() {
            return vec![];
        }
        let d = self
            .call(
                "DescribeTasks",
                serde_json::json!({"cluster": cluster, "tasks": arns}),
            )
            .unwrap();
        d["tasks"].as_array().unwrap().clone()
    }

    /// `GET /metrics.json` (over TLS when it serves HTTPS).
    pub fn metrics(&self) -> Option<Value> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let conn = self.conn();
        let get = async move {
            let mut s = conn.open().await.ok()?;
            let req = format!(
                "GET /metrics.json HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                conn.addr
            );
            s.write_all(req.as_bytes()).await.ok()?;
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).await.ok()?;
            Some(String::from_utf8_lossy(&resp).into_owned())
        };
        let resp = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), get).await })
                    .ok()?
            })
            .join()
            .ok()?
        })?;
        serde_json::from_str(resp.split_once("\r\n\r\n")?.1).ok()
    }

    /// The task `arn` of `cluster`, fetched with [`ControlPlane::call`].
    pub fn task_fast(&self, cluster: &str, arn: &str) -> Value {
        let v = self
            .call(
                "DescribeTasks",
                serde_json::json!({"cluster": cluster, "tasks": [arn]}),
            )
            .expect("DescribeTasks");
        v["tasks"][0].clone()
    }

    /// Waits until task `arn` has lastStatus `status`; returns it (from the CLI).
    pub fn wait_status(&self, cluster: &str, arn: &str, status: &str, secs: u64) -> Value {
        self.wait_for(secs, &format!("{arn} {status}"), || {
            (self.task_fast(cluster, arn)["lastStatus"] == status).then_some(())
        });
        self.task(cluster, arn)
    }
}

/// `aws logs ARGS` as the first account.
pub fn logs(cp: &ControlPlane, args: &[&str]) -> Result<Value, String> {
    cp.aws_service(KEY, SECRET, "logs", args)
}

/// `aws logs ARGS` as the second account.
pub fn logs2(cp: &ControlPlane, args: &[&str]) -> Result<Value, String> {
    cp.aws_service(KEY2, SECRET2, "logs", args)
}
