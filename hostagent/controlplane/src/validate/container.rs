//! The rules of one container definition: names, image, sizes, ports, environment,
//! and the ECS structures Fargate takes (`linuxParameters`, `logConfiguration`,
//! `secrets`, ...), with Fargate's refusals where ECS has them.

use super::rules::{self, Rule};
use crate::model::{ContainerDefinition, LinuxParameters, LogConfiguration, PortMapping};

/// The Linux capabilities ECS names.
const CAPABILITIES: &[&str] = &[
    "ALL",
    "AUDIT_CONTROL",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// The log drivers Fargate offers.
const LOG_DRIVERS: &[&str] = &["awslogs", "splunk", "awsfirelens"];

/// Refuses a field Fargate does not take, when it is set.
fn not_on_fargate(field: &str, set: bool) -> Rule {
    if set {
        return Err(format!("{field} is not supported on Fargate."));
    }
    Ok(())
}

fn linux_parameters(f: &str, l: &LinuxParameters) -> Rule {
    if let Some(c) = &l.capabilities {
        for (i, a) in c.add.iter().enumerate() {
            rules::one_of(&format!("{f}.capabilities.add[{i}]"), a, &["SYS_PTRACE"])?;
        }
        for (i, d) in c.drop.iter().enumerate() {
            rules::one_of(&format!("{f}.capabilities.drop[{i}]"), d, CAPABILITIES)?;
        }
    }
    not_on_fargate(&format!("{f}.devices"), !l.devices.is_empty())?;
    not_on_fargate(
        &format!("{f}.sharedMemorySize"),
        l.shared_memory_size.is_some(),
    )?;
    not_on_fargate(&format!("{f}.tmpfs"), !l.tmpfs.is_empty())?;
    not_on_fargate(&format!("{f}.maxSwap"), l.max_swap.is_some())?;
    not_on_fargate(&format!("{f}.swappiness"), l.swappiness.is_some())
}

fn log_configuration(f: &str, container: &str, l: &LogConfiguration) -> Rule {
    rules::one_of(&format!("{f}.logDriver"), &l.log_driver, LOG_DRIVERS)?;
    for (k, v) in &l.options {
        rules::required_text(&format!("{f}.options key"), k, 255)?;
        rules::text(&format!("{f}.options['{}']", rules::shorten(k)), v, 4096)?;
    }
    for (i, s) in l.secret_options.iter().enumerate() {
        rules::required_text(&format!("{f}.secretOptions[{i}].name"), &s.name, 255)?;
        rules::required_text(
            &format!("{f}.secretOptions[{i}].valueFrom"),
            &s.value_from,
            2048,
        )?;
    }
    if l.log_driver != "awslogs" {
        return Ok(());
    }
    match l.options.get("awslogs-group") {
        Some(g) if crate::logs::common::is_valid_group_name(g) => Ok(()),
        Some(g) => Err(format!(
            "Invalid awslogs-group '{}' for container '{container}'.",
            rules::shorten(g)
        )),
        None => Err(format!(
            "Log driver awslogs requires the option awslogs-group (container '{container}')."
        )),
    }
}

fn port_mapping(f: &str, container: &str, p: &PortMapping) -> Rule {
    if p.container_port_range.is_some() {
        return Err(format!("{f}.containerPortRange is not supported."));
    }
    let cp = p.container_port.unwrap_or(0);
    if !(1..=65535).contains(&cp) {
        return Err(format!(
            "Invalid containerPort for container '{container}': must be 1-65535."
        ));
    }
    if let Some(h) = p.host_port {
        rules::port(&format!("{f}.hostPort"), h)?;
        if h != cp {
            return Err(
                "When networkMode=awsvpc, the host ports and container ports in port mappings must match."
                    .into(),
            );
        }
    }
    if p.protocol != "tcp" && p.protocol != "udp" {
        return Err(format!(
            "Invalid protocol '{}': tcp or udp.",
            rules::shorten(&p.protocol)
        ));
    }
    if let Some(n) = &p.name {
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(format!(
                "Invalid {f}.name: up to 64 lowercase letters, numbers and hyphens."
            ));
        }
    }
    if let Some(a) = &p.app_protocol {
        rules::one_of(&format!("{f}.appProtocol"), a, &["http", "http2", "grpc"])?;
    }
    Ok(())
}

/// The rules of container definition `i`, within a task of `memory` MiB.
pub fn check(i: usize, c: &ContainerDefinition, memory: u32) -> Rule {
    let f = format!("containerDefinitions[{i}]");
    if c.name.is_empty() {
        return Err("Container.name should not be null or empty.".into());
    }
    if !rules::is_valid_name(&c.name) {
        return Err(format!(
            "Invalid container name '{}': up to 255 letters, numbers, hyphens and underscores.",
            rules::shorten(&c.name)
        ));
    }
    if c.image.trim().is_empty() {
        return Err("Container.image should not be null or empty.".into());
    }
    rules::image(&format!("{f}.image"), &c.image)?;
    if !(0..=10240).contains(&c.cpu) {
        return Err(format!("Invalid 'cpu' setting for container '{}'.", c.name));
    }
    for (what, v) in [
        ("memory", c.memory),
        ("memoryReservation", c.memory_reservation),
    ] {
        if let Some(v) = v {
            if v < 6 {
                return Err(format!(
                    "Invalid '{what}' setting for container '{}': the minimum is 6 MiB.",
                    c.name
                ));
            }
            if v > i64::from(memory) {
                return Err(format!(
                    "Invalid '{what}' setting for container '{}': {v} MiB exceeds the task memory ({memory} MiB).",
                    c.name
                ));
            }
        }
    }
    if let (Some(m), Some(r)) = (c.memory, c.memory_reservation) {
        if r > m {
            return Err(format!(
                "Invalid setting for container '{}': the memoryReservation ({r}) must be less than or equal to the memory limit ({m}).",
                c.name
            ));
        }
    }
    if let Some(r) = &c.repository_credentials {
        rules::arn(
            &format!("{f}.repositoryCredentials.credentialsParameter"),
            &r.credentials_parameter,
        )?;
    }
    for (j, p) in c.port_mappings.iter().enumerate() {
        port_mapping(&format!("{f}.portMappings[{j}]"), &c.name, p)?;
    }
    if let Some(r) = &c.restart_policy {
        if r.ignored_exit_codes.len() > 50 {
            return Err(format!(
                "Invalid {f}.restartPolicy.ignoredExitCodes: at most 50."
            ));
        }
        if let Some(p) = r.restart_attempt_period {
            rules::range(
                &format!("{f}.restartPolicy.restartAttemptPeriod"),
                p.into(),
                60,
                1800,
            )?;
        }
    }
    rules::argv(&format!("{f}.entryPoint"), &c.entry_point)?;
    rules::argv(&format!("{f}.command"), &c.command)?;
    rules::environment(&format!("{f}.environment"), &c.environment)?;
    if c.environment_files.len() > 10 {
        return Err(format!("Invalid {f}.environmentFiles: at most 10."));
    }
    for (j, e) in c.environment_files.iter().enumerate() {
        rules::one_of(&format!("{f}.environmentFiles[{j}].type"), &e.kind, &["s3"])?;
        rules::arn(&format!("{f}.environmentFiles[{j}].value"), &e.value)?;
    }
    for (j, m) in c.mount_points.iter().enumerate() {
        if let Some(p) = &m.container_path {
            rules::text(&format!("{f}.mountPoints[{j}].containerPath"), p, 4096)?;
        }
    }
    if let Some(l) = &c.linux_parameters {
        linux_parameters(&format!("{f}.linuxParameters"), l)?;
    }
    for (j, s) in c.secrets.iter().enumerate() {
        rules::required_text(&format!("{f}.secrets[{j}].name"), &s.name, 255)?;
        rules::required_text(&format!("{f}.secrets[{j}].valueFrom"), &s.value_from, 2048)?;
    }
    if let Some(t) = c.start_timeout {
        rules::range(&format!("{f}.startTimeout"), t, 2, 600)?;
    }
    if let Some(t) = c.stop_timeout {
        rules::range(&format!("{f}.stopTimeout"), t, 0, 120)?;
    }
    for (field, v, max) in [
        ("user", &c.user, 255),
        ("workingDirectory", &c.working_directory, 4096),
    ] {
        if let Some(v) = v {
            rules::text(&format!("{f}.{field}"), v, max)?;
        }
    }
    not_on_fargate(&format!("{f}.links"), !c.links.is_empty())?;
    not_on_fargate(&format!("{f}.hostname"), c.hostname.is_some())?;
    not_on_fargate(&format!("{f}.privileged"), c.privileged == Some(true))?;
    not_on_fargate(&format!("{f}.dnsServers"), !c.dns_servers.is_empty())?;
    not_on_fargate(
        &format!("{f}.dnsSearchDomains"),
        !c.dns_search_domains.is_empty(),
    )?;
    not_on_fargate(&format!("{f}.extraHosts"), !c.extra_hosts.is_empty())?;
    not_on_fargate(
        &format!("{f}.dockerSecurityOptions"),
        !c.docker_security_options.is_empty(),
    )?;
    not_on_fargate(
        &format!("{f}.resourceRequirements"),
        !c.resource_requirements.is_empty(),
    )?;
    not_on_fargate(
        &format!("{f}.credentialSpecs"),
        !c.credential_specs.is_empty(),
    )?;
    for (k, v) in &c.docker_labels {
        rules::required_text(&format!("{f}.dockerLabels key"), k, 255)?;
        rules::text(
            &format!("{f}.dockerLabels['{}']", rules::shorten(k)),
            v,
            4096,
        )?;
    }
    for (j, u) in c.ulimits.iter().enumerate() {
        if u.soft_limit > u.hard_limit {
            return Err(format!(
                "Invalid {f}.ulimits[{j}]: softLimit exceeds hardLimit."
            ));
        }
    }
    if let Some(l) = &c.log_configuration {
        log_configuration(&format!("{f}.logConfiguration"), &c.name, l)?;
    }
    if let Some(h) = &c.health_check {
        match h.command.first().map(String::as_str) {
            Some("CMD" | "CMD-SHELL") if h.command.len() > 1 => {}
            _ => {
                return Err(format!(
                    "Invalid {f}.healthCheck.command: [\"CMD\", ...] or [\"CMD-SHELL\", \"...\"]."
                ))
            }
        }
        rules::argv(&format!("{f}.healthCheck.command"), &h.command)?;
    }
    for (j, s) in c.system_controls.iter().enumerate() {
        for (field, v) in [("namespace", &s.namespace), ("value", &s.value)] {
            if let Some(v) = v {
                rules::text(&format!("{f}.systemControls[{j}].{field}"), v, 255)?;
            }
        }
    }
    if let Some(fl) = &c.firelens_configuration {
        rules::one_of(
            &format!("{f}.firelensConfiguration.type"),
            &fl.kind,
            &["fluentd", "fluentbit"],
        )?;
        for (k, v) in &fl.options {
            rules::required_text(&format!("{f}.firelensConfiguration.options key"), k, 255)?;
            rules::text(&format!("{f}.firelensConfiguration.options"), v, 4096)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(extra: serde_json::Value) -> ContainerDefinition {
        let mut v = json!({"name": "web", "image": "busybox"});
        if let (Some(m), Some(x)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(x.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    fn refusal(extra: serde_json::Value) -> String {
        check(0, &container(extra), 512).unwrap_err()
    }

    #[test]
    fn fargate_structures_are_checked_by_field() {
        assert!(check(0, &container(json!({})), 512).is_ok());
        let ok = json!({"linuxParameters": {"capabilities": {"add": ["SYS_PTRACE"], "drop": ["ALL"]},
                                             "initProcessEnabled": true},
                        "healthCheck": {"command": ["CMD-SHELL", "true"]},
                        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}});
        assert!(check(0, &container(ok), 512).is_ok());
        for (extra, needle) in [
            (
                json!({"linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}}}),
                "capabilities.add[0]",
            ),
            (
                json!({"linuxParameters": {"capabilities": {"drop": ["NOPE"]}}}),
                "capabilities.drop[0]",
            ),
            (
                json!({"linuxParameters": {"tmpfs": [{"containerPath": "/t", "size": 1}]}}),
                "tmpfs",
            ),
            (json!({"linuxParameters": {"maxSwap": 1}}), "maxSwap"),
            (
                json!({"logConfiguration": {"logDriver": "syslog"}}),
                "logDriver",
            ),
            (
                json!({"logConfiguration": {"logDriver": "awslogs"}}),
                "awslogs-group",
            ),
            (
                json!({"healthCheck": {"command": ["true"]}}),
                "healthCheck.command",
            ),
            (
                json!({"portMappings": [{"containerPort": 80, "hostPort": 81}]}),
                "must match",
            ),
            (
                json!({"portMappings": [{"containerPort": 80, "appProtocol": "ftp"}]}),
                "appProtocol",
            ),
            (
                json!({"environment": [{"name": "A=B", "value": ""}]}),
                "environment[0].name",
            ),
            (json!({"command": ["a\u{0}b"]}), "command[0]"),
            (json!({"hostname": "h"}), "hostname"),
            (json!({"privileged": true}), "privileged"),
            (json!({"stopTimeout": 121}), "stopTimeout"),
            (
                json!({"ulimits": [{"name": "nofile", "softLimit": 2, "hardLimit": 1}]}),
                "ulimits[0]",
            ),
            (
                json!({"secrets": [{"name": "", "valueFrom": "x"}]}),
                "secrets[0].name",
            ),
            (json!({"cpu": 20000}), "'cpu'"),
            (json!({"memory": 1024}), "exceeds the task memory"),
            (json!({"image": "bad image"}), "image"),
        ] {
            let e = refusal(extra.clone());
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }
}
