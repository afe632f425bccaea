//! The service scheduler: keeps each service at desiredCount, replaces stopped or
//! lost tasks, and rolls deployments within minimumHealthyPercent/maximumPercent.
//! Tasks on a draining host are replaced the way an old deployment's are: new ones
//! start elsewhere, then they stop, within the same limits.

use crate::cells::CellState;
use crate::clock::now;
use crate::ctx::Ctx;
use crate::domain::DomainError;
use crate::lifecycle::{self, Launch};
use crate::model::{
    RolloutState, Service, ServiceEvent, ServiceStatus, TaskDefinition, TaskDefinitionStatus,
    TaskOverride, TaskRecord,
};
use agent_proto::Status;
use std::collections::{HashMap, HashSet};

fn event(s: &mut Service, msg: String) {
    s.events.insert(
        0,
        ServiceEvent {
            id: uuid::Uuid::new_v4().to_string(),
            created_at: now(),
            message: msg,
        },
    );
    s.events.truncate(crate::retention::SERVICE_EVENTS_KEPT);
}

/// The task definition ARN `arn` of a service names, if it is still ACTIVE.
fn active_task_definition(
    ctx: &Ctx<'_>,
    c: &CellState,
    arn: &str,
) -> Result<Option<TaskDefinition>, DomainError> {
    let Some((family, rev)) = ctx
        .own_resource(arn)
        .and_then(|r| r.strip_prefix("task-definition/"))
        .and_then(|r| r.split_once(':'))
        .and_then(|(f, r)| Some((f, r.parse::<u32>().ok().filter(|&r| r > 0)?)))
    else {
        return Ok(None);
    };
    Ok(c.task_definitions()
        .get(ctx.account, family, rev)?
        .filter(|t| t.status == TaskDefinitionStatus::Active))
}

/// Fills running/pending counts from the service's live tasks.
pub fn with_counts(
    c: &CellState,
    account: &str,
    cluster: &str,
    mut s: Service,
) -> Result<Service, DomainError> {
    let (mut run, mut pend) = (0, 0);
    let mut per_td: std::collections::HashMap<String, (i64, i64)> = Default::default();
    for (_, r) in c.tasks().in_cluster(account, cluster)? {
        if r.service.as_deref() != Some(s.service_name.as_str())
            || r.task.desired_status != Status::Running
        {
            continue;
        }
        let e = per_td
            .entry(r.task.task_definition_arn.clone())
            .or_default();
        match r.task.last_status {
            Status::Running => {
                run += 1;
                e.0 += 1
            }
            Status::Provisioning | Status::Pending => {
                pend += 1;
                e.1 += 1
            }
            _ => {}
        }
    }
    s.running_count = run;
    s.pending_count = pend;
    for d in &mut s.deployments {
        let (r, p) = per_td.get(&d.task_definition).copied().unwrap_or((0, 0));
        d.running_count = r;
        d.pending_count = p;
    }
    Ok(s)
}

/// One pass over every service of the cell.
pub fn reconcile(c: &mut CellState) -> Result<(), DomainError> {
    let region = c.region().to_string();
    for (owner, svc) in c.services().all()? {
        if svc.status == ServiceStatus::Inactive {
            continue;
        }
        let ctx = Ctx {
            account: &owner.account,
            region: &region,
        };
        let name = svc.service_name.clone();
        if let Err(e) = reconcile_one(&ctx, c, &owner.cluster, svc) {
            tracing::warn!("service {}/{}/{name}: {e}", owner.account, owner.cluster);
        }
    }
    Ok(())
}

fn reconcile_one(
    ctx: &Ctx<'_>,
    c: &mut CellState,
    cluster: &str,
    mut s: Service,
) -> Result<(), DomainError> {
    let before = s.clone();
    let name = s.service_name.clone();
    let mut live: Vec<TaskRecord> = c
        .tasks()
        .in_cluster(ctx.account, cluster)?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| {
            r.service.as_deref() == Some(s.service_name.as_str())
                && r.task.desired_status == Status::Running
                && r.task.last_status != Status::Stopped
        })
        .collect();
    let desired = if s.status == ServiceStatus::Active {
        s.desired_count.max(0) as usize
    } else {
        0
    };
    let primary = s.task_definition.clone();
    let max_total =
        (desired * s.deployment_configuration.maximum_percent as usize / 100).max(desired);
    let min_healthy =
        (desired * s.deployment_configuration.minimum_healthy_percent as usize).div_ceil(100);
    let mut spread: HashMap<String, usize> = HashMap::new();
    for r in &live {
        *spread.entry(r.task.availability_zone.clone()).or_default() += 1;
    }
    // One host-record read per host, not per task.
    let hosts: HashSet<&str> = live.iter().map(|r| r.host_id.as_str()).collect();
    let draining: HashSet<String> = hosts
        .into_iter()
        .filter(|h| c.is_draining(h))
        .map(str::to_string)
        .collect();
    let is_new =
        |r: &TaskRecord| r.task.task_definition_arn == primary && !draining.contains(&r.host_id);
    let mut n_new = live.iter().filter(|r| is_new(r)).count();
    let n_old = live.len() - n_new;
    // 1. Start tasks of the primary deployment.
    if n_new < desired && n_new + n_old < max_total {
        if let Some(td) = active_task_definition(ctx, c, &primary)? {
            let net = s
                .network_configuration
                .awsvpc_configuration
                .clone()
                .unwrap_or_else(|| crate::model::AwsVpcConfiguration {
                    subnets: vec![],
                    security_groups: vec![],
                    assign_public_ip: "DISABLED".into(),
                });
            let deployment_id = s.deployments.first().map(|d| d.id.clone());
            let tags = crate::tagging::task_tags(
                c,
                &crate::tagging::TagSources {
                    account: ctx.account,
                    cluster,
                    td: &td,
                    service: Some(&s),
                    given: &[],
                    propagate: s.propagate_tags,
                    managed: s.enable_ecs_managed_tags,
                },
            )?;
            let mut started = vec![];
            let mut per_provider: HashMap<String, usize> = HashMap::new();
            for r in &live {
                if let Some(p) = &r.task.capacity_provider_name {
                    *per_provider.entry(p.clone()).or_default() += 1;
                }
            }
            while n_new < desired && n_new + n_old < max_total {
                let provider = crate::capacity::pick(&s.capacity_provider_strategy, &per_provider)
                    .map(str::to_string);
                let l = Launch {
                    cluster,
                    td: &td,
                    net: &net,
                    overrides: TaskOverride::default(),
                    started_by: deployment_id.clone(),
                    group: format!("service:{}", s.service_name),
                    service: Some(s.service_name.clone()),
                    spread: Some(&spread),
                    tags: tags.clone(),
                    capacity_provider: provider.clone(),
                };
                match lifecycle::launch(ctx, c, &l) {
                    Ok(rec) => {
                        if let Some(p) = provider {
                            *per_provider.entry(p).or_default() += 1;
                        }
                        *spread
                            .entry(rec.task.availability_zone.clone())
                            .or_default() += 1;
                        started.push(
                            rec.task
                                .task_arn
                                .rsplit('/')
                                .next()
                                .unwrap_or("")
                                .to_string(),
                        );
                        live.push(rec);
                        n_new += 1;
                    }
                    Err(DomainError::NoCapacity(no)) => {
                        event(&mut s, format!(
                            "(service {name}) was unable to place a task because no container instance met all of its requirements. Reason: {}.",
                            no.reason()));
                        break;
                    }
                    Err(DomainError::LimitExceeded(m)) => {
                        event(
                            &mut s,
                            format!("(service {name}) was unable to place a task. Reason: {m}"),
                        );
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !started.is_empty() {
                event(
                    &mut s,
                    format!(
                        "(service {name}) has started {} tasks: (task {}).",
                        started.len(),
                        started.join(") (task ")
                    ),
                );
            }
        }
    }
    // 2. Stop tasks beyond what is wanted: old deployments within minimumHealthyPercent,
    //    extra primary tasks when scaled down. Non-running ones go first.
    let healthy = live
        .iter()
        .filter(|r| r.task.last_status == Status::Running)
        .count();
    let mut can_stop_running = healthy.saturating_sub(min_healthy);
    let mut extra_new = n_new.saturating_sub(desired);
    live.sort_by_key(|r| r.task.last_status == Status::Running);
    let mut stopped = vec![];
    for r in &mut live {
        let old = !is_new(r);
        if !old && extra_new == 0 {
            continue;
        }
        let running = r.task.last_status == Status::Running;
        if running && can_stop_running == 0 {
            continue;
        }
        if running {
            can_stop_running -= 1;
        }
        if !old {
            extra_new -= 1;
        }
        let reason = if draining.contains(&r.host_id) {
            "Task stopped because its container instance is draining"
        } else if old {
            "Task replaced by a new deployment"
        } else {
            "Scaling activity initiated by (deployment)"
        };
        lifecycle::request_stop(c, r, "ServiceSchedulerInitiated", reason)?;
        stopped.push(r.task.task_arn.rsplit('/').next().unwrap_or("").to_string());
    }
    if !stopped.is_empty() {
        event(
            &mut s,
            format!(
                "(service {name}) has stopped {} running tasks: (task {}).",
                stopped.len(),
                stopped.join(") (task ")
            ),
        );
    }
    // 3. Bookkeeping: retire finished deployments, finish draining.
    let old_left = live
        .iter()
        .any(|r| !is_new(r) && r.task.desired_status == Status::Running);
    if !old_left && s.deployments.len() > 1 {
        s.deployments.truncate(1);
    }
    let running_new = live
        .iter()
        .filter(|r| {
            is_new(r)
                && r.task.last_status == Status::Running
                && r.task.desired_status == Status::Running
        })
        .count();
    if let Some(d) = s.deployments.first_mut() {
        if !old_left && running_new == desired && d.rollout_state == RolloutState::InProgress {
            d.rollout_state = RolloutState::Completed;
            d.rollout_state_reason = "ECS deployment completed.".into();
            d.updated_at = now();
        }
    }
    if s.status == ServiceStatus::Draining
        && live
            .iter()
            .all(|r| r.task.desired_status == Status::Stopped)
    {
        s.status = ServiceStatus::Inactive;
        c.inactive_since()
            .service(ctx.account, cluster, &s.service_name, now())?;
    }
    let s = with_counts(c, ctx.account, cluster, s)?;
    if s != before {
        c.services().put(ctx.account, cluster, &s)?;
    }
    Ok(())
}
