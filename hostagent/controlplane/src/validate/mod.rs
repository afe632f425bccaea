//! Input validation with ECS's rules and, where known, its messages. Every field a
//! request can store is checked here against the ECS model's enums, lengths and
//! patterns; the JSON types were already checked when the request was decoded into the
//! typed model (`SerializationException`).
//!
//! - [`rules`]: the shared value rules (names, ARNs, ids, tags, environment, ports).
//! - [`container`]: one container definition.
//! - [`request`]: the parameters of RunTask, CreateService, UpdateService, CreateCluster.

pub mod container;
pub mod request;
pub mod rules;

use crate::error::ApiError;
use crate::model::{runtime_fields, RegisterTaskDefinitionInput};
pub use rules::is_valid_name;
use std::collections::HashSet;

/// A refused input, with the ECS error type it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// `ClientException` (task definitions).
    #[error("{0}")]
    Client(String),
    /// `InvalidParameterException` (request parameters).
    #[error("{0}")]
    Parameter(String),
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        match e {
            Invalid::Client(m) => ApiError::client(m),
            Invalid::Parameter(m) => ApiError::invalid(m),
        }
    }
}

/// The 50 Fargate task sizes: (CPU units, memory MiB).
pub fn fargate_sizes() -> Vec<(u32, u32)> {
    let mut v = Vec::with_capacity(50);
    for m in [512, 1024, 2048] {
        v.push((256, m));
    }
    for g in 1..=4 {
        v.push((512, g * 1024));
    }
    for g in 2..=8 {
        v.push((1024, g * 1024));
    }
    for g in 4..=16 {
        v.push((2048, g * 1024));
    }
    for g in 8..=30 {
        v.push((4096, g * 1024));
    }
    v
}

/// Whether `(cpu, memory)` is a Fargate size.
pub fn is_fargate_size(cpu: u32, memory: u32) -> bool {
    fargate_sizes().contains(&(cpu, memory))
}

/// Parses a task CPU value: `"1024"` or `"1 vCPU"` (also `".25 vcpu"`).
pub fn parse_cpu(s: &str) -> Option<u32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        return Some(n);
    }
    let lower = t.to_ascii_lowercase();
    let num = lower.strip_suffix("vcpu")?.trim();
    let f: f64 = num.parse().ok()?;
    let units = f * 1024.0;
    (units.fract() == 0.0 && units > 0.0 && units < 1e6).then_some(units as u32)
}

/// Parses a task memory value: `"2048"` (MiB) or `"2 GB"`.
pub fn parse_memory(s: &str) -> Option<u32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        return Some(n);
    }
    let lower = t.to_ascii_lowercase();
    let num = lower.strip_suffix("gb")?.trim();
    let f: f64 = num.parse().ok()?;
    let mib = f * 1024.0;
    (mib.fract() == 0.0 && mib > 0.0 && mib < 1e8).then_some(mib as u32)
}

/// A refusal, in ECS's words (ECS answers `ClientException`).
fn invalid(m: impl Into<String>) -> Invalid {
    Invalid::Client(m.into())
}

/// A validated task size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSize {
    /// CPU units.
    pub cpu: u32,
    /// Memory MiB.
    pub memory: u32,
}

/// Validates a RegisterTaskDefinition input; returns the task size.
pub fn task_definition(input: &RegisterTaskDefinitionInput) -> Result<TaskSize, Invalid> {
    if input.family.is_empty() {
        return Err(invalid("Family must not be empty."));
    }
    if !is_valid_name(&input.family) {
        return Err(invalid(
            "Family contains invalid characters. Up to 255 letters (uppercase and lowercase), \
             numbers, underscores, and hyphens are allowed.",
        ));
    }
    for c in &input.requires_compatibilities {
        if c != "FARGATE" && c != "EC2" && c != "EXTERNAL" {
            return Err(invalid(format!(
                "Invalid requiresCompatibilities value: {}",
                rules::shorten(c)
            )));
        }
    }
    match input.network_mode.as_deref() {
        None | Some("awsvpc") => {}
        Some(m @ ("bridge" | "host" | "none")) => {
            return Err(invalid(format!(
                "Fargate only supports network mode 'awsvpc'; got '{m}'."
            )))
        }
        Some(m) => {
            return Err(invalid(format!(
                "Invalid network mode: {}",
                rules::shorten(m)
            )))
        }
    }
    let cpu_s = input
        .cpu
        .as_deref()
        .ok_or_else(|| invalid("Fargate requires that 'cpu' be defined at the task level."))?;
    let mem_s = input
        .memory
        .as_deref()
        .ok_or_else(|| invalid("Fargate requires that 'memory' be defined at the task level."))?;
    let cpu = parse_cpu(cpu_s).ok_or_else(|| {
        invalid(format!(
            "Invalid 'cpu' setting for task: {}",
            rules::shorten(cpu_s)
        ))
    })?;
    let memory = parse_memory(mem_s).ok_or_else(|| {
        invalid(format!(
            "Invalid 'memory' setting for task: {}",
            rules::shorten(mem_s)
        ))
    })?;
    if !is_fargate_size(cpu, memory) {
        return Err(invalid(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. \
             See the Amazon ECS documentation for the valid values."
        )));
    }
    containers(&input.container_definitions, cpu, memory)?;
    task_options(input)?;
    runtime(input)?;
    Ok(TaskSize { cpu, memory })
}

/// `dependsOn`, `healthCheck`, `mountPoints`, `ulimits`, `workingDirectory`, `user` and
/// `volumes`, checked by the guest init's own rules (`guest_proto::validate_task` on the
/// task's shape), so that a task definition accepted here never fails in the guest over
/// these fields: unknown or cyclic dependencies, HEALTHY on a container without a health
/// check, undeclared volumes, out-of-range health check timings, unknown ulimits.
fn runtime(input: &RegisterTaskDefinitionInput) -> Result<(), Invalid> {
    let volumes =
        runtime_fields::volume_names(&input.volumes).map_err(|e| invalid(e.to_string()))?;
    let mut containers = Vec::with_capacity(input.container_definitions.len());
    for (i, d) in input.container_definitions.iter().enumerate() {
        let f = runtime_fields::runtime_fields(d).map_err(|e| invalid(e.to_string()))?;
        // Neither entryPoint nor command: the image's own, which the host merges in.
        let command = if d.entry_point.is_empty() && d.command.is_empty() {
            vec!["(image default)".to_string()]
        } else {
            d.command.clone()
        };
        containers.push(guest_proto::ContainerSpec {
            name: d.name.clone(),
            root_device: format!("/dev/container{i}"),
            entry_point: d.entry_point.clone(),
            command,
            essential: d.essential,
            depends_on: f.depends_on,
            health_check: f.health_check,
            mount_points: f.mount_points,
            working_directory: f.working_directory,
            user: f.user,
            ulimits: f.ulimits,
            ..Default::default()
        });
    }
    let shape = guest_proto::TaskSpec {
        task_arn: "task-definition".into(),
        volumes: volumes
            .into_iter()
            .map(|name| guest_proto::Volume { name })
            .collect(),
        containers,
        ..Default::default()
    };
    guest_proto::validate_task(&shape)
        .map_err(|e| invalid(format!("Invalid task definition: {}", e.0)))
}

/// The task-level fields besides size and containers: roles, modes, volumes,
/// placement constraints, storage, platform, tags.
fn task_options(input: &RegisterTaskDefinitionInput) -> Result<(), Invalid> {
    let o = &input.options;
    for (f, v) in [
        ("taskRoleArn", &o.task_role_arn),
        ("executionRoleArn", &o.execution_role_arn),
    ] {
        if let Some(v) = v {
            rules::role(f, v).map_err(invalid)?;
        }
    }
    if let Some(p) = &o.pid_mode {
        rules::one_of("pidMode", p, &["task"]).map_err(invalid)?;
    }
    if o.ipc_mode.is_some() {
        return Err(invalid("ipcMode is not supported on Fargate."));
    }
    if !o.inference_accelerators.is_empty() {
        return Err(invalid(
            "inferenceAccelerators is not supported on Fargate.",
        ));
    }
    if let Some(p) = &o.proxy_configuration {
        if let Some(k) = &p.kind {
            rules::one_of("proxyConfiguration.type", k, &["APPMESH"]).map_err(invalid)?;
        }
        if !input
            .container_definitions
            .iter()
            .any(|c| c.name == p.container_name)
        {
            return Err(invalid(
                "proxyConfiguration.containerName must name a container of the task definition.",
            ));
        }
        for (i, kv) in p.properties.iter().enumerate() {
            rules::required_text(
                &format!("proxyConfiguration.properties[{i}].name"),
                &kv.name,
                255,
            )
            .and_then(|()| {
                rules::text(
                    &format!("proxyConfiguration.properties[{i}].value"),
                    &kv.value,
                    4096,
                )
            })
            .map_err(invalid)?;
        }
    }
    if let Some(e) = &o.ephemeral_storage {
        rules::range("ephemeralStorage.sizeInGiB", e.size_in_gi_b, 21, 200).map_err(invalid)?;
    }
    if let Some(r) = &o.runtime_platform {
        if let Some(a) = &r.cpu_architecture {
            rules::one_of("runtimePlatform.cpuArchitecture", a, &["X86_64", "ARM64"])
                .map_err(invalid)?;
        }
        if let Some(f) = &r.operating_system_family {
            rules::one_of("runtimePlatform.operatingSystemFamily", f, &["LINUX"])
                .map_err(invalid)?;
        }
    }
    let mut names = HashSet::new();
    for (i, v) in input.volumes.iter().enumerate() {
        if !v.name.is_empty() {
            rules::name(&format!("volumes[{i}].name"), &v.name).map_err(invalid)?;
        }
        if !names.insert(v.name.as_str()) {
            return Err(invalid(format!("Duplicate volume name '{}'.", v.name)));
        }
    }
    if input.placement_constraints.len() > 10 {
        return Err(invalid("placementConstraints: at most 10."));
    }
    for (i, p) in input.placement_constraints.iter().enumerate() {
        if let Some(k) = &p.kind {
            rules::one_of(&format!("placementConstraints[{i}].type"), k, &["memberOf"])
                .map_err(invalid)?;
        }
        if let Some(e) = &p.expression {
            rules::text(&format!("placementConstraints[{i}].expression"), e, 2000)
                .map_err(invalid)?;
        }
    }
    rules::tags("tags", &input.tags).map_err(invalid)
}

fn containers(
    defs: &[crate::model::ContainerDefinition],
    cpu: u32,
    memory: u32,
) -> Result<(), Invalid> {
    if defs.is_empty() {
        return Err(invalid("Container list cannot be empty."));
    }
    if defs.len() > 10 {
        return Err(invalid(format!(
            "Too many containers: {} given; a task definition may have at most 10.",
            defs.len()
        )));
    }
    let mut names = HashSet::new();
    let (mut cpu_sum, mut mem_sum) = (0i64, 0i64);
    for (i, c) in defs.iter().enumerate() {
        container::check(i, c, memory).map_err(invalid)?;
        if !names.insert(c.name.as_str()) {
            return Err(invalid(format!("Duplicate container name '{}'.", c.name)));
        }
        cpu_sum += c.cpu;
        mem_sum += c.memory_reservation.or(c.memory).unwrap_or(0);
    }
    if !defs.iter().any(|c| c.essential) {
        return Err(invalid(
            "A task definition must have at least one essential container.",
        ));
    }
    if cpu_sum > cpu as i64 {
        return Err(invalid(format!(
            "The sum of the container cpu values ({cpu_sum}) exceeds the task cpu ({cpu})."
        )));
    }
    if mem_sum > memory as i64 {
        return Err(invalid(format!(
            "The sum of the container memory reservations ({mem_sum} MiB) exceeds the task memory ({memory} MiB)."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_sizes() {
        let s = fargate_sizes();
        assert_eq!(s.len(), 50);
        assert!(is_fargate_size(1024, 2048));
        assert!(is_fargate_size(4096, 30720));
        assert!(!is_fargate_size(256, 4096));
        assert!(!is_fargate_size(1024, 1024));
    }

    #[test]
    fn human_units() {
        assert_eq!(parse_cpu("1 vCpu"), Some(1024));
        assert_eq!(parse_cpu(".25 vCPU"), Some(256));
        assert_eq!(parse_cpu("512"), Some(512));
        assert_eq!(parse_cpu("lots"), None);
        assert_eq!(parse_memory("2 gb"), Some(2048));
        assert_eq!(parse_memory("0.5GB"), Some(512));
        assert_eq!(parse_memory("x GB"), None);
    }
}
