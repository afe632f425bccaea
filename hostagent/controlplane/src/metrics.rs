//! The Prometheus metrics recorded as things happen (API call latency and errors per
//! operation); the `/metrics` endpoint that also reads the cells, hosts, log pipeline
//! and audit log at each scrape is [`crate::scrape`].
//!
//! Label values are bounded: an operation label is one of the operation tables'
//! names or `unknown`; an error label is an ECS/Logs error type; a cell label is a
//! cell number below `--cells`. No tenant-chosen value (cluster, target) is a label.
//! The same counters stay available as JSON at `GET /metrics.json`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Content type of the text exposition written by `prometheus-client`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of one API call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// `ecs` or `logs`.
    pub api: &'static str,
    /// The operation name, or `unknown`.
    pub operation: String,
}

/// Labels of one refused call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `ecs` or `logs`.
    pub api: &'static str,
    /// The error type (`ClientException`, `ThrottlingException`, ...).
    pub error: &'static str,
}

/// Labels of a per-cell gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CellLabels {
    /// The cell number.
    pub cell: u32,
}

/// The metrics recorded as things happen (the others are read at each scrape).
#[derive(Debug)]
pub struct Metrics {
    requests: Family<OpLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
    registry: Registry,
}

fn latency_histogram() -> Histogram {
    crate::placement::latency_histogram()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The registry of the recorded metrics.
    pub fn new() -> Metrics {
        let requests = Family::<OpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        let mut registry = Registry::with_prefix("controlplane");
        registry.register(
            "api_request_duration_seconds",
            "Time to answer an API call, by API and operation",
            requests.clone(),
        );
        registry.register(
            "api_errors",
            "API calls answered with an error, by API and error type",
            errors.clone(),
        );
        registry.register(
            "placement_duration_seconds",
            "Time to choose a host for a task",
            crate::placement::PLACEMENT_SECONDS.clone(),
        );
        Metrics {
            requests,
            errors,
            registry,
        }
    }
}

impl Metrics {
    /// Records one call's latency.
    pub fn observe(&self, labels: &OpLabels, secs: f64) {
        self.requests.get_or_create(labels).observe(secs);
    }

    /// Counts one refused call.
    pub fn count_error(&self, labels: &ErrorLabels) {
        self.errors.get_or_create(labels).inc();
    }

    /// The registry of the recorded metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
