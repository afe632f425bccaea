//! The ECS operations, one module per resource. Each operation takes the caller's
//! context, the locked state of the caller's cell and the JSON input, and returns
//! the JSON output.

pub mod clusters;
pub mod container_instances;
pub mod services;
pub mod task_definitions;
pub mod tasks;

use crate::cells::{tables, CellState};
use crate::frontend::errors::ApiError;
use crate::model::Cluster;
use crate::store::StoreExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Who is calling.
pub struct Ctx<'a> {
    /// The caller's account.
    pub account: &'a str,
    /// The region of ARNs.
    pub region: &'a str,
}

impl Ctx<'_> {
    /// `arn:aws:ecs:<region>:<account>:<resource>`.
    pub fn arn(&self, resource: &str) -> String {
        format!("arn:aws:ecs:{}:{}:{}", self.region, self.account, resource)
    }

    /// The resource part of an ARN of this caller (`cluster/x`), or None when
    /// `s` is not an ECS ARN of this region and account.
    pub fn own_resource<'s>(&self, s: &'s str) -> Option<&'s str> {
        let p = format!("arn:aws:ecs:{}:{}:", self.region, self.account);
        s.strip_prefix(p.as_str())
    }
}

/// Runs one operation by name.
pub fn dispatch(
    op: &str,
    ctx: &Ctx<'_>,
    c: &mut CellState,
    input: Value,
) -> Result<Value, ApiError> {
    match op {
        "RegisterTaskDefinition" => task_definitions::register(ctx, c, input),
        "DescribeTaskDefinition" => task_definitions::describe(ctx, c, input),
        "ListTaskDefinitions" => task_definitions::list(ctx, c, input),
        "ListTaskDefinitionFamilies" => task_definitions::list_families(ctx, c, input),
        "DeregisterTaskDefinition" => task_definitions::deregister(ctx, c, input),
        "CreateCluster" => clusters::create(ctx, c, input),
        "DescribeClusters" => clusters::describe(ctx, c, input),
        "ListClusters" => clusters::list(ctx, c, input),
        "DeleteCluster" => clusters::delete(ctx, c, input),
        "RunTask" => tasks::run(ctx, c, input),
        "StopTask" => tasks::stop(ctx, c, input),
        "DescribeTasks" => tasks::describe(ctx, c, input),
        "ListTasks" => tasks::list(ctx, c, input),
        "CreateService" => services::create(ctx, c, input),
        "UpdateService" => services::update(ctx, c, input),
        "DescribeServices" => services::describe(ctx, c, input),
        "ListServices" => services::list(ctx, c, input),
        "DeleteService" => services::delete(ctx, c, input),
        "ListContainerInstances" => container_instances::list(ctx, c, input),
        "DescribeContainerInstances" => container_instances::describe(ctx, c, input),
        _ => Err(ApiError::unknown_operation()),
    }
}

/// Whether `op` is an implemented operation.
pub fn is_known(op: &str) -> bool {
    const OPS: &[&str] = &[
        "RegisterTaskDefinition",
        "DescribeTaskDefinition",
        "ListTaskDefinitions",
        "ListTaskDefinitionFamilies",
        "DeregisterTaskDefinition",
        "CreateCluster",
        "DescribeClusters",
        "ListClusters",
        "DeleteCluster",
        "RunTask",
        "StopTask",
        "DescribeTasks",
        "ListTasks",
        "CreateService",
        "UpdateService",
        "DescribeServices",
        "ListServices",
        "DeleteService",
        "ListContainerInstances",
        "DescribeContainerInstances",
    ];
    OPS.contains(&op)
}

/// Decodes an operation's input.
pub fn input<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::serialization(e.to_string()))
}

/// One page of `items` (sorted by key): the `nextToken` is the last key, hex.
pub fn paginate<T>(
    items: Vec<(String, T)>,
    next_token: Option<&str>,
    max_results: Option<i64>,
    default_max: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = match max_results {
        None => default_max,
        Some(m) if (1..=100).contains(&m) => m as usize,
        Some(_) => return Err(ApiError::invalid("maxResults must be between 1 and 100.")),
    };
    let after = match next_token {
        None | Some("") => None,
        Some(t) => Some(
            hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid("Invalid nextToken."))?,
        ),
    };
    let mut page = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in items {
        if after.as_ref().is_some_and(|a| k.as_str() <= a.as_str()) {
            continue;
        }
        if page.len() == max {
            more = true;
            break;
        }
        last = Some(k);
        page.push(v);
    }
    let token = if more { last.map(hex::encode) } else { None };
    Ok((page, token))
}

/// The cluster name a `cluster` parameter (name or ARN, default `default`) denotes.
pub fn cluster_name(ctx: &Ctx<'_>, s: Option<&str>) -> Result<String, ApiError> {
    let s = s.unwrap_or("default");
    if s.starts_with("arn:") {
        return ctx
            .own_resource(s)
            .and_then(|r| r.strip_prefix("cluster/"))
            .map(str::to_string)
            .ok_or_else(ApiError::cluster_not_found);
    }
    Ok(s.to_string())
}

/// The ACTIVE cluster a `cluster` parameter denotes.
pub fn active_cluster(ctx: &Ctx<'_>, c: &CellState, s: Option<&str>) -> Result<Cluster, ApiError> {
    let name = cluster_name(ctx, s)?;
    let key = format!("{}/{}", ctx.account, name);
    match c.store.get_json::<Cluster>(tables::CLUSTER, &key)? {
        Some(cl) if cl.status == "ACTIVE" => Ok(cl),
        _ => Err(ApiError::cluster_not_found()),
    }
}

/// Milliseconds-precision now, for ids.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_tokens() {
        let items = |n: usize| (0..n).map(|i| (format!("k{i:02}"), i)).collect::<Vec<_>>();
        let (p, t) = paginate(items(5), None, Some(2), 100).unwrap();
        assert_eq!(p, vec![0, 1]);
        let (p, t) = paginate(items(5), t.as_deref(), Some(2), 100).unwrap();
        assert_eq!(p, vec![2, 3]);
        let (p, t) = paginate(items(5), t.as_deref(), Some(2), 100).unwrap();
        assert_eq!((p, t), (vec![4], None));
        assert!(paginate(items(1), None, Some(0), 100).is_err());
        assert!(paginate(items(1), Some("zz"), None, 100).is_err());
    }
}
