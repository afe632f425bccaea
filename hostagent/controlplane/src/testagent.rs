//! A test agent: a real client of the agent channel that simulates a host. It
//! registers, holds the WebSocket, heartbeats, and answers launches and stops
//! with the state reports a host would send (PENDING, RUNNING, DEPROVISIONING,
//! STOPPED). Tests and benchmarks use it; the protocol is the host agent's.

use crate::client::Endpoint;
use agent_proto::{
    bearer, AgentMessage, ContainerState, ControlMessage, RegisterRequest, RegisterResponse,
    Status, TaskSpec, CHANNEL_PATH, REGISTER_PATH,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Why a simulated host could not register or connect.
#[derive(Debug, thiserror::Error)]
pub enum TestAgentError {
    /// The control plane cannot be reached.
    #[error("connect {addr}: {err}")]
    Connect {
        /// Its address.
        addr: String,
        /// The error.
        err: std::io::Error,
    },
    /// Reading or writing the registration failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A message could not be encoded.
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    /// The answer is not HTTP.
    #[error("malformed HTTP answer")]
    MalformedAnswer,
    /// The control plane refused the registration.
    #[error("registration refused: {status} {body}")]
    Refused {
        /// The status line.
        status: String,
        /// The body.
        body: String,
    },
    /// The registration answer does not parse.
    #[error("bad registration answer: {err}: {body}")]
    BadAnswer {
        /// The parse error.
        err: serde_json::Error,
        /// The body.
        body: String,
    },
    /// The channel URL does not make a request.
    #[error("{0}")]
    Request(tokio_tungstenite::tungstenite::Error),
    /// The credential is not a valid header value.
    #[error("bad credential")]
    BadCredential,
    /// The WebSocket upgrade failed.
    #[error("channel: {0}")]
    Channel(tokio_tungstenite::tungstenite::Error),
}

impl TestAgentError {
    /// The HTTP status and body of a refused channel upgrade.
    pub fn channel_refusal(&self) -> Option<(u16, String)> {
        match self {
            TestAgentError::Channel(tokio_tungstenite::tungstenite::Error::Http(r)) => Some((
                r.status().as_u16(),
                String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned(),
            )),
            _ => None,
        }
    }
}

/// Registers a host with `POST /agent/v1/register` (HTTP/1.1, over TLS if the
/// endpoint says so).
pub async fn register(
    endpoint: impl Into<Endpoint>,
    req: &RegisterRequest,
) -> Result<RegisterResponse, TestAgentError> {
    let endpoint = endpoint.into();
    let addr = &endpoint.addr;
    let body = serde_json::to_string(req)?;
    let mut s = endpoint
        .open()
        .await
        .map_err(|err| TestAgentError::Connect {
            addr: addr.to_string(),
            err,
        })?;
    let head = format!(
        "POST {REGISTER_PATH} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(TestAgentError::MalformedAnswer)?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(TestAgentError::Refused {
            status: head.lines().next().unwrap_or("").to_string(),
            body: body.to_string(),
        });
    }
    serde_json::from_str(body).map_err(|err| TestAgentError::BadAnswer {
        err,
        body: body.to_string(),
    })
}

/// What the simulated host does and saw.
#[derive(Default)]
pub struct HostState {
    /// Tasks it runs (launched, not yet stopped).
    pub running: BTreeMap<String, TaskSpec>,
    /// Every message received from the control plane.
    pub received: Vec<ControlMessage>,
}

/// A connected simulated host.
pub struct TestAgent {
    /// The host id given at registration.
    pub host_id: String,
    /// The host credential given at registration (the channel's bearer token).
    pub credential: String,
    /// The cell the host belongs to.
    pub cell: u32,
    /// Shared view of the host.
    pub state: Arc<Mutex<HostState>>,
    heartbeats: Arc<AtomicBool>,
    out: mpsc::UnboundedSender<AgentMessage>,
    task: tokio::task::JoinHandle<()>,
}

fn stopped_containers(spec: &TaskSpec, code: i32) -> Vec<ContainerState> {
    spec.containers
        .iter()
        .map(|c| ContainerState {
            name: c.name.clone(),
            last_status: Status::Stopped,
            exit_code: Some(code),
            reason: None,
        })
        .collect()
}

impl TestAgent {
    /// Registers a host and connects its channel.
    pub async fn start(
        addr: impl Into<Endpoint>,
        token: &str,
        az: &str,
        cpu: u32,
        memory: u32,
        cell: Option<u32>,
        heartbeat: Duration,
    ) -> Result<TestAgent, TestAgentError> {
        let endpoint = addr.into();
        let reg = register(
            &endpoint,
            &RegisterRequest {
                bootstrap_token: token.into(),
                hostname: format!("test-{az}"),
                availability_zone: az.into(),
                cpu,
                memory,
                cell,
            },
        )
        .await?;
        Self::connect(
            endpoint,
            &reg.host_id,
            &reg.host_credential,
            reg.cell,
            heartbeat,
        )
        .await
    }

    /// Connects the channel of an already registered host.
    pub async fn connect(
        addr: impl Into<Endpoint>,
        host_id: &str,
        credential: &str,
        cell: u32,
        heartbeat: Duration,
    ) -> Result<TestAgent, TestAgentError> {
        let endpoint = addr.into();
        let mut req = format!(
            "{}://{}{CHANNEL_PATH}",
            endpoint.scheme("wss", "ws"),
            endpoint.addr
        )
        .into_client_request()
        .map_err(TestAgentError::Request)?;
        req.headers_mut().insert(
            "authorization",
            bearer(host_id, credential)
                .parse()
                .map_err(|_| TestAgentError::BadCredential)?,
        );
        let io = endpoint
            .open()
            .await
            .map_err(|err| TestAgentError::Connect {
                addr: endpoint.addr.clone(),
                err,
            })?;
        let (ws, _) = tokio_tungstenite::client_async(req, io)
            .await
            .map_err(TestAgentError::Channel)?;
        let state = Arc::new(Mutex::new(HostState::default()));
        let heartbeats = Arc::new(AtomicBool::new(true));
        let (out, mut out_rx) = mpsc::unbounded_channel::<AgentMessage>();
        let (st, hb, out2) = (state.clone(), heartbeats.clone(), out.clone());
        let task = tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let mut tick = tokio::time::interval(heartbeat);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if hb.load(Ordering::Relaxed) {
                            let running = st.lock().map(|s| s.running.keys().cloned().collect()).unwrap_or_default();
                            let m = AgentMessage::Heartbeat { running_tasks: running };
                            let _ = out2.send(m);
                        }
                    }
                    m = out_rx.recv() => match m {
                        Some(m) => {
                            let text = serde_json::to_string(&m).unwrap_or_default();
                            if sink.send(Message::Text(text.into())).await.is_err() { break }
                        }
                        None => break,
                    },
                    f = stream.next() => match f {
                        Some(Ok(Message::Text(t))) => {
                            let Ok(m) = serde_json::from_str::<ControlMessage>(t.as_str()) else { continue };
                            Self::react(&st, &out2, &m);
                            if let Ok(mut s) = st.lock() { s.received.push(m); }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        _ => {}
                    },
                }
            }
        });
        Ok(TestAgent {
            host_id: host_id.into(),
            credential: credential.into(),
            cell,
            state,
            heartbeats,
            out,
            task,
        })
    }

    /// What a host does on a control message: start (PENDING then RUNNING) or stop
    /// (DEPROVISIONING then STOPPED, exit code 143 as after SIGTERM).
    fn react(
        st: &Arc<Mutex<HostState>>,
        out: &mpsc::UnboundedSender<AgentMessage>,
        m: &ControlMessage,
    ) {
        let Ok(mut s) = st.lock() else { return };
        match m {
            ControlMessage::LaunchTask { task } => {
                if s.running.contains_key(&task.task_arn) {
                    return;
                }
                s.running.insert(task.task_arn.clone(), task.clone());
                let n = s.running.len();
                let _ = out.send(AgentMessage::TaskStateChange {
                    task_arn: task.task_arn.clone(),
                    last_status: Status::Pending,
                    containers: vec![],
                    stopped_reason: None,
                    private_ipv4_address: Some(format!("10.0.{}.{}", n / 250, n % 250 + 2)),
                });
                let running = task
                    .containers
                    .iter()
                    .map(|c| ContainerState {
                        name: c.name.clone(),
                        last_status: Status::Running,
                        exit_code: None,
                        reason: None,
                    })
                    .collect();
                let _ = out.send(AgentMessage::TaskStateChange {
                    task_arn: task.task_arn.clone(),
                    last_status: Status::Running,
                    containers: running,
                    stopped_reason: None,
                    private_ipv4_address: None,
                });
            }
            ControlMessage::StopTask { task_arn, reason } => {
                if let Some(spec) = s.running.remove(task_arn) {
                    let _ = out.send(AgentMessage::TaskStateChange {
                        task_arn: task_arn.clone(),
                        last_status: Status::Deprovisioning,
                        containers: vec![],
                        stopped_reason: None,
                        private_ipv4_address: None,
                    });
                    let _ = out.send(AgentMessage::TaskStateChange {
                        task_arn: task_arn.clone(),
                        last_status: Status::Stopped,
                        containers: stopped_containers(&spec, 143),
                        stopped_reason: Some(reason.clone()),
                        private_ipv4_address: None,
                    });
                }
            }
            ControlMessage::Error { .. } | ControlMessage::CredentialRotated { .. } => {}
        }
    }

    /// Sends a raw message (tests of the control plane's checks).
    pub fn send(&self, m: AgentMessage) {
        let _ = self.out.send(m);
    }

    /// Simulates the essential container of a task exiting with `code`.
    pub fn exit_task(&self, task_arn: &str, code: i32) {
        let spec = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.running.remove(task_arn));
        if let Some(spec) = spec {
            self.send(AgentMessage::TaskStateChange {
                task_arn: task_arn.into(),
                last_status: Status::Stopped,
                containers: stopped_containers(&spec, code),
                stopped_reason: Some("Essential container in task exited".into()),
                private_ipv4_address: None,
            });
        }
    }

    /// Asks for a new credential and waits (up to `timeout`) for the answer: the
    /// new credential, or the control plane's refusal.
    pub async fn rotate(&self, timeout: Duration) -> Result<String, String> {
        let seen = self.state.lock().map(|s| s.received.len()).unwrap_or(0);
        self.send(AgentMessage::RotateCredential);
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let answer = self.state.lock().ok().and_then(|s| {
                s.received.iter().skip(seen).find_map(|m| match m {
                    ControlMessage::CredentialRotated {
                        host_credential, ..
                    } => Some(Ok(host_credential.clone())),
                    ControlMessage::Error { message } => Some(Err(message.clone())),
                    _ => None,
                })
            });
            if let Some(a) = answer {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("no answer to the rotation".into())
    }

    /// Stops (or resumes) heartbeats, as a hung host would.
    pub fn set_heartbeats(&self, on: bool) {
        self.heartbeats.store(on, Ordering::Relaxed);
    }

    /// ARNs of the tasks the host runs.
    pub fn running(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.running.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Errors the control plane sent back.
    pub fn errors(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| {
                s.received
                    .iter()
                    .filter_map(|m| match m {
                        ControlMessage::Error { message } => Some(message.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the channel task is still running.
    pub fn connected(&self) -> bool {
        !self.task.is_finished()
    }

    /// Drops the connection (the host goes silent).
    pub fn disconnect(&self) {
        self.task.abort();
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}
