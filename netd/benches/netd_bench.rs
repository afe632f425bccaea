//! netd benchmark (root, real kernel): ENI create latency (median, p99) and the latency of
//! live rule updates with N ENIs on the host (default 1,000; `NETD_BENCH_ENIS` overrides).
//! Run: `cargo bench -p netd`. Prints figures; asserts nothing about speed.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{rt, Env};
use netd::model::{CreateTaskRequest, EniRequest, Protocol, Rule, SecurityGroupSpec};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn report(what: &str, v: &mut [Duration]) {
    let (med, p99, max) = (pct(v, 0.5), pct(v, 0.99), pct(v, 1.0));
    println!(
        "{what:<44} n={:<5} median {med:8.2} ms   p99 {p99:8.2} ms   max {max:8.2} ms",
        v.len()
    );
}

fn rule(port: u16, group: &str) -> Rule {
    Rule {
        protocol: Protocol::Tcp,
        from_port: Some(port),
        to_port: Some(port),
        cidr: None,
        group: Some(group.into()),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("NETD_BENCH_ENIS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let subnets = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"];
    let k = n.div_ceil(250).clamp(1, subnets.len());
    let mut env = Env::new(&subnets[..k], 24);
    env.start();
    let c = env.client();
    let rt = rt();
    rt.block_on(async {
        let all = vec![Rule {
            protocol: Protocol::All,
            from_port: None,
            to_port: None,
            cidr: Some("0.0.0.0/0".parse().unwrap()),
            group: None,
        }];
        c.put_group(
            "app",
            &SecurityGroupSpec {
                ingress: vec![rule(8080, "app")],
                egress: all.clone(),
            },
        )
        .await
        .unwrap();
        c.put_group(
            "alt",
            &SecurityGroupSpec {
                ingress: vec![rule(9090, "app")],
                egress: all,
            },
        )
        .await
        .unwrap();
        let mut create = Vec::with_capacity(n);
        for i in 0..n {
            let req = CreateTaskRequest {
                enis: vec![EniRequest {
                    subnet: subnets[i % k].into(),
                    security_groups: vec!["app".into()],
                    public_ip: None,
                }],
                tap_uid: None,
                tap_gid: None,
            };
            let t0 = Instant::now();
            c.create_task(&format!("b{i}"), &req).await.unwrap();
            create.push(t0.elapsed());
        }
        println!("netd bench: {n} ENIs on the host");
        report("ENI create (PUT /v1/tasks/{id}, 1 ENI)", &mut create);
        let mut task_sg = Vec::new();
        for i in 0..100 {
            let groups: &[&str] = if i % 2 == 0 {
                &["app", "alt"]
            } else {
                &["app"]
            };
            let t0 = Instant::now();
            c.set_groups(&format!("b{}", i * 7 % n), 0, groups)
                .await
                .unwrap();
            task_sg.push(t0.elapsed());
        }
        report("task SG change (PUT .../security-groups)", &mut task_sg);
        let mut sg_rules = Vec::new();
        for i in 0..100u16 {
            let spec = SecurityGroupSpec {
                ingress: vec![rule(8000 + i, "app"), rule(443, "alt")],
                egress: vec![],
            };
            let t0 = Instant::now();
            c.put_group("alt", &spec).await.unwrap();
            sg_rules.push(t0.elapsed());
        }
        report("SG rule change (PUT /v1/security-groups)", &mut sg_rules);
        // kill -9 and restart: reconcile every ENI and re-apply the whole table at once.
        env.kill9();
        let t0 = Instant::now();
        env.start();
        let mut restart = vec![t0.elapsed()];
        report("restart (kill -9; reconcile; API up)", &mut restart);
        let c = env.client();
        let mut delete = Vec::with_capacity(n);
        for i in 0..n {
            let t0 = Instant::now();
            c.delete_task(&format!("b{i}")).await.unwrap();
            delete.push(t0.elapsed());
        }
        report("ENI delete (DELETE /v1/tasks/{id})", &mut delete);
    });
}
