//! Checks a [`TaskSpec`] before anything is started, so bad input becomes one clear error.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::spec::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid task spec: {0}")]
pub struct SpecError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

/// Container and volume names: 1-255 of `[A-Za-z0-9_-]`, as ECS allows.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses `addr/prefix`, checking the prefix length against the address family.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), SpecError> {
    let Some((a, p)) = s.split_once('/') else {
        return err(format!("{s:?} is not in CIDR form (address/prefix)"));
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| SpecError(format!("{a:?} is not an IP address")))?;
    let prefix: u8 = p
        .parse()
        .map_err(|_| SpecError(format!("{p:?} is not a prefix length")))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return err(format!("prefix /{prefix} too long for {addr}"));
    }
    Ok((addr, prefix))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], SpecError> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return err(format!("{s:?} is not a MAC address"));
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return err(format!("{s:?} is not a MAC address"));
        }
        mac[i] = u8::from_str_radix(p, 16)
            .map_err(|_| SpecError(format!("{s:?} is not a MAC address")))?;
    }
    Ok(mac)
}

/// Decodes a hex string (entropy seed).
pub fn parse_hex(s: &str) -> Result<Vec<u8>, SpecError> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return err("entropySeed is not an even-length hex string");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| SpecError("bad hex".into())))
        .collect()
}

/// Parses a Linux ulimit name into its resource number.
pub fn ulimit_resource(name: &str) -> Option<u32> {
    Some(match name {
        "cpu" => 0,
        "fsize" => 1,
        "data" => 2,
        "stack" => 3,
        "core" => 4,
        "rss" => 5,
        "nproc" => 6,
        "nofile" => 7,
        "memlock" => 8,
        "locks" => 10,
        "sigpending" => 11,
        "msgqueue" => 12,
        "nice" => 13,
        "rtprio" => 14,
        "rttime" => 15,
        _ => return None,
    })
}

fn in_range(what: &str, v: Option<u32>, lo: u32, hi: u32) -> Result<(), SpecError> {
    match v {
        Some(v) if v < lo || v > hi => err(format!("{what} {v} outside {lo}..={hi}")),
        _ => Ok(()),
    }
}

fn validate_container(c: &ContainerSpec, volumes: &HashSet<&str>) -> Result<(), SpecError> {
    let n = &c.name;
    if !valid_name(n) {
        return err(format!(
            "container name {n:?} must be 1-255 letters, digits, '-' or '_'"
        ));
    }
    if c.root_device.is_empty() || !c.root_device.starts_with('/') {
        return err(format!(
            "container {n}: rootDevice must be an absolute path"
        ));
    }
    if c.entry_point.is_empty() && c.command.is_empty() {
        return err(format!(
            "container {n}: neither entryPoint nor command is set"
        ));
    }
    if c.entry_point
        .iter()
        .chain(&c.command)
        .any(|a| a.contains('\0'))
    {
        return err(format!("container {n}: NUL byte in entryPoint/command"));
    }
    for (k, v) in &c.environment {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return err(format!("container {n}: bad environment variable {k:?}"));
        }
    }
    if let Some(w) = &c.working_directory {
        if !w.starts_with('/') || w.contains('\0') {
            return err(format!(
                "container {n}: workingDirectory must be an absolute path"
            ));
        }
    }
    if let Some(u) = &c.user {
        if u.is_empty() || u.contains('\0') || u.split(':').count() > 2 {
            return err(format!("container {n}: user {u:?} is not user[:group]"));
        }
    }
    for u in &c.ulimits {
        if ulimit_resource(&u.name).is_none() {
            return err(format!("container {n}: unknown ulimit {:?}", u.name));
        }
        if u.soft_limit > u.hard_limit {
            return err(format!(
                "container {n}: ulimit {} soft limit above hard limit",
                u.name
            ));
        }
    }
    in_range(
        &format!("container {n}: stopTimeout"),
        c.stop_timeout,
        0,
        MAX_STOP_TIMEOUT_SECS,
    )?;
    if let (Some(r), Some(m)) = (c.memory_reservation, c.memory) {
        if r > m {
            return err(format!(
                "container {n}: memoryReservation {r} above memory {m}"
            ));
        }
    }
    if let Some(h) = &c.health_check {
        match h.command.first().map(String::as_str) {
            Some("CMD") if h.command.len() >= 2 => {}
            Some("CMD-SHELL") if h.command.len() == 2 => {}
            _ => return err(format!("container {n}: healthCheck command must be [\"CMD\", exe, ...] or [\"CMD-SHELL\", cmd]")),
        }
        in_range(
            &format!("container {n}: healthCheck interval"),
            h.interval,
            5,
            300,
        )?;
        in_range(
            &format!("container {n}: healthCheck timeout"),
            h.timeout,
            2,
            60,
        )?;
        in_range(
            &format!("container {n}: healthCheck retries"),
            h.retries,
            1,
            10,
        )?;
        in_range(
            &format!("container {n}: healthCheck startPeriod"),
            h.start_period,
            0,
            300,
        )?;
    }
    for m in &c.mount_points {
        if !volumes.contains(m.source_volume.as_str()) {
            return err(format!(
                "container {n}: mountPoint uses undeclared volume {:?}",
                m.source_volume
            ));
        }
        if !m.container_path.starts_with('/')
            || m.container_path == "/"
            || m.container_path.split('/').any(|p| p == "..")
        {
            return err(format!(
                "container {n}: bad containerPath {:?}",
                m.container_path
            ));
        }
    }
    Ok(())
}

/// Checks everything the guest relies on: names, references, dependency cycles, ranges,
/// addresses. Returns the first problem found.
pub fn validate_task(t: &TaskSpec) -> Result<(), SpecError> {
    if t.task_arn.is_empty() {
        return err("taskArn is empty");
    }
    if let Some(h) = &t.hostname {
        if h.is_empty()
            || h.len() > 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return err(format!("hostname {h:?} is not a valid host name"));
        }
    }
    if t.containers.is_empty() || t.containers.len() > MAX_CONTAINERS {
        return err(format!(
            "a task has 1 to {MAX_CONTAINERS} containers, not {}",
            t.containers.len()
        ));
    }
    for i in &t.interfaces {
        if i.mac.is_none() && i.name.is_none() {
            return err("an interface needs a mac or a name");
        }
        if let Some(m) = &i.mac {
            parse_mac(m)?;
        }
        for a in &i.addresses {
            parse_cidr(a)?;
        }
        if let Some(g) = &i.gateway {
            g.parse::<IpAddr>()
                .map_err(|_| SpecError(format!("gateway {g:?} is not an IP address")))?;
        }
        for r in &i.routes {
            parse_cidr(&r.destination)?;
            if let Some(v) = &r.via {
                v.parse::<IpAddr>()
                    .map_err(|_| SpecError(format!("route via {v:?} is not an IP address")))?;
            }
        }
    }
    for ns in &t.dns.nameservers {
        ns.parse::<IpAddr>()
            .map_err(|_| SpecError(format!("nameserver {ns:?} is not an IP address")))?;
    }
    if t.dns
        .search
        .iter()
        .any(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return err("bad DNS search domain");
    }
    if let Some(s) = &t.entropy_seed {
        parse_hex(s)?;
    }
    let mut volumes = HashSet::new();
    for v in &t.volumes {
        if !valid_name(&v.name) || !volumes.insert(v.name.as_str()) {
            return err(format!("volume name {:?} is invalid or duplicated", v.name));
        }
    }
    let mut by_name: HashMap<&str, &ContainerSpec> = HashMap::new();
    for c in &t.containers {
        validate_container(c, &volumes)?;
        if by_name.insert(c.name.as_str(), c).is_some() {
            return err(format!("duplicate container name {:?}", c.name));
        }
    }
    if !t.containers.iter().any(|c| c.essential) {
        return err("at least one container must be essential");
    }
    for c in &t.containers {
        for d in &c.depends_on {
            let Some(dep) = by_name.get(d.container_name.as_str()) else {
                return err(format!(
                    "container {}: dependsOn unknown container {:?}",
                    c.name, d.container_name
                ));
            };
            if dep.name == c.name {
                return err(format!("container {} depends on itself", c.name));
            }
            if d.condition == Condition::Healthy && dep.health_check.is_none() {
                return err(format!(
                    "container {}: HEALTHY condition on {} which has no healthCheck",
                    c.name, dep.name
                ));
            }
        }
    }
    check_acyclic(t)?;
    Ok(())
}

/// Depth-first search for a dependsOn cycle.
fn check_acyclic(t: &TaskSpec) -> Result<(), SpecError> {
    let idx: HashMap<&str, usize> = t
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut mark = vec![0u8; t.containers.len()];
    fn visit(
        i: usize,
        t: &TaskSpec,
        idx: &HashMap<&str, usize>,
        mark: &mut [u8],
    ) -> Result<(), SpecError> {
        match mark[i] {
            1 => {
                return err(format!(
                    "dependsOn cycle through container {}",
                    t.containers[i].name
                ))
            }
            2 => return Ok(()),
            _ => {}
        }
        mark[i] = 1;
        for d in &t.containers[i].depends_on {
            if let Some(&j) = idx.get(d.container_name.as_str()) {
                visit(j, t, idx, mark)?;
            }
        }
        mark[i] = 2;
        Ok(())
    }
    for i in 0..t.containers.len() {
        visit(i, t, &idx, &mut mark)?;
    }
    Ok(())
}
