//! The service scheduler: keeps each service at desiredCount, replaces stopped or
//! lost tasks, and rolls deployments within minimumHealthyPercent/maximumPercent.
//! Tasks on a draining host are replaced the way an old deployment's are: new ones
//! start elsewhere, then they stop, within the same limits.

use crate::api::{task_definitions, Ctx};
use crate::cells::{tables, CellState};
use crate::frontend::errors::ApiError;
use crate::lifecycle::{self, Launch};
use crate::model::{now, Service, ServiceEvent, TaskOverride, TaskRecord};
use crate::store::StoreExt;
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
    s.events.truncate(100);
}

/// One pass over every service of the cell.
pub fn reconcile(c: &mut CellState) -> Result<(), ApiError> {
    let region = c.region.clone();
    for (key, svc) in c.store.scan_json::<Service>(tables::SERVICE, "")? {
        if svc.status == "INACTIVE" {
            continue;
        }
        let mut parts = key.splitn(3, '/');
        let (Some(account), Some(cluster)) = (parts.next(), parts.next()) else {
            continue;
        };
        let ctx = Ctx {
            account,
            region: &region,
        };
        if let Err(e) = reconcile_one(&ctx, c, cluster, &key, svc) {
            tracing::warn!("service {key}: {e}");
        }
    }
    Ok(())
}

fn reconcile_one(
    ctx: &Ctx<'_>,
    c: &mut CellState,
    cluster: &str,
    key: &str,
    mut s: Service,
) -> Result<(), ApiError> {
    let before = s.clone();
    let name = s.service_name.clone();
    let mut live: Vec<TaskRecord> = c
        .store
        .scan_json::<TaskRecord>(tables::TASK, &format!("{}/{cluster}/", ctx.account))?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| {
            r.service.as_deref() == Some(s.service_name.as_str())
                && r.task.desired_status == "RUNNING"
                && r.task.last_status != "STOPPED"
        })
        .collect();
    let desired = if s.status == "ACTIVE" {
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
        .filter(|h| crate::cells::is_draining(c.store.as_ref(), h))
        .map(str::to_string)
        .collect();
    let is_new =
        |r: &TaskRecord| r.task.task_definition_arn == primary && !draining.contains(&r.host_id);
    let mut n_new = live.iter().filter(|r| is_new(r)).count();
    let n_old = live.len() - n_new;
    // 1. Start tasks of the primary deployment.
    if n_new < desired && n_new + n_old < max_total {
        if let Some(td) =
            task_definitions::resolve(ctx, c, &primary)?.filter(|t| t.status == "ACTIVE")
        {
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
            let mut started = vec![];
            while n_new < desired && n_new + n_old < max_total {
                let l = Launch {
                    cluster,
                    td: &td,
                    net: &net,
                    overrides: TaskOverride::default(),
                    started_by: deployment_id.clone(),
                    group: format!("service:{}", s.service_name),
                    service: Some(s.service_name.clone()),
                    spread: Some(&spread),
                    tags: vec![],
                };
                match lifecycle::launch(ctx, c, &l)? {
                    Ok(rec) => {
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
                    Err(no) => {
                        event(&mut s, format!(
                            "(service {name}) was unable to place a task because no container instance met all of its requirements. Reason: {}.",
                            no.reason()));
                        break;
                    }
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
        .filter(|r| r.task.last_status == "RUNNING")
        .count();
    let mut can_stop_running = healthy.saturating_sub(min_healthy);
    let mut extra_new = n_new.saturating_sub(desired);
    live.sort_by_key(|r| r.task.last_status == "RUNNING");
    let mut stopped = vec![];
    for r in &mut live {
        let old = !is_new(r);
        if !old && extra_new == 0 {
            continue;
        }
        let running = r.task.last_status == "RUNNING";
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
        .any(|r| !is_new(r) && r.task.desired_status == "RUNNING");
    if !old_left && s.deployments.len() > 1 {
        s.deployments.truncate(1);
    }
    let running_new = live
        .iter()
        .filter(|r| {
            is_new(r) && r.task.last_status == "RUNNING" && r.task.desired_status == "RUNNING"
        })
        .count();
    if let Some(d) = s.deployments.first_mut() {
        if !old_left && running_new == desired && d.rollout_state == "IN_PROGRESS" {
            d.rollout_state = "COMPLETED".into();
            d.rollout_state_reason = "ECS deployment completed.".into();
            d.updated_at = now();
        }
    }
    if s.status == "DRAINING" && live.iter().all(|r| r.task.desired_status == "STOPPED") {
        s.status = "INACTIVE".into();
    }
    let s = crate::api::services::with_counts(c, ctx.account, cluster, s)?;
    if s != before {
        c.store.put_json(tables::SERVICE, key, &s)?;
    }
    Ok(())
}
