//! Wiring: the HTTP routes, the listener (HTTPS, see `crate::tls`) and the background
//! loops (heartbeat monitor and service scheduler, one pair per cell).

use crate::app::App;
use crate::config::{Config, ListenerConfig};
use crate::frontend;
use crate::hosts;
use crate::tls::TlsListener;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The HTTP routes.
pub fn routes(app: Arc<App>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/",
            post(frontend::call).layer(axum::middleware::from_fn_with_state(
                app.clone(),
                crate::scrape::track,
            )),
        )
        .route(agent_proto::REGISTER_PATH, post(hosts::register))
        .route(agent_proto::CHANNEL_PATH, get(hosts::channel))
        .route("/metrics", get(crate::scrape::handler))
        .route("/metrics.json", get(metrics))
        .with_state(app)
}

/// `GET /metrics.json`: counters as JSON (no tenant data; kept for compatibility).
async fn metrics(axum::extract::State(app): axum::extract::State<Arc<App>>) -> String {
    let connected: usize = app
        .router
        .cells
        .iter()
        .map(|c| c.lock().agents_connected())
        .sum();
    let (mut undecodable, mut quarantined) = app.router.quarantine_stats();
    for c in &app.router.cells {
        let (u, q) = c.lock().quarantine_stats();
        undecodable += u;
        quarantined += q;
    }
    serde_json::json!({
        "agentMessages": app.agent_messages.load(Ordering::Relaxed),
        "hostsLost": app.hosts_lost.load(Ordering::Relaxed),
        "hostsRevoked": app.hosts_revoked.load(Ordering::Relaxed),
        "agentsConnected": connected,
        "cells": app.router.cells.len(),
        "cellsLed": app.router.cells.iter().filter(|c| c.is_leader()).count(),
        "logEventsStored": app.log_counters.stored.load(Ordering::Relaxed),
        "logLinesRejected": app.log_counters.rejected.load(Ordering::Relaxed),
        "logLinesDiscarded": app.log_counters.discarded.load(Ordering::Relaxed),
        "logLinesDroppedByAgents": app.log_counters.dropped_by_agents.load(Ordering::Relaxed),
        "auditLinesWritten": app.audit.written(),
        "auditLinesDropped": app.audit.dropped(),
        "storeRecordsUndecodable": undecodable,
        "storeRecordsQuarantined": quarantined,
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
            let mut last_prune = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                // Placement, the scheduler and the lost-host sweep: the leader only.
                if !cell.is_leader() {
                    cell.follower_tick();
                    continue;
                }
                let mut c = cell.lock();
                let lost =
                    crate::hosts::heartbeat::sweep(&mut c, app.heartbeat_timeout, Instant::now());
                app.hosts_lost
                    .fetch_add(lost.len() as u64, Ordering::Relaxed);
                let revoked = crate::hosts::revoke::sweep(&mut c, crate::clock::now());
                app.hosts_revoked
                    .fetch_add(revoked.len() as u64, Ordering::Relaxed);
                if last_sched.elapsed() >= app.scheduler_interval {
                    last_sched = Instant::now();
                    if let Err(e) = crate::scheduler::reconcile(&mut c) {
                        tracing::error!(cell = cell.id, "scheduler: {e}");
                    }
                }
                // Retention: one bounded batch per pass; a backlog takes several.
                if last_prune.elapsed() >= app.retention.period() {
                    let now = crate::clock::now();
                    let cutoff = app.retention.inactive_cutoff(now);
                    if let Err(e) = c.inactive_since().prune(cutoff, app.retention.batch) {
                        tracing::error!(cell = cell.id, "pruning INACTIVE resources: {e}");
                    }
                    let cutoff = app.retention.cutoff(now);
                    match c.prune_stopped(cutoff, app.retention.batch) {
                        Ok(n) if n == app.retention.batch => {
                            tracing::debug!(cell = cell.id, "pruned {n} STOPPED tasks, more left");
                        }
                        Ok(n) => {
                            if n > 0 {
                                tracing::debug!(cell = cell.id, "pruned {n} STOPPED tasks");
                            }
                            last_prune = Instant::now();
                        }
                        Err(e) => {
                            tracing::error!(cell = cell.id, "pruning STOPPED tasks: {e}");
                            last_prune = Instant::now();
                        }
                    }
                }
            }
        }));
    }
    let (stop, app) = (stop.clone(), app.clone());
    handles.push(std::thread::spawn(move || {
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            if last.elapsed() < LOG_SWEEP_INTERVAL {
                continue;
            }
            last = Instant::now();
            for store in &app.logs {
                match store.sweep_expired(crate::clock::now_ms(), LOG_SWEEP_BATCH) {
                    Ok(n) if n > 0 => tracing::debug!("log retention: {n} events deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::error!("log retention sweep: {e}"),
                }
            }
        }
    }));
    handles
}

/// How often the log retention sweep runs; each run deletes at most
/// [`LOG_SWEEP_BATCH`] expired events per log store.
pub const LOG_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Most expired events one sweep deletes per log store.
pub const LOG_SWEEP_BATCH: usize = 10_000;

/// Why the control plane stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The state (stores, log stores) could not be opened.
    #[error("opening state: {0}")]
    Open(#[from] crate::store::StoreError),
    /// The HTTP server failed.
    #[error("{0}")]
    Http(#[from] std::io::Error),
    /// The listener's certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Serves until `shutdown` completes: HTTPS (and wss:// for agents), or plain HTTP
/// where the configuration says so (loopback development only, see `Config`).
pub async fn serve(
    cfg: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match &cfg.listener {
        ListenerConfig::Https { cert, key } => Some(crate::tls::server_config(cert, key)?),
        ListenerConfig::PlainLoopback => None,
    };
    let app = Arc::new(App::open(&cfg)?);
    let stop = Arc::new(AtomicBool::new(false));
    let loops = start_loops(&app, stop.clone());
    let r = match tls {
        Some(tls) => {
            let service =
                routes(app.clone()).into_make_service_with_connect_info::<frontend::PeerAddr>();
            axum::serve(TlsListener::new(listener, tls)?, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            let service =
                routes(app.clone()).into_make_service_with_connect_info::<frontend::PeerAddr>();
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
    .map_err(ServeError::Http);
    // Every call has been answered: its audit line is queued; write them all.
    app.audit.close().await;
    stop.store(true, Ordering::Relaxed);
    for h in loops {
        let _ = h.join();
    }
    let leadership = crate::sync::lock(&app.leadership).take();
    if let Some(l) = leadership {
        l.resign();
    }
    r
}
