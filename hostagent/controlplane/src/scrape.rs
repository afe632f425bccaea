//! `GET /metrics` (the Prometheus text exposition written by `prometheus-client`) and
//! the middleware that times every API call: the recorded metrics of
//! [`crate::metrics`], and at each scrape the counters and gauges of the cells, hosts,
//! log pipeline and audit log.

use crate::app::App;
use crate::metrics::{CellLabels, ErrorLabels, OpLabels, CONTENT_TYPE};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The bounded `(api, operation)` labels of a call's `X-Amz-Target`.
pub fn op_labels(target: &str) -> (&'static str, String) {
    if let Some(op) = target.strip_prefix(crate::frontend::LOGS_TARGET_PREFIX) {
        if crate::logs::api::is_known(op) {
            return ("logs", op.to_string());
        }
        return ("logs", "unknown".to_string());
    }
    let op = target
        .strip_prefix(crate::frontend::TARGET_PREFIX)
        .unwrap_or(target);
    if crate::api::is_known(op) {
        ("ecs", op.to_string())
    } else {
        ("ecs", "unknown".to_string())
    }
}

/// Middleware of `POST /`: times each call and counts its error type.
pub async fn track(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (api, operation) = op_labels(target);
    let started = Instant::now();
    let resp = next.run(req).await;
    let secs = started.elapsed().as_secs_f64();
    app.metrics.observe(&OpLabels { api, operation }, secs);
    if let Some(crate::error::ErrorKind(error)) =
        resp.extensions().get::<crate::error::ErrorKind>().copied()
    {
        app.metrics.count_error(&ErrorLabels { api, error });
    }
    resp
}

fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    r.register(name, help, ConstCounter::new(v));
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    r.register(name, help, ConstGauge::new(v));
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The values read at scrape time, in a registry of their own.
fn scrape_registry(app: &App) -> Registry {
    let mut r = Registry::with_prefix("controlplane");
    let agents = Family::<CellLabels, Gauge>::default();
    let hosts = Family::<CellLabels, Gauge>::default();
    let leader = Family::<CellLabels, Gauge>::default();
    let (mut undecodable, mut quarantined) = app.router.quarantine_stats();
    for c in &app.router.cells {
        let labels = CellLabels { cell: c.id };
        leader.get_or_create(&labels).set(i64::from(c.is_leader()));
        let g = c.lock();
        agents
            .get_or_create(&labels)
            .set(count(g.agents_connected()));
        hosts.get_or_create(&labels).set(count(g.host_count()));
        let (u, q) = g.quarantine_stats();
        undecodable += u;
        quarantined += q;
    }
    r.register(
        "agents_connected",
        "Host agents with an open channel, by cell",
        agents,
    );
    r.register("hosts", "Hosts known to the cell, by cell", hosts);
    r.register(
        "cell_leader",
        "1 when this replica leads the cell, else 0",
        leader,
    );
    gauge(
        &mut r,
        "cells",
        "Cells served",
        count(app.router.cells.len()),
    );
    gauge(
        &mut r,
        "audit_queue_depth",
        "Audit lines queued and not yet written",
        count(app.audit.queued()),
    );
    let l = &app.log_counters;
    for (name, help, v) in [
        (
            "agent_messages",
            "Messages received from host agents",
            app.agent_messages.load(Ordering::Relaxed),
        ),
        (
            "hosts_lost",
            "Hosts declared lost (no heartbeat)",
            app.hosts_lost.load(Ordering::Relaxed),
        ),
        (
            "hosts_revoked",
            "Hosts whose revocation was applied",
            app.hosts_revoked.load(Ordering::Relaxed),
        ),
        (
            "log_events_stored",
            "Container log events stored",
            l.stored.load(Ordering::Relaxed),
        ),
        (
            "log_lines_rejected",
            "Container log lines refused (bounds)",
            l.rejected.load(Ordering::Relaxed),
        ),
        (
            "log_lines_discarded",
            "Container log lines discarded (retention or store errors)",
            l.discarded.load(Ordering::Relaxed),
        ),
        (
            "log_lines_dropped_by_agents",
            "Container log lines the agents reported dropping",
            l.dropped_by_agents.load(Ordering::Relaxed),
        ),
        (
            "audit_lines_written",
            "Audit log lines written",
            app.audit.written(),
        ),
        (
            "audit_lines_dropped",
            "Audit log lines dropped (queue full)",
            app.audit.dropped(),
        ),
        (
            "store_records_undecodable",
            "Stored records that did not decode",
            undecodable,
        ),
        (
            "store_records_quarantined",
            "Stored records moved to quarantine",
            quarantined,
        ),
    ] {
        counter(&mut r, name, help, v);
    }
    r
}

/// The text exposition of every metric.
pub fn render(app: &App) -> String {
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = encode_registry(&mut out, app.metrics.registry());
    let _ = encode_registry(&mut out, &scrape_registry(app));
    let _ = encode_eof(&mut out);
    out
}

/// `GET /metrics`.
pub async fn handler(State(app): State<Arc<App>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&app),
    )
        .into_response()
}
