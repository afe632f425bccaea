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
    }
}
