//! The ECS operations, one module per resource. Each operation takes the caller's
//! context, the locked state of the caller's cell and the JSON input, and returns
//! the JSON output.

pub mod clusters;
pub mod common;
pub mod container_instances;
pub mod services;
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
    ("CreateCluster", clusters::create),
    ("DescribeClusters", clusters::describe),
    ("ListClusters", clusters::list),
    ("DeleteCluster", clusters::delete),
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
        None => Err(ApiError::unknown_operation()),
    }
}

/// Whether `op` is an implemented operation.
pub fn is_known(op: &str) -> bool {
    handler(op).is_some()
}
