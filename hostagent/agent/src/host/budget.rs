//! Per-task budgets against a hostile guest: the limits (daemon flags, defaults a
//! 10,000-task host can afford), a token bucket, and the ingest gate that throttles what
//! one guest sends and says when its task must be stopped.
//!
//! Where each budget is enforced:
//! - guest messages per second (events and log bytes): [`IngestGate`], in the agent's
//!   per-task reader (`vm::guest::forward`). Over budget the reader stops reading (the
//!   relay's byte-bounded queue, then the guest, wait); throttled without a break for
//!   [`Budgets::stop_after`], the task is stopped with [`IngestGate`]'s reason.
//! - bytes queued per task in the agent: the runtime-to-agent queue
//!   (`host::outbox`), oldest lines dropped and counted, a marker line delivered.
//! - state reports (and the store writes behind them) per task and second: the
//!   agent's event pump, container changes coalesced to the latest per container.
//! - bytes queued per task in the relay: `vm::relay` (`hostagent vm-relay --queue-bytes`).

use std::time::{Duration, Instant};

/// What a log line costs beyond its text (container name, stream, timestamp, framing).
pub const LINE_OVERHEAD: usize = 64;

/// The per-task limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Budgets {
    /// Guest messages other than log lines (state changes, health, errors) per second.
    pub guest_events_per_sec: f64,
    /// How many of them may come at once.
    pub guest_events_burst: f64,
    /// Bytes of log lines per second (each line costs its length + [`LINE_OVERHEAD`]).
    pub guest_log_bytes_per_sec: f64,
    /// How many log bytes may come at once.
    pub guest_log_burst_bytes: f64,
    /// A guest throttled this long without a break has its task stopped.
    pub stop_after: Duration,
    /// Bytes of log lines one task may have queued in the agent.
    pub task_log_queue_bytes: usize,
    /// Bytes of log lines all tasks together may have queued in the agent.
    pub total_log_queue_bytes: usize,
    /// State reports (each one store write) per task per second.
    pub reports_per_sec: f64,
    /// How many reports a task may send at once.
    pub report_burst: f64,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            guest_events_per_sec: 10.0,
            guest_events_burst: 100.0,
            guest_log_bytes_per_sec: 256.0 * 1024.0,
            guest_log_burst_bytes: 4.0 * 1024.0 * 1024.0,
            stop_after: Duration::from_secs(30),
            task_log_queue_bytes: 256 * 1024,
            total_log_queue_bytes: 64 << 20,
            reports_per_sec: 1.0,
            report_burst: 10.0,
        }
    }
}

/// The budget flags of the daemon (flattened into its command line).
#[derive(Debug, Clone, clap::Args)]
pub struct BudgetArgs {
    /// Guest messages other than log lines per task per second (state changes are
    /// coalesced to the latest per container).
    #[arg(long, default_value_t = 10.0)]
    pub guest_events_per_sec: f64,
    /// Burst of guest messages other than log lines per task.
    #[arg(long, default_value_t = 100.0)]
    pub guest_events_burst: f64,
    /// Log bytes per task per second read from the guest.
    #[arg(long, default_value_t = 262_144.0)]
    pub guest_log_bytes_per_sec: f64,
    /// Burst of log bytes per task.
    #[arg(long, default_value_t = 4_194_304.0)]
    pub guest_log_burst_bytes: f64,
    /// A guest throttled this long without a break has its task stopped.
    #[arg(long, default_value_t = 30_000)]
    pub budget_stop_after_ms: u64,
    /// Log bytes one task may have queued in the agent (oldest dropped beyond).
    #[arg(long, default_value_t = 262_144)]
    pub task_log_queue_bytes: usize,
    /// Log bytes all tasks together may have queued in the agent.
    #[arg(long, default_value_t = 67_108_864)]
    pub total_log_queue_bytes: usize,
    /// State reports to the control plane per task per second (each one store write).
    #[arg(long, default_value_t = 1.0)]
    pub task_reports_per_sec: f64,
    /// Burst of state reports per task.
    #[arg(long, default_value_t = 10.0)]
    pub task_report_burst: f64,
}

/// A budget flag out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{flag} must be a positive number")]
pub struct BudgetError {
    /// The flag.
    pub flag: &'static str,
}

impl BudgetArgs {
    /// The budgets, or the first flag that is not positive.
    pub fn budgets(&self) -> Result<Budgets, BudgetError> {
        for (flag, v) in [
            ("guest-events-per-sec", self.guest_events_per_sec),
            ("guest-events-burst", self.guest_events_burst),
            ("guest-log-bytes-per-sec", self.guest_log_bytes_per_sec),
            ("guest-log-burst-bytes", self.guest_log_burst_bytes),
            ("budget-stop-after-ms", self.budget_stop_after_ms as f64),
            ("task-log-queue-bytes", self.task_log_queue_bytes as f64),
            ("total-log-queue-bytes", self.total_log_queue_bytes as f64),
            ("task-reports-per-sec", self.task_reports_per_sec),
            ("task-report-burst", self.task_report_burst),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(BudgetError { flag });
            }
        }
        Ok(Budgets {
            guest_events_per_sec: self.guest_events_per_sec,
            guest_events_burst: self.guest_events_burst.max(1.0),
            guest_log_bytes_per_sec: self.guest_log_bytes_per_sec,
            guest_log_burst_bytes: self.guest_log_burst_bytes.max(1.0),
            stop_after: Duration::from_millis(self.budget_stop_after_ms),
            task_log_queue_bytes: self.task_log_queue_bytes,
            total_log_queue_bytes: self.total_log_queue_bytes,
            reports_per_sec: self.task_reports_per_sec,
            report_burst: self.task_report_burst.max(1.0),
        })
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved; starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    level: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            level: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `n` tokens (at most a burst), or says how long until they are there.
    pub fn take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let n = n.min(self.burst);
        if self.level >= n {
            self.level -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - self.level) / self.rate))
        }
    }

    /// Whether half a burst is saved beyond `cost` (at `now`; a full bucket always is).
    pub fn rested(&mut self, cost: f64, now: Instant) -> bool {
        self.refill(now);
        self.level >= (cost + self.burst / 2.0).min(self.burst)
    }

    /// Whether the bucket is full (at `now`): it can be forgotten.
    pub fn full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level >= self.burst
    }
}

/// What a guest message is, for the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything but a log line.
    Event,
    /// A log line of this many bytes.
    Log(usize),
}

/// The gate's answer for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Within budget: handle it.
    Now,
    /// Over budget: wait this long (reading nothing), then ask again.
    Wait(Duration),
    /// Over budget for too long: stop the task with this reason.
    Stop(String),
}

#[derive(Debug, Clone)]
struct Throttle {
    bucket: TokenBucket,
    /// Throttled since, without half a burst saved (beyond the next message) in between.
    since: Option<Instant>,
}

impl Throttle {
    fn admit(&mut self, cost: f64, now: Instant, stop_after: Duration) -> Result<(), Admit> {
        if self.bucket.rested(cost, now) {
            self.since = None;
        }
        match self.bucket.take(cost, now) {
            Ok(()) => Ok(()),
            Err(wait) => {
                let since = *self.since.get_or_insert(now);
                if now.saturating_duration_since(since) >= stop_after {
                    Err(Admit::Stop(String::new()))
                } else {
                    Err(Admit::Wait(wait.min(Duration::from_secs(1))))
                }
            }
        }
    }
}

/// One task's ingest budget: a bucket for events and one for log bytes. A guest that
/// keeps either empty for [`Budgets::stop_after`] is stopped.
#[derive(Debug, Clone)]
pub struct IngestGate {
    events: Throttle,
    logs: Throttle,
    budgets: Budgets,
}

/// The stoppedReason of a task whose guest exceeded its event budget.
pub fn event_budget_reason(b: &Budgets) -> String {
    format!(
        "Task stopped: the guest exceeded its event budget ({} messages/s) for {} s",
        b.guest_events_per_sec,
        b.stop_after.as_secs_f64()
    )
}

/// The stoppedReason of a task whose guest exceeded its log budget.
pub fn log_budget_reason(b: &Budgets) -> String {
    format!(
        "Task stopped: the guest exceeded its log budget ({} bytes/s) for {} s",
        b.guest_log_bytes_per_sec,
        b.stop_after.as_secs_f64()
    )
}

impl IngestGate {
    /// A gate with full buckets.
    pub fn new(budgets: &Budgets, now: Instant) -> IngestGate {
        IngestGate {
            events: Throttle {
                bucket: TokenBucket::new(
                    budgets.guest_events_per_sec,
                    budgets.guest_events_burst,
                    now,
                ),
                since: None,
            },
            logs: Throttle {
                bucket: TokenBucket::new(
                    budgets.guest_log_bytes_per_sec,
                    budgets.guest_log_burst_bytes,
                    now,
                ),
                since: None,
            },
            budgets: budgets.clone(),
        }
    }

    /// Whether a message of `kind` may be handled at `now`.
    pub fn admit(&mut self, kind: Kind, now: Instant) -> Admit {
        let stop_after = self.budgets.stop_after;
        let r = match kind {
            Kind::Event => self.events.admit(1.0, now, stop_after),
            Kind::Log(n) => self.logs.admit((n + LINE_OVERHEAD) as f64, now, stop_after),
        };
        match r {
            Ok(()) => Admit::Now,
            Err(Admit::Stop(_)) => Admit::Stop(match kind {
                Kind::Event => event_budget_reason(&self.budgets),
                Kind::Log(_) => log_budget_reason(&self.budgets),
            }),
            Err(a) => a,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Budgets {
        Budgets {
            guest_events_per_sec: 10.0,
            guest_events_burst: 20.0,
            guest_log_bytes_per_sec: 1000.0,
            guest_log_burst_bytes: 2000.0,
            stop_after: Duration::from_secs(5),
            ..Budgets::default()
        }
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        for _ in 0..5 {
            b.take(1.0, t0).unwrap();
        }
        let w = b.take(1.0, t0).unwrap_err();
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-6, "{w:?}");
        b.take(1.0, t0 + Duration::from_millis(100)).unwrap();
        assert!(!b.full(t0 + Duration::from_millis(100)));
        assert!(b.full(t0 + Duration::from_secs(10)));
        // More than a burst costs a burst (it can never be had otherwise).
        b.take(1e9, t0 + Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_flooding_guest_is_throttled_then_stopped_a_bursty_one_is_not() {
        let t0 = Instant::now();
        let mut g = IngestGate::new(&small(), t0);
        // A burst is fine.
        for _ in 0..20 {
            assert_eq!(g.admit(Kind::Event, t0), Admit::Now);
        }
        // Then it waits, and each message it sends at the rate it is admitted keeps it
        // throttled ...
        let mut t = t0;
        let mut waited = 0;
        let stopped = loop {
            match g.admit(Kind::Event, t) {
                Admit::Now => {}
                Admit::Wait(d) => {
                    waited += 1;
                    t += d;
                }
                Admit::Stop(r) => break r,
            }
            assert!(t < t0 + Duration::from_secs(60));
        };
        assert!(waited > 10);
        assert!(
            stopped.contains("event budget (10 messages/s) for 5 s"),
            "{stopped}"
        );
        let dt = t.duration_since(t0);
        assert!(
            dt >= Duration::from_secs(5) && dt < Duration::from_secs(6),
            "{dt:?}"
        );

        // A guest that pauses long enough between bursts is never stopped.
        let mut g = IngestGate::new(&small(), t0);
        let mut t = t0;
        for _ in 0..20 {
            for _ in 0..25 {
                match g.admit(Kind::Event, t) {
                    Admit::Now => {}
                    Admit::Wait(d) => t += d,
                    Admit::Stop(r) => panic!("{r}"),
                }
            }
            t += Duration::from_secs(3);
        }
        // Logs count bytes, and have their own reason.
        let mut g = IngestGate::new(&small(), t0);
        assert_eq!(g.admit(Kind::Log(1000), t0), Admit::Now);
        assert!(matches!(g.admit(Kind::Log(1000), t0), Admit::Wait(_)));
        let r = g.admit(Kind::Log(1000), t0 + Duration::from_secs(5));
        // 5 s later the bucket has refilled: admitted, not stopped.
        assert_eq!(r, Admit::Now);
        let mut t = t0 + Duration::from_secs(5);
        let r = loop {
            match g.admit(Kind::Log(1000), t) {
                Admit::Now => {}
                Admit::Wait(d) => t += d,
                Admit::Stop(r) => break r,
            }
        };
        assert!(r.contains("log budget (1000 bytes/s)"), "{r}");
    }

    #[test]
    fn flags_must_be_positive() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            b: BudgetArgs,
        }
        let c = Cli::parse_from(["x"]);
        assert_eq!(c.b.budgets().unwrap(), Budgets::default());
        let c = Cli::parse_from(["x", "--task-reports-per-sec", "0"]);
        assert_eq!(
            c.b.budgets().unwrap_err().to_string(),
            "--task-reports-per-sec must be a positive number"
        );
        let c = Cli::parse_from(["x", "--guest-events-per-sec", "NaN"]);
        assert!(c.b.budgets().is_err());
    }
}
