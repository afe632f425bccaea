//! Prometheus metrics of the agent (text exposition written by `prometheus-client`),
//! served by `hostagent --metrics-listen ADDR` as `GET /metrics`: the time to apply
//! each kind of control-plane message, the channel's state and reconnects, and at
//! each scrape the agent's task and telemetry counts ([`AgentStats`]).
//!
//! The recorded metrics are process-wide (one agent per process); label values are
//! the message kinds, never a task ARN.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Instant;

/// Content type of the text exposition written by `prometheus-client`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

struct Recorded {
    control: Family<KindLabels, Histogram, fn() -> Histogram>,
    connected: Gauge,
    connects: Counter,
    losses: Counter,
    registry: Registry,
}

fn latency_histogram() -> Histogram {
    // 10 µs to ~0.33 s: applying a message only records and spawns.
    Histogram::new(exponential_buckets(0.00001, 2.0, 16))
}

static RECORDED: LazyLock<Recorded> = LazyLock::new(|| {
    let control = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
        latency_histogram as fn() -> Histogram,
    );
    let (connected, connects, losses) = (Gauge::default(), Counter::default(), Counter::default());
    let mut registry = Registry::with_prefix("hostagent");
    registry.register(
        "control_message_duration_seconds",
        "Time to apply a control-plane message, by message kind",
        control.clone(),
    );
    registry.register(
        "channel_connected",
        "1 while the agent channel is open, else 0",
        connected.clone(),
    );
    registry.register(
        "channel_connects",
        "Agent channel connections opened",
        connects.clone(),
    );
    registry.register(
        "channel_losses",
        "Agent channel connections lost or refused",
        losses.clone(),
    );
    Recorded {
        control,
        connected,
        connects,
        losses,
        registry,
    }
});

/// Records how long applying a message of `kind` took.
pub fn observe_control(kind: &'static str, started: Instant) {
    RECORDED
        .control
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
}

/// The channel opened.
pub fn channel_up() {
    RECORDED.connects.inc();
    RECORDED.connected.set(1);
}

/// The channel ended (lost, refused or closed).
pub fn channel_down() {
    if RECORDED.connected.set(0) == 1 {
        RECORDED.losses.inc();
    }
}

/// The agent's counts read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentStats {
    /// Tasks not STOPPED in the registry.
    pub tasks_active: usize,
    /// Launches in progress.
    pub launches_in_progress: usize,
    /// Stops in progress.
    pub stops_in_progress: usize,
    /// Log batches and metrics samples queued for the channel.
    pub telemetry_queued: usize,
    /// Log lines dropped.
    pub logs_dropped: u64,
    /// Metrics samples dropped.
    pub metrics_dropped: u64,
    /// Lines the runtime-to-agent queue dropped.
    pub outbox_dropped: u64,
    /// Whether draining.
    pub draining: bool,
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The text exposition of every metric.
pub fn render(s: &AgentStats) -> String {
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    let mut r = Registry::with_prefix("hostagent");
    for (name, help, v) in [
        ("tasks_active", "Tasks not STOPPED", count(s.tasks_active)),
        (
            "launches_in_progress",
            "Launches in progress",
            count(s.launches_in_progress),
        ),
        (
            "stops_in_progress",
            "Stops in progress",
            count(s.stops_in_progress),
        ),
        (
            "telemetry_queue_depth",
            "Log batches and metrics samples queued for the channel",
            count(s.telemetry_queued),
        ),
        (
            "draining",
            "1 while draining, else 0",
            i64::from(s.draining),
        ),
    ] {
        r.register(name, help, ConstGauge::new(v));
    }
    for (name, help, v) in [
        ("log_lines_dropped", "Log lines dropped", s.logs_dropped),
        (
            "metrics_samples_dropped",
            "Task metrics samples dropped",
            s.metrics_dropped,
        ),
        (
            "outbox_lines_dropped",
            "Lines the runtime-to-agent queue dropped",
            s.outbox_dropped,
        ),
    ] {
        r.register(name, help, ConstCounter::new(v));
    }
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = encode_registry(&mut out, &RECORDED.registry);
    let _ = encode_registry(&mut out, &r);
    let _ = encode_eof(&mut out);
    out
}
