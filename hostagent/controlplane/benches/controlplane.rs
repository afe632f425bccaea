//! Benchmarks (run: `cargo bench -p controlplane`; prints figures).
//!
//! 1. Placement throughput: 10,000 hosts, 100,000 tasks (target 20,000/s).
//! 2. RunTask latency p50/p99 at 200 requests/s against the real binary with
//!    simulated hosts.
//! 3. Heartbeat fan-in: 10,000 agents on WebSocket channels to one control plane.
//! 4. Log store: appending 200,000 lines in agent-sized batches, GetLogEvents of
//!    the newest 100 and FilterLogEvents over all of them (BENCH_LOG_LINES).
//!
//! Sizes can be reduced with BENCH_HOSTS, BENCH_TASKS, BENCH_RPS, BENCH_SECS,
//! BENCH_AGENTS.

use controlplane::client::Client;
use controlplane::placement::Placement;
use controlplane::testagent::{register, TestAgent};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-bootstrap-token";
const KEY: &str = "AKIDBENCH";
const SECRET: &str = "bench-secret";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn placement_bench() {
    let hosts = env("BENCH_HOSTS", 10_000);
    let tasks = env("BENCH_TASKS", 100_000);
    let mut p = Placement::new();
    let azs = ["us-east-1a", "us-east-1b", "us-east-1c"];
    for i in 0..hosts {
        let id = format!("h{i}");
        p.add_host(&id, azs[i % 3], 16 * 1024, 64 * 1024);
        p.set_schedulable(&id, true);
    }
    let sizes = [
        (256, 512),
        (512, 1024),
        (1024, 2048),
        (2048, 4096),
        (256, 2048),
        (4096, 8192),
    ];
    let mut ok = 0usize;
    let t0 = Instant::now();
    for i in 0..tasks {
        let (c, m) = sizes[(i * 7 + i / 3) % sizes.len()];
        if p.place(c, m, None).is_ok() {
            ok += 1;
        }
    }
    let dt = t0.elapsed();
    println!(
        "placement: {hosts} hosts, {tasks} tasks: {ok} placed in {:.3} s = {:.0} placements/s (target 20000/s)",
        dt.as_secs_f64(),
        tasks as f64 / dt.as_secs_f64()
    );
    // With AZ spread, as services use it.
    let mut spread = std::collections::HashMap::new();
    let t0 = Instant::now();
    let n = tasks / 10;
    for _ in 0..n {
        if let Ok(h) = p.place(256, 512, Some(&spread)) {
            let az = p.host(&h).map(|h| h.az.clone()).unwrap_or_default();
            *spread.entry(az).or_insert(0usize) += 1;
        }
    }
    let dt = t0.elapsed();
    println!(
        "placement with AZ spread: {n} tasks = {:.0} placements/s, per AZ {:?}",
        n as f64 / dt.as_secs_f64(),
        spread
    );
}

/// The child, its address, and its data directory (kept until drop).
struct Cp(Child, String, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Cp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_cp(extra: &[&str]) -> Cp {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = tmp.path().join("cp.json");
    std::fs::write(
        &cfg,
        json!({"throttle": {"default": {"rate": 100000, "burst": 100000}}}).to_string(),
    )
    .expect("cfg");
    // The hosts' bootstrap token, created as an operator does.
    let made = Command::new(env!("CARGO_BIN_EXE_controlplane"))
        .args(["tokens", "create", "--cell", "0", "--max-hosts", "1000000"])
        .args(["--expires-in", "1d", "--max-cpu", "1048576"])
        .args([
            "--max-memory-mib",
            "16777216",
            "--token",
            TOKEN,
            "--data-dir",
        ])
        .arg(tmp.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("tokens create");
    assert!(made.success(), "tokens create");
    let child = Command::new(env!("CARGO_BIN_EXE_controlplane"))
        .args(["--listen", &addr, "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--account", &format!("111122223333:{KEY}:{SECRET}")])
        .args([
            "--log-level",
            "error",
            "--config",
            cfg.to_str().unwrap_or(""),
            // Thousands of tasks of one account: far above Fargate's default quota.
            "--quota-fargate-vcpus",
            "1000000",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn controlplane");
    while std::net::TcpStream::connect(&addr).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    Cp(child, addr, tmp)
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

async fn runtask_bench() {
    let cp = start_cp(&[]);
    let client = Client {
        addr: cp.1.clone(),
        region: "us-east-1".into(),
        key: KEY.into(),
        secret: SECRET.into(),
    };
    let mut agents = vec![];
    for i in 0..50 {
        let az = ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3];
        agents.push(
            TestAgent::start(
                &cp.1,
                TOKEN,
                az,
                16 * 1024,
                64 * 1024,
                None,
                Duration::from_secs(5),
            )
            .await
            .expect("agent"),
        );
    }
    client
        .call(
            "RegisterTaskDefinition",
            &json!({"family": "bench", "cpu": "256", "memory": "512",
            "containerDefinitions": [{"name": "app", "image": "busybox"}]}),
        )
        .await
        .expect("register");
    client
        .call("CreateCluster", &json!({"clusterName": "bench"}))
        .await
        .expect("cluster");
    let rps = env("BENCH_RPS", 200);
    let secs = env("BENCH_SECS", 10);
    let n = rps * secs;
    let input = Arc::new(json!({"cluster": "bench", "taskDefinition": "bench",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}}}));
    let start = Instant::now();
    let mut handles = vec![];
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / rps as f64);
        tokio::time::sleep_until(at.into()).await;
        let (c, inp) = (client.clone(), input.clone());
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = c.call("RunTask", &inp).await;
            let placed = r
                .as_ref()
                .map(|v| v["tasks"].as_array().map(|a| a.len()).unwrap_or(0) == 1)
                .unwrap_or(false);
            (t.elapsed().as_secs_f64() * 1000.0, placed)
        }));
    }
    let mut lat = vec![];
    let mut placed = 0;
    for h in handles {
        if let Ok((ms, ok)) = h.await {
            lat.push(ms);
            placed += usize::from(ok);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "RunTask at {rps} rps for {secs} s: {n} calls ({:.0} rps achieved), {placed} placed, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        n as f64 / wall,
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
}

async fn metrics(addr: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return json!({});
    };
    let _ = s
        .write_all(
            format!("GET /metrics.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let mut b = String::new();
    let _ = s.read_to_string(&mut b).await;
    b.split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(json!({}))
}

async fn fanin_bench() {
    let n = env("BENCH_AGENTS", 10_000);
    let cp = start_cp(&[
        "--heartbeat-timeout-ms",
        "15000",
        "--heartbeat-interval-ms",
        "1000",
    ]);
    let addr = cp.1.clone();
    let t0 = Instant::now();
    let mut regs = vec![];
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..n {
        let (a, s) = (addr.clone(), sem.clone());
        regs.push(tokio::spawn(async move {
            let _p = s.acquire().await;
            register(
                &a,
                &agent_proto::RegisterRequest {
                    bootstrap_token: TOKEN.into(),
                    hostname: format!("h{i}"),
                    availability_zone: format!("us-east-1{}", ["a", "b", "c"][i % 3]),
                    cpu: 4096,
                    memory: 8192,
                    cell: None,
                },
            )
            .await
        }));
    }
    let mut creds = vec![];
    for r in regs {
        if let Ok(Ok(r)) = r.await {
            creds.push(r);
        }
    }
    println!(
        "fan-in: registered {} hosts in {:.1} s ({:.0}/s)",
        creds.len(),
        t0.elapsed().as_secs_f64(),
        creds.len() as f64 / t0.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    let mut agents = vec![];
    for chunk in creds.chunks(200) {
        let mut hs = vec![];
        for r in chunk {
            let (a, r) = (addr.clone(), r.clone());
            hs.push(tokio::spawn(async move {
                TestAgent::connect(
                    &a,
                    &r.host_id,
                    &r.host_credential,
                    r.cell,
                    Duration::from_secs(1),
                )
                .await
            }));
        }
        for h in hs {
            if let Ok(Ok(a)) = h.await {
                agents.push(a);
            }
        }
    }
    println!(
        "fan-in: {} channels connected in {:.1} s",
        agents.len(),
        t0.elapsed().as_secs_f64()
    );
    let m0 = metrics(&addr).await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(env("BENCH_SECS", 10) as u64)).await;
    let m1 = metrics(&addr).await;
    let dt = t0.elapsed().as_secs_f64();
    let msgs = m1["agentMessages"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(m0["agentMessages"].as_u64().unwrap_or(0));
    println!(
        "fan-in: {} agents heartbeating every 1 s: {:.0} heartbeats/s handled (expected {}), agents connected {}, hosts lost during the window {}",
        agents.len(),
        msgs as f64 / dt,
        agents.len(),
        m1["agentsConnected"],
        m1["hostsLost"].as_u64().unwrap_or(0).saturating_sub(m0["hostsLost"].as_u64().unwrap_or(0))
    );
}

fn logs_bench() {
    use controlplane::logs::api::dispatch;
    use controlplane::logs::common::LogsCtx;
    use controlplane::logs::store::LogStore;
    let n = env("BENCH_LOG_LINES", 200_000);
    let dir = std::env::temp_dir().join(format!("cp-logs-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let store = LogStore::open(&dir.join("logs-0.db"), 1_000_000).expect("log store");
    let now = controlplane::clock::now_ms();
    let batch = 500;
    let t0 = Instant::now();
    let mut i = 0;
    while i < n {
        let events: Vec<(i64, String)> = (i..(i + batch).min(n))
            .map(|k| {
                let level = if k % 100 == 0 { "ERROR" } else { "INFO" };
                (
                    now - (n - k) as i64,
                    format!("{level} request {k} served in 3 ms"),
                )
            })
            .collect();
        let stream = format!("app/web/task{}", (i / batch) % 10);
        store
            .append("111122223333", "/ecs/web", &stream, &events, true, now)
            .map_err(|_| "append")
            .expect("append");
        i += batch;
    }
    let dt = t0.elapsed();
    println!(
        "log store: {n} lines appended in batches of {batch} in {:.2} s = {:.0} lines/s",
        dt.as_secs_f64(),
        n as f64 / dt.as_secs_f64()
    );
    let ctx = LogsCtx {
        account: "111122223333",
        region: "us-east-1",
        now_ms: now,
    };
    let mut lat = vec![];
    for _ in 0..200 {
        let t = Instant::now();
        let v = dispatch(
            "GetLogEvents",
            &ctx,
            &store,
            json!({"logGroupName": "/ecs/web", "logStreamName": "app/web/task3", "limit": 100}),
        )
        .expect("GetLogEvents");
        assert_eq!(v["events"].as_array().map(|a| a.len()), Some(100));
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "log store: GetLogEvents (newest 100 of a {}-event stream) p50 {:.2} ms, p99 {:.2} ms",
        n / 10,
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    let t = Instant::now();
    let (mut found, mut token) = (0, None::<String>);
    loop {
        let mut inp = json!({"logGroupName": "/ecs/web", "filterPattern": "ERROR"});
        if let Some(t) = &token {
            inp["nextToken"] = json!(t);
        }
        let v = dispatch("FilterLogEvents", &ctx, &store, inp).expect("FilterLogEvents");
        found += v["events"].as_array().map(|a| a.len()).unwrap_or(0);
        match v["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    println!(
        "log store: FilterLogEvents 'ERROR' over {n} events: {found} found in {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("BENCH_ONLY_LOGS").is_some() {
        return logs_bench();
    }
    placement_bench();
    logs_bench();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(runtask_bench());
    rt.block_on(fanin_bench());
}
