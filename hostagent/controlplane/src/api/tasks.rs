//! RunTask, StopTask, DescribeTasks, ListTasks.

use super::common::{
    active_cluster, input, launch_type, network, paginate, service_name, strategy,
};
use super::task_definitions::runnable_td;
use crate::capacity;
use crate::cells::CellState;
use crate::ctx::Ctx;
use crate::domain::DomainError;
use crate::error::ApiError;
use crate::lifecycle::{self, Launch};
use crate::model::{
    CapacityProviderStrategyItem, Failure, NetworkConfiguration, PropagateTags, Tag, TaskOverride,
    TaskRecord,
};
use crate::tables::TaskKey;
use crate::tagging::{self, TagSources};
use crate::validate;
use agent_proto::Status;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunInput {
    cluster: Option<String>,
    task_definition: Option<String>,
    count: Option<i64>,
    launch_type: Option<String>,
    network_configuration: Option<NetworkConfiguration>,
    #[serde(default)]
    overrides: Option<TaskOverride>,
    started_by: Option<String>,
    group: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    propagate_tags: Option<String>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
}

/// RunTask.
pub fn run(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: RunInput = input(v)?;
    let count = inp.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::invalid("count must be between 1 and 10."));
    }
    launch_type(inp.launch_type.as_deref())?;
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    let strat = strategy(
        &cluster,
        inp.launch_type.as_deref(),
        inp.capacity_provider_strategy,
    )?;
    let td = runnable_td(ctx, c, inp.task_definition.as_deref())?;
    let net = network(inp.network_configuration.as_ref())?;
    let overrides = inp.overrides.unwrap_or_default();
    validate::request::overrides(&overrides, &td)?;
    validate::request::started_by(inp.started_by.as_deref())?;
    validate::request::group(inp.group.as_deref())?;
    validate::request::tags(&inp.tags)?;
    let propagate = match inp.propagate_tags.as_deref() {
        None | Some("NONE") => PropagateTags::None,
        Some("TASK_DEFINITION") => PropagateTags::TaskDefinition,
        Some(x) => {
            return Err(ApiError::invalid(format!(
                "Invalid propagateTags '{}': RunTask takes TASK_DEFINITION or NONE.",
                x.chars().take(40).collect::<String>()
            )))
        }
    };
    let tags = tagging::task_tags(
        c,
        &TagSources {
            account: ctx.account,
            cluster: &cluster.cluster_name,
            td: &td,
            service: None,
            given: &inp.tags,
            propagate,
            managed: inp.enable_ecs_managed_tags.unwrap_or(false),
        },
    )?;
    validate::request::tag_count(&tags)?;
    // The whole call fits the account's vCPU quota, or none of it runs.
    let cpu = u64::from(td.cpu.parse::<u32>().unwrap_or(0));
    c.quotas()
        .check_cpu(c.account_cpu(ctx.account), cpu.saturating_mul(count as u64))?;
    let group = inp.group.unwrap_or_else(|| format!("family:{}", td.family));
    let mut launch = Launch {
        cluster: &cluster.cluster_name,
        td: &td,
        net: &net,
        overrides,
        started_by: inp.started_by,
        group,
        service: None,
        spread: None,
        tags,
        capacity_provider: None,
    };
    let mut per_provider = std::collections::HashMap::new();
    let (mut tasks, mut failures) = (vec![], vec![]);
    for _ in 0..count {
        launch.capacity_provider = capacity::pick(&strat, &per_provider).map(str::to_string);
        match lifecycle::launch(ctx, c, &launch) {
            Ok(rec) => {
                if let Some(p) = &launch.capacity_provider {
                    *per_provider.entry(p.clone()).or_insert(0) += 1;
                }
                tasks.push(rec.task)
            }
            Err(DomainError::NoCapacity(no)) => failures.push(Failure {
                arn: None,
                reason: no.reason().into(),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json!({"tasks": tasks, "failures": failures}))
}

/// The store key of a task named by id or ARN in `cluster`.
fn task_key(ctx: &Ctx<'_>, cluster: &str, s: &str) -> Option<TaskKey> {
    if s.starts_with("arn:") {
        let k = TaskKey::of_arn(s)?;
        let own = ctx.own_resource(s)?;
        let rest = own.strip_prefix("task/")?;
        let (cl, _) = rest.split_once('/')?;
        (cl == cluster).then_some(k)
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Some(TaskKey::new(ctx.account, cluster, s))
    } else {
        None
    }
}

/// Reads a task of the caller.
pub fn get(
    ctx: &Ctx<'_>,
    c: &CellState,
    cluster: &str,
    s: &str,
) -> Result<Option<TaskRecord>, ApiError> {
    match task_key(ctx, cluster, s) {
        Some(k) => Ok(c.tasks().get(&k)?),
        None => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopInput {
    cluster: Option<String>,
    task: Option<String>,
    reason: Option<String>,
}

/// StopTask.
pub fn stop(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: StopInput = input(v)?;
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    let t = inp
        .task
        .ok_or_else(|| ApiError::invalid("task can not be blank."))?;
    let reason = inp.reason.unwrap_or_else(|| "Task stopped by user".into());
    if reason.len() > 255 {
        return Err(ApiError::invalid("reason can be at most 255 characters."));
    }
    let mut rec = get(ctx, c, &cluster.cluster_name, &t)?
        .ok_or_else(|| ApiError::invalid("The referenced task was not found."))?;
    lifecycle::request_stop(c, &mut rec, "UserInitiated", &reason)?;
    Ok(json!({"task": rec.task}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInput {
    cluster: Option<String>,
    tasks: Option<Vec<String>>,
    include: Option<Vec<String>>,
}

/// Names of the task attributes that carry the latest metrics sample.
pub const CPU_ATTRIBUTE: &str = "ecs.task.cpu-utilization";
/// Memory utilization attribute.
pub const MEMORY_ATTRIBUTE: &str = "ecs.task.memory-utilization";
/// Sample time attribute (ms since the Unix epoch).
pub const METRICS_TIME_ATTRIBUTE: &str = "ecs.task.metrics-timestamp";

/// The task's latest metrics as ECS `Attribute`s (`attributes` of DescribeTasks).
fn metrics_attributes(arn: &str, m: &crate::cells::TaskMetricsSample) -> Value {
    let a = |name: &str, value: String| json!({"name": name, "value": value, "targetType": "task", "targetId": arn});
    json!([
        a(CPU_ATTRIBUTE, format!("{:.2}", m.cpu_utilization)),
        a(MEMORY_ATTRIBUTE, format!("{:.2}", m.memory_utilization)),
        a(METRICS_TIME_ATTRIBUTE, m.timestamp.to_string()),
    ])
}

/// DescribeTasks (tags with `include: ["TAGS"]`).
pub fn describe(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: DescribeInput = input(v)?;
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    let ids = inp.tasks.unwrap_or_default();
    if ids.is_empty() {
        return Err(ApiError::invalid("Tasks cannot be empty."));
    }
    if ids.len() > 100 {
        return Err(ApiError::invalid(
            "At most 100 tasks can be described at once.",
        ));
    }
    let with_tags = super::tags::wants_tags(inp.include.as_deref());
    let (mut tasks, mut failures) = (vec![], vec![]);
    for s in ids {
        match get(ctx, c, &cluster.cluster_name, &s)? {
            Some(mut r) => {
                if !with_tags {
                    r.task.tags.clear();
                }
                let mut t = serde_json::to_value(&r.task)
                    .map_err(|e| ApiError::server(format!("encode task: {e}")))?;
                if let Some(m) = c.metrics(&r.task.task_arn) {
                    t["attributes"] = metrics_attributes(&r.task.task_arn, m);
                }
                tasks.push(t)
            }
            None => failures.push(Failure {
                arn: Some(s),
                reason: "MISSING".into(),
            }),
        }
    }
    Ok(json!({"tasks": tasks, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    cluster: Option<String>,
    container_instance: Option<String>,
    family: Option<String>,
    started_by: Option<String>,
    service_name: Option<String>,
    desired_status: Option<String>,
    launch_type: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// ListTasks.
pub fn list(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: ListInput = input(v)?;
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    launch_type(inp.launch_type.as_deref())?;
    let desired = match inp.desired_status.as_deref() {
        None => Status::Running,
        Some(d) => Status::parse(d)
            .filter(|s| matches!(s, Status::Running | Status::Pending | Status::Stopped))
            .ok_or_else(|| ApiError::invalid(format!("Invalid desiredStatus: {d}")))?,
    };
    let host = match &inp.container_instance {
        None => None,
        Some(s) => Some(
            super::container_instances::host_of(ctx, &cluster.cluster_name, s)
                .ok_or_else(|| ApiError::invalid("Invalid containerInstance."))?,
        ),
    };
    let svc = inp.service_name.as_ref().map(|s| service_name(ctx, s));
    // As ECS: a service the cluster never had is an error, not `[]` (a deleted
    // one, still described as INACTIVE, lists its stopped tasks).
    if let Some(s) = &svc {
        if c.services()
            .get(ctx.account, &cluster.cluster_name, s)?
            .is_none()
        {
            return Err(ApiError::service_not_found());
        }
    }
    let items: Vec<(String, String)> = c
        .tasks()
        .in_cluster(ctx.account, &cluster.cluster_name)?
        .into_iter()
        .filter(|(_, r)| {
            let t = &r.task;
            let status_ok = match desired {
                Status::Pending => {
                    t.desired_status == Status::Running && t.last_status != Status::Running
                }
                d => t.desired_status == d,
            };
            status_ok
                && host.as_ref().is_none_or(|h| &r.host_id == h)
                && inp
                    .started_by
                    .as_ref()
                    .is_none_or(|s| t.started_by.as_ref() == Some(s))
                && inp.family.as_ref().is_none_or(|f| {
                    t.task_definition_arn
                        .contains(&format!("task-definition/{f}:"))
                })
                && svc.as_ref().is_none_or(|s| r.service.as_ref() == Some(s))
        })
        .map(|(k, r)| (k, r.task.task_arn))
        .collect();
    let (arns, next) = paginate(items, inp.next_token.as_deref(), inp.max_results, 100)?;
    Ok(json!({"taskArns": arns, "nextToken": next}))
}
