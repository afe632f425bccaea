//! The ECS operations, one module per resource. Each operation takes the caller's
//! context, the locked state of the caller's cell and the JSON input, and returns
//! the JSON output.

pub mod account_settings;
pub mod clusters;
pub mod common;
pub mod container_instances;
pub mod services;
pub mod tags;
pub mod task_definitions;
pub mod tasks;

use crate::cells::CellState;
use crate::ctx::Ctx;
use crate::error::ApiError;
use serde_json::Value;

/// An ECS operation: the caller, the locked state of its cell and the JSON input
/// give the JSON output.
type Handler = fn(&Ctx<'_>, &mut CellState, Value) -> Result<Value, ApiError>;

/// Every ECS operation served, by name. It drives both [`dispatch`] and [`is_known`].
const OPERATIONS: &[(&str, Handler)] = &[
    ("RegisterTaskDefinition", task_definitions::register),
    ("DescribeTaskDefinition", task_definitions::describe),
    ("ListTaskDefinitions", task_definitions::list),
    (
        "ListTaskDefinitionFamilies",
        task_definitions::list_families,
    ),
    ("DeregisterTaskDefinition", task_definitions::deregister),
    ("DeleteTaskDefinitions", task_definitions::delete),
    ("CreateCluster", clusters::create),
    ("DescribeClusters", clusters::describe),
    ("ListClusters", clusters::list),
    ("DeleteCluster", clusters::delete),
    ("UpdateCluster", clusters::update),
    ("UpdateClusterSettings", clusters::update_settings),
    (
        "PutClusterCapacityProviders",
        clusters::put_capacity_providers,
    ),
    (
        "DescribeCapacityProviders",
        clusters::describe_capacity_providers,
    ),
    ("PutAccountSetting", account_settings::put),
    ("PutAccountSettingDefault", account_settings::put_default),
    ("ListAccountSettings", account_settings::list),
    ("DeleteAccountSetting", account_settings::delete),
    ("RunTask", tasks::run),
    ("StopTask", tasks::stop),
    ("DescribeTasks", tasks::describe),
    ("ListTasks", tasks::list),
    ("CreateService", services::create),
    ("UpdateService", services::update),
    ("DescribeServices", services::describe),
    ("ListServices", services::list),
    ("DeleteService", services::delete),
    ("ListContainerInstances", container_instances::list),
    ("DescribeContainerInstances", container_instances::describe),
    ("TagResource", tags::tag),
    ("UntagResource", tags::untag),
    ("ListTagsForResource", tags::list),
];

fn handler(op: &str) -> Option<Handler> {
    OPERATIONS
        .iter()
        .find(|(name, _)| *name == op)
        .map(|(_, h)| *h)
}

/// Runs one operation by name.
pub fn dispatch(
    op: &str,
    ctx: &Ctx<'_>,
    c: &mut CellState,
    input: Value,
) -> Result<Value, ApiError> {
    match handler(op) {
        Some(h) => h(ctx, c, input),
        None => Err(unknown(op)),
    }
}

/// Every operation of the ECS API (the 2014-11-13 service model), served or not.
const ECS_OPERATIONS: &[&str] = &[
    "ContinueServiceDeployment",
    "CreateCapacityProvider",
    "CreateCluster",
    "CreateDaemon",
    "CreateExpressGatewayService",
    "CreateService",
    "CreateTaskSet",
    "DeleteAccountSetting",
    "DeleteAttributes",
    "DeleteCapacityProvider",
    "DeleteCluster",
    "DeleteDaemon",
    "DeleteDaemonTaskDefinition",
    "DeleteExpressGatewayService",
    "DeleteService",
    "DeleteTaskDefinitions",
    "DeleteTaskSet",
    "DeregisterContainerInstance",
    "DeregisterTaskDefinition",
    "DescribeCapacityProviders",
    "DescribeClusters",
    "DescribeContainerInstances",
    "DescribeDaemon",
    "DescribeDaemonDeployments",
    "DescribeDaemonRevisions",
    "DescribeDaemonTaskDefinition",
    "DescribeExpressGatewayService",
    "DescribeServiceDeployments",
    "DescribeServiceRevisions",
    "DescribeServices",
    "DescribeTaskDefinition",
    "DescribeTaskSets",
    "DescribeTasks",
    "DiscoverPollEndpoint",
    "ExecuteCommand",
    "GetTaskProtection",
    "ListAccountSettings",
    "ListAttributes",
    "ListClusters",
    "ListContainerInstances",
    "ListDaemonDeployments",
    "ListDaemonTaskDefinitions",
    "ListDaemons",
    "ListServiceDeployments",
    "ListServices",
    "ListServicesByNamespace",
    "ListTagsForResource",
    "ListTaskDefinitionFamilies",
    "ListTaskDefinitions",
    "ListTasks",
    "PutAccountSetting",
    "PutAccountSettingDefault",
    "PutAttributes",
    "PutClusterCapacityProviders",
    "RegisterContainerInstance",
    "RegisterDaemonTaskDefinition",
    "RegisterTaskDefinition",
    "RunTask",
    "StartTask",
    "StopServiceDeployment",
    "StopTask",
    "SubmitAttachmentStateChanges",
    "SubmitContainerStateChange",
    "SubmitTaskStateChange",
    "TagResource",
    "UntagResource",
    "UpdateCapacityProvider",
    "UpdateCluster",
    "UpdateClusterSettings",
    "UpdateContainerAgent",
    "UpdateContainerInstancesState",
    "UpdateDaemon",
    "UpdateExpressGatewayService",
    "UpdateService",
    "UpdateServicePrimaryTaskSet",
    "UpdateTaskProtection",
    "UpdateTaskSet",
];

/// The error for an operation not served: `UnknownOperationException` (the code ECS
/// clients expect for an unknown target), its message naming the operation and
/// saying whether ECS has it. The name comes from a header: it is cut to 100
/// printable ASCII characters.
pub fn unknown(op: &str) -> ApiError {
    let name: String = op
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(100)
        .collect();
    if ECS_OPERATIONS.contains(&op) {
        ApiError::unknown_operation(format!(
            "The ECS operation {name} is not implemented by this control plane."
        ))
    } else {
        ApiError::unknown_operation(format!("Unknown operation {name}."))
    }
}

/// Whether `op` is an implemented operation.
pub fn is_known(op: &str) -> bool {
    handler(op).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_operation_is_an_ecs_operation() {
        for (op, _) in OPERATIONS {
            assert!(ECS_OPERATIONS.contains(op), "{op}");
        }
        assert!(unknown("UpdateTaskSet").message.contains("UpdateTaskSet"));
        assert!(unknown("UpdateTaskSet").message.contains("not implemented"));
        assert_eq!(
            unknown("Launch\nRocket").message,
            "Unknown operation LaunchRocket."
        );
        assert_eq!(unknown("UpdateTaskSet").kind, "UnknownOperationException");
    }
}
