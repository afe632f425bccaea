//! The HTTP/JSON API on netd's Unix socket.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | /v1/health | - | 200 `{"status":"ok"}` |
//! | GET | /v1/subnets | - | 200 list of subnets |
//! | PUT | /v1/tasks/{task_id} | CreateTaskRequest | 201 Task (200 if it already existed) |
//! | GET | /v1/tasks/{task_id} | - | 200 Task |
//! | GET | /v1/tasks | - | 200 list of Task |
//! | DELETE | /v1/tasks/{task_id} | - | 204 |
//! | PUT | /v1/tasks/{task_id}/enis/{index}/security-groups | SetGroupsRequest | 200 Eni |
//! | PUT | /v1/security-groups/{name} | SecurityGroupSpec | 201 / 200 SecurityGroup |
//! | GET | /v1/security-groups[/{name}] | - | 200 |
//! | DELETE | /v1/security-groups/{name} | - | 204 |
//!
//! Errors: 4xx/5xx with `{"error": "<Code>", "message": "..."}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::daemon::Netd;
use crate::error::Error;
use crate::metrics::{self, Metrics};
use crate::model::SetGroupsRequest;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code(), "message": self.to_string()});
        let mut resp = (self.status(), Json(body)).into_response();
        resp.extensions_mut()
            .insert(crate::metrics::ErrorCode(self.code()));
        resp
    }
}

type ApiResult = std::result::Result<Response, Error>;
type D = State<Arc<Netd>>;

/// Parses a JSON body (any or no content type: curl users forget it).
fn body<T: DeserializeOwned>(b: &Bytes) -> Result<T, Error> {
    serde_json::from_slice(b).map_err(|e| Error::Invalid(format!("request body: {e}")))
}

fn created(c: bool) -> StatusCode {
    if c {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn subnets(State(d): D) -> Json<serde_json::Value> {
    let list: Vec<_> = d
        .config()
        .subnets
        .iter()
        .map(|s| json!({"name": s.name, "cidr": s.cidr, "gateway": s.gateway, "dns": s.dns}))
        .collect();
    Json(json!(list))
}

async fn put_task(State(d): D, Path(id): Path<String>, b: Bytes) -> ApiResult {
    let (c, t) = d.create_task(&id, body(&b)?).await?;
    Ok((created(c), Json(t)).into_response())
}

async fn get_task(State(d): D, Path(id): Path<String>) -> ApiResult {
    Ok(Json(d.task(&id).await?).into_response())
}

async fn list_tasks(State(d): D) -> ApiResult {
    Ok(Json(d.tasks().await).into_response())
}

async fn delete_task(State(d): D, Path(id): Path<String>) -> ApiResult {
    d.delete_task(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn put_task_groups(
    State(d): D,
    Path((id, index)): Path<(String, usize)>,
    b: Bytes,
) -> ApiResult {
    let eni = d
        .set_groups(&id, index, body::<SetGroupsRequest>(&b)?.security_groups)
        .await?;
    Ok(Json(eni).into_response())
}

async fn put_group(State(d): D, Path(name): Path<String>, b: Bytes) -> ApiResult {
    let (c, sg) = d.put_group(&name, body(&b)?).await?;
    Ok((created(c), Json(sg)).into_response())
}

async fn get_group(State(d): D, Path(name): Path<String>) -> ApiResult {
    Ok(Json(d.group(&name).await?).into_response())
}

async fn list_groups(State(d): D) -> ApiResult {
    Ok(Json(d.groups().await).into_response())
}

async fn delete_group(State(d): D, Path(name): Path<String>) -> ApiResult {
    d.delete_group(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn not_found() -> Error {
    Error::NotFound("no such API path".into())
}

/// The API router, with metrics of its own.
pub fn router(d: Arc<Netd>) -> Router {
    router_with(d, Arc::new(Metrics::new()))
}

/// The API router, recording into `m` (which `GET /metrics` shows).
pub fn router_with(d: Arc<Netd>, m: Arc<Metrics>) -> Router {
    let (d2, m2) = (d.clone(), m.clone());
    Router::new()
        .route("/metrics", get(move || metrics::handler(d2, m2)))
        .route("/v1/health", get(health))
        .route("/v1/subnets", get(subnets))
        .route("/v1/tasks", get(list_tasks))
        .route(
            "/v1/tasks/{id}",
            put(put_task).get(get_task).delete(delete_task),
        )
        .route(
            "/v1/tasks/{id}/enis/{index}/security-groups",
            put(put_task_groups),
        )
        .route("/v1/security-groups", get(list_groups))
        .route(
            "/v1/security-groups/{name}",
            put(put_group).get(get_group).delete(delete_group),
        )
        .fallback(not_found)
        .with_state(d)
        .layer(axum::middleware::from_fn_with_state(m, metrics::track))
}
