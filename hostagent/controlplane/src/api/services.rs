//! CreateService, UpdateService, DescribeServices, ListServices, DeleteService.
//! The scheduler (crate::scheduler) does the work of keeping them running.

use super::common::{
    active_cluster, input, launch_type, network, paginate, service_name, strategy,
};
use super::task_definitions::runnable_td;
use crate::cells::CellState;
use crate::clock::now;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::model::{
    CapacityProviderStrategyItem, Deployment, DeploymentConfiguration, DeploymentStatus, Failure,
    LoadBalancer, NetworkConfiguration, PropagateTags, RolloutState, Service, ServiceStatus, Tag,
};
use crate::scheduler;
use crate::validate;
use serde::Deserialize;
use serde_json::{json, Value};

fn deployment_config(
    d: Option<DeploymentConfiguration>,
) -> Result<DeploymentConfiguration, ApiError> {
    let d = d.unwrap_or_default();
    if !(0..=100).contains(&d.minimum_healthy_percent) {
        return Err(ApiError::invalid(
            "minimumHealthyPercent must be between 0 and 100.",
        ));
    }
    if d.maximum_percent < 100 {
        return Err(ApiError::invalid("maximumPercent must be at least 100."));
    }
    if d.maximum_percent == 100 && d.minimum_healthy_percent == 100 {
        return Err(ApiError::invalid(
            "maximumPercent and minimumHealthyPercent cannot both be 100: a deployment could never replace a task.",
        ));
    }
    Ok(d)
}

/// A new PRIMARY deployment.
pub fn deployment(td: &str, desired: i64, net: &NetworkConfiguration) -> Deployment {
    let t = now();
    Deployment {
        id: format!(
            "ecs-svc/{:019}",
            uuid::Uuid::new_v4().as_u128() % 10_000_000_000_000_000_000
        ),
        status: DeploymentStatus::Primary,
        task_definition: td.to_string(),
        desired_count: desired,
        pending_count: 0,
        running_count: 0,
        failed_tasks: 0,
        created_at: t,
        updated_at: t,
        launch_type: "FARGATE".into(),
        rollout_state: RolloutState::InProgress,
        rollout_state_reason: "ECS deployment in progress.".into(),
        network_configuration: Some(net.clone()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateInput {
    service_name: Option<String>,
    cluster: Option<String>,
    task_definition: Option<String>,
    desired_count: Option<i64>,
    launch_type: Option<String>,
    network_configuration: Option<NetworkConfiguration>,
    deployment_configuration: Option<DeploymentConfiguration>,
    scheduling_strategy: Option<String>,
    #[serde(default)]
    load_balancers: Vec<LoadBalancer>,
    #[serde(default)]
    tags: Vec<Tag>,
    propagate_tags: Option<String>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
}

/// `propagateTags` of CreateService/UpdateService.
fn propagate(p: Option<&str>) -> Result<Option<PropagateTags>, ApiError> {
    p.map(|x| {
        PropagateTags::parse(x).ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid propagateTags '{}': TASK_DEFINITION, SERVICE or NONE.",
                x.chars().take(40).collect::<String>()
            ))
        })
    })
    .transpose()
}

/// CreateService.
pub fn create(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: CreateInput = input(v)?;
    let name = inp
        .service_name
        .ok_or_else(|| ApiError::invalid("serviceName can not be blank."))?;
    if !validate::is_valid_name(&name) {
        return Err(ApiError::invalid(
            "Service name is invalid. Up to 255 letters (uppercase and lowercase), numbers, \
             underscores, and hyphens are allowed.",
        ));
    }
    launch_type(inp.launch_type.as_deref())?;
    match inp.scheduling_strategy.as_deref() {
        None | Some("REPLICA") => {}
        Some("DAEMON") => {
            return Err(ApiError::invalid(
                "The DAEMON scheduling strategy is not supported with the FARGATE launch type.",
            ))
        }
        Some(x) => {
            return Err(ApiError::invalid(format!(
                "Invalid schedulingStrategy: {x}"
            )))
        }
    }
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    let capacity_provider_strategy = strategy(
        &cluster,
        inp.launch_type.as_deref(),
        inp.capacity_provider_strategy,
    )?;
    let desired = inp.desired_count.ok_or_else(|| {
        ApiError::invalid("desiredCount must be specified for the REPLICA scheduling strategy.")
    })?;
    if desired < 0 {
        return Err(ApiError::invalid("desiredCount can not be negative."));
    }
    c.quotas().check_desired_count(desired)?;
    let td = runnable_td(ctx, c, inp.task_definition.as_deref())?;
    network(inp.network_configuration.as_ref())?;
    validate::request::load_balancers(&inp.load_balancers, &td)?;
    validate::request::tags(&inp.tags)?;
    let propagate_tags = propagate(inp.propagate_tags.as_deref())?.unwrap_or_default();
    let net = inp.network_configuration.unwrap_or(NetworkConfiguration {
        awsvpc_configuration: None,
    });
    let dc = deployment_config(inp.deployment_configuration)?;
    if let Some(old) = c
        .services()
        .get(ctx.account, &cluster.cluster_name, &name)?
    {
        if old.status != ServiceStatus::Inactive {
            return Err(ApiError::invalid("Creation of service was not idempotent."));
        }
    }
    let live = c
        .services()
        .in_cluster(ctx.account, &cluster.cluster_name)?
        .iter()
        .filter(|(_, s)| s.status != ServiceStatus::Inactive)
        .count() as u64;
    c.quotas().check_new_service(live)?;
    let s = Service {
        service_arn: ctx.arn(&format!("service/{}/{name}", cluster.cluster_name)),
        service_name: name,
        cluster_arn: cluster.cluster_arn.clone(),
        status: ServiceStatus::Active,
        desired_count: desired,
        running_count: 0,
        pending_count: 0,
        launch_type: "FARGATE".into(),
        platform_version: "LATEST".into(),
        task_definition: td.task_definition_arn.clone(),
        deployment_configuration: dc,
        deployments: vec![deployment(&td.task_definition_arn, desired, &net)],
        events: vec![],
        created_at: now(),
        network_configuration: net,
        scheduling_strategy: "REPLICA".into(),
        load_balancers: inp.load_balancers,
        tags: inp.tags,
        propagate_tags,
        enable_ecs_managed_tags: inp.enable_ecs_managed_tags.unwrap_or(false),
        capacity_provider_strategy,
    };
    c.services().put(ctx.account, &cluster.cluster_name, &s)?;
    Ok(json!({"service": s}))
}

fn get_service(
    ctx: &Ctx<'_>,
    c: &CellState,
    cluster: &str,
    s: Option<&str>,
) -> Result<Service, ApiError> {
    let s = s.ok_or_else(|| ApiError::invalid("service can not be blank."))?;
    c.services()
        .get(ctx.account, cluster, &service_name(ctx, s))?
        .ok_or_else(ApiError::service_not_found)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateInput {
    cluster: Option<String>,
    service: Option<String>,
    desired_count: Option<i64>,
    task_definition: Option<String>,
    deployment_configuration: Option<DeploymentConfiguration>,
    network_configuration: Option<NetworkConfiguration>,
    #[serde(default)]
    force_new_deployment: bool,
    propagate_tags: Option<String>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
}

/// UpdateService.
pub fn update(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: UpdateInput = input(v)?;
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    let mut s = get_service(ctx, c, &cluster.cluster_name, inp.service.as_deref())?;
    if s.status != ServiceStatus::Active {
        return Err(ApiError::service_not_active());
    }
    if let Some(d) = inp.desired_count {
        if d < 0 {
            return Err(ApiError::invalid("desiredCount can not be negative."));
        }
        c.quotas().check_desired_count(d)?;
        s.desired_count = d;
    }
    if let Some(p) = propagate(inp.propagate_tags.as_deref())? {
        s.propagate_tags = p;
    }
    if let Some(m) = inp.enable_ecs_managed_tags {
        s.enable_ecs_managed_tags = m;
    }
    // A new strategy applies to the tasks started from now on.
    if let Some(st) = inp.capacity_provider_strategy.filter(|st| !st.is_empty()) {
        validate::request::capacity_provider_strategy(&st, &cluster.capacity_providers)?;
        s.capacity_provider_strategy = st;
    }
    if let Some(dc) = inp.deployment_configuration {
        s.deployment_configuration = deployment_config(Some(dc))?;
    }
    let mut redeploy = inp.force_new_deployment;
    if let Some(n) = inp.network_configuration {
        network(Some(&n))?;
        redeploy |= n != s.network_configuration;
        s.network_configuration = n;
    }
    if let Some(t) = inp.task_definition.as_deref() {
        let td = runnable_td(ctx, c, Some(t))?;
        redeploy |= td.task_definition_arn != s.task_definition;
        s.task_definition = td.task_definition_arn;
    }
    if redeploy {
        for d in &mut s.deployments {
            d.status = DeploymentStatus::Active;
        }
        s.deployments.insert(
            0,
            deployment(
                &s.task_definition,
                s.desired_count,
                &s.network_configuration,
            ),
        );
    }
    if let Some(p) = s.deployments.first_mut() {
        p.desired_count = s.desired_count;
        p.updated_at = now();
    }
    c.services().put(ctx.account, &cluster.cluster_name, &s)?;
    let s = scheduler::with_counts(c, ctx.account, &cluster.cluster_name, s)?;
    Ok(json!({"service": s}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInput {
    cluster: Option<String>,
    services: Option<Vec<String>>,
    include: Option<Vec<String>>,
}

/// DescribeServices (tags with `include: ["TAGS"]`).
pub fn describe(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: DescribeInput = input(v)?;
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    let names = inp.services.unwrap_or_default();
    if names.is_empty() || names.len() > 10 {
        return Err(ApiError::invalid(
            "services must contain between 1 and 10 items.",
        ));
    }
    let with_tags = super::tags::wants_tags(inp.include.as_deref());
    let (mut out, mut failures) = (vec![], vec![]);
    for n in names {
        match get_service(ctx, c, &cluster.cluster_name, Some(&n)) {
            Ok(mut s) => {
                if !with_tags {
                    s.tags.clear();
                }
                out.push(scheduler::with_counts(
                    c,
                    ctx.account,
                    &cluster.cluster_name,
                    s,
                )?)
            }
            Err(e) if e.kind == "ServiceNotFoundException" => failures.push(Failure {
                arn: Some(if n.starts_with("arn:") {
                    n
                } else {
                    ctx.arn(&format!("service/{}/{n}", cluster.cluster_name))
                }),
                reason: "MISSING".into(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(json!({"services": out, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    cluster: Option<String>,
    launch_type: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// ListServices.
pub fn list(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: ListInput = input(v)?;
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    launch_type(inp.launch_type.as_deref())?;
    let items: Vec<(String, String)> = c
        .services()
        .in_cluster(ctx.account, &cluster.cluster_name)?
        .into_iter()
        .filter(|(_, s)| s.status != ServiceStatus::Inactive)
        .map(|(k, s)| (k, s.service_arn))
        .collect();
    let (arns, next) = paginate(items, inp.next_token.as_deref(), inp.max_results, 10)?;
    Ok(json!({"serviceArns": arns, "nextToken": next}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteInput {
    cluster: Option<String>,
    service: Option<String>,
    #[serde(default)]
    force: bool,
}

/// DeleteService: DRAINING until its tasks are stopped, then INACTIVE.
pub fn delete(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: DeleteInput = input(v)?;
    let cluster = active_cluster(ctx, c, inp.cluster.as_deref())?;
    let mut s = get_service(ctx, c, &cluster.cluster_name, inp.service.as_deref())?;
    if s.status != ServiceStatus::Active {
        return Err(ApiError::service_not_active());
    }
    if s.desired_count > 0 && !inp.force {
        return Err(ApiError::invalid(
            "The service cannot be stopped while it is scaled above 0.",
        ));
    }
    s.desired_count = 0;
    s.status = ServiceStatus::Draining;
    c.services().put(ctx.account, &cluster.cluster_name, &s)?;
    let s = scheduler::with_counts(c, ctx.account, &cluster.cluster_name, s)?;
    Ok(json!({"service": s}))
}
