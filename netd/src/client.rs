//! A small client for netd's API (used by the host agent, the tests and the benchmark).

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{CreateTaskRequest, Eni, SecurityGroup, SecurityGroupSpec, Task};

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to netd: {0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(String),
    /// netd answered with an error status.
    #[error("netd {status}: {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

/// Client bound to a netd socket path.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl AsRef<Path>) -> Client {
        Client {
            socket: socket.as_ref().to_path_buf(),
        }
    }

    /// Raw call: returns the status and the JSON body (`null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(conn);
        let bytes = match body {
            Some(v) => serde_json::to_vec(v).map_err(|e| ClientError::Http(e.to_string()))?,
            None => Vec::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "netd")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = tx
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = resp.status();
        let data = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        let v = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&data)
                .map_err(|e| ClientError::Http(format!("bad JSON: {e}")))?
        };
        Ok((status, v))
    }

    async fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ClientError> {
        let (status, v) = self.call(method, path, body.as_ref()).await?;
        if !status.is_success() {
            let field = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: field("error"),
                message: field("message"),
            });
        }
        serde_json::from_value(v).map_err(|e| ClientError::Http(format!("unexpected answer: {e}")))
    }

    /// `PUT /v1/tasks/{id}`.
    pub async fn create_task(
        &self,
        task_id: &str,
        req: &CreateTaskRequest,
    ) -> Result<Task, ClientError> {
        let body = serde_json::to_value(req).map_err(|e| ClientError::Http(e.to_string()))?;
        self.typed(Method::PUT, &format!("/v1/tasks/{task_id}"), Some(body))
            .await
    }

    /// `GET /v1/tasks/{id}`.
    pub async fn task(&self, task_id: &str) -> Result<Task, ClientError> {
        self.typed(Method::GET, &format!("/v1/tasks/{task_id}"), None)
            .await
    }

    /// `GET /v1/tasks`.
    pub async fn tasks(&self) -> Result<Vec<Task>, ClientError> {
        self.typed(Method::GET, "/v1/tasks", None).await
    }

    /// `DELETE /v1/tasks/{id}`.
    pub async fn delete_task(&self, task_id: &str) -> Result<(), ClientError> {
        let _: Value = self
            .typed(Method::DELETE, &format!("/v1/tasks/{task_id}"), None)
            .await?;
        Ok(())
    }

    /// `PUT /v1/tasks/{id}/enis/{index}/security-groups`.
    pub async fn set_groups(
        &self,
        task_id: &str,
        index: usize,
        groups: &[&str],
    ) -> Result<Eni, ClientError> {
        let body = serde_json::json!({ "security_groups": groups });
        let path = format!("/v1/tasks/{task_id}/enis/{index}/security-groups");
        self.typed(Method::PUT, &path, Some(body)).await
    }

    /// `PUT /v1/security-groups/{name}`.
    pub async fn put_group(
        &self,
        name: &str,
        spec: &SecurityGroupSpec,
    ) -> Result<SecurityGroup, ClientError> {
        let body = serde_json::to_value(spec).map_err(|e| ClientError::Http(e.to_string()))?;
        self.typed(
            Method::PUT,
            &format!("/v1/security-groups/{name}"),
            Some(body),
        )
        .await
    }

    /// `DELETE /v1/security-groups/{name}`.
    pub async fn delete_group(&self, name: &str) -> Result<(), ClientError> {
        let _: Value = self
            .typed(Method::DELETE, &format!("/v1/security-groups/{name}"), None)
            .await?;
        Ok(())
    }
}
