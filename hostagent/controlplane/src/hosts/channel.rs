//! The long-lived WebSocket channel of one host. Every message is checked against
//! the host identity the channel was authenticated with.

use super::credentials;
use super::registry::{authenticate, Authenticated};
use crate::app::App;
use crate::cells::{AgentConn, Cell, CellState, TaskMetricsSample};
use crate::config::CredentialPolicy;
use crate::lifecycle::{self, own_task};
use agent_proto::{AgentMessage, ControlMessage, Status};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
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
    let Authenticated {
        cell,
        host,
        valid_until,
    } = match authenticate(&app, auth) {
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
    let resync = cell.lock().connect_host(
        &host,
        AgentConn {
            conn_id,
            tx: tx.clone(),
            valid_until,
        },
    );
    let Some(resync) = resync else {
        // Revoked between the credential check and now.
        use axum::response::IntoResponse;
        let msg = credentials::CredentialError::Revoked.to_string();
        return (axum::http::StatusCode::UNAUTHORIZED, msg).into_response();
    };
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
    cell.lock().disconnect_host(host, conn_id);
}

/// Handles one agent message other than [`AgentMessage::Logs`] (which
/// [`crate::logs::ingest`] stores); returns the replies.
pub fn handle(c: &mut CellState, host: &str, msg: AgentMessage) -> Vec<ControlMessage> {
    let err = |m: String| vec![ControlMessage::Error { message: m }];
    if !c.heard_from(host) {
        return err("host is not active (declared lost); reconnect".into());
    }
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
                c.forget_metrics(&task_arn);
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
                c.set_metrics(
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
        AgentMessage::RotateCredential => err("credential rotation needs the policy".into()),
        // Stored by the health work (container and task healthStatus); ignored until then.
        AgentMessage::ContainerHealth { .. } => vec![],
        AgentMessage::Draining => match c.set_draining(host) {
            Ok(()) => vec![],
            Err(e) => err(format!("state store error: {e}")),
        },
    }
}

/// Answers [`AgentMessage::RotateCredential`] from `host`: a new credential, stored
/// (hashed) before it is sent; the channel stays open until the new one expires.
pub fn rotate(c: &mut CellState, host: &str, policy: &CredentialPolicy) -> Vec<ControlMessage> {
    let err = |m: String| vec![ControlMessage::Error { message: m }];
    if !c.heard_from(host) {
        return err("host is not active (declared lost); reconnect".into());
    }
    let mut rec = match c.hosts().get(host) {
        Ok(Some(r)) => r,
        Ok(None) => return err("unknown host".into()),
        Err(e) => return err(format!("state store error: {e}")),
    };
    let t = crate::clock::now();
    let secret = match credentials::rotate(&mut rec, policy, t) {
        Ok(s) => s,
        Err(e) => return err(e.to_string()),
    };
    if let Err(e) = c.hosts().put(&rec) {
        return err(format!("state store error: {e}"));
    }
    c.set_channel_valid_until(host, rec.credential_expires_at);
    tracing::info!(host, "host credential rotated");
    vec![ControlMessage::CredentialRotated {
        host_credential: secret,
        credential_ttl_ms: policy.ttl.as_millis() as u64,
    }]
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
                        Ok(AgentMessage::RotateCredential) => {
                            let (cell2, host2, policy) = (cell.clone(), host.clone(), app.credential_policy);
                            tokio::task::spawn_blocking(move || rotate(&mut cell2.lock(), &host2, &policy))
                                .await.unwrap_or_default()
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
