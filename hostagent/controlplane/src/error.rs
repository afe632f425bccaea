//! The wire error of the ECS and CloudWatch Logs APIs, and the one place domain
//! errors become it. ECS error shapes: `{"__type": "...", "message": "..."}` with the HTTP status ECS uses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The error type of an answer, kept in the response's extensions so that the
/// metrics count it without reading the body.
#[derive(Clone, Copy, Debug)]
pub struct ErrorKind(pub &'static str);

/// An error returned to an API caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    /// The ECS error type (`ClientException`, ...).
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
    /// HTTP status.
    pub status: u16,
}

impl ApiError {
    fn new(kind: &'static str, status: u16, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            status,
        }
    }
    /// `ClientException` (400).
    pub fn client(m: impl Into<String>) -> Self {
        Self::new("ClientException", 400, m)
    }
    /// `InvalidParameterException` (400).
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", 400, m)
    }
    /// `ClusterNotFoundException` (400).
    pub fn cluster_not_found() -> Self {
        Self::new("ClusterNotFoundException", 400, "Cluster not found.")
    }
    /// `ServiceNotFoundException` (400).
    pub fn service_not_found() -> Self {
        Self::new("ServiceNotFoundException", 400, "Service not found.")
    }
    /// `ServiceNotActiveException` (400).
    pub fn service_not_active() -> Self {
        Self::new("ServiceNotActiveException", 400, "Service was not ACTIVE.")
    }
    /// `ClusterContainsServicesException` (400).
    pub fn cluster_has_services() -> Self {
        Self::new(
            "ClusterContainsServicesException",
            400,
            "The Cluster cannot be deleted while Services are active.",
        )
    }
    /// `ClusterContainsTasksException` (400).
    pub fn cluster_has_tasks() -> Self {
        Self::new(
            "ClusterContainsTasksException",
            400,
            "The Cluster cannot be deleted while Tasks are active.",
        )
    }
    /// `LimitExceededException` (400): an account quota.
    pub fn limit_exceeded(m: impl Into<String>) -> Self {
        Self::new("LimitExceededException", 400, m)
    }
    /// `ThrottlingException` (400).
    pub fn throttled() -> Self {
        Self::new("ThrottlingException", 400, "Rate exceeded")
    }
    /// `UnrecognizedClientException` (403): unsigned call or unknown access key.
    pub fn unrecognized(m: impl Into<String>) -> Self {
        Self::new("UnrecognizedClientException", 403, m)
    }
    /// `InvalidSignatureException` (403).
    pub fn bad_signature(m: impl Into<String>) -> Self {
        Self::new("InvalidSignatureException", 403, m)
    }
    /// `UnknownOperationException` (400), the message naming the operation.
    pub fn unknown_operation(m: impl Into<String>) -> Self {
        Self::new("UnknownOperationException", 400, m)
    }
    /// `SerializationException` (400): the body is not the JSON the operation takes.
    pub fn serialization(m: impl Into<String>) -> Self {
        Self::new("SerializationException", 400, m)
    }
    /// `ResourceNotFoundException` (400, CloudWatch Logs).
    pub fn resource_not_found(m: impl Into<String>) -> Self {
        Self::new("ResourceNotFoundException", 400, m)
    }
    /// `ResourceAlreadyExistsException` (400, CloudWatch Logs).
    pub fn resource_already_exists(m: impl Into<String>) -> Self {
        Self::new("ResourceAlreadyExistsException", 400, m)
    }
    /// `ServiceUnavailableException` (500, CloudWatch Logs).
    pub fn service_unavailable(m: impl Into<String>) -> Self {
        Self::new("ServiceUnavailableException", 500, m)
    }
    /// `ServerException` (500).
    pub fn server(m: impl Into<String>) -> Self {
        Self::new("ServerException", 500, m)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if let crate::store::StoreError::NotLeader { .. } = e {
            // etcd replicas: only the cell's leader writes (see README).
            return ApiError::server(format!("This replica is {e}; retry there."));
        }
        tracing::error!("store error: {e}");
        ApiError::server("Internal state store error.")
    }
}

impl From<crate::domain::DomainError> for ApiError {
    fn from(e: crate::domain::DomainError) -> Self {
        use crate::domain::DomainError as D;
        match e {
            D::Invalid(m) => ApiError::client(m),
            D::LimitExceeded(m) => ApiError::limit_exceeded(m),
            D::Store(e) => ApiError::from(e),
            D::MalformedArn => ApiError::server("malformed task ARN"),
            // Handled by the callers (a failure entry, a message to the host); should
            // one get here, it is a fault of this control plane.
            e @ (D::NoCapacity(_)
            | D::NotAssigned(_)
            | D::AlreadyStopped(_)
            | D::Backwards { .. }
            | D::NoContainer { .. }) => ApiError::server(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"__type": self.kind, "message": self.message}).to_string();
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = (
            status,
            [("content-type", "application/x-amz-json-1.1")],
            body,
        )
            .into_response();
        resp.extensions_mut().insert(ErrorKind(self.kind));
        resp
    }
}
