//! The front end: one ECS or CloudWatch Logs call (JSON 1.1 over HTTP), admitted
//! by SigV4 authentication and the per-account throttles, then dispatched to the
//! operation tables of [`crate::api`] or [`crate::logs::api`]. Bodies are bounded
//! ([`limits`]: size per operation, nesting depth) before anything parses them.
//! Every mutating call, accepted or refused, leaves a line in the audit log
//! ([`crate::audit`]).

pub mod limits;
pub mod sigv4;

use crate::api;
use crate::app::App;
use crate::audit::{self, Record};
use crate::ctx::Ctx;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::net::SocketAddr;
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

/// The operation a call names: its API and the name after the target prefix
/// (the whole `X-Amz-Target` when it has no known prefix).
fn target_of(parts: &Parts) -> (Api, &str) {
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match target.strip_prefix(LOGS_TARGET_PREFIX) {
        Some(op) => (Api::Logs, op),
        None => (
            Api::Ecs,
            target.strip_prefix(TARGET_PREFIX).unwrap_or(target),
        ),
    }
}

/// An admitted call.
struct Admitted {
    caller: sigv4::Caller,
    api: Api,
    op: String,
    input: Value,
}

/// Authenticates, throttles and decodes a call. On a refused signature, `caller`
/// is left as it was; otherwise it is set.
fn admit(
    app: &App,
    parts: &Parts,
    body: &[u8],
    caller: &mut Option<sigv4::Caller>,
) -> Result<Admitted, ApiError> {
    let (api, op) = target_of(parts);
    let (service, known) = match api {
        Api::Logs => ("logs", crate::logs::api::is_known(op)),
        Api::Ecs => ("ecs", api::is_known(op)),
    };
    let req = sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body,
    };
    let who = sigv4::verify(&req, &app.region, service, crate::clock::now_unix(), |k| {
        app.accounts.get(k).cloned()
    })?;
    *caller = Some(who.clone());
    if !known {
        return Err(match api {
            Api::Logs => crate::logs::api::unknown(op),
            Api::Ecs => api::unknown(op),
        });
    }
    if !app.throttle.allow(&who.account, op) {
        return Err(ApiError::throttled());
    }
    let input = limits::parse(body)?;
    Ok(Admitted {
        caller: who,
        api,
        op: op.to_string(),
        input,
    })
}

/// Runs an admitted call on its cell.
async fn run(app: &Arc<App>, a: Admitted) -> Result<Value, ApiError> {
    let app2 = app.clone();
    let op = a.op.clone();
    let (account, which, input) = (a.caller.account, a.api, a.input);
    tokio::task::spawn_blocking(move || {
        let cell = app2.router.cell_of(&account)?;
        if which == Api::Logs {
            let ctx = crate::logs::common::LogsCtx {
                account: &account,
                region: &app2.region,
                now_ms: crate::clock::now_ms(),
            };
            let store = app2
                .logs
                .get(cell.id as usize)
                .ok_or_else(|| ApiError::service_unavailable("No log store for this cell."))?;
            return crate::logs::api::dispatch(&a.op, &ctx, store, input);
        }
        let ctx = Ctx {
            account: &account,
            region: &app2.region,
        };
        let mut c = cell.lock();
        api::dispatch(&a.op, &ctx, &mut c, input)
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::server(format!("internal error: {e}"))))
    .inspect_err(|e| tracing::debug!(op, "{e}"))
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
    }
}

/// The audit record of a call, less its source address and outcome.
fn record(
    app: &App,
    parts: &Parts,
    which: Api,
    op: &str,
    caller: Option<&sigv4::Caller>,
    request_id: &str,
) -> Record {
    let access_key_id = caller
        .map(|c| c.access_key.clone())
        .or_else(|| sigv4::claimed_access_key(&parts.headers));
    let account = caller.map(|c| c.account.clone()).or_else(|| {
        let k = access_key_id.as_deref()?;
        app.accounts.get(k).map(|(a, _)| a.clone())
    });
    Record {
        time: audit::rfc3339_ms(crate::clock::now_ms()),
        api: match which {
            Api::Ecs => "ecs",
            Api::Logs => "logs",
        },
        account,
        access_key_id,
        operation: audit::bounded(op),
        request_id: request_id.to_string(),
        source_address: None,
        outcome: String::new(),
    }
}

/// `OK`, or the error code of the answer.
fn outcome(r: &Result<Value, ApiError>) -> String {
    match r {
        Ok(_) => "OK".to_string(),
        Err(e) => e.kind.to_string(),
    }
}

/// The peer address of an API connection, plain or TLS (what the audit log records):
/// the listeners provide it as `axum::extract::ConnectInfo<PeerAddr>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// `POST /`: one ECS or CloudWatch Logs call.
pub async fn call(State(app): State<Arc<App>>, req: Request<Body>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let source = req
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0 .0.to_string());
    let (parts, body) = req.into_parts();
    let (which, op) = target_of(&parts);
    let audited = audit::is_mutating(op);
    let mut caller = None;
    let mut recorded = false;
    let result = match limits::read_body(&parts.headers, body).await {
        Err(e) => Err(e),
        Ok(body) => match admit(&app, &parts, &body, &mut caller) {
            Err(e) => Err(e),
            // A mutating call runs only once its audit line has a place, and on a
            // task of its own, so that the line is written even if the client
            // hangs up while it runs.
            Ok(a) if audited => match app.audit.reserve() {
                None => Err(ApiError::throttled()),
                Some(slot) => {
                    recorded = true;
                    let mut rec = record(&app, &parts, which, op, caller.as_ref(), &request_id);
                    rec.source_address = source.clone();
                    let app2 = app.clone();
                    tokio::spawn(async move {
                        let r = run(&app2, a).await;
                        rec.outcome = outcome(&r);
                        rec.time = audit::rfc3339_ms(crate::clock::now_ms());
                        slot.write(&rec);
                        r
                    })
                    .await
                    .unwrap_or_else(|e| Err(ApiError::server(format!("internal error: {e}"))))
                }
            },
            Ok(a) => run(&app, a).await,
        },
    };
    if audited && !recorded {
        let mut rec = record(&app, &parts, which, op, caller.as_ref(), &request_id);
        rec.source_address = source;
        rec.outcome = outcome(&result);
        app.audit.try_write(&rec);
    }
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
