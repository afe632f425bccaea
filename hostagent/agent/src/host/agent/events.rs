//! The agent's event pump: the runtime's [`TaskEvent`](crate::host::runtime::TaskEvent)s (through the bounded
//! [`TaskEventsRx`]) become state reports, bounded log batches and metrics messages
//! (more methods of [`Agent`]).

use super::{
    Agent, LOG_BATCH_BYTES, LOG_BATCH_LINES, LOG_FLUSH_INTERVAL, MAX_QUEUED_TELEMETRY,
    SHIPPING_CACHE_TASKS,
};
use crate::host::budget::TokenBucket;
use crate::host::outbox::{TaskDelta, TaskEventsRx};
use crate::host::runtime::TaskRuntime;
use crate::util::{lock, now_ms};
use agent_proto::{AgentMessage, AwsLogs, ContainerState, Status};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Per task: container changes not yet reported, and the report budget.
struct Reports {
    pending: HashMap<String, Vec<ContainerState>>,
    buckets: HashMap<String, TokenBucket>,
    rate: f64,
    burst: f64,
}

/// The runtime's task events: container changes and ends become state reports,
/// log lines become bounded batches, samples become metrics messages.
impl<R: TaskRuntime> Agent<R> {
    /// Consumes the runtime's events until every sender is gone (then flushes what
    /// the channel can still take). Run it as a task beside the channel:
    /// `tokio::spawn(agent.clone().pump_events(rx))`.
    ///
    /// - `Container`: changes are coalesced to the latest state per container (the
    ///   queue does that) and reported at most [`Budgets::reports_per_sec`] times a
    ///   second per task (burst [`Budgets::report_burst`]): each report is one registry
    ///   write and one `taskStateChange`.
    /// - `Stopped`: the task is recorded and reported STOPPED with the reason and exit
    ///   codes (after the log lines read before it are handed to the channel), never
    ///   held back by the report budget.
    /// - `Log`: lines of containers with `awslogs` options are sent in batches of at
    ///   most [`LOG_BATCH_LINES`] lines / [`LOG_BATCH_BYTES`] bytes, every
    ///   [`LOG_FLUSH_INTERVAL`] while the channel takes them. While it does not
    ///   (disconnected), at most [`MAX_QUEUED_TELEMETRY`] batches wait for it and the
    ///   rest stay in the task's queue, whose oldest lines are dropped and counted
    ///   ([`Agent::logs_dropped`]; a marker line and the batch's `dropped` tell the
    ///   control plane).
    /// - `Metrics`: a `taskMetrics` message (dropped and counted when the channel has
    ///   not taken the previous ones).
    ///
    /// [`Budgets::reports_per_sec`]: crate::host::budget::Budgets::reports_per_sec
    /// [`Budgets::report_burst`]: crate::host::budget::Budgets::report_burst
    pub async fn pump_events(self: Arc<Self>, rx: TaskEventsRx) {
        let _ = self.outbox_dropped.set(rx.dropped_counter());
        let mut shipping: HashMap<String, HashSet<String>> = HashMap::new();
        let mut reports = Reports {
            pending: HashMap::new(),
            buckets: HashMap::new(),
            rate: rx.budgets().reports_per_sec,
            burst: rx.budgets().report_burst,
        };
        let mut tick = tokio::time::interval(LOG_FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let flush_lines = tokio::select! {
                _ = rx.changed() => false,
                _ = tick.tick() => true,
            };
            for d in rx.take_ready() {
                self.apply_delta(&rx, &mut shipping, &mut reports, d);
            }
            if flush_lines || rx.queued_log_bytes() >= LOG_BATCH_BYTES {
                self.flush_logs(&rx, &mut shipping);
            }
            self.send_reports(&mut reports, false);
            if rx.closed() {
                break;
            }
        }
        for d in rx.take_ready() {
            self.apply_delta(&rx, &mut shipping, &mut reports, d);
        }
        self.flush_logs(&rx, &mut shipping);
        self.send_reports(&mut reports, true);
    }

    fn apply_delta(
        &self,
        rx: &TaskEventsRx,
        shipping: &mut HashMap<String, HashSet<String>>,
        reports: &mut Reports,
        d: TaskDelta,
    ) {
        let arn = d.task_arn;
        if !d.containers.is_empty() {
            let p = reports.pending.entry(arn.clone()).or_default();
            for state in d.containers {
                match p.iter_mut().find(|c| c.name == state.name) {
                    Some(c) => *c = state,
                    None => p.push(state),
                }
            }
        }
        if let Some((cpu, mem)) = d.metrics {
            let timestamp = now_ms();
            self.send_telemetry(AgentMessage::TaskMetrics {
                task_arn: arn.clone(),
                cpu_utilization: cpu,
                memory_utilization: mem,
                timestamp,
            });
        }
        if let Some((reason, containers)) = d.stopped {
            // The final states supersede changes not yet reported.
            reports.pending.remove(&arn);
            reports.buckets.remove(&arn);
            if rx.has_lines(&arn) {
                self.flush_logs(rx, shipping);
            }
            shipping.remove(&arn);
            self.task_ended(&arn, reason, containers);
        }
    }

    /// Reports the pending container changes of every task whose budget allows.
    fn send_reports(&self, reports: &mut Reports, force: bool) {
        let now = Instant::now();
        let (rate, burst) = (reports.rate, reports.burst);
        let buckets = &mut reports.buckets;
        reports.pending.retain(|arn, states| {
            let b = buckets
                .entry(arn.clone())
                .or_insert_with(|| TokenBucket::new(rate, burst, now));
            if b.take(1.0, now).is_err() && !force {
                return true;
            }
            self.container_changed(arn, std::mem::take(states));
            false
        });
        // Forget the buckets of tasks that have been quiet long enough.
        if buckets.len() > reports.pending.len() {
            let pending = &reports.pending;
            buckets.retain(|arn, b| pending.contains_key(arn) || !b.full(now));
        }
    }

    /// The channel took `m` from the outgoing queue (it calls this for every message).
    pub fn taken(&self, m: &AgentMessage) {
        if matches!(
            m,
            AgentMessage::Logs { .. } | AgentMessage::TaskMetrics { .. }
        ) {
            let _ = self
                .telemetry_queued
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }

    /// Log lines dropped so far (a task over its queue budget, or no room while the
    /// channel was down).
    pub fn logs_dropped(&self) -> u64 {
        self.logs_dropped.load(Ordering::Relaxed)
            + self
                .outbox_dropped
                .get()
                .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Metrics samples dropped so far.
    pub fn metrics_dropped(&self) -> u64 {
        self.metrics_dropped.load(Ordering::Relaxed)
    }

    /// Whether `container` of `task_arn` has awslogs options (cached per task).
    fn ships_logs(
        &self,
        cache: &mut HashMap<String, HashSet<String>>,
        task_arn: &str,
        container: &str,
    ) -> bool {
        if !cache.contains_key(task_arn) {
            let names = match self.store.get(task_arn) {
                Ok(Some(rec)) => rec
                    .spec
                    .containers
                    .iter()
                    .filter(|c| AwsLogs::of(c).is_some())
                    .map(|c| c.name.clone())
                    .collect(),
                // Unknown to the registry (a launch records the task before the
                // runtime starts it): nothing of it is shipped.
                Ok(None) => HashSet::new(),
                Err(e) => {
                    tracing::error!(task = %task_arn, "task registry read: {e}");
                    return false;
                }
            };
            if cache.len() >= SHIPPING_CACHE_TASKS {
                cache.clear();
            }
            cache.insert(task_arn.to_string(), names);
        }
        cache.get(task_arn).is_some_and(|s| s.contains(container))
    }

    /// Hands batches to the channel while it has room for them.
    fn flush_logs(&self, rx: &TaskEventsRx, shipping: &mut HashMap<String, HashSet<String>>) {
        loop {
            if self.telemetry_queued.load(Ordering::SeqCst) >= MAX_QUEUED_TELEMETRY {
                return;
            }
            let (lines, dropped) = rx.take_lines(LOG_BATCH_LINES, LOG_BATCH_BYTES, |t, c| {
                self.ships_logs(shipping, t, c)
            });
            if lines.is_empty() && dropped == 0 {
                return;
            }
            if lines.is_empty() {
                continue;
            }
            let n = lines.len() as u64;
            if !self.send_telemetry(AgentMessage::Logs { lines, dropped }) {
                self.logs_dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Queues a log batch or metrics sample if the channel has room; false if dropped.
    fn send_telemetry(&self, m: AgentMessage) -> bool {
        let metrics = matches!(m, AgentMessage::TaskMetrics { .. });
        let room = self
            .telemetry_queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_QUEUED_TELEMETRY).then_some(n + 1)
            })
            .is_ok();
        let sent = room && self.out.send(m).is_ok();
        if room && !sent {
            self.telemetry_queued.fetch_sub(1, Ordering::SeqCst);
        }
        if !sent && metrics {
            self.metrics_dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Containers of a running task changed: one registry write, one report.
    fn container_changed(&self, arn: &str, states: Vec<ContainerState>) {
        // Read and written under the records lock: a launch that records RUNNING
        // meanwhile is not overwritten with the PENDING this read would have seen.
        let records = lock(&self.records);
        let mut rec = match self.store.get(arn) {
            Ok(Some(r)) if r.last_status != Status::Stopped => r,
            Ok(_) => return,
            Err(e) => return tracing::error!(task = %arn, "task registry read: {e}"),
        };
        for state in states {
            match rec.containers.iter_mut().find(|c| c.name == state.name) {
                Some(c) => *c = state,
                None => rec.containers.push(state),
            }
        }
        self.commit_locked(&records, &rec);
    }

    /// The runtime says the task ended on its own (its resources are released).
    fn task_ended(&self, arn: &str, reason: String, containers: Vec<ContainerState>) {
        let mut inflight = lock(&self.inflight);
        if let Some(i) = inflight.get_mut(arn) {
            // Recorded once the launch's RUNNING is.
            i.ended = Some((reason, containers));
            return;
        }
        let rec = match self.store.get(arn) {
            Ok(Some(r)) if r.last_status != Status::Stopped => r,
            Ok(_) => return,
            Err(e) => return tracing::error!(task = %arn, "task registry read: {e}"),
        };
        if lock(&self.stopping).contains(arn) {
            // A stop is under way; it records STOPPED with the stop's reason.
            return;
        }
        self.stopped(rec.spec, reason, containers);
        drop(inflight);
    }
}
