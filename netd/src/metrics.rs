//! Prometheus metrics (text exposition written by `prometheus-client`): API call
//! latency per route and method, errors per error code, and at each scrape the
//! tasks, ENIs and security groups the daemon holds. Served as `GET /metrics` on the
//! API socket and, with `--metrics-listen ADDR`, on a TCP listener of its own that
//! serves nothing else.
//!
//! Label values are bounded: a route is one of the API's path templates or
//! `unknown`, never a task id or a group name.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::daemon::Netd;

/// Content type of the text exposition written by `prometheus-client`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The error code of an answer, kept in the response's extensions by the API's
/// error response so that [`track`] counts it without reading the body.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: &'static str,
}

/// The metrics recorded as calls are answered.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RouteLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
    registry: Registry,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty set of recorded metrics.
    pub fn new() -> Metrics {
        let requests = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        let mut registry = Registry::with_prefix("netd");
        registry.register(
            "api_request_duration_seconds",
            "Time to answer an API call, by method and route",
            requests.clone(),
        );
        registry.register(
            "api_errors",
            "API calls answered with an error, by error code",
            errors.clone(),
        );
        Metrics {
            requests,
            errors,
            registry,
        }
    }
}

/// The route template of `path`, or `unknown`.
fn route_of(path: &str) -> &'static str {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segs.as_slice() {
        ["metrics"] => "/metrics",
        ["v1", "health"] => "/v1/health",
        ["v1", "subnets"] => "/v1/subnets",
        ["v1", "tasks"] => "/v1/tasks",
        ["v1", "tasks", _] => "/v1/tasks/{id}",
        ["v1", "tasks", _, "enis", _, "security-groups"] => {
            "/v1/tasks/{id}/enis/{index}/security-groups"
        }
        ["v1", "security-groups"] => "/v1/security-groups",
        ["v1", "security-groups", _] => "/v1/security-groups/{name}",
        _ => "unknown",
    }
}

fn method_of(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::POST => "POST",
        _ => "other",
    }
}

/// Middleware of the API: times each call and counts its error code.
pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let labels = RouteLabels {
        method: method_of(req.method()),
        route: route_of(req.uri().path()),
    };
    let started = Instant::now();
    let resp = next.run(req).await;
    m.requests
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if let Some(ErrorCode(code)) = resp.extensions().get::<ErrorCode>().copied() {
        m.errors.get_or_create(&ErrorLabels { code }).inc();
    }
    resp
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The text exposition of every metric.
pub async fn render(d: &Netd, m: &Metrics) -> String {
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    let tasks = d.tasks().await;
    let enis: usize = tasks.iter().map(|t| t.enis.len()).sum();
    let groups = d.groups().await.len();
    let mut r = Registry::with_prefix("netd");
    r.register(
        "tasks",
        "Tasks with a network namespace",
        ConstGauge::new(count(tasks.len())),
    );
    r.register("enis", "ENIs of those tasks", ConstGauge::new(count(enis)));
    r.register(
        "security_groups",
        "Security groups defined",
        ConstGauge::new(count(groups)),
    );
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = encode_registry(&mut out, &m.registry);
    let _ = encode_registry(&mut out, &r);
    let _ = encode_eof(&mut out);
    out
}

/// `GET /metrics`.
pub async fn handler(d: Arc<Netd>, m: Arc<Metrics>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&d, &m).await,
    )
        .into_response()
}

/// The router of `--metrics-listen`: `GET /metrics` only.
pub fn router(d: Arc<Netd>, m: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(move || handler(d, m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_bounded() {
        assert_eq!(route_of("/v1/tasks/t-123"), "/v1/tasks/{id}");
        assert_eq!(
            route_of("/v1/tasks/x/enis/0/security-groups"),
            "/v1/tasks/{id}/enis/{index}/security-groups"
        );
        assert_eq!(
            route_of("/v1/security-groups/web"),
            "/v1/security-groups/{name}"
        );
        assert_eq!(route_of("/v1/tasks/a/b"), "unknown");
        assert_eq!(route_of("/anything-else"), "unknown");
    }
}
