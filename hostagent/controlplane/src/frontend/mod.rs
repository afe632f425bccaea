//! The front end: one ECS or CloudWatch Logs call (JSON 1.1 over HTTP), admitted
//! by SigV4 authentication and the per-account throttles, then dispatched to the
//! operation tables of [`crate::api`] or [`crate::logs::api`]. Bodies are bounded
//! ([`limits`]: size per operation, nesting depth) before anything parses them.

pub mod limits;
pub mod sigv4;

use crate::api;
use crate::app::App;
use crate::ctx::Ctx;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

/// The `X-Amz-Target` prefix of ECS operations.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
/// The `X-Amz-Target` prefix of CloudWatch Logs operations.
pub const LOGS_TARGET_PREFIX: &str = "Logs_20140328.";

/// Which API a call is for (from its `X-Amz-Target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Ecs,
    Logs,
}

/// Authenticates, throttles and decodes a call: returns (account, api, operation, input).
fn admit(app: &App, parts: &Parts, body: &[u8]) -> Result<(String, Api, String, Value), ApiError> {
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (api, service, op) = match target.strip_prefix(LOGS_TARGET_PREFIX) {
        Some(op) => (
            Api::Logs,
            "logs",
            Some(op).filter(|op| crate::logs::api::is_known(op)),
        ),
        None => (
            Api::Ecs,
            "ecs",
            target
                .strip_prefix(TARGET_PREFIX)
                .filter(|op| api::is_known(op)),
        ),
    };
    let req = sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body,
    };
    let account = sigv4::verify(&req, &app.region, service, crate::clock::now_unix(), |k| {
        app.accounts.get(k).cloned()
    })?;
    let op = op.ok_or_else(ApiError::unknown_operation)?.to_string();
    if !app.throttle.allow(&account, &op) {
        return Err(ApiError::throttled());
    }
    let input = limits::parse(body)?;
    Ok((account, api, op, input))
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
    }
}

/// `POST /`: one ECS or CloudWatch Logs call.
pub async fn call(State(app): State<Arc<App>>, req: Request<Body>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let result = match limits::read_body(&parts.headers, body).await {
        Err(e) => Err(e),
        Ok(body) => match admit(&app, &parts, &body) {
            Err(e) => Err(e),
            Ok((account, which, op, input)) => {
                let app2 = app.clone();
                let op2 = op.clone();
                tokio::task::spawn_blocking(move || {
                    let cell = app2.router.cell_of(&account)?;
                    if which == Api::Logs {
                        let ctx = crate::logs::common::LogsCtx {
                            account: &account,
                            region: &app2.region,
                            now_ms: crate::clock::now_ms(),
                        };
                        let store = app2.logs.get(cell.id as usize).ok_or_else(|| {
                            ApiError::service_unavailable("No log store for this cell.")
                        })?;
                        return crate::logs::api::dispatch(&op2, &ctx, store, input);
                    }
                    let ctx = Ctx {
                        account: &account,
                        region: &app2.region,
                    };
                    let mut c = cell.lock();
                    api::dispatch(&op2, &ctx, &mut c, input)
                })
                .await
                .unwrap_or_else(|e| Err(ApiError::server(format!("internal error: {e}"))))
                .inspect_err(|e| tracing::debug!(op, "{e}"))
            }
        },
    };
    let mut resp = match result {
        Ok(mut v) => {
            strip_nulls(&mut v);
            (
                StatusCode::OK,
                [("content-type", "application/x-amz-json-1.1")],
                v.to_string(),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    };
    if let Ok(v) = request_id.parse() {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}
