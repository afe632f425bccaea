//! Leadership of cells among controlplane replicas sharing one etcd cluster.
//!
//! Each replica holds one etcd lease (TTL `lease_ttl`, renewed every round) and
//! campaigns for every cell: a transaction creates `<prefix>/<cell>/_leader`
//! (value: the replica's advertised API address) bound to its lease if the key does
//! not exist. The replica whose transaction created the key leads the cell; the
//! key's `create_revision` is the fence every write of that cell's store compares
//! (see `store::etcd`). Rounds (lease renewal, then a read of each cell's key and
//! a transaction only where it is absent) run every TTL/8, between 100 and 500 ms.
//! When a leader dies its lease expires after the TTL, etcd deletes the key, and
//! the next round of another replica takes over. A leader that cannot renew its lease
//! before the TTL runs out steps down by itself; a graceful shutdown revokes the
//! lease so the others take over at once.
//!
//! Only a cell's leader runs placement, the service scheduler and the
//! heartbeat/lost-host sweep for it. Other replicas serve reads; their writes fail
//! with `StoreError::NotLeader`, which names the leader's address.

use crate::store::etcd::{block_on, runtime, Fence};
use crate::store::StoreError;
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Whether this replica leads a cell, and since when.
#[derive(Debug)]
pub struct Role {
    fence: Option<Arc<Fence>>,
    epoch: AtomicU64,
}

impl Role {
    /// The only replica (SQLite): always the leader.
    pub fn single() -> Arc<Role> {
        Arc::new(Role {
            fence: None,
            epoch: AtomicU64::new(0),
        })
    }

    /// A role that leads while it holds `fence`.
    pub fn fenced(fence: Arc<Fence>) -> Arc<Role> {
        Arc::new(Role {
            fence: Some(fence),
            epoch: AtomicU64::new(0),
        })
    }

    /// Whether this replica leads the cell now.
    pub fn is_leader(&self) -> bool {
        self.fence.as_ref().is_none_or(|f| f.revision() != 0)
    }

    /// Counts the times this replica gained the leadership: the cell reloads its
    /// in-memory state from the store when it changes.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The address the current leader advertises, if known and not this replica.
    pub fn leader_hint(&self) -> Option<String> {
        self.fence.as_ref().and_then(|f| f.leader())
    }

    /// The error a write that needs the leader gets on this replica.
    pub fn not_leader(&self) -> StoreError {
        StoreError::NotLeader {
            leader: self.leader_hint(),
        }
    }

    fn gained(&self, rev: i64) {
        if let Some(f) = &self.fence {
            f.set_won(rev);
            f.set_leader(None);
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Called by the cell once it has reloaded its state for the current epoch:
    /// from then on its writes carry the fence.
    pub fn activate(&self) {
        if let Some(f) = &self.fence {
            f.activate();
        }
    }

    fn lost(&self) {
        if let Some(f) = &self.fence {
            f.set_revision(0);
        }
    }
}

/// The etcd key of `cell`'s leadership under `prefix`.
pub fn leader_key(prefix: &str, cell: u32) -> String {
    format!("{}/{cell}/_leader", prefix.trim_end_matches('/'))
}

/// The campaign of this replica (one background task on the etcd runtime).
pub struct Leadership {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What a replica campaigns for.
pub struct Campaign {
    /// The etcd client.
    pub client: Client,
    /// `(leadership key, role)` of each cell.
    pub cells: Vec<(String, Arc<Role>)>,
    /// Lease TTL (whole seconds; etcd's minimum is about 2 s).
    pub ttl: Duration,
    /// Stored as the leadership key's value: the replica's API address.
    pub advertise: String,
}

impl Leadership {
    /// Starts campaigning, and waits (5 s at most) for the first round, so a
    /// replica that can lead its cells does before it serves.
    pub fn start(c: Campaign) -> Leadership {
        let (stop, rx) = watch::channel(false);
        let (first_tx, first_rx) = std::sync::mpsc::sync_channel(1);
        let task = runtime().spawn(run(c, rx, first_tx));
        let _ = first_rx.recv_timeout(Duration::from_secs(5));
        Leadership {
            stop,
            task: Some(task),
        }
    }

    /// Steps down from every cell and revokes the lease, so another replica takes
    /// over at once. Blocks until done (a few seconds at most).
    pub fn resign(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = block_on(async move { tokio::time::timeout(Duration::from_secs(5), t).await });
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.finish();
    }
}

async fn run(
    mut c: Campaign,
    mut stop: watch::Receiver<bool>,
    first_round: std::sync::mpsc::SyncSender<()>,
) {
    let ttl_secs = c.ttl.as_secs().max(1) as i64;
    let ttl = Duration::from_secs(ttl_secs as u64);
    let tick = (ttl / 8).clamp(Duration::from_millis(100), Duration::from_millis(500));
    let step_down = |c: &Campaign| c.cells.iter().for_each(|(_, r)| r.lost());
    let mut lease = 0;
    'grant: while !*stop.borrow() {
        let granted_at = Instant::now();
        let grant = c.client.lease_grant(ttl_secs, None).await;
        let ka = match grant {
            Ok(g) => {
                lease = g.id();
                c.client.lease_keep_alive(lease).await
            }
            Err(e) => Err(e),
        };
        let (mut keeper, mut stream) = match ka {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("leadership: no etcd lease: {e}");
                let _ = tokio::time::timeout(tick, stop.changed()).await;
                continue;
            }
        };
        let mut alive_until = granted_at + ttl;
        loop {
            let sent = Instant::now();
            // Long enough that an answer is not left to be read as the next one's.
            let renewed = tokio::time::timeout(ttl / 3, async {
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await;
            match renewed {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    alive_until = sent + Duration::from_secs(r.ttl() as u64);
                }
                Ok(Ok(_)) => {
                    tracing::warn!("leadership: lease {lease:x} expired");
                    step_down(&c);
                    continue 'grant;
                }
                Ok(Err(e)) => tracing::warn!("leadership: keep-alive: {e}"),
                Err(_) => tracing::warn!("leadership: keep-alive timed out"),
            }
            if Instant::now() >= alive_until {
                tracing::warn!("leadership: lease not renewed within its TTL, stepping down");
                step_down(&c);
                continue 'grant;
            }
            for (key, role) in &c.cells {
                if let Err(e) = campaign_one(&mut c.client, key, role, lease, &c.advertise).await {
                    tracing::warn!("leadership of {key}: {e}");
                }
            }
            let _ = first_round.try_send(());
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => break 'grant,
            }
        }
    }
    step_down(&c);
    if lease != 0 {
        let _ = c.client.lease_revoke(lease).await;
    }
}

async fn campaign_one(
    client: &mut Client,
    key: &str,
    role: &Role,
    lease: i64,
    advertise: &str,
) -> Result<(), etcd_client::Error> {
    let Some(fence) = &role.fence else {
        return Ok(());
    };
    let held = fence.revision();
    // A linearizable read first: a transaction goes through the raft log, a read
    // does not, and most rounds change nothing.
    let r = client.get(key, None).await?;
    let current = r.kvs().first();
    if held != 0 {
        // Still ours? (An operator may have deleted the key, or the lease lapsed.)
        if current.map(|kv| kv.create_revision()) == Some(held) {
            return Ok(());
        }
        tracing::warn!("lost the leadership {key}");
        role.lost();
    }
    if let Some(kv) = current {
        fence.set_leader(kv.value_str().ok().map(str::to_string));
        return Ok(());
    }
    let txn = Txn::new()
        .when(vec![Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then(vec![TxnOp::put(
            key,
            advertise,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else(vec![TxnOp::get(key, None)]);
    let r = client.txn(txn).await?;
    if r.succeeded() {
        let rev = r.header().map(|h| h.revision()).unwrap_or(0);
        if rev > 0 {
            tracing::info!("leading {key} (revision {rev})");
            role.gained(rev);
        }
    } else {
        let current = r.op_responses().into_iter().find_map(|o| match o {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .and_then(|kv| kv.value_str().ok().map(str::to_string)),
            _ => None,
        });
        fence.set_leader(current);
    }
    Ok(())
}
