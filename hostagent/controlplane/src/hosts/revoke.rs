//! The identity sweep of a cell's leader: applies the operator's revocations
//! (written to the store by `controlplane hosts revoke`, so every replica sees
//! them) and closes the channels whose credential expired.

use super::heartbeat::stop_tasks_of;
use crate::cells::CellState;

/// Applies pending revocations and closes expired channels at `now` (seconds since
/// the epoch). Returns the hosts revoked now.
pub fn sweep(c: &mut CellState, now: f64) -> Vec<String> {
    let pending = match c.revoked_hosts().all() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("reading revocations: {e}");
            vec![]
        }
    };
    let mut revoked = vec![];
    for (host, r) in pending {
        match c.revoke_host(&host, r.revoked_at) {
            Ok(true) => {
                tracing::warn!(host, "host revoked by the operator: channel closed");
                let reason = format!("Host {host} was revoked by the operator");
                stop_tasks_of(c, &host, &reason);
                revoked.push(host);
            }
            Ok(false) => tracing::warn!(host, "revocation of an unknown host dropped"),
            Err(e) => tracing::error!(host, "applying a revocation: {e}"),
        }
    }
    for host in c.expired_channels(now) {
        tracing::warn!(host, "host credential expired: channel closed");
        c.close_channel(&host);
    }
    revoked
}
