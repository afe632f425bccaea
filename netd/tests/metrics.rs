//! `--metrics-listen`: the Prometheus exposition of netd, parsed by a Prometheus
//! text-format parser, moves with the API calls (real netd, real kernel).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::prom::{hist_count, value};
use common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn scrape(addr: &str) -> Vec<common::prom::Sample> {
    let mut s = std::net::TcpStream::connect(addr).expect("metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    prom::parse(body)
}

#[test]
fn metrics_listener_serves_prometheus_text_that_moves() {
    let mut env = Env::new(&["svc"], 24);
    let addr = format!("127.0.0.1:{}", free_port());
    env.args = vec!["--metrics-listen".into(), addr.clone()];
    env.start();
    let rt = rt();
    let c = env.client();

    let s0 = scrape(&addr);
    assert_eq!(value(&s0, "netd_tasks", &[]), Some(0.0));
    assert_eq!(value(&s0, "netd_enis", &[]), Some(0.0));
    let put = [("method", "PUT"), ("route", "/v1/tasks/{id}")];
    assert_eq!(
        hist_count(&s0, "netd_api_request_duration_seconds", &put),
        0.0
    );

    rt.block_on(async {
        put_egress_all(&c, "web").await;
        create(&c, "m1", vec![eni("svc", &["web"])]).await;
        assert_eq!(api_status(c.task("no-such-task").await).0, 404);
        let _ = c
            .call(hyper::Method::GET, "/v1/not/a/route/secret-name", None)
            .await;
    });

    let s1 = scrape(&addr);
    assert_eq!(value(&s1, "netd_tasks", &[]), Some(1.0));
    assert_eq!(value(&s1, "netd_enis", &[]), Some(1.0));
    assert_eq!(value(&s1, "netd_security_groups", &[]), Some(1.0));
    assert_eq!(
        hist_count(&s1, "netd_api_request_duration_seconds", &put),
        1.0
    );
    assert!(
        hist_count(
            &s1,
            "netd_api_request_duration_seconds",
            &[("route", "unknown")]
        ) >= 1.0
    );
    assert!(value(&s1, "netd_api_errors_total", &[("code", "NotFound")]).unwrap_or(0.0) >= 2.0);

    // The API socket serves the document too; no task id or path is a label.
    let mut on_socket = String::new();
    std::os::unix::net::UnixStream::connect(&env.socket)
        .and_then(|mut s| {
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: netd\r\nConnection: close\r\n\r\n"
            )?;
            s.read_to_string(&mut on_socket)
        })
        .unwrap();
    assert!(on_socket.contains("netd_tasks 1"), "{on_socket}");
    assert!(!on_socket.contains("m1") && !on_socket.contains("secret-name"));
    rt.block_on(c.delete_task("m1")).unwrap();
}
