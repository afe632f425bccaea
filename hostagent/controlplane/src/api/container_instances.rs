//! ListContainerInstances, DescribeContainerInstances. With Fargate there are no
//! customer instances; a cluster's container instances are the platform hosts that
//! run at least one of its unstopped tasks, shown with that cluster's view only.

use super::common::{active_cluster, input, paginate};
use crate::cells::CellState;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::model::{status, Failure, HostStatus};
use agent_proto::Status;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The host id a `containerInstance` parameter (id or ARN) names in `cluster`.
pub fn host_of(ctx: &Ctx<'_>, cluster: &str, s: &str) -> Option<String> {
    let id = if s.starts_with("arn:") {
        let r = ctx.own_resource(s)?.strip_prefix("container-instance/")?;
        let (cl, id) = r.split_once('/')?;
        if cl != cluster {
            return None;
        }
        id
    } else {
        s
    };
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then(|| id.to_string())
}

/// Host id -> (running, pending) tasks of the cluster.
fn hosts_of_cluster(
    ctx: &Ctx<'_>,
    c: &CellState,
    cluster: &str,
) -> Result<BTreeMap<String, (u64, u64)>, ApiError> {
    let mut m: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (_, r) in c.tasks().in_cluster(ctx.account, cluster)? {
        match r.task.last_status {
            Status::Stopped => {}
            Status::Running => m.entry(r.host_id).or_default().0 += 1,
            _ => m.entry(r.host_id).or_default().1 += 1,
        }
    }
    Ok(m)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    cluster: Option<String>,
    status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// ListContainerInstances.
pub fn list(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: ListInput = input(v)?;
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    // No status: every host but INACTIVE (lost) ones, as ECS lists them.
    let filter = match inp.status.as_deref() {
        None => None,
        Some(x) => Some(
            status::parse::<HostStatus>(x)
                .ok_or_else(|| ApiError::invalid(format!("Invalid status: {x}")))?,
        ),
    };
    let wanted = |s: Option<HostStatus>| match filter {
        None => s != Some(HostStatus::Inactive),
        Some(w) => s == Some(w),
    };
    let mut hosts = vec![];
    for h in hosts_of_cluster(ctx, c, &cluster.cluster_name)?.into_keys() {
        let status = c.hosts().get(&h)?.map(|r| r.status);
        if wanted(status) {
            hosts.push(h);
        }
    }
    let items: Vec<(String, String)> = hosts
        .into_iter()
        .map(|h| {
            let arn = ctx.arn(&format!("container-instance/{}/{h}", cluster.cluster_name));
            (h, arn)
        })
        .collect();
    let (arns, next) = paginate(items, inp.next_token.as_deref(), inp.max_results, 100)?;
    Ok(json!({"containerInstanceArns": arns, "nextToken": next}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInput {
    cluster: Option<String>,
    container_instances: Option<Vec<String>>,
}

fn resources(cpu: u32, mem: u32) -> Value {
    json!([
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu, "doubleValue": 0.0, "longValue": 0},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": mem, "doubleValue": 0.0, "longValue": 0}
    ])
}

/// DescribeContainerInstances.
pub fn describe(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: DescribeInput = input(v)?;
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    let names = inp.container_instances.unwrap_or_default();
    if names.is_empty() || names.len() > 100 {
        return Err(ApiError::invalid(
            "containerInstances must contain between 1 and 100 items.",
        ));
    }
    let hosts = hosts_of_cluster(ctx, c, &cluster.cluster_name)?;
    let (mut out, mut failures) = (vec![], vec![]);
    for n in names {
        let found = host_of(ctx, &cluster.cluster_name, &n)
            .and_then(|h| hosts.get(&h).map(|cnt| (h, *cnt)));
        let Some((h, (running, pending))) = found else {
            failures.push(Failure {
                arn: Some(n),
                reason: "MISSING".into(),
            });
            continue;
        };
        let Some(rec) = c.hosts().get(&h)? else {
            failures.push(Failure {
                arn: Some(n),
                reason: "MISSING".into(),
            });
            continue;
        };
        let slot = c.host_slot(&h);
        let (cf, mf) = slot.map(|s| (s.cpu_free, s.memory_free)).unwrap_or((0, 0));
        out.push(json!({
            "containerInstanceArn": ctx.arn(&format!("container-instance/{}/{h}", cluster.cluster_name)),
            "ec2InstanceId": h,
            "version": 1,
            "status": rec.status,
            "agentConnected": c.agent_connected(&h),
            "runningTasksCount": running,
            "pendingTasksCount": pending,
            "registeredResources": resources(rec.cpu, rec.memory),
            "remainingResources": resources(cf, mf),
            "attributes": [{"name": "ecs.availability-zone", "value": rec.availability_zone}],
            "registeredAt": rec.registered_at,
            "versionInfo": {"agentVersion": env!("CARGO_PKG_VERSION")},
        }));
    }
    Ok(json!({"containerInstances": out, "failures": failures}))
}
