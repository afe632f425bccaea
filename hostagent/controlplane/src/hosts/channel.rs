//! The long-lived WebSocket channel of one host. Every message is checked against
//! the host identity the channel was authenticated with.

use super::registry::authenticate;
use crate::app::App;
use crate::cells::{AgentConn, Cell, CellState, TaskMetricsSample};
use crate::lifecycle::{self, own_task};
use crate::model::HostStatus;
use crate::tables::TaskKey;
use agent_proto::{AgentMessage, ControlMessage, Status};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Most task ARNs one heartbeat may list.
pub const MAX_HEARTBEAT_TASKS: usize = 1024;

/// `GET /agent/v1/channel` (WebSocket upgrade).
pub async fn channel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let (cell, host) = match authenticate(&app, auth) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if !cell.is_leader() {
        // etcd replicas: a host talks to its cell's leader (see README).
        use axum::response::IntoResponse;
        let msg = cell.role.not_leader().to_string();
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    }
    // The host becomes schedulable (and its resync is queued) before the `101`
    // answer, so a client that sees the upgrade succeed can be given tasks.
    let conn_id = app.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel();
    let resync = connect(
        &mut cell.lock(),
        &host,
        AgentConn {
            conn_id,
            tx: tx.clone(),
        },
    );
    for m in resync {
        let _ = tx.send(m);
    }
    drop(tx);
    let (cell2, host2) = (cell.clone(), host.clone());
    ws.max_message_size(1 << 20)
        .on_failed_upgrade(move |_| disconnect(&cell2, &host2, conn_id))
        .on_upgrade(move |socket| serve(app, cell, host, conn_id, rx, socket))
}

fn disconnect(cell: &Cell, host: &str, conn_id: u64) {
    let mut c = cell.lock();
    if c.agents.get(host).is_some_and(|a| a.conn_id == conn_id) {
        c.agents.remove(host);
        c.placement.set_schedulable(host, false);
    }
}

fn connect(c: &mut CellState, host: &str, conn: AgentConn) -> Vec<ControlMessage> {
    c.agents.insert(host.to_string(), conn);
    c.heartbeats.insert(host.to_string(), Instant::now());
    if let Ok(Some(mut rec)) = c.hosts().get(host) {
        if rec.status != HostStatus::Active {
            rec.status = HostStatus::Active;
            let _ = c.hosts().put(&rec);
        }
        c.placement
            .add_host(host, &rec.availability_zone, rec.cpu, rec.memory);
    }
    c.placement.set_schedulable(host, true);
    // Resync: everything assigned to the host that has not stopped.
    let keys: Vec<TaskKey> = c
        .host_tasks
        .get(host)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let mut out = vec![];
    for k in keys {
        if let Ok(Some(t)) = c.tasks().get(&k) {
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
    out
}

/// Handles one agent message other than [`AgentMessage::Logs`] (which
/// [`crate::logs::ingest`] stores); returns the replies.
pub fn handle(c: &mut CellState, host: &str, msg: AgentMessage) -> Vec<ControlMessage> {
    let err = |m: String| vec![ControlMessage::Error { message: m }];
    if !c.heartbeats.contains_key(host) {
        return err("host is not active (declared lost); reconnect".into());
    }
    c.heartbeats.insert(host.to_string(), Instant::now());
    match msg {
        AgentMessage::Heartbeat { running_tasks } => {
            if running_tasks.len() > MAX_HEARTBEAT_TASKS {
                return err(format!("at most {MAX_HEARTBEAT_TASKS} tasks per heartbeat"));
            }
            let mut out = vec![];
            for arn in running_tasks {
                match own_task(c, host, &arn) {
                    Ok(t)
                        if t.task.desired_status == Status::Stopped
                            || t.task.last_status == Status::Stopped =>
                    {
                        out.push(ControlMessage::StopTask {
                            task_arn: arn,
                            reason: t.task.stopped_reason.unwrap_or_default(),
                        })
                    }
                    Ok(_) => {}
                    Err(e) => out.push(ControlMessage::Error {
                        message: e.to_string(),
                    }),
                }
            }
            out
        }
        AgentMessage::TaskStateChange {
            task_arn,
            last_status,
            containers,
            stopped_reason,
            private_ipv4_address,
        } => {
            let mut rec = match own_task(c, host, &task_arn) {
                Ok(t) => t,
                Err(e) => return err(e.to_string()),
            };
            if containers.len() > 10 || stopped_reason.as_ref().is_some_and(|r| r.len() > 1024) {
                return err("too many containers or reason too long".into());
            }
            if let Some(ip) = &private_ipv4_address {
                if ip.parse::<std::net::Ipv4Addr>().is_err() {
                    return err(format!("invalid privateIpv4Address {ip}"));
                }
            }
            if last_status == agent_proto::Status::Stopped {
                c.task_metrics.remove(&task_arn);
            }
            match lifecycle::apply_report(
                c,
                &mut rec,
                last_status,
                &containers,
                stopped_reason.as_deref(),
                private_ipv4_address.as_deref(),
            ) {
                Ok(()) => vec![],
                Err(e) => err(e.to_string()),
            }
        }
        AgentMessage::TaskMetrics {
            task_arn,
            cpu_utilization,
            memory_utilization,
            timestamp,
        } => {
            let rec = match own_task(c, host, &task_arn) {
                Ok(t) => t,
                Err(e) => return err(e.to_string()),
            };
            let ok = |v: f64| v.is_finite() && (0.0..=MAX_UTILIZATION).contains(&v);
            if !ok(cpu_utilization) || !ok(memory_utilization) {
                return err(format!(
                    "utilization out of range (0..={MAX_UTILIZATION} percent)"
                ));
            }
            if rec.task.last_status != Status::Stopped {
                c.task_metrics.insert(
                    task_arn,
                    TaskMetricsSample {
                        cpu_utilization,
                        memory_utilization,
                        timestamp,
                    },
                );
            }
            vec![]
        }
        AgentMessage::Logs { .. } => err("log batches are stored by the log pipeline".into()),
        AgentMessage::Draining => match set_draining(c, host) {
            Ok(()) => vec![],
            Err(e) => err(format!("state store error: {e}")),
        },
    }
}

/// The host takes no new task (until it connects again without draining); the service
/// scheduler moves its service tasks to other hosts.
fn set_draining(c: &mut CellState, host: &str) -> Result<(), crate::store::StoreError> {
    c.placement.set_schedulable(host, false);
    if let Some(mut rec) = c.hosts().get(host)? {
        if rec.status != HostStatus::Draining {
            tracing::info!(host, "host is draining");
            rec.status = HostStatus::Draining;
            c.hosts().put(&rec)?;
        }
    }
    Ok(())
}

/// Highest utilization percentage accepted in a metrics sample.
pub const MAX_UTILIZATION: f64 = 1000.0;

async fn serve(
    app: Arc<App>,
    cell: Arc<Cell>,
    host: String,
    conn_id: u64,
    mut rx: mpsc::UnboundedReceiver<ControlMessage>,
    socket: WebSocket,
) {
    tracing::info!(host = %host, cell = cell.id, "agent connected");
    let (mut sink, mut stream) = socket.split();
    let send =
        |m: &ControlMessage| Message::Text(serde_json::to_string(m).unwrap_or_default().into());
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(m) => if sink.send(send(&m)).await.is_err() { break },
                // Replaced by a newer connection, or the host was declared lost.
                None => break,
            },
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    app.agent_messages.fetch_add(1, Ordering::Relaxed);
                    let replies = match serde_json::from_str::<AgentMessage>(t.as_str()) {
                        Err(e) => vec![ControlMessage::Error { message: format!("malformed message: {e}") }],
                        Ok(AgentMessage::Logs { lines, dropped }) => {
                            let (cell2, app2, host2) = (cell.clone(), app.clone(), host.clone());
                            tokio::task::spawn_blocking(move || match app2.logs.get(cell2.id as usize) {
                                Some(store) => crate::logs::ingest::ingest(&cell2, store,
                                    &app2.log_counters, &host2, lines, dropped),
                                None => vec![],
                            }).await.unwrap_or_default()
                        }
                        Ok(m) => handle(&mut cell.lock(), &host, m),
                    };
                    for m in &replies {
                        if sink.send(send(m)).await.is_err() { break }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let m = ControlMessage::Error { message: "binary frames are not accepted".into() };
                    if sink.send(send(&m)).await.is_err() { break }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    disconnect(&cell, &host, conn_id);
    tracing::info!(host = %host, "agent disconnected");
}
