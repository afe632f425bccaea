//! Host registration (bootstrap token -> host identity + credential) and the
//! authentication of channel connections.

use crate::app::App;
use crate::cells::Cell;
use crate::clock::now;
use crate::frontend::sigv4::constant_time_eq;
use crate::model::{HostRecord, HostStatus};
use agent_proto::{ErrorBody, RegisterRequest, RegisterResponse};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_string(&ErrorBody {
        message: message.into(),
    })
    .unwrap_or_default();
    (status, [("content-type", "application/json")], body).into_response()
}

/// `POST /agent/v1/register`.
pub async fn register(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let Some(token) = app.bootstrap_token.as_deref() else {
        return error(
            StatusCode::FORBIDDEN,
            "host registration is disabled (no bootstrap token configured)",
        );
    };
    let req: RegisterRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("malformed registration: {e}"),
            )
        }
    };
    if !constant_time_eq(req.bootstrap_token.as_bytes(), token.as_bytes()) {
        return error(StatusCode::UNAUTHORIZED, "invalid bootstrap token");
    }
    if req.cpu == 0
        || req.memory == 0
        || req.availability_zone.is_empty()
        || req.availability_zone.len() > 64
        || req.hostname.len() > 255
    {
        return error(
            StatusCode::BAD_REQUEST,
            "cpu and memory must be positive and availabilityZone set",
        );
    }
    let cells = &app.router.cells;
    let cell = match req.cell {
        Some(n) => match cells.get(n as usize) {
            Some(c) => c.clone(),
            None => return error(StatusCode::BAD_REQUEST, &format!("no cell {n}")),
        },
        None => match cells.iter().min_by_key(|c| c.lock().host_count()) {
            Some(c) => c.clone(),
            None => return error(StatusCode::SERVICE_UNAVAILABLE, "no cells"),
        },
    };
    let host_id = format!("h-{}-{}", cell.id, uuid::Uuid::new_v4().simple());
    let credential = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let rec = HostRecord {
        host_id: host_id.clone(),
        hostname: req.hostname,
        availability_zone: req.availability_zone,
        cpu: req.cpu,
        memory: req.memory,
        credential_sha256: hex::encode(Sha256::digest(credential.as_bytes())),
        registered_at: now(),
        status: HostStatus::Active,
    };
    {
        let mut c = cell.lock();
        if let Err(e) = c.register_host(&rec) {
            if let crate::store::StoreError::NotLeader { .. } = e {
                // etcd replicas: hosts register with the cell's leader (see README).
                return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            }
            tracing::error!("register host: {e}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "state store error");
        }
    }
    tracing::info!(host = %host_id, cell = cell.id, "host registered");
    let resp = RegisterResponse {
        host_id,
        host_credential: credential,
        cell: cell.id,
        heartbeat_interval_secs: app.heartbeat_interval.as_secs().max(1),
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        serde_json::to_string(&resp).unwrap_or_default(),
    )
        .into_response()
}

/// Checks `Authorization: Bearer <hostId>:<credential>`; returns the host's cell and id.
pub fn authenticate(app: &App, header: Option<&str>) -> Result<(Arc<Cell>, String), Box<Response>> {
    let deny = || Box::new(error(StatusCode::UNAUTHORIZED, "invalid host credential"));
    let v = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(deny)?;
    let (id, cred) = v.split_once(':').ok_or_else(deny)?;
    let cell_no: usize = id
        .strip_prefix("h-")
        .and_then(|r| r.split_once('-'))
        .and_then(|(n, _)| n.parse().ok())
        .ok_or_else(deny)?;
    let cell = app.router.cells.get(cell_no).cloned().ok_or_else(deny)?;
    let rec: HostRecord = {
        let c = cell.lock();
        match c.hosts().get(id) {
            Ok(Some(r)) => r,
            _ => return Err(deny()),
        }
    };
    let got = hex::encode(Sha256::digest(cred.as_bytes()));
    if !constant_time_eq(got.as_bytes(), rec.credential_sha256.as_bytes()) {
        return Err(deny());
    }
    Ok((cell, id.to_string()))
}
