//! The domain's error: what task lifecycle, the service scheduler and input
//! validation fail with, before any protocol gives it a shape. The ECS and Logs
//! handlers turn it into the wire error once (`From<DomainError> for ApiError` in
//! `error.rs`); the agent channel turns it into a message for the host.

use crate::placement::NoCapacity;
use crate::store::StoreError;
use agent_proto::Status;

/// Why a domain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The input breaks a rule (a task definition ECS would refuse); the message
    /// says which, in ECS's words.
    #[error("{0}")]
    Invalid(String),
    /// An account quota (`crate::quotas`) would be exceeded; the message says
    /// which, in ECS's words.
    #[error("{0}")]
    LimitExceeded(String),
    /// No schedulable host has room for the task.
    #[error("no capacity: {}", .0.reason())]
    NoCapacity(NoCapacity),
    /// A task ARN this control plane did not make.
    #[error("malformed task ARN")]
    MalformedArn,
    /// A host named a task that is not assigned to it (or does not exist).
    #[error("task {0} is not assigned to this host")]
    NotAssigned(String),
    /// A host reported on a task already STOPPED.
    #[error("task {0} is already STOPPED")]
    AlreadyStopped(String),
    /// A host reported a status before the task's current one.
    #[error("task {arn} cannot go from {} back to {}", .from.as_str(), .to.as_str())]
    Backwards {
        /// The task.
        arn: String,
        /// Its current status.
        from: Status,
        /// The status reported.
        to: Status,
    },
    /// A host reported on a container the task does not have.
    #[error("task {arn} has no container {name}")]
    NoContainer {
        /// The task.
        arn: String,
        /// The container name reported.
        name: String,
    },
    /// The store failed, or this replica does not lead the cell (`StoreError::NotLeader`).
    #[error("state store error: {0}")]
    Store(#[from] StoreError),
}
