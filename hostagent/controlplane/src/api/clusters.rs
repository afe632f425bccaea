//! CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster,
//! UpdateClusterSettings, PutClusterCapacityProviders, DescribeCapacityProviders.

use super::common::{active_cluster, cluster_name, input, paginate};
use crate::cells::CellState;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::model::{
    CapacityProviderStrategyItem, Cluster, ClusterStatus, Failure, KeyValuePair, ServiceStatus, Tag,
};
use crate::validate;
use agent_proto::Status;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateInput {
    cluster_name: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    settings: Vec<KeyValuePair>,
    #[serde(default)]
    capacity_providers: Vec<String>,
    #[serde(default)]
    default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
}

/// Fills the counters of `cl` from the cell's tasks and services.
pub fn with_counts(ctx: &Ctx<'_>, c: &CellState, mut cl: Cluster) -> Result<Cluster, ApiError> {
    let (mut running, mut pending) = (0, 0);
    let mut hosts = HashSet::new();
    for (_, t) in c.tasks().in_cluster(ctx.account, &cl.cluster_name)? {
        match t.task.last_status {
            Status::Running => running += 1,
            Status::Provisioning | Status::Pending => pending += 1,
            _ => {}
        }
        if t.task.last_status != Status::Stopped {
            hosts.insert(t.host_id);
        }
    }
    cl.running_tasks_count = running;
    cl.pending_tasks_count = pending;
    cl.registered_container_instances_count = hosts.len() as u64;
    cl.active_services_count = c
        .services()
        .in_cluster(ctx.account, &cl.cluster_name)?
        .iter()
        .filter(|(_, s)| s.status == ServiceStatus::Active)
        .count() as u64;
    Ok(cl)
}

/// CreateCluster (idempotent for an ACTIVE cluster of the same name).
pub fn create(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: CreateInput = input(v)?;
    let name = inp.cluster_name.unwrap_or_else(|| "default".into());
    if !validate::is_valid_name(&name) {
        return Err(ApiError::invalid(
            "Cluster name is invalid. Up to 255 letters (uppercase and lowercase), numbers, \
             underscores, and hyphens are allowed.",
        ));
    }
    validate::request::tags(&inp.tags)?;
    validate::request::cluster_settings(&inp.settings)?;
    validate::request::capacity_providers(&inp.capacity_providers)?;
    validate::request::capacity_provider_strategy(
        &inp.default_capacity_provider_strategy,
        &inp.capacity_providers,
    )?;
    if let Some(cl) = c.clusters().get(ctx.account, &name)? {
        if cl.status == ClusterStatus::Active {
            return Ok(json!({"cluster": with_counts(ctx, c, cl)?}));
        }
    }
    let active = c
        .clusters()
        .of_account(ctx.account)?
        .iter()
        .filter(|(_, cl)| cl.status == ClusterStatus::Active)
        .count() as u64;
    c.quotas().check_new_cluster(active)?;
    // Without a containerInsights setting, the account's (PutAccountSetting) applies.
    let mut settings = inp.settings;
    if !settings.iter().any(|s| s.name == "containerInsights") {
        let value = super::account_settings::effective(
            c,
            ctx.account,
            "containerInsights",
            &crate::model::root_principal(ctx.account),
        )?
        .map(|s| s.value)
        .unwrap_or_else(|| "disabled".into());
        settings.push(KeyValuePair {
            name: "containerInsights".into(),
            value,
        });
    }
    let cl = Cluster {
        cluster_arn: ctx.arn(&format!("cluster/{name}")),
        cluster_name: name,
        status: ClusterStatus::Active,
        registered_container_instances_count: 0,
        running_tasks_count: 0,
        pending_tasks_count: 0,
        active_services_count: 0,
        tags: inp.tags,
        settings,
        capacity_providers: inp.capacity_providers,
        default_capacity_provider_strategy: inp.default_capacity_provider_strategy,
        statistics: vec![],
    };
    c.clusters().put(ctx.account, &cl)?;
    Ok(json!({"cluster": cl}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInput {
    clusters: Option<Vec<String>>,
    include: Option<Vec<String>>,
}

/// DescribeClusters (tags with `include: ["TAGS"]`).
pub fn describe(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: DescribeInput = input(v)?;
    let names = inp.clusters.unwrap_or_else(|| vec!["default".into()]);
    if names.len() > 100 {
        return Err(ApiError::invalid(
            "At most 100 clusters can be described at once.",
        ));
    }
    let with_tags = super::tags::wants_tags(inp.include.as_deref());
    let (mut clusters, mut failures) = (vec![], vec![]);
    for n in names {
        let found = match cluster_name(ctx, Some(&n)) {
            Ok(name) => c.clusters().get(ctx.account, &name)?,
            Err(_) => None,
        };
        match found {
            Some(mut cl) => {
                if !with_tags {
                    cl.tags.clear();
                }
                clusters.push(with_counts(ctx, c, cl)?)
            }
            None => failures.push(Failure {
                arn: Some(if n.starts_with("arn:") {
                    n
                } else {
                    ctx.arn(&format!("cluster/{n}"))
                }),
                reason: "MISSING".into(),
            }),
        }
    }
    Ok(json!({"clusters": clusters, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// ListClusters (ACTIVE ones).
pub fn list(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: ListInput = input(v)?;
    let items: Vec<(String, String)> = c
        .clusters()
        .of_account(ctx.account)?
        .into_iter()
        .filter(|(_, cl)| cl.status == ClusterStatus::Active)
        .map(|(k, cl)| (k, cl.cluster_arn))
        .collect();
    let (arns, next) = paginate(items, inp.next_token.as_deref(), inp.max_results, 100)?;
    Ok(json!({"clusterArns": arns, "nextToken": next}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteInput {
    cluster: Option<String>,
}

/// DeleteCluster: refused while services are active or tasks not stopped.
pub fn delete(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: DeleteInput = input(v)?;
    let s = inp
        .cluster
        .ok_or_else(|| ApiError::invalid("cluster is required."))?;
    let cl = active_cluster(ctx, c, Some(&s))?;
    let cl = with_counts(ctx, c, cl)?;
    if cl.active_services_count > 0 {
        return Err(ApiError::cluster_has_services());
    }
    if c.tasks()
        .in_cluster(ctx.account, &cl.cluster_name)?
        .iter()
        .any(|(_, t)| t.task.last_status != Status::Stopped)
    {
        return Err(ApiError::cluster_has_tasks());
    }
    let mut cl = cl;
    cl.status = ClusterStatus::Inactive;
    c.clusters().put(ctx.account, &cl)?;
    c.inactive_since()
        .cluster(ctx.account, &cl.cluster_name, crate::clock::now())?;
    Ok(json!({"cluster": cl}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateInput {
    cluster: Option<String>,
    settings: Option<Vec<KeyValuePair>>,
    configuration: Option<Value>,
    service_connect_defaults: Option<Value>,
}

/// Sets `settings` on an ACTIVE cluster (a setting replaces the one of its name).
fn set_settings(
    ctx: &Ctx<'_>,
    c: &mut CellState,
    cluster: Option<&str>,
    settings: Vec<KeyValuePair>,
) -> Result<Value, ApiError> {
    let s = cluster
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("cluster can not be blank."))?;
    validate::request::cluster_settings(&settings)?;
    let mut cl = active_cluster(ctx, c, Some(s))?;
    for kv in settings {
        match cl.settings.iter_mut().find(|o| o.name == kv.name) {
            Some(o) => o.value = kv.value,
            None => cl.settings.push(kv),
        }
    }
    c.clusters().put(ctx.account, &cl)?;
    Ok(json!({"cluster": with_counts(ctx, c, cl)?}))
}

/// UpdateCluster: its `settings` (`configuration` and `serviceConnectDefaults`,
/// execute-command and Service Connect, are not served and are refused).
pub fn update(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: UpdateInput = input(v)?;
    if inp.configuration.is_some() || inp.service_connect_defaults.is_some() {
        return Err(ApiError::invalid(
            "configuration and serviceConnectDefaults are not supported by this control plane.",
        ));
    }
    set_settings(
        ctx,
        c,
        inp.cluster.as_deref(),
        inp.settings.unwrap_or_default(),
    )
}

/// UpdateClusterSettings.
pub fn update_settings(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: UpdateInput = input(v)?;
    let settings = inp
        .settings
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("settings can not be empty."))?;
    set_settings(ctx, c, inp.cluster.as_deref(), settings)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutProvidersInput {
    cluster: Option<String>,
    capacity_providers: Option<Vec<String>>,
    default_capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
}

/// PutClusterCapacityProviders: the cluster's providers and default strategy, both
/// replaced. A provider still in a service's strategy cannot be removed.
pub fn put_capacity_providers(
    ctx: &Ctx<'_>,
    c: &mut CellState,
    v: Value,
) -> Result<Value, ApiError> {
    let inp: PutProvidersInput = input(v)?;
    let s = inp
        .cluster
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("cluster can not be blank."))?;
    let providers = inp
        .capacity_providers
        .ok_or_else(|| ApiError::invalid("capacityProviders can not be blank."))?;
    let default = inp
        .default_capacity_provider_strategy
        .ok_or_else(|| ApiError::invalid("defaultCapacityProviderStrategy can not be blank."))?;
    validate::request::capacity_providers(&providers)?;
    validate::request::capacity_provider_strategy(&default, &providers)?;
    let mut cl = active_cluster(ctx, c, Some(&s))?;
    for (_, svc) in c.services().in_cluster(ctx.account, &cl.cluster_name)? {
        if svc.status == ServiceStatus::Inactive {
            continue;
        }
        if let Some(p) = svc
            .capacity_provider_strategy
            .iter()
            .find(|i| !providers.contains(&i.capacity_provider))
        {
            return Err(ApiError::client(format!(
                "The capacity provider {} is in use by service {} and cannot be removed.",
                p.capacity_provider, svc.service_name
            )));
        }
    }
    cl.capacity_providers = providers;
    cl.default_capacity_provider_strategy = default;
    c.clusters().put(ctx.account, &cl)?;
    Ok(json!({"cluster": with_counts(ctx, c, cl)?}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeProvidersInput {
    capacity_providers: Option<Vec<String>>,
    include: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// DescribeCapacityProviders: the built-in `FARGATE` and `FARGATE_SPOT` (by name
/// or ARN); others are failures.
pub fn describe_capacity_providers(
    ctx: &Ctx<'_>,
    _c: &mut CellState,
    v: Value,
) -> Result<Value, ApiError> {
    let inp: DescribeProvidersInput = input(v)?;
    let with_tags = super::tags::wants_tags(inp.include.as_deref());
    let shown = |name: &str| {
        let mut p = json!({
            "capacityProviderArn": ctx.arn(&format!("capacity-provider/{name}")),
            "name": name,
            "status": "ACTIVE",
        });
        if with_tags {
            p["tags"] = json!([]);
        }
        p
    };
    let Some(asked) = inp.capacity_providers.filter(|a| !a.is_empty()) else {
        let items = crate::capacity::BUILT_IN
            .iter()
            .map(|n| (n.to_string(), shown(n)))
            .collect();
        let (providers, next) = paginate(items, inp.next_token.as_deref(), inp.max_results, 10)?;
        return Ok(json!({"capacityProviders": providers, "failures": [], "nextToken": next}));
    };
    if asked.len() > 100 {
        return Err(ApiError::invalid(
            "At most 100 capacity providers can be described at once.",
        ));
    }
    let (mut providers, mut failures) = (vec![], vec![]);
    for a in asked {
        let name = ctx
            .own_resource(&a)
            .and_then(|r| r.strip_prefix("capacity-provider/"))
            .unwrap_or(&a);
        match crate::capacity::BUILT_IN.iter().find(|b| **b == name) {
            Some(b) => providers.push(shown(b)),
            None => failures.push(Failure {
                arn: Some(if a.starts_with("arn:") {
                    a.clone()
                } else {
                    ctx.arn(&format!("capacity-provider/{a}"))
                }),
                reason: "MISSING".into(),
            }),
        }
    }
    Ok(json!({"capacityProviders": providers, "failures": failures}))
}
