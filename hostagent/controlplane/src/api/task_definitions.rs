//! RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition.

use super::common::{input, paginate};
use crate::cells::CellState;
use crate::clock::now;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::model::{status, RegisterTaskDefinitionInput, TaskDefinition, TaskDefinitionStatus};
use crate::validate;
use serde::Deserialize;
use serde_json::{json, Value};

/// Splits `family`, `family:rev` or a task definition ARN into (family, revision).
pub fn parse_ref(ctx: &Ctx<'_>, s: &str) -> Option<(String, Option<u32>)> {
    let s = if s.starts_with("arn:") {
        ctx.own_resource(s)?.strip_prefix("task-definition/")?
    } else {
        s
    };
    match s.split_once(':') {
        None => Some((s.to_string(), None)),
        Some((f, r)) => Some((f.to_string(), Some(r.parse().ok().filter(|&r| r > 0)?))),
    }
}

/// The task definition `s` denotes; a bare family means its latest ACTIVE revision.
pub fn resolve(ctx: &Ctx<'_>, c: &CellState, s: &str) -> Result<Option<TaskDefinition>, ApiError> {
    let Some((family, rev)) = parse_ref(ctx, s) else {
        return Ok(None);
    };
    if !validate::is_valid_name(&family) {
        return Ok(None);
    }
    match rev {
        Some(r) => Ok(c.task_definitions().get(ctx.account, &family, r)?),
        None => {
            let all = c.task_definitions().listing(ctx.account, Some(&family))?;
            Ok(all
                .into_iter()
                .rev()
                .map(|(_, t)| t)
                .find(|t| t.status == TaskDefinitionStatus::Active))
        }
    }
}

/// The ACTIVE task definition a RunTask/CreateService names.
pub fn runnable_td(
    ctx: &Ctx<'_>,
    c: &CellState,
    s: Option<&str>,
) -> Result<TaskDefinition, ApiError> {
    let s = s
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("TaskDefinition can not be blank."))?;
    let td = resolve(ctx, c, s)?
        .ok_or_else(|| ApiError::client("Unable to describe task definition."))?;
    if td.status != TaskDefinitionStatus::Active {
        return Err(ApiError::client("TaskDefinition is inactive"));
    }
    Ok(td)
}

/// RegisterTaskDefinition.
pub fn register(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let mut inp: RegisterTaskDefinitionInput = input(v)?;
    let size = validate::task_definition(&inp)?;
    let revision = c
        .task_definitions()
        .last_revision(ctx.account, &inp.family)?
        .saturating_add(1);
    c.quotas().check_revision(revision)?;
    for c in &mut inp.container_definitions {
        for p in &mut c.port_mappings {
            p.host_port = p.host_port.or(p.container_port);
        }
    }
    let td = TaskDefinition {
        task_definition_arn: ctx.arn(&format!("task-definition/{}:{revision}", inp.family)),
        family: inp.family.clone(),
        revision,
        status: TaskDefinitionStatus::Active,
        container_definitions: inp.container_definitions,
        cpu: size.cpu.to_string(),
        memory: size.memory.to_string(),
        network_mode: "awsvpc".into(),
        requires_compatibilities: inp.requires_compatibilities,
        compatibilities: vec!["EC2".into(), "FARGATE".into()],
        registered_at: now(),
        deregistered_at: None,
        volumes: inp.volumes,
        placement_constraints: inp.placement_constraints,
        options: inp.options,
    };
    c.task_definitions().register(ctx.account, &td, &inp.tags)?;
    Ok(json!({"taskDefinition": td, "tags": inp.tags}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInput {
    task_definition: Option<String>,
    include: Option<Vec<String>>,
}

/// DescribeTaskDefinition (its tags with `include: ["TAGS"]`).
pub fn describe(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: DescribeInput = input(v)?;
    let s = inp
        .task_definition
        .ok_or_else(|| ApiError::invalid("taskDefinition is required."))?;
    let td = resolve(ctx, c, &s)?
        .ok_or_else(|| ApiError::client("Unable to describe task definition."))?;
    if super::tags::wants_tags(inp.include.as_deref()) {
        let tags = c
            .task_definitions()
            .tags(ctx.account, &td.family, td.revision)?;
        return Ok(json!({"taskDefinition": td, "tags": tags}));
    }
    Ok(json!({ "taskDefinition": td }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// The `status` filter (ACTIVE when not given); None: `ALL`, where `allow_all`.
fn status_filter(
    s: Option<&str>,
    allow_all: bool,
) -> Result<Option<TaskDefinitionStatus>, ApiError> {
    match s {
        None => Ok(Some(TaskDefinitionStatus::Active)),
        Some("ALL") if allow_all => Ok(None),
        Some(x) => status::parse(x)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("Invalid status: {x}"))),
    }
}

/// ListTaskDefinitions.
pub fn list(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: ListInput = input(v)?;
    let status = status_filter(inp.status.as_deref(), false)?;
    let mut items: Vec<(String, String)> = c
        .task_definitions()
        .listing(ctx.account, inp.family_prefix.as_deref())?
        .into_iter()
        .filter(|(_, t)| Some(t.status) == status)
        .map(|(k, t)| (k, t.task_definition_arn))
        .collect();
    match inp.sort.as_deref() {
        None | Some("ASC") => {}
        Some("DESC") => {
            items.reverse();
            // Keys must still ascend for the token: index them in the new order.
            items = items
                .into_iter()
                .enumerate()
                .map(|(i, (_, a))| (format!("{i:012}"), a))
                .collect();
        }
        Some(x) => return Err(ApiError::invalid(format!("Invalid sort: {x}"))),
    }
    let (arns, next) = paginate(items, inp.next_token.as_deref(), inp.max_results, 100)?;
    Ok(json!({"taskDefinitionArns": arns, "nextToken": next}))
}

/// ListTaskDefinitionFamilies.
pub fn list_families(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: ListInput = input(v)?;
    let status = status_filter(inp.status.as_deref(), true)?;
    let prefix = inp.family_prefix.unwrap_or_default();
    let mut fams: Vec<(String, String)> = Vec::new();
    for t in c
        .task_definitions()
        .with_family_prefix(ctx.account, &prefix)?
    {
        let ok = status.is_none_or(|s| t.status == s);
        if ok && fams.last().is_none_or(|(f, _)| f != &t.family) {
            fams.push((t.family.clone(), t.family));
        }
    }
    // INACTIVE families are those with no ACTIVE revision left.
    if status == Some(TaskDefinitionStatus::Inactive) {
        let mut active = std::collections::HashSet::new();
        for t in c
            .task_definitions()
            .with_family_prefix(ctx.account, &prefix)?
        {
            if t.status == TaskDefinitionStatus::Active {
                active.insert(t.family);
            }
        }
        fams.retain(|(f, _)| !active.contains(f));
    }
    let (families, next) = paginate(fams, inp.next_token.as_deref(), inp.max_results, 100)?;
    Ok(json!({"families": families, "nextToken": next}))
}

/// DeregisterTaskDefinition.
pub fn deregister(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: DescribeInput = input(v)?;
    let s = inp
        .task_definition
        .ok_or_else(|| ApiError::invalid("taskDefinition is required."))?;
    let (family, rev) = parse_ref(ctx, &s)
        .ok_or_else(|| ApiError::client("The specified task definition does not exist."))?;
    let rev =
        rev.ok_or_else(|| ApiError::client(format!("Invalid revision number. Number: {s}")))?;
    let mut td = c
        .task_definitions()
        .get(ctx.account, &family, rev)?
        .ok_or_else(|| ApiError::client("The specified task definition does not exist."))?;
    if td.status == TaskDefinitionStatus::DeleteInProgress {
        return Err(ApiError::client(
            "The specified task definition does not exist.",
        ));
    }
    if td.status == TaskDefinitionStatus::Active {
        td.status = TaskDefinitionStatus::Inactive;
        td.deregistered_at = Some(now());
        c.task_definitions().put(ctx.account, &td)?;
    }
    Ok(json!({"taskDefinition": td}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteInput {
    task_definitions: Option<Vec<String>>,
}

/// DeleteTaskDefinitions: up to 10 INACTIVE revisions become DELETE_IN_PROGRESS
/// (shown so, no longer runnable nor deregistrable); an ACTIVE or missing one is a
/// failure entry.
pub fn delete(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: DeleteInput = input(v)?;
    let refs = inp.task_definitions.unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(ApiError::invalid(
            "taskDefinitions must have 1 to 10 items.",
        ));
    }
    let (mut done, mut failures) = (vec![], vec![]);
    let fail = |arn: &str, reason: &str, detail: &str| json!({"arn": arn, "reason": reason, "detail": detail});
    for s in refs {
        let found = match parse_ref(ctx, &s) {
            Some((family, Some(rev))) if validate::is_valid_name(&family) => {
                c.task_definitions().get(ctx.account, &family, rev)?
            }
            Some((_, None)) => {
                failures.push(fail(
                    &s,
                    "The specified task definition identifier is invalid. Specify a valid name or ARN and try again.",
                    "A revision is required.",
                ));
                continue;
            }
            _ => None,
        };
        let Some(mut td) = found else {
            failures.push(fail(
                &s,
                "TASK_DEFINITION_NOT_FOUND",
                "The specified task definition does not exist.",
            ));
            continue;
        };
        match td.status {
            TaskDefinitionStatus::Active => failures.push(fail(
                &td.task_definition_arn,
                "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
                "Deregister it first.",
            )),
            TaskDefinitionStatus::Inactive => {
                td.status = TaskDefinitionStatus::DeleteInProgress;
                c.task_definitions().put(ctx.account, &td)?;
                done.push(td);
            }
            TaskDefinitionStatus::DeleteInProgress => done.push(td),
        }
    }
    Ok(json!({"taskDefinitions": done, "failures": failures}))
}
