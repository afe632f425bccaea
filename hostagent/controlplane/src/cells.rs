//! Cells and the router. A cell is an independent copy of the control plane
//! state: its own store, placement index and hosts. The router sticks each
//! account to one cell on first use and persists the choice, so adding cells
//! never moves an existing account.

use crate::config::{Config, StoreConfig};
use crate::domain::DomainError;
use crate::host_tables::{BootstrapToken, BootstrapTokens, RevokedHosts};
use crate::leader::{leader_key, Campaign, Leadership, Role};
use crate::model::{HostRecord, HostStatus, TaskRecord};
use crate::placement::{HostSlot, NoCapacity, Placement};
use crate::quotas::Quotas;
use crate::store::etcd::{EtcdStore, Fence};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError, StoreExt};
use crate::tables::{
    names, AccountSettings, Clusters, Hosts, InactiveSince, Services, TaskDefinitions, TaskKey,
    Tasks,
};
use agent_proto::{ControlMessage, Status};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Whether the host record says the host drains.
pub fn is_draining(store: &dyn Store, host: &str) -> bool {
    matches!(
        Hosts(store).get(host),
        Ok(Some(r)) if r.status == HostStatus::Draining
    )
}

/// A connected agent channel.
pub struct AgentConn {
    /// Distinguishes successive connections of one host.
    pub conn_id: u64,
    /// Messages to the agent.
    pub tx: UnboundedSender<ControlMessage>,
    /// Expiry of the credential the channel was opened (or last rotated) with,
    /// in seconds since the epoch: the channel is closed then.
    pub valid_until: f64,
}

/// The latest resource-use sample of a running task (memory only, not stored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskMetricsSample {
    /// CPU use in percent of the task's CPU units.
    pub cpu_utilization: f64,
    /// Memory use in percent of the task's memory.
    pub memory_utilization: f64,
    /// When the host sampled it (ms since the Unix epoch).
    pub timestamp: u64,
}

/// The mutable state of a cell, behind the cell's lock. Its fields are private: the
/// operations below keep the store, placement, the per-host task index and the
/// connected agents consistent with each other.
pub struct CellState {
    /// Durable state.
    store: Box<dyn Store>,
    /// Placement index.
    placement: Placement,
    /// Connected agents.
    agents: HashMap<String, AgentConn>,
    /// Last heartbeat of each ACTIVE host.
    heartbeats: HashMap<String, Instant>,
    /// Host id -> store keys of its tasks that are not STOPPED.
    host_tasks: HashMap<String, HashSet<TaskKey>>,
    /// AWS region of ARNs.
    region: String,
    /// Task ARN -> latest metrics sample reported by its host (tasks not STOPPED).
    task_metrics: HashMap<String, TaskMetricsSample>,
    /// The leadership epoch the in-memory state was loaded at.
    loaded_epoch: u64,
    /// Account -> CPU units of its tasks that are not STOPPED (the vCPU quota).
    account_cpu: HashMap<String, u64>,
    /// The account quotas.
    quotas: Quotas,
}

impl CellState {
    /// The cell's tasks.
    pub fn tasks(&self) -> Tasks<'_> {
        Tasks(self.store.as_ref())
    }

    /// The cell's services.
    pub fn services(&self) -> Services<'_> {
        Services(self.store.as_ref())
    }

    /// The cell's clusters.
    pub fn clusters(&self) -> Clusters<'_> {
        Clusters(self.store.as_ref())
    }

    /// When the cell's clusters and services became INACTIVE.
    pub fn inactive_since(&self) -> InactiveSince<'_> {
        InactiveSince(self.store.as_ref())
    }

    /// The cell's task definitions.
    pub fn task_definitions(&self) -> TaskDefinitions<'_> {
        TaskDefinitions(self.store.as_ref())
    }

    /// The account settings of the cell's accounts.
    pub fn account_settings(&self) -> AccountSettings<'_> {
        AccountSettings(self.store.as_ref())
    }

    /// The cell's hosts.
    pub fn hosts(&self) -> Hosts<'_> {
        Hosts(self.store.as_ref())
    }

    /// The cell's bootstrap tokens.
    pub fn bootstrap_tokens(&self) -> BootstrapTokens<'_> {
        BootstrapTokens(self.store.as_ref())
    }

    /// The cell's revocations not applied yet.
    pub fn revoked_hosts(&self) -> RevokedHosts<'_> {
        RevokedHosts(self.store.as_ref())
    }

    /// The AWS region of the cell's ARNs.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The account quotas.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// CPU units of the account's tasks that are not STOPPED.
    pub fn account_cpu(&self, account: &str) -> u64 {
        self.account_cpu.get(account).copied().unwrap_or(0)
    }

    /// The quarantine counters of the cell's store: (undecodable, quarantined).
    pub fn quarantine_stats(&self) -> (u64, u64) {
        self.store.quarantine_stats().get()
    }

    /// Writes a task record under its ARN's key.
    pub fn save_task(&self, rec: &TaskRecord) -> Result<(), DomainError> {
        let key = TaskKey::of_arn(&rec.task.task_arn).ok_or(DomainError::MalformedArn)?;
        self.tasks().put(&key, rec)?;
        Ok(())
    }

    /// Sends `msg` to the host's agent if it is connected (otherwise the resync on
    /// its next connection delivers the equivalent).
    pub fn notify(&self, host: &str, msg: ControlMessage) {
        if let Some(a) = self.agents.get(host) {
            let _ = a.tx.send(msg);
        }
    }

    // Hosts.

    /// Records a newly registered host with its bootstrap token's new use count
    /// (one atomic write): stored, offered to placement, and given one heartbeat
    /// timeout to connect.
    pub fn register_host(
        &mut self,
        rec: &HostRecord,
        token_hash: &str,
        token: &BootstrapToken,
    ) -> Result<(), StoreError> {
        self.store.write(vec![
            Hosts::put_write(rec)?,
            BootstrapTokens::put_write(token_hash, token)?,
        ])?;
        self.placement
            .add_host(&rec.host_id, &rec.availability_zone, rec.cpu, rec.memory);
        self.heartbeats.insert(rec.host_id.clone(), Instant::now());
        Ok(())
    }

    /// The agent of `host` connected: it becomes ACTIVE and schedulable. Returns the
    /// resync: everything assigned to the host that has not stopped; None (and
    /// nothing changed) if the host was revoked since its credential was checked.
    pub fn connect_host(&mut self, host: &str, conn: AgentConn) -> Option<Vec<ControlMessage>> {
        let revoked = |c: &Self| {
            matches!(c.hosts().get(host), Ok(Some(r)) if r.revoked_at.is_some())
                || !matches!(c.revoked_hosts().get(host), Ok(None))
        };
        if revoked(self) {
            return None;
        }
        self.agents.insert(host.to_string(), conn);
        self.heartbeats.insert(host.to_string(), Instant::now());
        if let Ok(Some(mut rec)) = self.hosts().get(host) {
            if rec.status != HostStatus::Active {
                rec.status = HostStatus::Active;
                let _ = self.hosts().put(&rec);
            }
            self.placement
                .add_host(host, &rec.availability_zone, rec.cpu, rec.memory);
        }
        self.placement.set_schedulable(host, true);
        let mut out = vec![];
        for k in self.tasks_on(host) {
            if let Ok(Some(t)) = self.tasks().get(&k) {
                out.push(if t.task.desired_status == Status::Stopped {
                    ControlMessage::StopTask {
                        task_arn: t.task.task_arn.clone(),
                        reason: t.task.stopped_reason.clone().unwrap_or_default(),
                    }
                } else {
                    ControlMessage::LaunchTask { task: t.spec }
                });
            }
        }
        Some(out)
    }

    /// Connection `conn_id` of `host` closed: unless a newer one replaced it, the
    /// host takes no new task until it connects again.
    pub fn disconnect_host(&mut self, host: &str, conn_id: u64) {
        if self.agents.get(host).is_some_and(|a| a.conn_id == conn_id) {
            self.agents.remove(host);
            self.placement.set_schedulable(host, false);
        }
    }

    /// The credential of `host`'s channel now expires at `valid_until` (rotated).
    pub fn set_channel_valid_until(&mut self, host: &str, valid_until: f64) {
        if let Some(a) = self.agents.get_mut(host) {
            a.valid_until = valid_until;
        }
    }

    /// The hosts whose channel's credential expired at `now` (seconds since the epoch).
    pub fn expired_channels(&self, now: f64) -> Vec<String> {
        self.agents
            .iter()
            .filter(|(_, a)| a.valid_until <= now)
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Closes the channel of `host` (its credential expired): it takes no new task;
    /// unless it reconnects with a valid credential it is declared lost after the
    /// heartbeat timeout.
    pub fn close_channel(&mut self, host: &str) {
        if self.agents.remove(host).is_some() {
            self.placement.set_schedulable(host, false);
        }
    }

    /// Applies the operator's revocation of `host`: the record says revoked and
    /// INACTIVE (in one write that removes the pending revocation), its channel is
    /// closed, nothing new is placed there and no heartbeat is expected. Its tasks
    /// are the caller's to stop. False if no such host.
    pub fn revoke_host(&mut self, host: &str, revoked_at: f64) -> Result<bool, StoreError> {
        let rec = self.hosts().get(host)?;
        let mut batch = vec![RevokedHosts::delete_write(host)];
        if let Some(mut rec) = rec.clone() {
            rec.revoked_at = Some(rec.revoked_at.unwrap_or(revoked_at));
            rec.status = HostStatus::Inactive;
            batch.push(Hosts::put_write(&rec)?);
        }
        self.store.write(batch)?;
        self.heartbeats.remove(host);
        self.agents.remove(host);
        self.placement.set_schedulable(host, false);
        Ok(rec.is_some())
    }

    /// The host takes no new task (until it connects again without draining); the
    /// service scheduler moves its service tasks to other hosts.
    pub fn set_draining(&mut self, host: &str) -> Result<(), StoreError> {
        self.placement.set_schedulable(host, false);
        if let Some(mut rec) = self.hosts().get(host)? {
            if rec.status != HostStatus::Draining {
                tracing::info!(host, "host is draining");
                rec.status = HostStatus::Draining;
                self.hosts().put(&rec)?;
            }
        }
        Ok(())
    }

    /// A message came from `host`: its heartbeat clock restarts. False when the host
    /// is not active (declared lost): it must reconnect.
    pub fn heard_from(&mut self, host: &str) -> bool {
        match self.heartbeats.get_mut(host) {
            Some(t) => {
                *t = Instant::now();
                true
            }
            None => false,
        }
    }

    /// The hosts last heard from longer than `timeout` before `now`.
    pub fn silent_hosts(&self, timeout: Duration, now: Instant) -> Vec<String> {
        self.heartbeats
            .iter()
            .filter(|(_, &t)| now.saturating_duration_since(t) > timeout)
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Declares `host` lost: no heartbeat expected, its channel dropped, nothing new
    /// placed there, and its record INACTIVE. Its tasks are the caller's to stop.
    pub fn lose_host(&mut self, host: &str) {
        self.heartbeats.remove(host);
        self.agents.remove(host);
        self.placement.set_schedulable(host, false);
        if let Ok(Some(mut rec)) = self.hosts().get(host) {
            rec.status = HostStatus::Inactive;
            if let Err(e) = self.hosts().put(&rec) {
                tracing::error!("host {host}: {e}");
            }
        }
    }

    /// Whether the host's record says it drains.
    pub fn is_draining(&self, host: &str) -> bool {
        is_draining(self.store.as_ref(), host)
    }

    /// Whether the host's agent is connected.
    pub fn agent_connected(&self, host: &str) -> bool {
        self.agents.contains_key(host)
    }

    /// How many agents are connected.
    pub fn agents_connected(&self) -> usize {
        self.agents.len()
    }

    /// How many hosts placement knows.
    pub fn host_count(&self) -> usize {
        self.placement.hosts().len()
    }

    /// Placement's view of a host (free resources).
    pub fn host_slot(&self, host: &str) -> Option<&HostSlot> {
        self.placement.host(host)
    }

    /// The store keys of the host's tasks that are not STOPPED.
    pub fn tasks_on(&self, host: &str) -> Vec<TaskKey> {
        self.host_tasks
            .get(host)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    // Tasks.

    /// Picks a host for a task of `cpu` units and `memory` MiB and reserves them
    /// there; returns the host and its AZ.
    pub fn place(
        &mut self,
        cpu: u32,
        memory: u32,
        spread: Option<&HashMap<String, usize>>,
    ) -> Result<(String, String), NoCapacity> {
        let started = std::time::Instant::now();
        let host = self.placement.place(cpu, memory, spread);
        crate::placement::observe(started);
        let host = host?;
        let az = self
            .placement
            .host(&host)
            .map(|h| h.az.clone())
            .unwrap_or_default();
        Ok((host, az))
    }

    /// Records a task placed with [`CellState::place`]: stored (or its reservation
    /// released), indexed under its host, and sent to the host.
    pub fn launch(&mut self, rec: &TaskRecord) -> Result<(), DomainError> {
        if let Err(e) = self.save_task(rec) {
            self.placement
                .release(&rec.host_id, rec.spec.cpu, rec.spec.memory);
            return Err(e);
        }
        *self.account_cpu.entry(rec.account.clone()).or_default() += u64::from(rec.spec.cpu);
        if let Some(k) = TaskKey::of_arn(&rec.task.task_arn) {
            self.host_tasks
                .entry(rec.host_id.clone())
                .or_default()
                .insert(k);
        }
        self.notify(
            &rec.host_id,
            ControlMessage::LaunchTask {
                task: rec.spec.clone(),
            },
        );
        Ok(())
    }

    /// Records a task that reached STOPPED: stored, its resources freed on its host,
    /// out of the host's index, its metrics forgotten.
    pub fn mark_stopped(&mut self, rec: &TaskRecord) -> Result<(), DomainError> {
        self.save_task(rec)?;
        self.task_metrics.remove(&rec.task.task_arn);
        self.placement
            .release(&rec.host_id, rec.spec.cpu, rec.spec.memory);
        if let Some(used) = self.account_cpu.get_mut(&rec.account) {
            *used = used.saturating_sub(u64::from(rec.spec.cpu));
        }
        if let (Some(set), Some(k)) = (
            self.host_tasks.get_mut(&rec.host_id),
            TaskKey::of_arn(&rec.task.task_arn),
        ) {
            set.remove(&k);
        }
        Ok(())
    }

    /// Deletes up to `max` STOPPED tasks that stopped before `cutoff` (seconds since
    /// the epoch), oldest first, and returns how many. STOPPED tasks are in no index
    /// (host tasks, placement, the vCPU totals, metrics), so only the store changes.
    pub fn prune_stopped(&mut self, cutoff: f64, max: usize) -> Result<usize, StoreError> {
        let mut old: Vec<(f64, TaskKey)> = self
            .tasks()
            .all()?
            .into_iter()
            .filter(|(_, t)| t.task.last_status == Status::Stopped)
            .map(|(k, t)| (crate::retention::stopped_time(&t), k))
            .filter(|(at, _)| *at < cutoff)
            .collect();
        old.sort_by(|a, b| a.0.total_cmp(&b.0));
        old.truncate(max);
        let keys: Vec<TaskKey> = old.into_iter().map(|(_, k)| k).collect();
        self.tasks().delete_many(&keys)?;
        Ok(keys.len())
    }

    /// Keeps the latest metrics sample of a running task.
    pub fn set_metrics(&mut self, task_arn: String, sample: TaskMetricsSample) {
        self.task_metrics.insert(task_arn, sample);
    }

    /// The latest metrics sample of a task, if any.
    pub fn metrics(&self, task_arn: &str) -> Option<&TaskMetricsSample> {
        self.task_metrics.get(task_arn)
    }

    /// Forgets the metrics of a task.
    pub fn forget_metrics(&mut self, task_arn: &str) {
        self.task_metrics.remove(task_arn);
    }
}

/// The in-memory indexes a cell rebuilds from its store.
struct Indexes {
    placement: Placement,
    heartbeats: HashMap<String, Instant>,
    host_tasks: HashMap<String, HashSet<TaskKey>>,
    account_cpu: HashMap<String, u64>,
}

/// Rebuilds the indexes, quarantining (`crate::store::quarantine`) every record of
/// the cell that does not decode: one bad record never stops a cell from loading.
fn load(store: &dyn Store) -> Result<Indexes, StoreError> {
    let bad = crate::tables::sweep(store)?;
    if bad > 0 {
        tracing::warn!("{bad} undecodable records set aside while loading the cell");
    }
    let mut placement = Placement::new();
    let mut heartbeats = HashMap::new();
    let now = Instant::now();
    for h in Hosts(store).all()? {
        placement.add_host(&h.host_id, &h.availability_zone, h.cpu, h.memory);
        if h.status == HostStatus::Active {
            // Hosts get one heartbeat timeout to reconnect after a restart.
            heartbeats.insert(h.host_id.clone(), now);
        }
    }
    let mut host_tasks: HashMap<String, HashSet<TaskKey>> = HashMap::new();
    let mut account_cpu: HashMap<String, u64> = HashMap::new();
    for (k, t) in Tasks(store).all()? {
        if t.task.last_status != Status::Stopped {
            placement.reserve(&t.host_id, t.spec.cpu, t.spec.memory);
            *account_cpu.entry(t.account).or_default() += u64::from(t.spec.cpu);
            host_tasks.entry(t.host_id).or_default().insert(k);
        }
    }
    Ok(Indexes {
        placement,
        heartbeats,
        host_tasks,
        account_cpu,
    })
}

/// One cell.
pub struct Cell {
    /// Cell number.
    pub id: u32,
    /// Whether this replica leads the cell (always, over SQLite).
    pub role: Arc<Role>,
    state: Mutex<CellState>,
}

impl Cell {
    /// Opens a cell over `store`, rebuilding placement from stored hosts and tasks.
    /// The only replica: it always leads.
    pub fn open(id: u32, store: Box<dyn Store>, region: &str) -> Result<Cell, StoreError> {
        Self::open_with_role(id, store, region, Role::single())
    }

    /// Opens a cell whose leadership `role` decides whether this replica acts.
    pub fn open_with_role(
        id: u32,
        store: Box<dyn Store>,
        region: &str,
        role: Arc<Role>,
    ) -> Result<Cell, StoreError> {
        let ix = load(store.as_ref())?;
        Ok(Cell {
            id,
            state: Mutex::new(CellState {
                store,
                placement: ix.placement,
                agents: HashMap::new(),
                heartbeats: ix.heartbeats,
                host_tasks: ix.host_tasks,
                region: region.to_string(),
                task_metrics: HashMap::new(),
                loaded_epoch: role.epoch(),
                account_cpu: ix.account_cpu,
                quotas: Quotas::default(),
            }),
            role,
        })
    }

    /// Locks the cell's state. A replica that has just become the cell's leader
    /// first reloads placement, hosts and tasks from the store (its previous
    /// leader changed them); connected agents stay, and every ACTIVE host gets one
    /// heartbeat timeout to show up.
    pub fn lock(&self) -> MutexGuard<'_, CellState> {
        let mut g = crate::sync::lock(&self.state);
        let epoch = self.role.epoch();
        if g.loaded_epoch != epoch {
            match load(g.store.as_ref()) {
                Ok(ix) => {
                    g.placement = ix.placement;
                    g.heartbeats = ix.heartbeats;
                    g.host_tasks = ix.host_tasks;
                    g.account_cpu = ix.account_cpu;
                    g.loaded_epoch = epoch;
                    self.role.activate();
                    // Records met while this replica could not write (before it
                    // led) are moved aside now that it may.
                    let (met, moved) = g.store.quarantine_stats().get();
                    if met > moved {
                        if let Err(e) = crate::tables::sweep_all(g.store.as_ref()) {
                            tracing::error!(cell = self.id, "quarantine sweep: {e}");
                        }
                    }
                    let connected: Vec<String> = g.agents.keys().cloned().collect();
                    for h in connected {
                        let on = !is_draining(g.store.as_ref(), &h);
                        g.placement.set_schedulable(&h, on);
                    }
                    tracing::info!(cell = self.id, "leader: state reloaded from the store");
                }
                Err(e) => tracing::error!(cell = self.id, "reloading the cell state: {e}"),
            }
        }
        g
    }

    /// Sets the account quotas of the cell.
    pub fn set_quotas(&self, quotas: Quotas) {
        crate::sync::lock(&self.state).quotas = quotas;
    }

    /// Whether this replica leads the cell (runs placement, the scheduler and the
    /// lost-host sweep, and may write).
    pub fn is_leader(&self) -> bool {
        self.role.is_leader()
    }

    /// The periodic duty of a replica that does not lead the cell: it closes the
    /// agent channels it still holds from when it led, so those hosts reconnect
    /// (to the new leader).
    pub fn follower_tick(&self) {
        let mut g = crate::sync::lock(&self.state);
        if !g.agents.is_empty() {
            tracing::warn!(
                cell = self.id,
                "not the leader any more: closing {} agent channels",
                g.agents.len()
            );
            g.agents.clear();
        }
    }
}

/// The stores of a configuration: cells, router, and (etcd) the campaign.
pub struct Opened {
    /// The cells.
    pub cells: Vec<Arc<Cell>>,
    /// The router's store.
    pub router_store: Box<dyn Store>,
    /// This replica's leadership campaign (etcd only); resign it on shutdown.
    pub leadership: Option<Leadership>,
}

/// Opens the cells and the router store `cfg` asks for: SQLite files under the data
/// directory, or etcd (then this replica starts campaigning for every cell).
pub fn open_stores(cfg: &Config) -> Result<Opened, StoreError> {
    match &cfg.store {
        StoreConfig::Sqlite => {
            std::fs::create_dir_all(&cfg.data_dir)?;
            let mut cells = vec![];
            for i in 0..cfg.cells {
                let s = SqliteStore::open(&cfg.data_dir.join(format!("cell-{i}.db")))?;
                let cell = Cell::open(i, Box::new(s), &cfg.region)?;
                cell.set_quotas(cfg.quotas);
                cells.push(Arc::new(cell));
            }
            let rs = SqliteStore::open(&cfg.data_dir.join("router.db"))?;
            Ok(Opened {
                cells,
                router_store: Box::new(rs),
                leadership: None,
            })
        }
        StoreConfig::Etcd {
            endpoints,
            prefix,
            lease_ttl,
            advertise,
            tls,
        } => {
            let client =
                crate::store::etcd::connect(endpoints, tls, std::time::Duration::from_secs(5))?;
            let mut cells = vec![];
            let mut campaign = vec![];
            for i in 0..cfg.cells {
                let key = leader_key(prefix, i);
                let fence = Arc::new(Fence::new(key.clone()));
                let role = Role::fenced(fence.clone());
                let s = EtcdStore::new(client.clone(), prefix, &i.to_string(), Some(fence));
                let cell = Cell::open_with_role(i, Box::new(s), &cfg.region, role.clone())?;
                cell.set_quotas(cfg.quotas);
                cells.push(Arc::new(cell));
                campaign.push((key, role));
            }
            let rs = EtcdStore::new(client.clone(), prefix, "router", None);
            let leadership = Leadership::start(Campaign {
                client,
                cells: campaign,
                ttl: *lease_ttl,
                advertise: advertise.clone(),
            });
            Ok(Opened {
                cells,
                router_store: Box::new(rs),
                leadership: Some(leadership),
            })
        }
    }
}

/// Maps accounts to cells.
pub struct Router {
    /// The cells, by number.
    pub cells: Vec<Arc<Cell>>,
    store: Box<dyn Store>,
    map: RwLock<HashMap<String, u32>>,
    assign: Mutex<()>,
}

impl Router {
    /// A router over `cells`, remembering assignments in `store`.
    pub fn new(cells: Vec<Arc<Cell>>, store: Box<dyn Store>) -> Result<Router, StoreError> {
        let map = store
            .scan_json::<u32>(names::ACCOUNT_CELL, "")?
            .into_iter()
            .collect();
        Ok(Router {
            cells,
            store,
            map: RwLock::new(map),
            assign: Mutex::new(()),
        })
    }

    /// The cell of `account`, assigning the least-loaded cell on first use (the
    /// first assignment stored wins, also between replicas).
    pub fn cell_of(&self, account: &str) -> Result<Arc<Cell>, StoreError> {
        let known = crate::sync::read(&self.map).get(account).copied();
        let id = match known {
            Some(id) => id,
            None => {
                let _g = crate::sync::lock(&self.assign);
                let mut map = crate::sync::write(&self.map);
                if let Some(&id) = map.get(account) {
                    id
                } else {
                    let mut load = vec![0usize; self.cells.len()];
                    for &c in map.values() {
                        if let Some(l) = load.get_mut(c as usize) {
                            *l += 1;
                        }
                    }
                    let id = (0..self.cells.len())
                        .min_by_key(|&i| (load[i], i))
                        .unwrap_or(0) as u32;
                    let stored =
                        self.store
                            .insert_new(names::ACCOUNT_CELL, account, id.to_string())?;
                    let id = stored.trim().parse::<u32>().unwrap_or(id);
                    map.insert(account.to_string(), id);
                    id
                }
            }
        };
        // An account remembered in a cell that is no longer configured is served by
        // the last cell rather than refused; cells are only ever added.
        let idx = (id as usize).min(self.cells.len().saturating_sub(1));
        Ok(self.cells[idx].clone())
    }

    /// The quarantine counters of the router's store: (undecodable, quarantined).
    pub fn quarantine_stats(&self) -> (u64, u64) {
        self.store.quarantine_stats().get()
    }

    /// The recorded cell number of `account`, if any.
    pub fn assigned(&self, account: &str) -> Option<u32> {
        crate::sync::read(&self.map).get(account).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn cells(dir: &std::path::Path, n: u32) -> Vec<Arc<Cell>> {
        (0..n)
            .map(|i| {
                let s = SqliteStore::open(&dir.join(format!("cell-{i}.db"))).unwrap();
                Arc::new(Cell::open(i, Box::new(s), "us-east-1").unwrap())
            })
            .collect()
    }

    #[test]
    fn accounts_stick_and_adding_cells_moves_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let rs = || Box::new(SqliteStore::open(&dir.path().join("router.db")).unwrap());
        let r = Router::new(cells(dir.path(), 2), rs()).unwrap();
        let a = r.cell_of("111").unwrap().id;
        let b = r.cell_of("222").unwrap().id;
        assert_ne!(a, b, "least-loaded assignment spreads accounts");
        assert_eq!(r.cell_of("111").unwrap().id, a);
        drop(r);
        let r = Router::new(cells(dir.path(), 3), rs()).unwrap();
        assert_eq!(r.cell_of("111").unwrap().id, a);
        assert_eq!(r.cell_of("222").unwrap().id, b);
        assert_eq!(
            r.cell_of("333").unwrap().id,
            2,
            "new account goes to the new cell"
        );
    }
}
