//! Task lifecycle: launching onto a host, stop requests, state changes reported by
//! hosts, and the terminal STOPPED transition (which frees the host's resources).

use crate::cells::CellState;
use crate::clock::now;
use crate::ctx::{new_id, Ctx};
use crate::domain::DomainError;
use crate::model::{
    runtime_fields, Attachment, AttachmentStatus, AwsVpcConfiguration, Connectivity, Container,
    HealthStatus, KeyValuePair, NetworkInterface, Task, TaskDefinition, TaskOverride, TaskRecord,
};
use crate::tables::TaskKey;
use agent_proto::{
    ContainerSpec, ControlMessage, EnvVar, NetworkSpec, PortMapping, Status, TaskSpec,
};
use std::collections::HashMap;

/// The task `arn` if it is assigned to `host`; otherwise why not.
pub fn own_task(c: &CellState, host: &str, arn: &str) -> Result<TaskRecord, DomainError> {
    let denied = || DomainError::NotAssigned(arn.to_string());
    let key = TaskKey::of_arn(arn).ok_or_else(denied)?;
    match c.tasks().get(&key)? {
        Some(t) if t.host_id == host => Ok(t),
        _ => Err(denied()),
    }
}

/// What to launch.
pub struct Launch<'a> {
    /// Cluster name.
    pub cluster: &'a str,
    /// Task definition.
    pub td: &'a TaskDefinition,
    /// Subnets, security groups and public IP of the task's ENI.
    pub net: &'a AwsVpcConfiguration,
    /// Per-container command and environment overrides.
    pub overrides: TaskOverride,
    /// `startedBy`: who started it (a service's deployment id, or the caller's tag).
    pub started_by: Option<String>,
    /// `group`: `family:<f>` for RunTask, `service:<name>` for a service.
    pub group: String,
    /// Service that launches it.
    pub service: Option<String>,
    /// Tasks per AZ of the service, for spreading.
    pub spread: Option<&'a HashMap<String, usize>>,
    /// Tags given to the task.
    pub tags: Vec<crate::model::Tag>,
    /// The capacity provider it runs on, when started with a strategy.
    pub capacity_provider: Option<String>,
}

fn spec_containers(td: &TaskDefinition, ov: &TaskOverride) -> Vec<ContainerSpec> {
    td.container_definitions
        .iter()
        .map(|d| {
            // Checked when the task definition was registered; a definition stored before
            // that check existed and failing it runs without these fields (logged).
            let rt = runtime_fields::runtime_fields(d).unwrap_or_else(|e| {
                tracing::warn!(task_definition = %td.task_definition_arn, "{e}");
                Default::default()
            });
            let o = ov.container_overrides.iter().find(|o| o.name == d.name);
            let mut env: Vec<EnvVar> = d
                .environment
                .iter()
                .map(|e| EnvVar {
                    name: e.name.clone(),
                    value: e.value.clone(),
                })
                .collect();
            if let Some(o) = o {
                for e in &o.environment {
                    env.retain(|x| x.name != e.name);
                    env.push(EnvVar {
                        name: e.name.clone(),
                        value: e.value.clone(),
                    });
                }
            }
            ContainerSpec {
                name: d.name.clone(),
                image: d.image.clone(),
                cpu: d.cpu.max(0) as u32,
                memory: d.memory.map(|m| m as u32),
                memory_reservation: d.memory_reservation.map(|m| m as u32),
                essential: d.essential,
                entry_point: d.entry_point.clone(),
                command: o
                    .and_then(|o| o.command.clone())
                    .unwrap_or_else(|| d.command.clone()),
                environment: env,
                port_mappings: d
                    .port_mappings
                    .iter()
                    .map(|p| PortMapping {
                        container_port: p.container_port.unwrap_or(0) as u16,
                        protocol: p.protocol.clone(),
                    })
                    .collect(),
                stop_timeout_secs: d.stop_timeout.unwrap_or(30).clamp(2, 120) as u32,
                log_configuration: d.log_configuration.as_ref().map(|l| {
                    agent_proto::LogConfiguration {
                        log_driver: l.log_driver.clone(),
                        options: l.options.clone(),
                    }
                }),
                depends_on: rt.depends_on,
                health_check: rt.health_check,
                mount_points: rt.mount_points,
                working_directory: rt.working_directory,
                user: rt.user,
                ulimits: rt.ulimits,
            }
        })
        .collect()
}

/// Places and records one task, and sends it to its host
/// ([`DomainError::NoCapacity`] when no host has room).
pub fn launch(ctx: &Ctx<'_>, c: &mut CellState, l: &Launch<'_>) -> Result<TaskRecord, DomainError> {
    let (cpu, memory) = (
        l.td.cpu.parse::<u32>().unwrap_or(0),
        l.td.memory.parse::<u32>().unwrap_or(0),
    );
    c.quotas()
        .check_cpu(c.account_cpu(ctx.account), u64::from(cpu))?;
    let (host, az) = c
        .place(cpu, memory, l.spread)
        .map_err(DomainError::NoCapacity)?;
    let id = new_id();
    let task_arn = ctx.arn(&format!("task/{}/{id}", l.cluster));
    let attachment_id = uuid::Uuid::new_v4().to_string();
    let containers =
        l.td.container_definitions
            .iter()
            .map(|d| Container {
                container_arn: ctx.arn(&format!(
                    "container/{}/{id}/{}",
                    l.cluster,
                    uuid::Uuid::new_v4()
                )),
                task_arn: task_arn.clone(),
                name: d.name.clone(),
                image: d.image.clone(),
                last_status: Status::Pending,
                exit_code: None,
                reason: None,
                network_bindings: vec![],
                network_interfaces: vec![NetworkInterface {
                    attachment_id: attachment_id.clone(),
                    private_ipv4_address: None,
                }],
                health_status: HealthStatus::Unknown,
                cpu: d.cpu.to_string(),
                memory: d.memory.map(|m| m.to_string()),
                memory_reservation: d.memory_reservation.map(|m| m.to_string()),
            })
            .collect();
    let subnet = l.net.subnets.first().cloned().unwrap_or_default();
    let eni = format!("eni-{}", &new_id()[..17]);
    let spec = TaskSpec {
        task_arn: task_arn.clone(),
        account_id: ctx.account.to_string(),
        task_definition_arn: l.td.task_definition_arn.clone(),
        cpu,
        memory,
        containers: spec_containers(l.td, &l.overrides),
        network: NetworkSpec {
            subnets: l.net.subnets.clone(),
            security_groups: l.net.security_groups.clone(),
            assign_public_ip: l.net.assign_public_ip == "ENABLED",
        },
        volumes: runtime_fields::volume_names(&l.td.volumes).unwrap_or_default(),
    };
    let task = Task {
        task_arn: task_arn.clone(),
        cluster_arn: ctx.arn(&format!("cluster/{}", l.cluster)),
        task_definition_arn: l.td.task_definition_arn.clone(),
        container_instance_arn: ctx.arn(&format!("container-instance/{}/{host}", l.cluster)),
        overrides: l.overrides.clone(),
        last_status: Status::Provisioning,
        desired_status: Status::Running,
        cpu: l.td.cpu.clone(),
        memory: l.td.memory.clone(),
        containers,
        started_by: l.started_by.clone(),
        group: l.group.clone(),
        version: 1,
        stop_code: None,
        stopped_reason: None,
        connectivity: None,
        connectivity_at: None,
        pull_started_at: None,
        pull_stopped_at: None,
        created_at: now(),
        started_at: None,
        stopping_at: None,
        execution_stopped_at: None,
        stopped_at: None,
        launch_type: "FARGATE".into(),
        capacity_provider_name: l.capacity_provider.clone(),
        platform_version: "1.4.0".into(),
        availability_zone: az,
        attachments: vec![Attachment {
            id: attachment_id,
            kind: "ElasticNetworkInterface".into(),
            status: AttachmentStatus::Precreated,
            details: vec![
                KeyValuePair {
                    name: "subnetId".into(),
                    value: subnet,
                },
                KeyValuePair {
                    name: "networkInterfaceId".into(),
                    value: eni,
                },
            ],
        }],
        health_status: HealthStatus::Unknown,
        tags: l.tags.clone(),
        enable_execute_command: false,
    };
    let rec = TaskRecord {
        account: ctx.account.to_string(),
        cluster: l.cluster.to_string(),
        host_id: host.clone(),
        service: l.service.clone(),
        spec,
        task,
    };
    c.launch(&rec)?;
    Ok(rec)
}

/// Asks for a task to stop (desiredStatus STOPPED) and tells its host.
pub fn request_stop(
    c: &CellState,
    rec: &mut TaskRecord,
    code: &str,
    reason: &str,
) -> Result<(), DomainError> {
    if rec.task.desired_status == Status::Stopped {
        return Ok(());
    }
    rec.task.desired_status = Status::Stopped;
    rec.task.stopping_at = Some(now());
    rec.task.stop_code = Some(code.into());
    rec.task.stopped_reason = Some(reason.into());
    rec.task.version += 1;
    c.save_task(rec)?;
    c.notify(
        &rec.host_id,
        ControlMessage::StopTask {
            task_arn: rec.task.task_arn.clone(),
            reason: reason.into(),
        },
    );
    Ok(())
}

/// Moves a task to STOPPED (once) and frees its resources on the host.
pub fn mark_stopped(
    c: &mut CellState,
    rec: &mut TaskRecord,
    code: &str,
    reason: &str,
) -> Result<(), DomainError> {
    if rec.task.last_status == Status::Stopped {
        return Ok(());
    }
    let t = now();
    let task = &mut rec.task;
    task.last_status = Status::Stopped;
    task.desired_status = Status::Stopped;
    task.stopping_at.get_or_insert(t);
    task.execution_stopped_at.get_or_insert(t);
    task.stopped_at = Some(t);
    if task.stop_code.is_none() {
        task.stop_code = Some(code.into());
        task.stopped_reason = Some(reason.into());
    }
    for ct in &mut task.containers {
        ct.last_status = Status::Stopped;
    }
    if let Some(a) = task.attachments.first_mut() {
        a.status = AttachmentStatus::Deleted;
    }
    task.version += 1;
    c.mark_stopped(rec)
}

/// Applies a state change reported by the task's host. The caller has checked
/// that the task belongs to that host.
pub fn apply_report(
    c: &mut CellState,
    rec: &mut TaskRecord,
    status: Status,
    containers: &[agent_proto::ContainerState],
    stopped_reason: Option<&str>,
    ip: Option<&str>,
) -> Result<(), DomainError> {
    let current = rec.task.last_status;
    if current == Status::Stopped {
        return Err(DomainError::AlreadyStopped(rec.task.task_arn.clone()));
    }
    if status < current {
        return Err(DomainError::Backwards {
            arn: rec.task.task_arn.clone(),
            from: current,
            to: status,
        });
    }
    for cs in containers {
        if !rec.task.containers.iter().any(|x| x.name == cs.name) {
            return Err(DomainError::NoContainer {
                arn: rec.task.task_arn.clone(),
                name: cs.name.clone(),
            });
        }
    }
    let t = now();
    for cs in containers {
        if let Some(x) = rec.task.containers.iter_mut().find(|x| x.name == cs.name) {
            x.last_status = cs.last_status;
            if cs.exit_code.is_some() {
                x.exit_code = cs.exit_code;
            }
            if cs.reason.is_some() {
                x.reason = cs.reason.clone();
            }
        }
    }
    if let Some(ip) = ip {
        for x in &mut rec.task.containers {
            for n in &mut x.network_interfaces {
                n.private_ipv4_address = Some(ip.to_string());
            }
        }
        if let Some(a) = rec.task.attachments.first_mut() {
            a.details.retain(|d| d.name != "privateIPv4Address");
            a.details.push(KeyValuePair {
                name: "privateIPv4Address".into(),
                value: ip.to_string(),
            });
        }
    }
    let task = &mut rec.task;
    if status >= Status::Pending {
        task.connectivity = Some(Connectivity::Connected);
        task.connectivity_at.get_or_insert(t);
        task.pull_started_at.get_or_insert(t);
        if let Some(a) = task.attachments.first_mut() {
            if a.status == AttachmentStatus::Precreated {
                a.status = AttachmentStatus::Attached;
            }
        }
    }
    if status >= Status::Running {
        task.pull_stopped_at.get_or_insert(t);
        if status == Status::Running {
            task.started_at.get_or_insert(t);
        }
    }
    if status >= Status::Deprovisioning {
        task.execution_stopped_at.get_or_insert(t);
        task.stopping_at.get_or_insert(t);
    }
    if status == Status::Stopped {
        let reason = stopped_reason.unwrap_or("Essential container in task exited");
        return mark_stopped(c, rec, "EssentialContainerExited", reason);
    }
    task.last_status = status;
    task.version += 1;
    c.save_task(rec)
}
