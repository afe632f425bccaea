//! ECS resource types, with ECS's camelCase field names and types. Every field a
//! request can set is typed (no `serde_json::Value` is stored): keys ECS does not
//! define are dropped when a request is decoded, and what is stored always decodes.

pub mod container;
pub mod host;
pub mod overrides;
pub mod runtime_fields;
pub mod service;
pub mod settings;
pub mod status;
pub mod task;
pub mod task_definition;

pub use container::*;
pub use host::HostRecord;
pub use overrides::*;
pub use service::*;
pub use settings::{root_principal, AccountSetting};
pub use status::{
    AttachmentStatus, ClusterStatus, Connectivity, DeploymentStatus, HealthStatus, HostStatus,
    RolloutState, ServiceStatus, TaskDefinitionStatus,
};
pub use task::*;
pub use task_definition::*;

use serde::{Deserialize, Serialize};

/// A tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// `{"name": ..., "value": ...}` (environment variables, settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValuePair {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// A `failures` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The resource concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// `MISSING`, `RESOURCE:CPU`, ...
    pub reason: String,
}

/// An item of a `capacityProviderStrategy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProviderStrategyItem {
    /// `FARGATE` or `FARGATE_SPOT`.
    pub capacity_provider: String,
    /// Share of the tasks above the bases.
    #[serde(default)]
    pub weight: i64,
    /// Tasks placed on it first.
    #[serde(default)]
    pub base: i64,
}

/// A cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// ARN.
    pub cluster_arn: String,
    /// Name.
    pub cluster_name: String,
    /// Whether it is in use or deleted.
    pub status: ClusterStatus,
    /// Counters (filled when described).
    #[serde(default)]
    pub registered_container_instances_count: u64,
    /// Counter.
    #[serde(default)]
    pub running_tasks_count: u64,
    /// Counter.
    #[serde(default)]
    pub pending_tasks_count: u64,
    /// Counter.
    #[serde(default)]
    pub active_services_count: u64,
    /// Tags (shown where asked for with `include: ["TAGS"]`, and by creates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Settings (`containerInsights`).
    #[serde(default)]
    pub settings: Vec<KeyValuePair>,
    /// Capacity providers.
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    /// The strategy of RunTask and CreateService calls that name neither a launch
    /// type nor a strategy.
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    /// Statistics.
    #[serde(default)]
    pub statistics: Vec<KeyValuePair>,
}

/// `awsvpcConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsVpcConfiguration {
    /// Subnets.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Security groups.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// `ENABLED` or `DISABLED`.
    #[serde(default = "disabled")]
    pub assign_public_ip: String,
}

fn disabled() -> String {
    "DISABLED".into()
}

/// `networkConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfiguration {
    /// The awsvpc configuration.
    pub awsvpc_configuration: Option<AwsVpcConfiguration>,
}
