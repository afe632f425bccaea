//! Tasks as ECS shows them, and the record the control plane stores.

use super::status::{AttachmentStatus, Connectivity, HealthStatus};
use super::{KeyValuePair, Tag, TaskOverride};
use agent_proto::Status;
use serde::{Deserialize, Serialize};

/// An ENI of a container (`networkInterfaces`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    /// Attachment id.
    pub attachment_id: String,
    /// Private IPv4 address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_ipv4_address: Option<String>,
}

/// A port binding of a container (`networkBindings`; awsvpc tasks have none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBinding {
    /// Address bound.
    #[serde(rename = "bindIP", default, skip_serializing_if = "Option::is_none")]
    pub bind_ip: Option<String>,
    /// Container port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    /// Host port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A container of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// `arn:aws:ecs:<region>:<account>:container/<cluster>/<task id>/<uuid>`.
    pub container_arn: String,
    /// Task ARN.
    pub task_arn: String,
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// Where the container is in its lifecycle.
    pub last_status: Status,
    /// Exit code once stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Network bindings.
    #[serde(default)]
    pub network_bindings: Vec<NetworkBinding>,
    /// ENIs.
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterface>,
    /// Health.
    pub health_status: HealthStatus,
    /// CPU units as a string, as ECS does.
    pub cpu: String,
    /// Memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Memory reservation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<String>,
}

/// An attachment (the task's ENI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Id.
    pub id: String,
    /// `ElasticNetworkInterface`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Attached once the host has the task, deleted once it stopped.
    pub status: AttachmentStatus,
    /// subnetId, networkInterfaceId, macAddress, privateIPv4Address.
    pub details: Vec<KeyValuePair>,
}

/// A task, as DescribeTasks returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// `arn:aws:ecs:<region>:<account>:task/<cluster>/<id>`.
    pub task_arn: String,
    /// Cluster.
    pub cluster_arn: String,
    /// Task definition.
    pub task_definition_arn: String,
    /// The host, as a container instance of the cluster.
    pub container_instance_arn: String,
    /// Overrides.
    pub overrides: TaskOverride,
    /// Where the task is in its lifecycle.
    pub last_status: Status,
    /// `RUNNING`, or `STOPPED` once a stop was asked for.
    pub desired_status: Status,
    /// CPU units.
    pub cpu: String,
    /// Memory MiB.
    pub memory: String,
    /// Containers.
    pub containers: Vec<Container>,
    /// startedBy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// Group (`family:<f>` or `service:<name>`).
    pub group: String,
    /// Version, bumped on every change.
    pub version: u64,
    /// Why it stopped (`UserInitiated`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    /// Why it stopped, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// `CONNECTED` once the host has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connectivity: Option<Connectivity>,
    /// Timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connectivity_at: Option<f64>,
    /// Timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<f64>,
    /// Timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<f64>,
    /// Timestamp.
    pub created_at: f64,
    /// Timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    /// Timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<f64>,
    /// Timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<f64>,
    /// Timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<f64>,
    /// `FARGATE`.
    pub launch_type: String,
    /// The capacity provider it runs on, when it was started with a strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    /// Platform version.
    pub platform_version: String,
    /// The host's AZ.
    pub availability_zone: String,
    /// The ENI.
    pub attachments: Vec<Attachment>,
    /// Health.
    pub health_status: HealthStatus,
    /// Tags (shown where asked for with `include: ["TAGS"]`, and by creates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Always false here.
    pub enable_execute_command: bool,
}

/// What the control plane stores for a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// Owner.
    pub account: String,
    /// Cluster name.
    pub cluster: String,
    /// The host it is placed on.
    pub host_id: String,
    /// The service that started it, if any.
    #[serde(default)]
    pub service: Option<String>,
    /// The launch sent to the host.
    pub spec: agent_proto::TaskSpec,
    /// The ECS view.
    pub task: Task,
}
