//! The agent's event pump: the runtime's [`TaskEvent`]s become state reports, bounded
//! log batches and metrics messages (more methods of [`Agent`]).

use super::{
    Agent, LOG_BATCH_BYTES, LOG_BATCH_LINES, LOG_BUFFER_BYTES, LOG_BUFFER_LINES,
    LOG_FLUSH_INTERVAL, MAX_QUEUED_TELEMETRY, SHIPPING_CACHE_TASKS,
};
use crate::host::runtime::{TaskEvent, TaskRuntime};
use crate::util::{lock, now_ms};
use agent_proto::{truncate_log_line, AgentMessage, AwsLogs, ContainerState, LogLine, Status};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Log lines waiting for the channel, bounded in lines and bytes.
#[derive(Default)]
struct LogBuffer {
    lines: VecDeque<LogLine>,
    bytes: usize,
    /// Dropped since the last batch sent.
    dropped: u64,
}

/// The runtime's [`TaskEvent`]s: container changes and ends become state reports,
/// log lines become bounded batches, samples become metrics messages.
impl<R: TaskRuntime> Agent<R> {
    /// Consumes the runtime's events until every sender is gone (then flushes what
    /// the channel can still take). Run it as a task beside the channel:
    /// `tokio::spawn(agent.clone().pump_events(rx))`.
    ///
    /// - `Container`: the registry record is updated and a `taskStateChange` with the
    ///   container's new state is sent.
    /// - `Stopped`: the task is recorded and reported STOPPED with the reason and exit
    ///   codes (after the log lines read before it are handed to the channel).
    /// - `Log`: lines of containers with `awslogs` options are sent in batches of at
    ///   most [`LOG_BATCH_LINES`] lines / [`LOG_BATCH_BYTES`] bytes, each line at most
    ///   [`LOG_FLUSH_INTERVAL`] after it arrived while the channel takes them. While it
    ///   does not (disconnected), at most [`MAX_QUEUED_TELEMETRY`] batches wait for it
    ///   and the rest stay in a buffer of [`LOG_BUFFER_LINES`] lines /
    ///   [`LOG_BUFFER_BYTES`] bytes whose oldest lines are dropped and counted
    ///   ([`Agent::logs_dropped`]; the next batch tells the control plane).
    /// - `Metrics`: a `taskMetrics` message (dropped and counted when the channel has
    ///   not taken the previous ones).
    pub async fn pump_events(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<TaskEvent>) {
        let mut buf = LogBuffer::default();
        let mut shipping: HashMap<String, HashSet<String>> = HashMap::new();
        let mut tick = tokio::time::interval(LOG_FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    None => break,
                    Some(TaskEvent::Log { task_arn, container, stream, timestamp_ms, line }) => {
                        if !self.ships_logs(&mut shipping, &task_arn, &container) {
                            continue;
                        }
                        let mut line = line;
                        truncate_log_line(&mut line);
                        self.buffer_line(&mut buf, LogLine {
                            task_arn, container, stream, timestamp: timestamp_ms, line,
                        });
                        if buf.lines.len() >= LOG_BATCH_LINES || buf.bytes >= LOG_BATCH_BYTES {
                            self.flush_logs(&mut buf);
                        }
                    }
                    Some(TaskEvent::Metrics { task_arn, cpu_utilization, memory_utilization }) => {
                        let timestamp = now_ms();
                        self.send_telemetry(AgentMessage::TaskMetrics {
                            task_arn, cpu_utilization, memory_utilization, timestamp,
                        });
                    }
                    Some(TaskEvent::Container { task_arn, state }) => {
                        self.container_changed(&task_arn, state)
                    }
                    Some(TaskEvent::Stopped { task_arn, reason, containers }) => {
                        self.flush_logs(&mut buf);
                        shipping.remove(&task_arn);
                        self.task_ended(&task_arn, reason, containers);
                    }
                },
                _ = tick.tick() => self.flush_logs(&mut buf),
            }
        }
        self.flush_logs(&mut buf);
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

    /// Log lines dropped so far (buffer full while the channel was down).
    pub fn logs_dropped(&self) -> u64 {
        self.logs_dropped.load(Ordering::Relaxed)
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

    fn buffer_line(&self, buf: &mut LogBuffer, line: LogLine) {
        buf.bytes += line.line.len();
        buf.lines.push_back(line);
        while buf.lines.len() > LOG_BUFFER_LINES || buf.bytes > LOG_BUFFER_BYTES {
            let Some(old) = buf.lines.pop_front() else {
                break;
            };
            buf.bytes -= old.line.len();
            buf.dropped += 1;
            self.logs_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands batches to the channel while it has room for them.
    fn flush_logs(&self, buf: &mut LogBuffer) {
        while !buf.lines.is_empty() {
            if self.telemetry_queued.load(Ordering::SeqCst) >= MAX_QUEUED_TELEMETRY {
                return;
            }
            let (mut lines, mut bytes) = (Vec::new(), 0);
            while let Some(l) = buf.lines.front() {
                if lines.len() == LOG_BATCH_LINES
                    || (!lines.is_empty() && bytes + l.line.len() > LOG_BATCH_BYTES)
                {
                    break;
                }
                bytes += l.line.len();
                if let Some(l) = buf.lines.pop_front() {
                    lines.push(l);
                }
            }
            buf.bytes -= bytes;
            let n = lines.len() as u64;
            let dropped = std::mem::take(&mut buf.dropped);
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

    /// A container of a running task changed: record and report it.
    fn container_changed(&self, arn: &str, state: ContainerState) {
        let mut rec = match self.store.get(arn) {
            Ok(Some(r)) if r.last_status != Status::Stopped => r,
            Ok(_) => return,
            Err(e) => return tracing::error!(task = %arn, "task registry read: {e}"),
        };
        match rec.containers.iter_mut().find(|c| c.name == state.name) {
            Some(c) => *c = state,
            None => rec.containers.push(state),
        }
        self.commit(&rec);
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
