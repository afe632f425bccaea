//! The shared state of the control plane: accounts, throttles, the cells and their
//! router, the log stores, the audit log, timings and counters. Every handler and background loop
//! takes an `Arc<App>`; it sits below them all.

use crate::audit::AuditLog;
use crate::cells::{Cell, Router};
use crate::config::Config;
use crate::leader::Leadership;
use crate::logs::ingest::LogCounters;
use crate::logs::store::LogStore;
use crate::store::StoreError;
use crate::throttle::Throttle;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Shared state of the control plane.
pub struct App {
    /// The AWS region named in every ARN and checked in every signature.
    pub region: String,
    /// access key -> (account, secret).
    pub accounts: HashMap<String, (String, String)>,
    /// The per-account, per-operation token buckets of the API.
    pub throttle: Throttle,
    /// Cells and the account router.
    pub router: Router,
    /// Host credential lifetimes.
    pub credential_policy: crate::config::CredentialPolicy,
    /// Heartbeat interval told to agents.
    pub heartbeat_interval: Duration,
    /// Heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Scheduler period.
    pub scheduler_interval: Duration,
    /// How long STOPPED tasks stay visible, prune batches.
    pub retention: crate::retention::Retention,
    /// Connection counter.
    pub next_conn: AtomicU64,
    /// Agent messages handled (metric).
    pub agent_messages: AtomicU64,
    /// Hosts declared lost (metric).
    pub hosts_lost: AtomicU64,
    /// Hosts revoked by the operator (metric).
    pub hosts_revoked: AtomicU64,
    /// The log store of each cell (`logs-N.db`), by cell number.
    pub logs: Vec<Arc<LogStore>>,
    /// Log pipeline counters (metric).
    pub log_counters: LogCounters,
    /// The etcd leadership campaign of this replica (none over SQLite).
    pub leadership: std::sync::Mutex<Option<Leadership>>,
    /// The audit log of mutating calls.
    pub audit: AuditLog,
    /// The Prometheus metrics recorded as calls are answered.
    pub metrics: crate::metrics::Metrics,
    /// Held while running: `restore` refuses to write under a live control plane.
    pub data_lock: crate::backup::DataDirLock,
}

impl App {
    /// Opens the state under `cfg.data_dir` (created if needed).
    pub fn open(cfg: &Config) -> Result<App, StoreError> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let data_lock = crate::backup::DataDirLock::shared(&cfg.data_dir)?;
        let audit = AuditLog::open(&cfg.audit_log)?;
        let opened = crate::cells::open_stores(cfg)?;
        let cells: Vec<Arc<Cell>> = opened.cells;
        let mut logs = vec![];
        for i in 0..cfg.cells {
            let p = cfg.data_dir.join(format!("logs-{i}.db"));
            let s = LogStore::open(&p, cfg.log_retention_events)?;
            logs.push(Arc::new(s));
        }
        Ok(App {
            region: cfg.region.clone(),
            accounts: cfg.accounts.clone(),
            throttle: Throttle::new(cfg.throttle.clone()),
            router: Router::new(cells, opened.router_store)?,
            credential_policy: cfg.credential_policy,
            heartbeat_interval: cfg.heartbeat_interval,
            heartbeat_timeout: cfg.heartbeat_timeout,
            scheduler_interval: cfg.scheduler_interval,
            retention: cfg.retention,
            next_conn: AtomicU64::new(1),
            agent_messages: AtomicU64::new(0),
            hosts_lost: AtomicU64::new(0),
            hosts_revoked: AtomicU64::new(0),
            logs,
            log_counters: LogCounters::default(),
            leadership: std::sync::Mutex::new(opened.leadership),
            audit,
            metrics: crate::metrics::Metrics::new(),
            data_lock,
        })
    }
}
