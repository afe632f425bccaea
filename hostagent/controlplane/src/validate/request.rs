//! The rules of the parameters RunTask, CreateService, UpdateService and
//! CreateCluster store: network configuration, overrides, load balancers, cluster
//! settings, `startedBy`, `group`. Refusals are `InvalidParameterException`s, as ECS
//! gives them.

use super::rules::{self, shorten};
use super::{parse_cpu, parse_memory, Invalid};
use crate::model::{
    AwsVpcConfiguration, CapacityProviderStrategyItem, KeyValuePair, LoadBalancer,
    NetworkConfiguration, TaskDefinition, TaskOverride,
};

fn bad(m: impl Into<String>) -> Invalid {
    Invalid::Parameter(m.into())
}

/// Most subnets of a task's ENI.
pub const MAX_SUBNETS: usize = 16;
/// Most security groups of a task's ENI.
pub const MAX_SECURITY_GROUPS: usize = 5;
/// ECS: the `overrides` of a RunTask, as JSON, are at most 8192 characters.
pub const MAX_OVERRIDES: usize = 8192;

/// Validates a `networkConfiguration` the way ECS does for awsvpc tasks.
pub fn network(n: Option<&NetworkConfiguration>) -> Result<AwsVpcConfiguration, Invalid> {
    let a = n
        .and_then(|n| n.awsvpc_configuration.as_ref())
        .ok_or_else(|| {
            bad("Network Configuration must be provided when networkMode 'awsvpc' is specified.")
        })?;
    if a.subnets.is_empty() {
        return Err(bad("subnets can not be empty."));
    }
    if a.subnets.len() > MAX_SUBNETS {
        return Err(bad(format!(
            "subnets can have at most {MAX_SUBNETS} items."
        )));
    }
    if a.security_groups.len() > MAX_SECURITY_GROUPS {
        return Err(bad(format!(
            "securityGroups can have at most {MAX_SECURITY_GROUPS} items."
        )));
    }
    for s in &a.subnets {
        if !rules::network_id(s, "subnet-") {
            let s = shorten(s);
            return Err(bad(format!(
                "Error retrieving subnet information for [{s}]: The subnet ID '{s}' is malformed \
                 (awsvpcConfiguration.subnets: 'subnet-' and 1 to 32 letters, numbers, hyphens)"
            )));
        }
    }
    for g in &a.security_groups {
        if !rules::network_id(g, "sg-") {
            let g = shorten(g);
            return Err(bad(format!(
                "Error retrieving security group information for [{g}]: The security group ID \
                 '{g}' is malformed (awsvpcConfiguration.securityGroups: 'sg-' and 1 to 32 \
                 letters, numbers, hyphens)"
            )));
        }
    }
    if a.assign_public_ip != "ENABLED" && a.assign_public_ip != "DISABLED" {
        return Err(bad(format!(
            "assignPublicIp must be ENABLED or DISABLED, not {}",
            shorten(&a.assign_public_ip)
        )));
    }
    Ok(a.clone())
}

/// `tags` of a request.
pub fn tags(t: &[crate::model::Tag]) -> Result<(), Invalid> {
    rules::tags("tags", t).map_err(bad)
}

/// `tagKeys` of UntagResource: 1 to 50 keys, none reserved.
pub fn tag_keys(keys: &[String]) -> Result<(), Invalid> {
    if keys.is_empty() || keys.len() > 50 {
        return Err(bad("tagKeys must have 1 to 50 items."));
    }
    for (i, k) in keys.iter().enumerate() {
        rules::tag_key(&format!("tagKeys[{i}]"), k).map_err(bad)?;
    }
    Ok(())
}

/// The tags of a resource after a change: at most 50 set by users (the `aws:` tags
/// ECS manages do not count).
pub fn tag_count(all: &[crate::model::Tag]) -> Result<(), Invalid> {
    let n = all
        .iter()
        .filter(|t| !t.key.to_ascii_lowercase().starts_with("aws:"))
        .count();
    if n > 50 {
        return Err(bad(format!(
            "A resource can have at most 50 tags; this change would leave {n}."
        )));
    }
    Ok(())
}

/// `startedBy`: up to 128 letters, digits, `-`, `_`, `/`.
pub fn started_by(s: Option<&str>) -> Result<(), Invalid> {
    let Some(s) = s else { return Ok(()) };
    if s.len() > 128 {
        return Err(bad("startedBy can be at most 128 characters."));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b))
    {
        return Err(bad(
            "startedBy: up to 128 letters (uppercase and lowercase), numbers, hyphens, forward \
             slashes and underscores are allowed.",
        ));
    }
    Ok(())
}

/// `group` of RunTask: at most 255 characters, no control characters.
pub fn group(s: Option<&str>) -> Result<(), Invalid> {
    match s {
        Some(g) => rules::required_text("group", g, 255).map_err(bad),
        None => Ok(()),
    }
}

/// `overrides` of RunTask against the task definition `td`.
pub fn overrides(o: &TaskOverride, td: &TaskDefinition) -> Result<(), Invalid> {
    for (i, c) in o.container_overrides.iter().enumerate() {
        let f = format!("overrides.containerOverrides[{i}]");
        if !td.container_definitions.iter().any(|d| d.name == c.name) {
            return Err(bad(format!(
                "Override for container named {} is not a container in the TaskDefinition.",
                shorten(&c.name)
            )));
        }
        if let Some(cmd) = &c.command {
            rules::argv(&format!("{f}.command"), cmd).map_err(bad)?;
        }
        rules::environment(&format!("{f}.environment"), &c.environment).map_err(bad)?;
        for (j, e) in c.environment_files.iter().enumerate() {
            rules::one_of(&format!("{f}.environmentFiles[{j}].type"), &e.kind, &["s3"])
                .and_then(|()| rules::arn(&format!("{f}.environmentFiles[{j}].value"), &e.value))
                .map_err(bad)?;
        }
        for (field, v) in [
            ("cpu", c.cpu),
            ("memory", c.memory),
            ("memoryReservation", c.memory_reservation),
        ] {
            if let Some(v) = v {
                rules::range(&format!("{f}.{field}"), v, 0, 10240 * 30).map_err(bad)?;
            }
        }
        if !c.resource_requirements.is_empty() {
            return Err(bad(format!(
                "{f}.resourceRequirements is not supported on Fargate."
            )));
        }
    }
    if let Some(c) = &o.cpu {
        parse_cpu(c).ok_or_else(|| bad(format!("Invalid overrides.cpu '{}'.", shorten(c))))?;
    }
    if let Some(m) = &o.memory {
        parse_memory(m)
            .ok_or_else(|| bad(format!("Invalid overrides.memory '{}'.", shorten(m))))?;
    }
    for (f, v) in [
        ("overrides.taskRoleArn", &o.task_role_arn),
        ("overrides.executionRoleArn", &o.execution_role_arn),
    ] {
        if let Some(v) = v {
            rules::role(f, v).map_err(bad)?;
        }
    }
    if let Some(e) = &o.ephemeral_storage {
        rules::range(
            "overrides.ephemeralStorage.sizeInGiB",
            e.size_in_gi_b,
            21,
            200,
        )
        .map_err(bad)?;
    }
    if !o.inference_accelerator_overrides.is_empty() {
        return Err(bad(
            "overrides.inferenceAcceleratorOverrides is not supported on Fargate.",
        ));
    }
    let size = serde_json::to_string(o)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_OVERRIDES {
        return Err(bad(format!(
            "overrides: {size} characters of JSON, more than the {MAX_OVERRIDES} allowed."
        )));
    }
    Ok(())
}

/// `loadBalancers` of CreateService against the task definition `td`.
pub fn load_balancers(lbs: &[LoadBalancer], td: &TaskDefinition) -> Result<(), Invalid> {
    if lbs.len() > 5 {
        return Err(bad("loadBalancers can have at most 5 items."));
    }
    for (i, lb) in lbs.iter().enumerate() {
        let f = format!("loadBalancers[{i}]");
        if let Some(a) = &lb.target_group_arn {
            rules::arn(&format!("{f}.targetGroupArn"), a).map_err(bad)?;
        }
        if let Some(n) = &lb.load_balancer_name {
            rules::required_text(&format!("{f}.loadBalancerName"), n, 32).map_err(bad)?;
        }
        let name = lb.container_name.as_deref().unwrap_or("");
        if !td.container_definitions.iter().any(|d| d.name == name) {
            return Err(bad(format!(
                "{f}.containerName '{}' is not a container in the TaskDefinition.",
                shorten(name)
            )));
        }
        let port = lb
            .container_port
            .ok_or_else(|| bad(format!("{f}.containerPort is required.")))?;
        rules::port(&format!("{f}.containerPort"), port).map_err(bad)?;
    }
    Ok(())
}

/// `settings` of CreateCluster.
pub fn cluster_settings(settings: &[KeyValuePair]) -> Result<(), Invalid> {
    for (i, s) in settings.iter().enumerate() {
        rules::one_of(
            &format!("settings[{i}].name"),
            &s.name,
            &["containerInsights"],
        )
        .and_then(|()| {
            rules::one_of(
                &format!("settings[{i}].value"),
                &s.value,
                &["enabled", "disabled", "enhanced"],
            )
        })
        .map_err(bad)?;
    }
    Ok(())
}

/// `capacityProviders` of CreateCluster and PutClusterCapacityProviders: the
/// built-in `FARGATE` and `FARGATE_SPOT` (no other provider can be created here),
/// each once.
pub fn capacity_providers(p: &[String]) -> Result<(), Invalid> {
    if p.len() > 20 {
        return Err(bad("capacityProviders can have at most 20 items."));
    }
    for (i, n) in p.iter().enumerate() {
        rules::name(&format!("capacityProviders[{i}]"), n).map_err(bad)?;
        if !crate::capacity::BUILT_IN.contains(&n.as_str()) {
            return Err(bad(format!(
                "The capacity provider {n} does not exist: FARGATE and FARGATE_SPOT are served."
            )));
        }
        if p[..i].contains(n) {
            return Err(bad(format!("capacityProviders lists {n} twice.")));
        }
    }
    Ok(())
}

/// A `capacityProviderStrategy` (or a cluster's default one) over the providers
/// `associated` with the cluster: at most 20 items, each provider once and
/// associated, `base` 0-100000 on at most one item, `weight` 0-1000 and above 0 on
/// at least one item.
pub fn capacity_provider_strategy(
    items: &[CapacityProviderStrategyItem],
    associated: &[String],
) -> Result<(), Invalid> {
    if items.is_empty() {
        return Ok(());
    }
    if items.len() > 20 {
        return Err(bad("capacityProviderStrategy can have at most 20 items."));
    }
    for (i, it) in items.iter().enumerate() {
        let p = &it.capacity_provider;
        if !associated.contains(p) {
            return Err(bad(format!(
                "The specified capacity provider strategy cannot contain a capacity provider \
                 that is not associated with the cluster: {}.",
                p.chars().take(64).collect::<String>()
            )));
        }
        if items[..i].iter().any(|o| &o.capacity_provider == p) {
            return Err(bad(format!("capacityProviderStrategy lists {p} twice.")));
        }
        if !(0..=100_000).contains(&it.base) {
            return Err(bad(
                "capacityProviderStrategy base must be between 0 and 100000.",
            ));
        }
        if !(0..=1000).contains(&it.weight) {
            return Err(bad(
                "capacityProviderStrategy weight must be between 0 and 1000.",
            ));
        }
    }
    if items.iter().filter(|i| i.base > 0).count() > 1 {
        return Err(bad(
            "Only one capacity provider in a capacity provider strategy can have a base defined.",
        ));
    }
    if items.iter().all(|i| i.weight == 0) {
        return Err(bad(
            "At least one capacity provider in a capacity provider strategy must have a weight greater than zero.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn net(v: serde_json::Value) -> NetworkConfiguration {
        serde_json::from_value(json!({ "awsvpcConfiguration": v })).unwrap()
    }

    #[test]
    fn network_ids_are_bounded() {
        assert!(network(Some(&net(
            json!({"subnets": ["subnet-0a1b2c3d"], "securityGroups": ["sg-web"]})
        )))
        .is_ok());
        let long = format!("subnet-{}", "a".repeat(249));
        for bad in [
            json!({"subnets": []}),
            json!({"subnets": [long]}),
            json!({"subnets": ["vpc-1"]}),
            json!({"subnets": ["subnet-1"], "securityGroups": ["sg-"]}),
            json!({"subnets": ["subnet-1"], "assignPublicIp": "MAYBE"}),
        ] {
            let e = network(Some(&net(bad.clone()))).unwrap_err();
            assert!(matches!(e, Invalid::Parameter(_)), "{bad}: {e}");
            assert!(
                e.to_string().len() < 400,
                "the message quotes a short id: {e}"
            );
        }
    }

    #[test]
    fn overrides_are_bounded() {
        let td: TaskDefinition = serde_json::from_value(json!({
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/f:1", "family": "f",
            "revision": 1, "status": "ACTIVE", "cpu": "256", "memory": "512",
            "networkMode": "awsvpc", "requiresCompatibilities": [], "compatibilities": [],
            "registeredAt": 0.0,
            "containerDefinitions": [{"name": "web", "image": "busybox"}]
        }))
        .unwrap();
        let o = |v: serde_json::Value| serde_json::from_value::<TaskOverride>(v).unwrap();
        assert!(overrides(
            &o(json!({"containerOverrides": [{"name": "web", "command": ["x"]}]})),
            &td
        )
        .is_ok());
        for bad in [
            json!({"containerOverrides": [{"name": "other"}]}),
            json!({"containerOverrides": [{"name": "web", "command": ["x".repeat(9000)]}]}),
            json!({"containerOverrides": [{"name": "web", "cpu": -1}]}),
            json!({"cpu": "lots"}),
            json!({"taskRoleArn": "not a role"}),
            json!({"ephemeralStorage": {"sizeInGiB": 5}}),
        ] {
            assert!(overrides(&o(bad.clone()), &td).is_err(), "{bad}");
        }
    }
}
