//! Retention: how long finished resources stay visible before the cell's background
//! loop prunes them, and how many service events are kept. ECS shows a STOPPED task,
//! an INACTIVE service or cluster for about an hour, keeps INACTIVE task
//! definitions, and keeps the last 100 events of a service.

use crate::model::TaskRecord;
use std::time::Duration;

/// STOPPED tasks stay visible this long unless configured (ECS: about an hour).
pub const DEFAULT_STOPPED_TASK_RETENTION_MS: u64 = 3_600_000;
/// INACTIVE services and clusters stay visible this long unless configured (ECS:
/// about an hour).
pub const DEFAULT_INACTIVE_RETENTION_MS: u64 = 3_600_000;
/// Most STOPPED tasks one tick of a cell's loop deletes unless configured.
pub const DEFAULT_PRUNE_BATCH: u64 = 500;
/// Events kept per service, newest first (as ECS).
pub const SERVICE_EVENTS_KEPT: usize = 100;

/// The retention bounds of a control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long a STOPPED task stays visible after it stopped.
    pub stopped_tasks: Duration,
    /// How long an INACTIVE service or cluster stays visible after it became so.
    pub inactive: Duration,
    /// Most STOPPED tasks pruned per tick of a cell's loop, so that a backlog never
    /// holds the cell's lock for long.
    pub batch: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            stopped_tasks: Duration::from_millis(DEFAULT_STOPPED_TASK_RETENTION_MS),
            inactive: Duration::from_millis(DEFAULT_INACTIVE_RETENTION_MS),
            batch: DEFAULT_PRUNE_BATCH as usize,
        }
    }
}

impl Retention {
    /// How often a cell's loop looks for what to prune: a quarter of the shorter
    /// retention, between 100 ms and one minute.
    pub fn period(&self) -> Duration {
        (self.stopped_tasks.min(self.inactive) / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// The time (seconds since the epoch) before which a STOPPED task is pruned.
    pub fn cutoff(&self, now: f64) -> f64 {
        now - self.stopped_tasks.as_secs_f64()
    }

    /// The time before which an INACTIVE service or cluster is pruned.
    pub fn inactive_cutoff(&self, now: f64) -> f64 {
        now - self.inactive.as_secs_f64()
    }
}

/// When a STOPPED task stopped (seconds since the epoch): `stoppedAt`, else the
/// stop request, else its creation.
pub fn stopped_time(t: &TaskRecord) -> f64 {
    t.task
        .stopped_at
        .or(t.task.execution_stopped_at)
        .or(t.task.stopping_at)
        .unwrap_or(t.task.created_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_and_cutoff_follow_the_retention() {
        let r = Retention {
            stopped_tasks: Duration::from_secs(2),
            inactive: Duration::from_secs(8),
            batch: 10,
        };
        assert_eq!(r.period(), Duration::from_millis(500));
        assert_eq!(r.cutoff(100.0), 98.0);
        assert_eq!(r.inactive_cutoff(100.0), 92.0);
        assert_eq!(Retention::default().period(), Duration::from_secs(60));
    }
}
