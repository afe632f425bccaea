//! Log batches from host agents into the cell's log store. A line is kept only when
//! it comes from the host the task is assigned to, for a container of that task
//! with `awslogs` options; it goes into the task's own account, in the container's
//! group and in the stream `prefix/container-name/task-id`.

use super::store::{AppendError, Create, LogStore};
use crate::cells::Cell;
use crate::lifecycle::own_task;
use agent_proto::{truncate_log_line, AwsLogs, ControlMessage, LogLine, MAX_LOG_BATCH_LINES};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lines of a task that stopped this long ago are still accepted (the last output
/// of a task may arrive after its STOPPED report).
pub const STOPPED_GRACE_SECS: f64 = 600.0;
/// Oldest accepted timestamp, relative to now (CloudWatch: 14 days).
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// Newest accepted timestamp, relative to now (CloudWatch: 2 hours).
pub const MAX_FUTURE_MS: i64 = 2 * 3600 * 1000;

/// Counters of the log pipeline (shown in `/metrics`).
#[derive(Default)]
pub struct LogCounters {
    /// Events stored.
    pub stored: AtomicU64,
    /// Lines refused (foreign task, unknown container, out-of-range timestamp,
    /// missing group).
    pub rejected: AtomicU64,
    /// Lines of containers without awslogs options (discarded, as ECS does).
    pub discarded: AtomicU64,
    /// Lines the agents said they dropped.
    pub dropped_by_agents: AtomicU64,
}

struct Target {
    account: String,
    group: String,
    stream: String,
    create_group: bool,
}

/// Stores one batch from `host` (of `cell`) in `store`; returns the replies.
pub fn ingest(
    cell: &Cell,
    store: &LogStore,
    counters: &LogCounters,
    host: &str,
    lines: Vec<LogLine>,
    dropped: u64,
) -> Vec<ControlMessage> {
    let err = |m: String| vec![ControlMessage::Error { message: m }];
    if lines.len() > MAX_LOG_BATCH_LINES {
        return err(format!("at most {MAX_LOG_BATCH_LINES} lines per log batch"));
    }
    counters
        .dropped_by_agents
        .fetch_add(dropped, Ordering::Relaxed);
    let now_s = crate::clock::now();
    // Resolve every (task, container) under the cell lock, store outside it.
    let mut targets: HashMap<(String, String), Option<Target>> = HashMap::new();
    let mut refused: HashMap<String, String> = HashMap::new();
    {
        let mut c = cell.lock();
        if !c.heard_from(host) {
            return err("host is not active (declared lost); reconnect".into());
        }
        for l in &lines {
            let key = (l.task_arn.clone(), l.container.clone());
            if targets.contains_key(&key) || refused.contains_key(&l.task_arn) {
                continue;
            }
            let rec = match own_task(&c, host, &l.task_arn) {
                Ok(r) => r,
                Err(e) => {
                    refused.insert(l.task_arn.clone(), e.to_string());
                    continue;
                }
            };
            if rec
                .task
                .stopped_at
                .is_some_and(|t| now_s - t > STOPPED_GRACE_SECS)
            {
                refused.insert(
                    l.task_arn.clone(),
                    format!("task {} stopped too long ago for logs", l.task_arn),
                );
                continue;
            }
            let t = rec
                .spec
                .containers
                .iter()
                .find(|s| s.name == l.container)
                .and_then(AwsLogs::of)
                .map(|a| Target {
                    account: rec.account.clone(),
                    stream: a.stream_name(&l.container, &l.task_arn),
                    group: a.group,
                    create_group: a.create_group,
                });
            if t.is_none() && !rec.spec.containers.iter().any(|s| s.name == l.container) {
                refused.insert(
                    l.task_arn.clone(),
                    format!("task {} has no container {}", l.task_arn, l.container),
                );
                continue;
            }
            targets.insert(key, t);
        }
    }
    let now = crate::clock::now_ms();
    // Group the accepted lines by stream (one per task and container), in order.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut batches: HashMap<(String, String), Vec<(i64, String)>> = HashMap::new();
    let (mut rejected, mut discarded) = (0u64, 0u64);
    for l in lines {
        if refused.contains_key(&l.task_arn) {
            rejected += 1;
            continue;
        }
        let key = (l.task_arn, l.container);
        if !matches!(targets.get(&key), Some(Some(_))) {
            discarded += 1;
            continue;
        }
        let ts = i64::try_from(l.timestamp).unwrap_or(i64::MAX);
        if ts < now - MAX_AGE_MS || ts > now + MAX_FUTURE_MS {
            rejected += 1;
            continue;
        }
        let mut line = l.line;
        truncate_log_line(&mut line);
        if !batches.contains_key(&key) {
            order.push(key.clone());
        }
        batches.entry(key).or_default().push((ts, line));
    }
    for key in order {
        let (Some(Some(t)), Some(events)) = (targets.get(&key), batches.remove(&key)) else {
            continue;
        };
        match store.append(
            &t.account,
            &t.group,
            &t.stream,
            &events,
            if t.create_group {
                Create::GroupAndStream
            } else {
                Create::Stream
            },
            now,
        ) {
            Ok(n) => {
                counters.stored.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(AppendError::NoGroup | AppendError::NoStream) => {
                tracing::warn!(account = %t.account, group = %t.group,
                    "log group does not exist (and awslogs-create-group is not true): {} lines dropped",
                    events.len());
                rejected += events.len() as u64;
            }
            Err(AppendError::Store(e)) => {
                tracing::error!("log store: {e}");
                rejected += events.len() as u64;
            }
        }
    }
    counters.rejected.fetch_add(rejected, Ordering::Relaxed);
    counters.discarded.fetch_add(discarded, Ordering::Relaxed);
    refused
        .into_values()
        .map(|message| ControlMessage::Error { message })
        .collect()
}
