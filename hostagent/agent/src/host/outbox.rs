//! The bounded queue between a task runtime and the agent ([`TaskEvents`] ->
//! [`TaskEventsRx`]): one small outbox per task instead of an unbounded channel.
//!
//! - Container changes are coalesced to the latest state per container, metrics to the
//!   latest sample, the end report kept once: a guest flooding state changes costs a
//!   few hundred bytes, however fast it goes.
//! - Log lines are bounded in bytes per task ([`Budgets::task_log_queue_bytes`]) and in
//!   total ([`Budgets::total_log_queue_bytes`]): a task over either loses its own oldest
//!   lines (never another task's), counted per container; the consumer gets a marker
//!   line `[hostagent] N lines dropped ...` where they were.
//! - The consumer is woken (a [`tokio::sync::Notify`]) when a task has changes; log
//!   lines are taken when the consumer has room for them, round-robin over the tasks.

use super::budget::{Budgets, LINE_OVERHEAD};
use crate::util::lock;
/// Which output stream a container log line came from.
pub use agent_proto::LogStream;
use agent_proto::{ContainerState, LogLine};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most containers remembered per task (a task has at most 10).
pub const MAX_CONTAINERS: usize = 16;
/// Most lines taken from one task in a row (round-robin fairness).
const FAIR_SHARE_LINES: usize = 100;

/// What a runtime reports about a task after `TaskRuntime::launch` (or
/// `TaskRuntime::adopt`) returned: the agent turns these into channel messages.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// A container changed state while the task runs (e.g. a non-essential one exited).
    Container {
        /// The task.
        task_arn: String,
        /// The container's new state.
        state: ContainerState,
    },
    /// The task ended on its own (an essential container exited, the VM died). The
    /// runtime has released the task's resources before sending this.
    Stopped {
        /// The task.
        task_arn: String,
        /// The stoppedReason, e.g. `Essential container in task exited`.
        reason: String,
        /// Final container states with exit codes.
        containers: Vec<ContainerState>,
    },
    /// One line of a container's output.
    Log {
        /// The task.
        task_arn: String,
        /// The container.
        container: String,
        /// stdout or stderr.
        stream: LogStream,
        /// When the guest read it (ms since the Unix epoch).
        timestamp_ms: u64,
        /// The line, without its newline.
        line: String,
    },
    /// A resource-use sample of the task's microVM.
    Metrics {
        /// The task.
        task_arn: String,
        /// CPU use as a percentage of the task's CPU units (100 = all of them).
        cpu_utilization: f64,
        /// Memory use as a percentage of the task's memory.
        memory_utilization: f64,
    },
}

/// The text of the marker line for `n` dropped lines.
pub fn dropped_marker(n: u64) -> String {
    format!("[hostagent] {n} lines dropped: the task is over its log queue budget")
}

/// The consumer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the agent no longer takes task events")]
pub struct Closed;

struct Line {
    container: String,
    stream: LogStream,
    timestamp: u64,
    line: String,
}

impl Line {
    fn cost(&self) -> usize {
        self.line.len() + self.container.len() + LINE_OVERHEAD
    }
}

/// What the consumer takes for one task at once (everything but log lines).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskDelta {
    /// The task.
    pub task_arn: String,
    /// Latest state of each container that changed.
    pub containers: Vec<ContainerState>,
    /// Latest metrics sample: CPU %, memory %.
    pub metrics: Option<(f64, f64)>,
    /// The task ended: reason and final container states.
    pub stopped: Option<(String, Vec<ContainerState>)>,
}

#[derive(Default)]
struct Outbox {
    delta: TaskDelta,
    /// In `Boxes::ready`.
    ready: bool,
    lines: VecDeque<Line>,
    bytes: usize,
    /// Lines dropped per container since the consumer last took lines.
    dropped: Vec<(String, u64)>,
    /// In `Boxes::with_lines`.
    listed: bool,
}

impl Outbox {
    fn is_empty(&self) -> bool {
        !self.ready && self.lines.is_empty()
    }
}

#[derive(Default)]
struct Boxes {
    tasks: HashMap<String, Outbox>,
    ready: VecDeque<String>,
    with_lines: VecDeque<String>,
    bytes: usize,
    senders_gone: bool,
    receiver_gone: bool,
}

struct Shared {
    m: Mutex<Boxes>,
    notify: tokio::sync::Notify,
    budgets: Budgets,
    dropped: Arc<AtomicU64>,
}

/// Marks the queue closed when the last sender goes.
struct SenderGuard(Arc<Shared>);

impl Drop for SenderGuard {
    fn drop(&mut self) {
        lock(&self.0.m).senders_gone = true;
        self.0.notify.notify_one();
    }
}

/// Where a runtime sends [`TaskEvent`]s (cheap to clone; thread-safe, never blocks).
#[derive(Clone)]
pub struct TaskEvents {
    guard: Arc<SenderGuard>,
}

/// The agent's end of [`TaskEvents`].
pub struct TaskEventsRx {
    shared: Arc<Shared>,
    /// For [`TaskEventsRx::recv`]: taken and not yet returned.
    local: VecDeque<TaskEvent>,
}

impl Drop for TaskEventsRx {
    fn drop(&mut self) {
        let mut b = lock(&self.shared.m);
        b.receiver_gone = true;
        b.tasks.clear();
        b.ready.clear();
        b.with_lines.clear();
        b.bytes = 0;
    }
}

/// A queue with `budgets`' log limits.
pub fn task_events(budgets: &Budgets) -> (TaskEvents, TaskEventsRx) {
    let shared = Arc::new(Shared {
        m: Mutex::new(Boxes::default()),
        notify: tokio::sync::Notify::new(),
        budgets: budgets.clone(),
        dropped: Arc::new(AtomicU64::new(0)),
    });
    (
        TaskEvents {
            guard: Arc::new(SenderGuard(shared.clone())),
        },
        TaskEventsRx {
            shared,
            local: VecDeque::new(),
        },
    )
}

impl TaskEvents {
    /// Queues `ev` (coalesced, or bounded as the module says); `Closed` once the agent
    /// no longer takes events.
    pub fn send(&self, ev: TaskEvent) -> Result<(), Closed> {
        let sh = &self.guard.0;
        let mut b = lock(&sh.m);
        if b.receiver_gone {
            return Err(Closed);
        }
        let arn = match &ev {
            TaskEvent::Container { task_arn, .. }
            | TaskEvent::Stopped { task_arn, .. }
            | TaskEvent::Log { task_arn, .. }
            | TaskEvent::Metrics { task_arn, .. } => task_arn.clone(),
        };
        let bx = &mut *b;
        let ob = bx.tasks.entry(arn.clone()).or_default();
        let mut wake = false;
        match ev {
            TaskEvent::Container { state, .. } => {
                let cs = &mut ob.delta.containers;
                if let Some(i) = cs.iter().position(|c| c.name == state.name) {
                    cs[i] = state;
                } else if cs.len() < MAX_CONTAINERS {
                    cs.push(state);
                }
                wake = true;
            }
            TaskEvent::Metrics {
                cpu_utilization,
                memory_utilization,
                ..
            } => {
                ob.delta.metrics = Some((cpu_utilization, memory_utilization));
                wake = true;
            }
            TaskEvent::Stopped {
                reason, containers, ..
            } => {
                if ob.delta.stopped.is_none() {
                    ob.delta.stopped = Some((reason, containers));
                }
                wake = true;
            }
            TaskEvent::Log {
                container,
                stream,
                timestamp_ms,
                line,
                ..
            } => {
                let l = Line {
                    container,
                    stream,
                    timestamp: timestamp_ms,
                    line,
                };
                let cost = l.cost();
                ob.bytes += cost;
                bx.bytes += cost;
                ob.lines.push_back(l);
                if !ob.listed {
                    ob.listed = true;
                    bx.with_lines.push_back(arn.clone());
                }
                // Over budget: this task loses its own oldest lines (the newest stays).
                while (ob.bytes > sh.budgets.task_log_queue_bytes
                    || bx.bytes > sh.budgets.total_log_queue_bytes)
                    && ob.lines.len() > 1
                {
                    let Some(old) = ob.lines.pop_front() else {
                        break;
                    };
                    let c = old.cost();
                    ob.bytes -= c;
                    bx.bytes -= c;
                    match ob.dropped.iter_mut().find(|d| d.0 == old.container) {
                        Some(d) => d.1 += 1,
                        None => ob.dropped.push((old.container, 1)),
                    }
                    sh.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if wake && !ob.ready {
            ob.ready = true;
            bx.ready.push_back(arn);
        }
        drop(b);
        if wake {
            sh.notify.notify_one();
        }
        Ok(())
    }
}

impl TaskEventsRx {
    /// Waits until a task has changes, the senders are gone, or (cancel-safe) forever.
    pub async fn changed(&self) {
        self.shared.notify.notified().await
    }

    /// Every sender is gone (what is queued can still be taken).
    pub fn closed(&self) -> bool {
        lock(&self.shared.m).senders_gone
    }

    /// Every sender is gone and nothing is left to take.
    pub fn is_finished(&self) -> bool {
        let b = lock(&self.shared.m);
        b.senders_gone && b.tasks.is_empty()
    }

    /// The budgets this queue was made with.
    pub fn budgets(&self) -> &Budgets {
        &self.shared.budgets
    }

    /// Lines dropped so far (a live counter, shared).
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.shared.dropped.clone()
    }

    /// Bytes of log lines queued, all tasks.
    pub fn queued_log_bytes(&self) -> usize {
        lock(&self.shared.m).bytes
    }

    /// The changes (not the log lines) of every task that has some.
    pub fn take_ready(&self) -> Vec<TaskDelta> {
        let mut b = lock(&self.shared.m);
        let b = &mut *b;
        let mut out = Vec::with_capacity(b.ready.len());
        while let Some(arn) = b.ready.pop_front() {
            let Some(ob) = b.tasks.get_mut(&arn) else {
                continue;
            };
            ob.ready = false;
            let mut d = std::mem::take(&mut ob.delta);
            d.task_arn = arn.clone();
            out.push(d);
            if ob.is_empty() {
                b.tasks.remove(&arn);
            }
        }
        out
    }

    /// Whether `task_arn` still has log lines queued.
    pub fn has_lines(&self, task_arn: &str) -> bool {
        lock(&self.shared.m)
            .tasks
            .get(task_arn)
            .is_some_and(|o| !o.lines.is_empty())
    }

    /// Up to `max_lines` lines / `max_bytes` bytes of log text, round-robin over the
    /// tasks, oldest first within a task, each task's drop marker(s) before its lines.
    /// `keep(task, container)` filters (a dropped line is still counted). Returns the
    /// lines and how many lines the markers among them report.
    pub fn take_lines(
        &self,
        max_lines: usize,
        max_bytes: usize,
        mut keep: impl FnMut(&str, &str) -> bool,
    ) -> (Vec<LogLine>, u64) {
        let mut b = lock(&self.shared.m);
        let b = &mut *b;
        let (mut out, mut bytes, mut dropped) = (Vec::new(), 0usize, 0u64);
        while out.len() < max_lines && bytes < max_bytes {
            let Some(arn) = b.with_lines.pop_front() else {
                break;
            };
            let Some(ob) = b.tasks.get_mut(&arn) else {
                continue;
            };
            if !ob.dropped.is_empty() {
                let ts = ob
                    .lines
                    .front()
                    .map_or_else(crate::util::now_ms, |l| l.timestamp);
                for (container, n) in std::mem::take(&mut ob.dropped) {
                    dropped += n;
                    if keep(&arn, &container) {
                        out.push(LogLine {
                            task_arn: arn.clone(),
                            container,
                            stream: LogStream::Stderr,
                            timestamp: ts,
                            line: dropped_marker(n),
                        });
                    }
                }
            }
            let mut taken = 0;
            while let Some(l) = ob.lines.front() {
                if out.len() >= max_lines
                    || taken >= FAIR_SHARE_LINES
                    || (!out.is_empty() && bytes + l.line.len() > max_bytes)
                {
                    break;
                }
                let Some(l) = ob.lines.pop_front() else { break };
                let c = l.cost();
                ob.bytes -= c;
                b.bytes -= c;
                taken += 1;
                if keep(&arn, &l.container) {
                    bytes += l.line.len();
                    out.push(LogLine {
                        task_arn: arn.clone(),
                        container: l.container,
                        stream: l.stream,
                        timestamp: l.timestamp,
                        line: l.line,
                    });
                }
            }
            if ob.lines.is_empty() {
                ob.listed = false;
                if ob.is_empty() {
                    b.tasks.remove(&arn);
                }
            } else {
                // Its turn comes again after every other task's.
                b.with_lines.push_back(arn);
                if taken == 0 {
                    break;
                }
            }
        }
        (out, dropped)
    }

    /// The next event, one at a time (for simple consumers such as `vm-run`): the
    /// changes of each task (containers, metrics, end), then log lines; `None` once
    /// every sender is gone and nothing is left.
    pub async fn recv(&mut self) -> Option<TaskEvent> {
        loop {
            if let Some(ev) = self.try_recv() {
                return Some(ev);
            }
            if self.is_finished() {
                return None;
            }
            tokio::select! {
                _ = self.changed() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<TaskEvent> {
        if self.local.is_empty() {
            for d in self.take_ready() {
                let arn = d.task_arn;
                for state in d.containers {
                    self.local.push_back(TaskEvent::Container {
                        task_arn: arn.clone(),
                        state,
                    });
                }
                if let Some((cpu, mem)) = d.metrics {
                    self.local.push_back(TaskEvent::Metrics {
                        task_arn: arn.clone(),
                        cpu_utilization: cpu,
                        memory_utilization: mem,
                    });
                }
                // Lines read before the end come before it.
                while self.has_lines(&arn) && d.stopped.is_some() {
                    self.take_lines_into_local(Some(&arn));
                }
                if let Some((reason, containers)) = d.stopped {
                    self.local.push_back(TaskEvent::Stopped {
                        task_arn: arn,
                        reason,
                        containers,
                    });
                }
            }
        }
        if self.local.is_empty() {
            self.take_lines_into_local(None);
        }
        self.local.pop_front()
    }

    fn take_lines_into_local(&mut self, only: Option<&str>) {
        let (lines, _) = self.take_lines(1000, 1 << 20, |t, _| only.is_none_or(|o| o == t));
        for l in lines {
            self.local.push_back(TaskEvent::Log {
                task_arn: l.task_arn,
                container: l.container,
                stream: l.stream,
                timestamp_ms: l.timestamp,
                line: l.line,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_proto::Status;

    fn log(arn: &str, c: &str, i: u64) -> TaskEvent {
        TaskEvent::Log {
            task_arn: arn.into(),
            container: c.into(),
            stream: LogStream::Stdout,
            timestamp_ms: i,
            line: format!("{i:0>100}"),
        }
    }

    fn change(arn: &str, c: &str, code: i32) -> TaskEvent {
        TaskEvent::Container {
            task_arn: arn.into(),
            state: ContainerState {
                name: c.into(),
                last_status: Status::Running,
                exit_code: Some(code),
                reason: None,
            },
        }
    }

    #[test]
    fn state_changes_are_coalesced_to_the_latest_per_container() {
        let (tx, rx) = task_events(&Budgets::default());
        for i in 0..100_000 {
            tx.send(change("a", "web", i)).unwrap();
            tx.send(change("a", &format!("c{}", i % 1000), i)).unwrap();
        }
        tx.send(change("b", "web", 7)).unwrap();
        let d = rx.take_ready();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].task_arn, "a");
        assert_eq!(d[0].containers.len(), MAX_CONTAINERS);
        assert_eq!(d[0].containers[0].exit_code, Some(99_999));
        assert_eq!(d[1].containers[0].exit_code, Some(7));
        assert!(rx.take_ready().is_empty());
        assert!(lock(&rx.shared.m).tasks.is_empty(), "nothing kept");
    }

    #[test]
    fn log_bytes_are_bounded_per_task_and_the_oldest_are_dropped_with_a_marker() {
        let b = Budgets {
            task_log_queue_bytes: 100 * 200,
            total_log_queue_bytes: 1 << 30,
            ..Budgets::default()
        };
        let (tx, rx) = task_events(&b);
        for i in 0..10_000 {
            tx.send(log("flood", "web", i)).unwrap();
        }
        tx.send(log("quiet", "web", 1)).unwrap();
        assert!(rx.queued_log_bytes() <= 100 * 200 + 200);
        let per = 100 + 3 + LINE_OVERHEAD;
        let kept = (100 * 200) / per;
        assert_eq!(
            rx.dropped_counter().load(Ordering::Relaxed),
            10_000 - kept as u64
        );
        let (lines, dropped) = rx.take_lines(10_000, 1 << 30, |_, _| true);
        assert_eq!(dropped, 10_000 - kept as u64);
        // The flood's marker, its first FAIR_SHARE_LINES lines, then the quiet task's line.
        assert_eq!(lines[0].line, dropped_marker(dropped));
        assert_eq!(lines[1].timestamp, (10_000 - kept) as u64, "oldest dropped");
        assert_eq!(lines[FAIR_SHARE_LINES + 1].task_arn, "quiet");
        assert_eq!(lines.len(), kept + 2);
        assert_eq!(lines.last().unwrap().timestamp, 9_999, "newest kept");
        assert_eq!(rx.queued_log_bytes(), 0);
        assert!(lock(&rx.shared.m).tasks.is_empty());
    }

    #[test]
    fn the_total_budget_costs_only_the_task_that_exceeds_it() {
        let b = Budgets {
            task_log_queue_bytes: 1 << 30,
            total_log_queue_bytes: 50 * 200,
            ..Budgets::default()
        };
        let (tx, rx) = task_events(&b);
        for i in 0..10 {
            tx.send(log("quiet", "web", i)).unwrap();
        }
        for i in 0..1000 {
            tx.send(log("flood", "web", i)).unwrap();
        }
        let (lines, _) = rx.take_lines(10_000, 1 << 30, |t, _| t == "quiet");
        assert_eq!(lines.len(), 10, "the quiet task lost nothing");
    }

    #[tokio::test]
    async fn recv_orders_lines_before_the_end_and_ends_when_senders_go() {
        let (tx, mut rx) = task_events(&Budgets::default());
        let tx2 = tx.clone();
        tx.send(log("a", "web", 1)).unwrap();
        tx2.send(TaskEvent::Stopped {
            task_arn: "a".into(),
            reason: "done".into(),
            containers: vec![],
        })
        .unwrap();
        drop(tx);
        drop(tx2);
        assert!(matches!(rx.recv().await, Some(TaskEvent::Log { .. })));
        assert!(matches!(rx.recv().await, Some(TaskEvent::Stopped { .. })));
        assert!(rx.recv().await.is_none());
        let (tx, rx) = task_events(&Budgets::default());
        drop(rx);
        assert_eq!(tx.send(log("a", "web", 1)), Err(Closed));
    }
}
