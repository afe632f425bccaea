//! Registration and the long-lived agent channel: connect, resync, heartbeats,
//! liveness, reconnect with capped exponential backoff and jitter, clean close,
//! and the rotation of the host credential before it expires. A credential the
//! control plane refuses (`401`) is retried with the same jittered exponential
//! backoff (from 1 s, capped), said in the log (`backing off`), since a control
//! plane that lost its state or was restored may know the host again; except an
//! expired one (the agent registers again when a bootstrap token was given, else
//! it ends with an error) and a revoked host, which ends with an error.

use super::agent::Agent;
use super::backoff::Backoff;
use super::identity::{self, Identity};
use super::runtime::TaskRuntime;
use agent_proto::{
    bearer, AgentMessage, ControlMessage, ErrorBody, RegisterRequest, RegisterResponse,
    CHANNEL_PATH, REGISTER_PATH,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What the channel needs to know.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// `host:port` of the control plane.
    pub addr: String,
    /// The base URL as given (stored with the identity).
    pub url: String,
    /// Bootstrap token, for the first registration.
    pub bootstrap_token: Option<String>,
    /// TLS to the control plane (https://, wss://); None: plain, for a loopback
    /// development control plane (`--dev-plain-http`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Registration fields.
    pub hostname: String,
    /// Availability zone.
    pub availability_zone: String,
    /// CPU units.
    pub cpu: u32,
    /// MiB.
    pub memory: u32,
    /// Cell to ask for.
    pub cell: Option<u32>,
    /// State directory.
    pub state_dir: PathBuf,
    /// First reconnect delay.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM / shutdown requested.
    Shutdown,
    /// Draining finished: no task left.
    Drained,
}

/// A failure that retrying cannot fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

enum RegError {
    Retry(String),
    Fatal(String),
}

async fn register(cfg: &ChannelConfig, token: &str) -> Result<RegisterResponse, RegError> {
    let req = RegisterRequest {
        bootstrap_token: token.to_string(),
        hostname: cfg.hostname.clone(),
        availability_zone: cfg.availability_zone.clone(),
        cpu: cfg.cpu,
        memory: cfg.memory,
        cell: cfg.cell,
    };
    let body = serde_json::to_vec(&req).map_err(|e| RegError::Fatal(e.to_string()))?;
    // reqwest is built here with rustls and no default crypto provider: install ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(10));
    let scheme = match &cfg.tls {
        // Only the --controlplane-ca roots: the same trust as the channel.
        Some(tls) => {
            client = client.tls_backend_preconfigured(rustls::ClientConfig::clone(tls));
            "https"
        }
        None => "http",
    };
    let client = client
        .build()
        .map_err(|e| RegError::Fatal(format!("http client: {e}")))?;
    let resp = client
        .post(format!("{scheme}://{}{REGISTER_PATH}", cfg.addr))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| RegError::Retry(format!("register: {}", with_sources(&e))))?;
    let status = resp.status();
    let text = resp
        .bytes()
        .await
        .map_err(|e| RegError::Retry(format!("register: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&text)
            .map_err(|e| RegError::Retry(format!("register: bad answer: {e}")));
    }
    let msg = serde_json::from_slice::<ErrorBody>(&text)
        .map(|b| b.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&text).into_owned());
    let err = format!("registration refused ({status}): {msg}");
    if status.is_client_error() {
        Err(RegError::Fatal(err))
    } else {
        Err(RegError::Retry(err))
    }
}

/// `e` and its causes, one after the other (reqwest's own text omits them, and the
/// cause is what says that a certificate was refused).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(": ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
}

/// The stored identity, or a new one from registering (retried with backoff).
async fn identity(
    cfg: &ChannelConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Identity>, Fatal> {
    if let Some(id) = identity::load(&cfg.state_dir).map_err(|e| Fatal(e.to_string()))? {
        if !id.expired(identity::now_ms()) {
            tracing::info!(host = %id.host_id, cell = id.cell, "using stored host identity");
            return Ok(Some(id));
        }
        if cfg.bootstrap_token.is_none() {
            return Err(Fatal(format!(
                "the stored credential of host {} expired; the host must register again (give --bootstrap-token)",
                id.host_id
            )));
        }
        tracing::warn!(host = %id.host_id, "the stored credential expired: registering again");
    }
    register_new(cfg, shutdown).await
}

/// Registers with the bootstrap token (retried with backoff) and stores the identity.
async fn register_new(
    cfg: &ChannelConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Identity>, Fatal> {
    let token = cfg
        .bootstrap_token
        .as_deref()
        .ok_or_else(|| Fatal("not registered yet and no --bootstrap-token given".into()))?;
    let mut backoff = Backoff::new(cfg.min_backoff, cfg.max_backoff);
    loop {
        match register(cfg, token).await {
            Ok(r) => {
                let mut id = Identity {
                    controlplane: cfg.url.clone(),
                    host_id: r.host_id,
                    host_credential: String::new(),
                    cell: r.cell,
                    heartbeat_interval_secs: r.heartbeat_interval_secs,
                    credential_issued_at_ms: 0,
                    credential_expires_at_ms: 0,
                };
                id.set_credential(r.host_credential, r.credential_ttl_ms, identity::now_ms());
                identity::save(&cfg.state_dir, &id).map_err(|e| Fatal(e.to_string()))?;
                tracing::info!(host = %id.host_id, cell = id.cell, "registered");
                return Ok(Some(id));
            }
            Err(RegError::Fatal(e)) => return Err(Fatal(e)),
            Err(RegError::Retry(e)) => {
                let d = backoff.next_delay();
                tracing::warn!("{e}; retrying in {} ms", d.as_millis());
                if wait_or_shutdown(d, shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// Sleeps `d`; true if shutdown was requested meanwhile.
async fn wait_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}

/// First delay before a refused credential is tried again (then doubled, capped
/// by the configured longest backoff, jittered).
pub const REFUSAL_BACKOFF_BASE: Duration = Duration::from_secs(1);

/// The delays of the channel: after a lost connection, after a refused credential.
/// Both start again once a connection is accepted.
struct Backoffs {
    lost: Backoff,
    refused: Backoff,
}

enum SessionEnd {
    Lost(String),
    /// The control plane refused the credential (`401`), with its reason.
    Refused(String),
    Exit(Exit),
}

/// Registers if needed, then holds the channel until shutdown or drained.
pub async fn run<R: TaskRuntime>(
    cfg: ChannelConfig,
    agent: Arc<Agent<R>>,
    mut out: mpsc::UnboundedReceiver<AgentMessage>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Exit, Fatal> {
    let Some(mut id) = identity(&cfg, &mut shutdown).await? else {
        return Ok(Exit::Shutdown);
    };
    let mut backoff = Backoffs {
        lost: Backoff::new(cfg.min_backoff, cfg.max_backoff),
        refused: Backoff::new(REFUSAL_BACKOFF_BASE.max(cfg.min_backoff), cfg.max_backoff),
    };
    let mut unsent: VecDeque<AgentMessage> = VecDeque::new();
    loop {
        let end = session(
            &cfg,
            &mut id,
            &agent,
            &mut out,
            &mut unsent,
            &mut shutdown,
            &mut backoff,
        )
        .await;
        crate::host::metrics::channel_down();
        match end {
            SessionEnd::Exit(e) => return Ok(e),
            SessionEnd::Refused(why)
                if why.contains("expired") && cfg.bootstrap_token.is_some() =>
            {
                tracing::warn!("host credential refused ({why}): registering again");
                match register_new(&cfg, &mut shutdown).await? {
                    Some(new) => id = new,
                    None => return Ok(Exit::Shutdown),
                }
            }
            SessionEnd::Refused(why) if why.contains("revoked") || why.contains("expired") => {
                return Err(Fatal(format!(
                    "the control plane refused the credential of host {}: {why}; the host must register again (remove {} and give --bootstrap-token)",
                    id.host_id,
                    identity::path(&cfg.state_dir).display()
                )));
            }
            SessionEnd::Refused(why) => {
                let d = backoff.refused.next_delay();
                tracing::warn!(
                    host = %id.host_id,
                    "the control plane refused the host credential ({why}); backing off {} ms before trying it again",
                    d.as_millis()
                );
                if wait_or_shutdown(d, &mut shutdown).await {
                    return Ok(Exit::Shutdown);
                }
                continue;
            }
            SessionEnd::Lost(why) => {
                let d = backoff.lost.next_delay();
                tracing::warn!("channel: {why}; reconnecting in {} ms", d.as_millis());
                if wait_or_shutdown(d, &mut shutdown).await {
                    return Ok(Exit::Shutdown);
                }
            }
        }
    }
}

async fn session<R: TaskRuntime>(
    cfg: &ChannelConfig,
    id: &mut Identity,
    agent: &Arc<Agent<R>>,
    out: &mut mpsc::UnboundedReceiver<AgentMessage>,
    unsent: &mut VecDeque<AgentMessage>,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoffs,
) -> SessionEnd {
    let scheme = if cfg.tls.is_some() { "wss" } else { "ws" };
    let mut req = match format!("{scheme}://{}{CHANNEL_PATH}", cfg.addr).into_client_request() {
        Ok(r) => r,
        Err(e) => return SessionEnd::Lost(format!("bad channel URL: {e}")),
    };
    match bearer(&id.host_id, &id.host_credential).parse() {
        Ok(v) => {
            req.headers_mut().insert("authorization", v);
        }
        Err(_) => return SessionEnd::Lost("host credential is not a valid header".into()),
    }
    let connect = async {
        let io = super::tls::connect(&cfg.addr, cfg.tls.as_ref())
            .await
            .map_err(tokio_tungstenite::tungstenite::Error::Io)?;
        tokio_tungstenite::client_async(req, io).await
    };
    let ws = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(10), connect) => match r {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) if r.status() == 401 => {
                let body = r.body().as_deref().unwrap_or_default();
                let why = serde_json::from_slice::<ErrorBody>(body)
                    .map(|b| b.message)
                    .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
                return SessionEnd::Refused(why);
            }
            Ok(Err(e)) => return SessionEnd::Lost(format!("connect: {e}")),
            Err(_) => return SessionEnd::Lost("connect: timed out".into()),
        },
        _ = shutdown.changed() => return SessionEnd::Exit(Exit::Shutdown),
    };
    tracing::info!(host = %id.host_id, "channel connected");
    crate::host::metrics::channel_up();
    backoff.lost.reset();
    backoff.refused.reset();
    let (mut sink, mut stream) = ws.split();
    let interval = Duration::from_secs(id.heartbeat_interval_secs.max(1));
    // The control plane answers our pings; silence this long means the link is dead.
    let liveness = (interval * 3).max(Duration::from_secs(3));
    let mut last_heard = Instant::now();
    let mut beat = tokio::time::interval(interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_check = tokio::time::interval(Duration::from_millis(200));
    // Said once per connection, so that a reconnected control plane knows it too.
    let mut drain_announced = false;
    // The credential is rotated past half its lifetime; one request at a time.
    let mut rotate_check = tokio::time::interval(Duration::from_millis(250));
    let mut rotation_asked: Option<Instant> = None;
    macro_rules! send {
        ($m:expr) => {{
            let m: AgentMessage = $m;
            let text = match serde_json::to_string(&m) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!("encode: {e}");
                    continue;
                }
            };
            if let Err(e) = sink.send(Message::text(text)).await {
                if !matches!(m, AgentMessage::Heartbeat { .. }) {
                    unsent.push_front(m);
                }
                return SessionEnd::Lost(format!("send: {e}"));
            }
        }};
    }
    while let Some(m) = unsent.pop_front() {
        let text = serde_json::to_string(&m).unwrap_or_default();
        if let Err(e) = sink.send(Message::text(text)).await {
            unsent.push_front(m);
            return SessionEnd::Lost(format!("send: {e}"));
        }
    }
    loop {
        tokio::select! {
            _ = beat.tick() => {
                if last_heard.elapsed() > liveness {
                    return SessionEnd::Lost(format!("nothing heard for {} s", liveness.as_secs()));
                }
                send!(agent.heartbeat());
                if let Err(e) = sink.send(Message::Ping(Vec::new().into())).await {
                    return SessionEnd::Lost(format!("send: {e}"));
                }
            }
            m = out.recv() => match m {
                Some(m) => {
                    agent.taken(&m);
                    send!(m)
                }
                None => return SessionEnd::Exit(Exit::Shutdown),
            },
            frame = stream.next() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ControlMessage>(&t) {
                        Ok(ControlMessage::CredentialRotated { host_credential, credential_ttl_ms }) => {
                            rotation_asked = None;
                            id.set_credential(host_credential, credential_ttl_ms, identity::now_ms());
                            // Stored before it is used; if this fails the old one
                            // still works for the overlap and the next rotation retries.
                            match identity::save(&cfg.state_dir, id) {
                                Ok(()) => tracing::info!(host = %id.host_id, "host credential rotated"),
                                Err(e) => tracing::error!("storing the rotated credential: {e}"),
                            }
                        }
                        Ok(ControlMessage::Error { message }) if rotation_asked.is_some() && message.contains("credential") => {
                            tracing::warn!("credential rotation refused: {message}");
                        }
                        Ok(m) => agent.handle(m),
                        Err(e) => tracing::warn!("unknown control message ({e}): {}", t.as_str().chars().take(200).collect::<String>()),
                    },
                    Some(Ok(Message::Close(f))) => {
                        return SessionEnd::Lost(format!("closed by the control plane ({f:?})"));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return SessionEnd::Lost(format!("receive: {e}")),
                    None => return SessionEnd::Lost("connection closed".into()),
                }
            }
            _ = rotate_check.tick() => {
                let again = rotation_asked.is_none_or(|t| t.elapsed() > Duration::from_secs(5));
                if again && id.rotation_due(identity::now_ms()) {
                    rotation_asked = Some(Instant::now());
                    send!(AgentMessage::RotateCredential);
                }
            }
            _ = drain_check.tick(), if agent.is_draining() => {
                if !drain_announced {
                    drain_announced = true;
                    send!(AgentMessage::Draining);
                    tracing::info!("draining: the control plane places no new task here");
                }
                if agent.is_idle() && out.is_empty() {
                    tracing::info!("drained: no task left");
                    close(&mut sink, "drained").await;
                    return SessionEnd::Exit(Exit::Drained);
                }
            }
            _ = shutdown.changed() => {
                // Flush reports already queued, then say goodbye.
                while let Ok(m) = out.try_recv() {
                    agent.taken(&m);
                    send!(m);
                }
                close(&mut sink, "agent shutting down").await;
                return SessionEnd::Exit(Exit::Shutdown);
            }
        }
    }
}

async fn close<S>(sink: &mut S, why: &str)
where
    S: SinkExt<Message> + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: why.to_string().into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}
