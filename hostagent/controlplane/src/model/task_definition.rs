//! Task definitions, with every ECS field typed. Keys ECS does not define are dropped
//! when a request is decoded, so they are never stored or shown.

use super::{ContainerDefinition, KeyValuePair, Tag, TaskDefinitionStatus};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// `volumes[].host`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostVolumeProperties {
    /// A host path (refused on Fargate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
}

/// A task volume. Only task storage volumes (`{"name": ...}`, optionally an empty
/// `host`) are offered; the volume types that need storage outside the task are
/// recognised so that they are refused by name, and never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Host path volume (Fargate: no `sourcePath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostVolumeProperties>,
    /// Refused when true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_at_launch: Option<bool>,
    /// Refused (Docker volumes).
    #[serde(default, skip_serializing)]
    pub docker_volume_configuration: Option<IgnoredAny>,
    /// Refused (EFS).
    #[serde(default, skip_serializing)]
    pub efs_volume_configuration: Option<IgnoredAny>,
    /// Refused (FSx for Windows).
    #[serde(default, skip_serializing)]
    pub fsx_windows_file_server_volume_configuration: Option<IgnoredAny>,
}

/// A `placementConstraints` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementConstraint {
    /// `memberOf`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Cluster query language expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

/// `proxyConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfiguration {
    /// `APPMESH`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The proxy container.
    #[serde(default)]
    pub container_name: String,
    /// Properties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<KeyValuePair>,
}

/// An `inferenceAccelerators` entry (not on Fargate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceAccelerator {
    /// Device name.
    #[serde(default)]
    pub device_name: String,
    /// Device type.
    #[serde(default)]
    pub device_type: String,
}

/// `ephemeralStorage`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralStorage {
    /// GiB, 21..=200.
    #[serde(default)]
    pub size_in_gi_b: i64,
}

/// `runtimePlatform`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePlatform {
    /// `X86_64` or `ARM64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_architecture: Option<String>,
    /// `LINUX` (Windows families are not offered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system_family: Option<String>,
}

/// The fields a task definition takes as registered and shows as described.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionOptions {
    /// Role of the task's containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// Role of the agent (image pulls, logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// `task` (Fargate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    /// Not on Fargate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
    /// App Mesh proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_configuration: Option<ProxyConfiguration>,
    /// Not on Fargate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inference_accelerators: Vec<InferenceAccelerator>,
    /// Ephemeral storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
    /// OS and CPU architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_platform: Option<RuntimePlatform>,
    /// Fault injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_fault_injection: Option<bool>,
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
    pub volumes: Vec<Volume>,
    /// Placement constraints.
    #[serde(default)]
    pub placement_constraints: Vec<PlacementConstraint>,
    /// Roles, modes, storage, platform.
    #[serde(flatten)]
    pub options: TaskDefinitionOptions,
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
    #[serde(default)]
    pub cpu: Option<String>,
    /// Task memory (`"2048"` or `"2 GB"`).
    #[serde(default)]
    pub memory: Option<String>,
    /// Network mode.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// Compatibilities asked for.
    #[serde(default)]
    pub requires_compatibilities: Vec<String>,
    /// Volumes.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Placement constraints.
    #[serde(default)]
    pub placement_constraints: Vec<PlacementConstraint>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Roles, modes, storage, platform.
    #[serde(flatten)]
    pub options: TaskDefinitionOptions,
}
