//! The status vocabulary of the ECS resources. Each is an enum in the code and the
//! ECS spelling (`ACTIVE`, `DRAINING`, ...) only on the wire and in stored records,
//! which keep the strings earlier versions wrote. Tasks and containers use the
//! agent protocol's [`agent_proto::Status`].

use serde::{Deserialize, Serialize};

/// A cluster's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterStatus {
    /// In use.
    Active,
    /// Deleted.
    Inactive,
}

/// A service's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceStatus {
    /// Kept at its desired count.
    Active,
    /// Deleted, its tasks stopping.
    Draining,
    /// Deleted, its tasks stopped.
    Inactive,
}

/// A task definition revision's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskDefinitionStatus {
    /// Runnable.
    Active,
    /// Deregistered.
    Inactive,
    /// Deregistered, then deleted (DeleteTaskDefinitions): shown until it is gone.
    DeleteInProgress,
}

/// A host's status, shown as its container instance's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HostStatus {
    /// Connected or expected back; takes tasks.
    Active,
    /// Its agent drains: no new task goes there, its service tasks move.
    Draining,
    /// Lost (no heartbeat).
    Inactive,
    /// An ECS status never given here (accepted as a ListContainerInstances filter).
    Registering,
    /// An ECS status never given here (accepted as a ListContainerInstances filter).
    Deregistering,
    /// An ECS status never given here (accepted as a ListContainerInstances filter).
    RegistrationFailed,
}

/// A service deployment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    /// The newest deployment.
    Primary,
    /// An older deployment, being replaced.
    Active,
}

/// A service deployment's rollout state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    /// Tasks of the deployment still starting, or old ones still running.
    InProgress,
    /// Every desired task of the deployment runs and nothing older does.
    Completed,
}

/// A task attachment's (its ENI's) status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttachmentStatus {
    /// Made with the task record, before any host has it.
    Precreated,
    /// Being attached (an ECS status never given here).
    Attaching,
    /// The host reported the task: the ENI exists.
    Attached,
    /// Being detached (an ECS status never given here).
    Detaching,
    /// Detached (an ECS status never given here).
    Detached,
    /// The task stopped: the ENI is gone.
    Deleted,
    /// Could not be made (an ECS status never given here).
    Failed,
}

/// A task's or container's health (`healthStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    /// Its health check passes.
    Healthy,
    /// Its health check fails.
    Unhealthy,
    /// No health check, or none has answered yet.
    Unknown,
}

/// Whether the task's host has it (`connectivity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Connectivity {
    /// The host's agent has the task.
    Connected,
    /// The host's agent lost it (an ECS status never given here).
    Disconnected,
}

/// Parses the ECS spelling of a status (as given in a request's filter).
pub fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: T) -> String {
        serde_json::to_string(&v).unwrap()
    }

    #[test]
    fn ecs_spellings() {
        assert_eq!(
            json(HostStatus::RegistrationFailed),
            "\"REGISTRATION_FAILED\""
        );
        assert_eq!(json(RolloutState::InProgress), "\"IN_PROGRESS\"");
        assert_eq!(json(ServiceStatus::Draining), "\"DRAINING\"");
        assert_eq!(
            parse::<ClusterStatus>("INACTIVE"),
            Some(ClusterStatus::Inactive)
        );
        assert_eq!(parse::<TaskDefinitionStatus>("ALL"), None);
        assert_eq!(json(AttachmentStatus::Precreated), "\"PRECREATED\"");
        assert_eq!(json(HealthStatus::Unknown), "\"UNKNOWN\"");
        assert_eq!(json(Connectivity::Connected), "\"CONNECTED\"");
    }
}
