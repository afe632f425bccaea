//! The heartbeat monitor: a host silent for longer than the timeout is declared
//! lost; its tasks are STOPPED with a reason and it gets no new tasks.

use crate::cells::CellState;
use crate::lifecycle;
use std::time::{Duration, Instant};

/// Declares lost every host of the cell whose last heartbeat is older than `timeout`.
/// Returns the ids of the hosts declared lost.
pub fn sweep(c: &mut CellState, timeout: Duration, now: Instant) -> Vec<String> {
    let lost = c.silent_hosts(timeout, now);
    for h in &lost {
        host_lost(c, h, timeout);
    }
    lost
}

fn host_lost(c: &mut CellState, host: &str, timeout: Duration) {
    tracing::warn!(host, "host lost: no heartbeat for {:?}", timeout);
    c.lose_host(host);
    let reason = format!(
        "Host {host} was lost: no heartbeat for {} seconds",
        timeout.as_secs()
    );
    stop_tasks_of(c, host, &reason);
}

/// Marks every task of `host` that has not stopped STOPPED with `reason` (the host
/// is gone: lost or revoked).
pub fn stop_tasks_of(c: &mut CellState, host: &str, reason: &str) {
    for k in c.tasks_on(host) {
        match c.tasks().get(&k) {
            Ok(Some(mut t)) => {
                if let Err(e) = lifecycle::mark_stopped(c, &mut t, "TerminationNotice", reason) {
                    tracing::error!("task {k}: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!("task {k}: {e}"),
        }
    }
}
