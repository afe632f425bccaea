//! Task definitions.

use super::{KeyValuePair, Tag, TaskDefinitionStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A port mapping of a container definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Container port.
    pub container_port: Option<i64>,
    /// Host port (awsvpc: equal to the container port).
    pub host_port: Option<i64>,
    /// `tcp` or `udp`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// Other fields (name, appProtocol, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn tcp() -> String {
    "tcp".into()
}

fn yes() -> bool {
    true
}

/// A container definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Image.
    #[serde(default)]
    pub image: String,
    /// CPU units.
    #[serde(default)]
    pub cpu: i64,
    /// Hard memory limit (MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Soft memory reservation (MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// Port mappings.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Essential (default true).
    #[serde(default = "yes")]
    pub essential: bool,
    /// Entry point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_point: Vec<String>,
    /// Command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment.
    #[serde(default)]
    pub environment: Vec<KeyValuePair>,
    /// Mount points.
    #[serde(default)]
    pub mount_points: Vec<Value>,
    /// Volumes from.
    #[serde(default)]
    pub volumes_from: Vec<Value>,
    /// Stop timeout (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    /// Everything else (logConfiguration, healthCheck, ...), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A registered task definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    /// `arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>`.
    pub task_definition_arn: String,
    /// Family.
    pub family: String,
    /// Revision, from 1.
    pub revision: u32,
    /// Runnable, or deregistered.
    pub status: TaskDefinitionStatus,
    /// Containers.
    pub container_definitions: Vec<ContainerDefinition>,
    /// Task CPU units, normalised to a number string.
    pub cpu: String,
    /// Task memory in MiB, normalised to a number string.
    pub memory: String,
    /// Always `awsvpc`.
    pub network_mode: String,
    /// As requested.
    pub requires_compatibilities: Vec<String>,
    /// What it can run on.
    pub compatibilities: Vec<String>,
    /// Registration time.
    pub registered_at: f64,
    /// Deregistration time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deregistered_at: Option<f64>,
    /// Volumes.
    #[serde(default)]
    pub volumes: Vec<Value>,
    /// Placement constraints.
    #[serde(default)]
    pub placement_constraints: Vec<Value>,
    /// Everything else (executionRoleArn, taskRoleArn, ...), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// RegisterTaskDefinition input.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterTaskDefinitionInput {
    /// Family.
    #[serde(default)]
    pub family: String,
    /// Containers.
    #[serde(default)]
    pub container_definitions: Vec<ContainerDefinition>,
    /// Task CPU (`"1024"` or `"1 vCPU"`).
    pub cpu: Option<String>,
    /// Task memory (`"2048"` or `"2 GB"`).
    pub memory: Option<String>,
    /// Network mode.
    pub network_mode: Option<String>,
    /// Compatibilities asked for.
    #[serde(default)]
    pub requires_compatibilities: Vec<String>,
    /// Volumes.
    #[serde(default)]
    pub volumes: Vec<Value>,
    /// Placement constraints.
    #[serde(default)]
    pub placement_constraints: Vec<Value>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
