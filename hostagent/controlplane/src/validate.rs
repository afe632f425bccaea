//! Input validation with ECS's rules and, where known, its messages.

use crate::domain::DomainError;
use crate::model::{runtime_fields, ContainerDefinition, RegisterTaskDefinitionInput};
use std::collections::HashSet;

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

/// Names of families, clusters, services: 1-255 letters, digits, `-`, `_`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A refusal, in ECS's words (ECS answers `ClientException`).
fn invalid(m: impl Into<String>) -> DomainError {
    DomainError::Invalid(m.into())
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
pub fn task_definition(input: &RegisterTaskDefinitionInput) -> Result<TaskSize, DomainError> {
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
                "Invalid requiresCompatibilities value: {c}"
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
        Some(m) => return Err(invalid(format!("Invalid network mode: {m}"))),
    }
    let cpu_s = input
        .cpu
        .as_deref()
        .ok_or_else(|| invalid("Fargate requires that 'cpu' be defined at the task level."))?;
    let mem_s = input
        .memory
        .as_deref()
        .ok_or_else(|| invalid("Fargate requires that 'memory' be defined at the task level."))?;
    let cpu = parse_cpu(cpu_s)
        .ok_or_else(|| invalid(format!("Invalid 'cpu' setting for task: {cpu_s}")))?;
    let memory = parse_memory(mem_s)
        .ok_or_else(|| invalid(format!("Invalid 'memory' setting for task: {mem_s}")))?;
    if !is_fargate_size(cpu, memory) {
        return Err(invalid(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. \
             See the Amazon ECS documentation for the valid values."
        )));
    }
    containers(&input.container_definitions, cpu, memory)?;
    runtime(input)?;
    Ok(TaskSize { cpu, memory })
}

/// `dependsOn`, `healthCheck`, `mountPoints`, `ulimits`, `workingDirectory`, `user` and
/// `volumes`, checked by the guest init's own rules (`guest_proto::validate_task` on the
/// task's shape), so that a task definition accepted here never fails in the guest over
/// these fields: unknown or cyclic dependencies, HEALTHY on a container without a health
/// check, undeclared volumes, out-of-range health check timings, unknown ulimits.
fn runtime(input: &RegisterTaskDefinitionInput) -> Result<(), DomainError> {
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

/// An `awslogs` log configuration needs a valid `awslogs-group`.
fn log_configuration(c: &ContainerDefinition) -> Result<(), DomainError> {
    let Some(lc) = c.extra.get("logConfiguration") else {
        return Ok(());
    };
    let lc: agent_proto::LogConfiguration = serde_json::from_value(lc.clone()).map_err(|e| {
        invalid(format!(
            "Invalid logConfiguration for container '{}': {e}",
            c.name
        ))
    })?;
    if lc.log_driver != "awslogs" {
        return Ok(());
    }
    match lc.options.get("awslogs-group") {
        Some(g) if crate::logs::common::is_valid_group_name(g) => Ok(()),
        Some(g) => Err(invalid(format!(
            "Invalid awslogs-group '{g}' for container '{}'.",
            c.name
        ))),
        None => Err(invalid(format!(
            "Log driver awslogs requires the option awslogs-group (container '{}').",
            c.name
        ))),
    }
}

fn containers(defs: &[ContainerDefinition], cpu: u32, memory: u32) -> Result<(), DomainError> {
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
    for c in defs {
        if c.name.is_empty() {
            return Err(invalid("Container.name should not be null or empty."));
        }
        if !is_valid_name(&c.name) {
            return Err(invalid(format!(
                "Invalid container name '{}': up to 255 letters, numbers, hyphens and underscores.",
                c.name
            )));
        }
        if !names.insert(c.name.as_str()) {
            return Err(invalid(format!("Duplicate container name '{}'.", c.name)));
        }
        if c.image.trim().is_empty() {
            return Err(invalid("Container.image should not be null or empty."));
        }
        if c.cpu < 0 {
            return Err(invalid(format!(
                "Invalid 'cpu' setting for container '{}'.",
                c.name
            )));
        }
        for (what, v) in [
            ("memory", c.memory),
            ("memoryReservation", c.memory_reservation),
        ] {
            if let Some(v) = v {
                if v < 6 {
                    return Err(invalid(format!(
                        "Invalid '{what}' setting for container '{}': the minimum is 6 MiB.",
                        c.name
                    )));
                }
                if v > memory as i64 {
                    return Err(invalid(format!(
                        "Invalid '{what}' setting for container '{}': {v} MiB exceeds the task memory ({memory} MiB).",
                        c.name
                    )));
                }
            }
        }
        if let (Some(m), Some(r)) = (c.memory, c.memory_reservation) {
            if r > m {
                return Err(invalid(format!(
                    "Invalid setting for container '{}': the memoryReservation ({r}) must be less than or equal to the memory limit ({m}).",
                    c.name
                )));
            }
        }
        for p in &c.port_mappings {
            let cp = p.container_port.unwrap_or(0);
            if !(1..=65535).contains(&cp) {
                return Err(invalid(format!(
                    "Invalid containerPort for container '{}': must be 1-65535.",
                    c.name
                )));
            }
            if p.host_port.is_some_and(|h| h != cp) {
                return Err(invalid(
                    "When networkMode=awsvpc, the host ports and container ports in port mappings must match.",
                ));
            }
            if p.protocol != "tcp" && p.protocol != "udp" {
                return Err(invalid(format!(
                    "Invalid protocol '{}': tcp or udp.",
                    p.protocol
                )));
            }
        }
        log_configuration(c)?;
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

    #[test]
    fn names() {
        assert!(is_valid_name("scorekeep-api_1"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(256)));
    }
}
