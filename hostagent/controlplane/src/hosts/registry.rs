//! Host registration (an operator's bootstrap token -> a host identity and
//! credential) and the authentication of channel connections.
//!
//! A bootstrap token is bound to one cell, a maximum number of hosts, an expiry and
//! a maximum capacity per host (see [`crate::operator`] for how operators create
//! them). Its use count is read, checked and written back with the new host record
//! in one store batch under the cell's lock, so concurrent registrations cannot
//! exceed it; over etcd only the cell's leader writes (fenced).

use super::credentials::{self, CredentialError};
use crate::app::App;
use crate::cells::Cell;
use crate::clock::now;
use crate::host_tables::BootstrapToken;
use crate::model::{HostRecord, HostStatus};
use crate::store::StoreError;
use agent_proto::{ErrorBody, RegisterRequest, RegisterResponse};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Why a registration is refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The body is not a registration.
    #[error("malformed registration: {0}")]
    Malformed(serde_json::Error),
    /// A field out of range.
    #[error("cpu and memory must be positive, availabilityZone 1 to 64 characters and hostname at most 255")]
    BadFields,
    /// No cell has this token.
    #[error("invalid bootstrap token")]
    UnknownToken,
    /// The token is for another cell than the one asked for.
    #[error("this bootstrap token is for cell {token_cell}, not cell {asked}")]
    WrongCell {
        /// The token's cell.
        token_cell: u32,
        /// The cell asked for.
        asked: u32,
    },
    /// The token's expiry passed.
    #[error("bootstrap token {0} has expired")]
    TokenExpired(String),
    /// The token registered as many hosts as it may.
    #[error("bootstrap token {id} has registered its maximum of {max} hosts")]
    TokenUsedUp {
        /// Token id.
        id: String,
        /// Its maximum.
        max: u32,
    },
    /// The host offers more than the token allows.
    #[error("the host claims {claimed} {what}, more than this bootstrap token allows ({max})")]
    OverAllowance {
        /// `CPU units` or `MiB of memory`.
        what: &'static str,
        /// Claimed.
        claimed: u32,
        /// Allowed.
        max: u32,
    },
    /// The store refused or failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl RegisterError {
    fn status(&self) -> StatusCode {
        match self {
            RegisterError::Malformed(_) | RegisterError::BadFields => StatusCode::BAD_REQUEST,
            RegisterError::UnknownToken => StatusCode::UNAUTHORIZED,
            RegisterError::WrongCell { .. }
            | RegisterError::TokenExpired(_)
            | RegisterError::TokenUsedUp { .. }
            | RegisterError::OverAllowance { .. } => StatusCode::FORBIDDEN,
            // etcd replicas: hosts register with the cell's leader (see README).
            RegisterError::Store(StoreError::NotLeader { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            RegisterError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            RegisterError::Store(StoreError::NotLeader { .. }) => self.to_string(),
            RegisterError::Store(e) => {
                tracing::error!("register host: {e}");
                "state store error".to_string()
            }
            _ => self.to_string(),
        };
        error(status, &message)
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_string(&ErrorBody {
        message: message.into(),
    })
    .unwrap_or_default();
    (status, [("content-type", "application/json")], body).into_response()
}

/// Whether `token` lets a host offering `cpu` units and `memory` MiB register at `now`.
pub fn admits(
    token: &BootstrapToken,
    cpu: u32,
    memory: u32,
    now: f64,
) -> Result<(), RegisterError> {
    if now >= token.expires_at {
        return Err(RegisterError::TokenExpired(token.token_id.clone()));
    }
    if token.hosts_registered >= token.max_hosts {
        return Err(RegisterError::TokenUsedUp {
            id: token.token_id.clone(),
            max: token.max_hosts,
        });
    }
    if cpu > token.max_cpu {
        return Err(RegisterError::OverAllowance {
            what: "CPU units",
            claimed: cpu,
            max: token.max_cpu,
        });
    }
    if memory > token.max_memory {
        return Err(RegisterError::OverAllowance {
            what: "MiB of memory",
            claimed: memory,
            max: token.max_memory,
        });
    }
    Ok(())
}

/// The cell holding the token whose SHA-256 is `hash`: the cell asked for first.
fn token_cell(app: &App, hash: &str, asked: Option<u32>) -> Result<Arc<Cell>, RegisterError> {
    let cells = &app.router.cells;
    let has = |c: &Cell| -> Result<bool, RegisterError> {
        Ok(c.lock().bootstrap_tokens().get(hash)?.is_some())
    };
    if let Some(n) = asked {
        if let Some(c) = cells.get(n as usize) {
            if has(c)? {
                return Ok(c.clone());
            }
        }
    }
    for c in cells {
        if Some(c.id) != asked && has(c)? {
            return match asked {
                Some(n) => Err(RegisterError::WrongCell {
                    token_cell: c.id,
                    asked: n,
                }),
                None => Ok(c.clone()),
            };
        }
    }
    Err(RegisterError::UnknownToken)
}

fn register_host(app: &App, req: RegisterRequest) -> Result<RegisterResponse, RegisterError> {
    if req.cpu == 0
        || req.memory == 0
        || req.availability_zone.is_empty()
        || req.availability_zone.len() > 64
        || req.hostname.len() > 255
    {
        return Err(RegisterError::BadFields);
    }
    let hash = credentials::hash(&req.bootstrap_token);
    let cell = token_cell(app, &hash, req.cell)?;
    let policy = app.credential_policy;
    let secret = credentials::new_secret();
    let host_id = format!("h-{}-{}", cell.id, uuid::Uuid::new_v4().simple());
    {
        let mut c = cell.lock();
        // Read, check and count under the cell's lock, written in one batch.
        let mut token = c
            .bootstrap_tokens()
            .get(&hash)?
            .ok_or(RegisterError::UnknownToken)?;
        let t = now();
        admits(&token, req.cpu, req.memory, t)?;
        token.hosts_registered += 1;
        let mut rec = HostRecord {
            host_id: host_id.clone(),
            hostname: req.hostname,
            availability_zone: req.availability_zone,
            cpu: req.cpu,
            memory: req.memory,
            credential_sha256: String::new(),
            registered_at: t,
            status: HostStatus::Active,
            token_id: token.token_id.clone(),
            credential_issued_at: t,
            credential_expires_at: t,
            previous_credential_sha256: None,
            previous_valid_until: 0.0,
            revoked_at: None,
        };
        credentials::issue(&mut rec, &secret, &policy, t);
        c.register_host(&rec, &hash, &token)?;
        tracing::info!(host = %host_id, cell = cell.id, token = %token.token_id,
            used = token.hosts_registered, max = token.max_hosts, "host registered");
    }
    Ok(RegisterResponse {
        host_id,
        host_credential: secret,
        cell: cell.id,
        heartbeat_interval_secs: app.heartbeat_interval.as_secs().max(1),
        credential_ttl_ms: policy.ttl.as_millis() as u64,
    })
}

/// `POST /agent/v1/register`.
pub async fn register(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: RegisterRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return RegisterError::Malformed(e).into_response(),
    };
    // Store reads and writes block (SQLite fsync, etcd round trips).
    let r = tokio::task::spawn_blocking(move || register_host(&app, req)).await;
    match r {
        Ok(Ok(resp)) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            serde_json::to_string(&resp).unwrap_or_default(),
        )
            .into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "registration failed"),
    }
}

/// An authenticated channel: the host's cell and id, and until when its credential
/// is valid (the channel is closed then unless it rotates).
pub struct Authenticated {
    /// The host's cell.
    pub cell: Arc<Cell>,
    /// The host id.
    pub host: String,
    /// Expiry of the credential presented (seconds since the epoch).
    pub valid_until: f64,
}

/// Checks `Authorization: Bearer <hostId>:<credential>` (current or, within its
/// overlap, previous credential; not expired; host not revoked).
pub fn authenticate(app: &App, header: Option<&str>) -> Result<Authenticated, Box<Response>> {
    let deny = |e: CredentialError| Box::new(error(StatusCode::UNAUTHORIZED, &e.to_string()));
    let invalid = || deny(CredentialError::Invalid);
    let v = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(invalid)?;
    let (id, cred) = v.split_once(':').ok_or_else(invalid)?;
    let cell_no: usize = id
        .strip_prefix("h-")
        .and_then(|r| r.split_once('-'))
        .and_then(|(n, _)| n.parse().ok())
        .ok_or_else(invalid)?;
    let cell = app.router.cells.get(cell_no).cloned().ok_or_else(invalid)?;
    let (rec, revoked): (HostRecord, bool) = {
        let c = cell.lock();
        let rec = match c.hosts().get(id) {
            Ok(Some(r)) => r,
            _ => return Err(invalid()),
        };
        // A revocation the leader has not applied yet counts already.
        let revoked = !matches!(c.revoked_hosts().get(id), Ok(None));
        (rec, revoked)
    };
    let valid_until = credentials::verify(&rec, cred, now()).map_err(deny)?;
    if revoked {
        return Err(deny(CredentialError::Revoked));
    }
    Ok(Authenticated {
        cell,
        host: id.to_string(),
        valid_until,
    })
}
