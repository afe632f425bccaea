//! Wiring: the shared application state, the HTTP routes and the background loops
//! (heartbeat monitor and service scheduler, one pair per cell).

use crate::agent;
use crate::cells::{Cell, Router};
use crate::config::Config;
use crate::frontend::{self, throttle::Throttle};
use crate::leader::Leadership;
use crate::logs::ingest::LogCounters;
use crate::logs::store::LogStore;
use crate::store::StoreError;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shared state of the control plane.
pub struct App {
    /// Region.
    pub region: String,
    /// access key -> (account, secret).
    pub accounts: HashMap<String, (String, String)>,
    /// Throttles.
    pub throttle: Throttle,
    /// Cells and the account router.
    pub router: Router,
    /// Host bootstrap token.
    pub bootstrap_token: Option<String>,
    /// Heartbeat interval told to agents.
    pub heartbeat_interval: Duration,
    /// Heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Scheduler period.
    pub scheduler_interval: Duration,
    /// Connection counter.
    pub next_conn: AtomicU64,
    /// Agent messages handled (metric).
    pub agent_messages: AtomicU64,
    /// Hosts declared lost (metric).
    pub hosts_lost: AtomicU64,
    /// The log store of each cell (`logs-N.db`), by cell number.
    pub logs: Vec<Arc<LogStore>>,
    /// Log pipeline counters (metric).
    pub log_counters: LogCounters,
    /// The etcd leadership campaign of this replica (none over SQLite).
    pub leadership: std::sync::Mutex<Option<Leadership>>,
}

impl App {
    /// Opens the state under `cfg.data_dir` (created if needed).
    pub fn open(cfg: &Config) -> Result<App, StoreError> {
        std::fs::create_dir_all(&cfg.data_dir)?;
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
            bootstrap_token: cfg.bootstrap_token.clone(),
            heartbeat_interval: cfg.heartbeat_interval,
            heartbeat_timeout: cfg.heartbeat_timeout,
            scheduler_interval: cfg.scheduler_interval,
            next_conn: AtomicU64::new(1),
            agent_messages: AtomicU64::new(0),
            hosts_lost: AtomicU64::new(0),
            logs,
            log_counters: LogCounters::default(),
            leadership: std::sync::Mutex::new(opened.leadership),
        })
    }
}

/// The HTTP routes.
pub fn routes(app: Arc<App>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", post(frontend::ecs))
        .route(agent_proto::REGISTER_PATH, post(agent::register))
        .route(agent_proto::CHANNEL_PATH, get(agent::channel))
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// `GET /metrics`: counters as JSON (no tenant data).
async fn metrics(axum::extract::State(app): axum::extract::State<Arc<App>>) -> String {
    let connected: usize = app.router.cells.iter().map(|c| c.lock().agents.len()).sum();
    serde_json::json!({
        "agentMessages": app.agent_messages.load(Ordering::Relaxed),
        "hostsLost": app.hosts_lost.load(Ordering::Relaxed),
        "agentsConnected": connected,
        "cells": app.router.cells.len(),
        "cellsLed": app.router.cells.iter().filter(|c| c.is_leader()).count(),
        "logEventsStored": app.log_counters.stored.load(Ordering::Relaxed),
        "logLinesRejected": app.log_counters.rejected.load(Ordering::Relaxed),
        "logLinesDiscarded": app.log_counters.discarded.load(Ordering::Relaxed),
        "logLinesDroppedByAgents": app.log_counters.dropped_by_agents.load(Ordering::Relaxed),
    })
    .to_string()
}

/// Starts the per-cell background loops; they end when `stop` is set.
pub fn start_loops(app: &Arc<App>, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let mut handles = vec![];
    for cell in &app.router.cells {
        let (cell, stop, app) = (cell.clone(), stop.clone(), app.clone());
        handles.push(std::thread::spawn(move || {
            let tick = (app.heartbeat_timeout / 4)
                .min(app.scheduler_interval)
                .max(Duration::from_millis(20));
            let mut last_sched = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                // Placement, the scheduler and the lost-host sweep: the leader only.
                if !cell.is_leader() {
                    cell.follower_tick();
                    continue;
                }
                let mut c = cell.lock();
                let lost =
                    crate::agent::heartbeat::sweep(&mut c, app.heartbeat_timeout, Instant::now());
                app.hosts_lost
                    .fetch_add(lost.len() as u64, Ordering::Relaxed);
                if last_sched.elapsed() >= app.scheduler_interval {
                    last_sched = Instant::now();
                    if let Err(e) = crate::scheduler::reconcile(&mut c) {
                        tracing::error!(cell = cell.id, "scheduler: {e}");
                    }
                }
            }
        }));
    }
    handles
}

/// Serves until `shutdown` completes.
pub async fn serve(
    cfg: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let app = Arc::new(App::open(&cfg).map_err(|e| format!("opening state: {e}"))?);
    let stop = Arc::new(AtomicBool::new(false));
    let loops = start_loops(&app, stop.clone());
    let r = axum::serve(listener, routes(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string());
    stop.store(true, Ordering::Relaxed);
    for h in loops {
        let _ = h.join();
    }
    let leadership = app
        .leadership
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(l) = leadership {
        l.resign();
    }
    r
}
