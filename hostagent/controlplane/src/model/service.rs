//! Services.

use super::{DeploymentStatus, NetworkConfiguration, RolloutState, ServiceStatus, Tag};
use serde::{Deserialize, Serialize};

/// `deploymentConfiguration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    /// Upper limit of tasks during a deployment, percent of desiredCount.
    #[serde(default = "max_pct")]
    pub maximum_percent: i64,
    /// Lower limit of RUNNING tasks during a deployment, percent of desiredCount.
    #[serde(default = "min_pct")]
    pub minimum_healthy_percent: i64,
}

fn max_pct() -> i64 {
    200
}
fn min_pct() -> i64 {
    100
}

impl Default for DeploymentConfiguration {
    fn default() -> Self {
        DeploymentConfiguration {
            maximum_percent: 200,
            minimum_healthy_percent: 100,
        }
    }
}

/// `propagateTags`: whose tags a new task gets besides those it is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PropagateTags {
    /// The task definition's.
    TaskDefinition,
    /// The service's (services only).
    Service,
    /// None.
    #[default]
    None,
}

impl PropagateTags {
    /// The value a request names, as ECS spells it.
    pub fn parse(s: &str) -> Option<PropagateTags> {
        match s {
            "TASK_DEFINITION" => Some(PropagateTags::TaskDefinition),
            "SERVICE" => Some(PropagateTags::Service),
            "NONE" => Some(PropagateTags::None),
            _ => None,
        }
    }
}

/// A deployment of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `ecs-svc/<digits>`.
    pub id: String,
    /// `PRIMARY` (newest) or `ACTIVE` (being replaced).
    pub status: DeploymentStatus,
    /// Task definition.
    pub task_definition: String,
    /// Desired.
    pub desired_count: i64,
    /// PROVISIONING/PENDING tasks.
    pub pending_count: i64,
    /// RUNNING tasks.
    pub running_count: i64,
    /// Failed tasks.
    pub failed_tasks: i64,
    /// Timestamp.
    pub created_at: f64,
    /// Timestamp.
    pub updated_at: f64,
    /// `FARGATE`.
    pub launch_type: String,
    /// `IN_PROGRESS` or `COMPLETED`.
    pub rollout_state: RolloutState,
    /// Why.
    pub rollout_state_reason: String,
    /// Network configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
}

/// A `loadBalancers` entry of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    /// Target group ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    /// Classic load balancer name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_name: Option<String>,
    /// The container that receives the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
}

/// A service event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    /// Id.
    pub id: String,
    /// Timestamp.
    pub created_at: f64,
    /// Text.
    pub message: String,
}

/// A service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `arn:aws:ecs:<region>:<account>:service/<cluster>/<name>`.
    pub service_arn: String,
    /// Name.
    pub service_name: String,
    /// Cluster.
    pub cluster_arn: String,
    /// Kept running, deleted and draining, or deleted.
    pub status: ServiceStatus,
    /// Desired.
    pub desired_count: i64,
    /// RUNNING tasks.
    pub running_count: i64,
    /// PROVISIONING/PENDING tasks.
    pub pending_count: i64,
    /// `FARGATE`.
    pub launch_type: String,
    /// Platform version.
    pub platform_version: String,
    /// Current task definition.
    pub task_definition: String,
    /// Deployment limits.
    pub deployment_configuration: DeploymentConfiguration,
    /// Deployments, newest first.
    pub deployments: Vec<Deployment>,
    /// Events, newest first.
    pub events: Vec<ServiceEvent>,
    /// Timestamp.
    pub created_at: f64,
    /// Network configuration.
    pub network_configuration: NetworkConfiguration,
    /// `REPLICA`.
    pub scheduling_strategy: String,
    /// Load balancers.
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancer>,
    /// Its capacity provider strategy (empty: launch type FARGATE).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<super::CapacityProviderStrategyItem>,
    /// Whose tags its tasks get.
    #[serde(default)]
    pub propagate_tags: PropagateTags,
    /// Whether its tasks get the `aws:ecs:clusterName` and `aws:ecs:serviceName` tags.
    #[serde(default, rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: bool,
    /// Tags (shown where asked for with `include: ["TAGS"]`, and by creates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}
