//! Benchmarks (run: `cargo bench -p controlplane`; prints figures).
//!
//! 1. Placement throughput: 10,000 hosts, 100,000 tasks (target 20,000/s).
//! 2. RunTask latency p50/p99 at 200 requests/s against the real binary with
//!    simulated hosts, over HTTPS (a new TLS connection per call, sessions resumed as
//!    a client that keeps its TLS configuration does) beside plain HTTP in the same
//!    run: two rounds of each, interleaved, and the TLS/plain ratio (target <= 1.2).
//! 3. Heartbeat fan-in: 10,000 agents on WebSocket channels to one control plane.
//! 4. Log store: appending 200,000 lines in agent-sized batches, GetLogEvents of
//!    the newest 100 and FilterLogEvents over all of them (BENCH_LOG_LINES).
//!
//! Sizes can be reduced with BENCH_HOSTS, BENCH_TASKS, BENCH_RPS, BENCH_SECS,
//! BENCH_ROUNDS, BENCH_AGENTS; BENCH_ONLY_RUNTASK=1 stops after the RunTask figures.

use controlplane::client::{Client, Endpoint};
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

/// The child, its address, its data directory (kept until drop), and how to reach it.
struct Cp(
    Child,
    String,
    #[allow(dead_code)] tempfile::TempDir,
    Endpoint,
);

impl Drop for Cp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A control plane serving HTTPS with a throwaway CA's certificate (`tls`), or
/// plain HTTP on loopback.
fn start_cp(extra: &[&str], tls: bool) -> Cp {
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("tls");
    let mut listener: Vec<String> = vec!["--dev-plain-http".into()];
    if tls {
        let spec = controlplane::certs::CertsSpec {
            hosts: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().expect("ip")],
            days: 1,
        };
        controlplane::certs::generate(&certs, &spec).expect("certs");
        let path = |f: &str| certs.join(f).to_string_lossy().into_owned();
        listener = vec![
            "--tls-cert".into(),
            path(controlplane::certs::SERVER_CERT),
            "--tls-key".into(),
            path(controlplane::certs::SERVER_KEY),
        ];
    }
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
        .args(&listener)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn controlplane");
    while std::net::TcpStream::connect(&addr).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = Endpoint {
        addr: addr.clone(),
        tls: tls.then(|| {
            controlplane::tls::client_config(&certs.join(controlplane::certs::CA_CERT))
                .expect("client TLS config")
        }),
    };
    Cp(child, addr, tmp, endpoint)
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

/// RunTask at BENCH_RPS for BENCH_SECS (one round); (p50, p99) in ms. `reuse`: calls
/// go over a pool of kept-alive connections (as the AWS CLI and the SDKs call);
/// otherwise each call opens its own (TLS: a handshake per call, the session resumed).
async fn runtask_bench(cp: &Cp, round: usize, reuse: bool) -> (f64, f64) {
    let kind = match (cp.3.tls.is_some(), reuse) {
        (true, true) => "HTTPS, kept-alive connections",
        (true, false) => "HTTPS, a new connection per call",
        (false, true) => "plain HTTP, kept-alive connections",
        (false, false) => "plain HTTP, a new connection per call",
    };
    let pool: Arc<std::sync::Mutex<Vec<Box<dyn controlplane::client::Io>>>> = Arc::default();
    let client = Client {
        addr: cp.1.clone(),
        tls: cp.3.tls.clone(),
        region: "us-east-1".into(),
        key: KEY.into(),
        secret: SECRET.into(),
    };
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
        let (c, inp, pool, conn) = (client.clone(), input.clone(), pool.clone(), cp.3.clone());
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = if reuse {
                let idle = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let io = match idle {
                    Some(io) => Ok(io),
                    None => conn.open().await,
                };
                match io {
                    Ok(mut io) => {
                        let r = c.call_on(&mut io, "RunTask", &inp).await;
                        if r.is_ok() {
                            pool.lock().unwrap_or_else(|e| e.into_inner()).push(io);
                        }
                        r
                    }
                    Err(e) => Err(("Transport".into(), e.to_string())),
                }
            } else {
                c.call("RunTask", &inp).await
            };
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
        "RunTask over {kind}, round {round}, at {rps} rps for {secs} s: {n} calls ({:.0} rps achieved), {placed} placed, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        n as f64 / wall,
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    (pct(&lat, 0.50), pct(&lat, 0.99))
}

/// A control plane with simulated hosts (channels over wss:// when `tls`) for
/// every task of the rounds, a task definition and a cluster.
async fn runtask_setup(tls: bool) -> (Cp, Vec<TestAgent>) {
    let cp = start_cp(&[], tls);
    let client = Client {
        addr: cp.1.clone(),
        tls: cp.3.tls.clone(),
        region: "us-east-1".into(),
        key: KEY.into(),
        secret: SECRET.into(),
    };
    // Room for every round's tasks (they keep running): 64 per 16-vCPU host.
    let tasks = env("BENCH_RPS", 200) * env("BENCH_SECS", 10) * env("BENCH_ROUNDS", 3) * 2;
    let mut agents = vec![];
    for i in 0..tasks.div_ceil(60).max(50) {
        let az = ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3];
        agents.push(
            TestAgent::start(
                &cp.3,
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
    (cp, agents)
}

/// Plain and TLS control planes side by side, rounds interleaved so that both see
/// the same machine load; the medians of the rounds and their ratio.
async fn runtask_compare() {
    let (plain, _pa) = runtask_setup(false).await;
    let (tls, _ta) = runtask_setup(true).await;
    let rounds = env("BENCH_ROUNDS", 3).max(1);
    let med = |v: Vec<f64>| {
        let mut v = v;
        v.sort_by(|a, b| a.total_cmp(b));
        v[(v.len() - 1) / 2]
    };
    // Round by round, every mode in turn, so that the machine's load and the growing
    // store weigh on all four alike.
    let mut figures: [Vec<(f64, f64)>; 4] = Default::default();
    for r in 1..=rounds {
        for (i, (cp, reuse)) in [(&plain, true), (&tls, true), (&plain, false), (&tls, false)]
            .into_iter()
            .enumerate()
        {
            figures[i].push(runtask_bench(cp, r, reuse).await);
        }
    }
    for (k, how) in ["kept-alive connections", "a new connection per call"]
        .into_iter()
        .enumerate()
    {
        let (p, t) = (&figures[2 * k], &figures[2 * k + 1]);
        let (p50p, p99p) = (
            med(p.iter().map(|x| x.0).collect()),
            med(p.iter().map(|x| x.1).collect()),
        );
        let (p50t, p99t) = (
            med(t.iter().map(|x| x.0).collect()),
            med(t.iter().map(|x| x.1).collect()),
        );
        println!(
            "RunTask HTTPS vs plain HTTP, {how} (median of {rounds} rounds each): p50 {p50t:.2} ms vs {p50p:.2} ms = {:.2}x, p99 {p99t:.1} ms vs {p99p:.1} ms = {:.2}x (target <= 1.2x)",
            p50t / p50p,
            p99t / p99p
        );
    }
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
    let cp = start_cp(
        &[
            "--heartbeat-timeout-ms",
            "15000",
            "--heartbeat-interval-ms",
            "1000",
        ],
        false,
    );
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
    use controlplane::logs::store::{Create, LogStore};
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
            .append(
                "111122223333",
                "/ecs/web",
                &stream,
                &events,
                Create::GroupAndStream,
                now,
            )
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
    rt.block_on(runtask_compare());
    if std::env::var_os("BENCH_ONLY_RUNTASK").is_some() {
        return;
    }
    rt.block_on(fanin_bench());
}
