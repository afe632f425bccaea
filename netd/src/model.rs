//! Wire and state types: security groups, rules, ENIs, tasks; and their validation.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

/// Layer-4 protocol a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

/// One security-group rule. For ingress `cidr`/`group` is the source, for egress the destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub protocol: Protocol,
    /// First port (tcp/udp only); absent = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_port: Option<u16>,
    /// Last port (inclusive); absent = `from_port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_port: Option<u16>,
    /// Peer address range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Ipv4Net>,
    /// Peer security group: every ENI that is a member of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Rule {
    /// Port range this rule matches, if it restricts ports.
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.from_port.map(|f| (f, self.to_port.unwrap_or(f)))
    }

    /// Checks the rule on its own (group existence is checked by the caller).
    pub fn validate(&self) -> Result<()> {
        match (&self.cidr, &self.group) {
            (Some(_), Some(_)) => return invalid("rule: give either cidr or group, not both"),
            (None, None) => return invalid("rule: one of cidr or group is required"),
            (_, Some(g)) => validate_name("security group", g)?,
            _ => {}
        }
        let l4_ports = matches!(self.protocol, Protocol::Tcp | Protocol::Udp);
        match (self.from_port, self.to_port) {
            (None, Some(_)) => return invalid("rule: to_port without from_port"),
            (Some(_), _) if !l4_ports => {
                return invalid("rule: ports are only allowed for tcp and udp")
            }
            (Some(f), Some(t)) if f > t => {
                return invalid(format!("rule: from_port {f} is greater than to_port {t}"))
            }
            (Some(0), _) => return invalid("rule: port 0 is not a valid port"),
            _ => {}
        }
        Ok(())
    }
}

/// A security group: a named set of allow rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupSpec {
    #[serde(default)]
    pub ingress: Vec<Rule>,
    #[serde(default)]
    pub egress: Vec<Rule>,
}

/// A stored security group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub name: String,
    #[serde(flatten)]
    pub spec: SecurityGroupSpec,
}

impl SecurityGroup {
    /// Names of the groups its rules refer to.
    pub fn referenced_groups(&self) -> impl Iterator<Item = &str> {
        self.spec
            .ingress
            .iter()
            .chain(&self.spec.egress)
            .filter_map(|r| r.group.as_deref())
    }
}

/// One requested ENI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EniRequest {
    pub subnet: String,
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Optional public IPv4 mapped 1:1 (DNAT in, SNAT out on the uplink) to this ENI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<Ipv4Addr>,
}

/// `PUT /v1/tasks/{id}` body: a primary ENI and optionally a secondary one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    pub enis: Vec<EniRequest>,
    /// Owner uid of the tap devices (the jailed vmm's uid), so it can attach without root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_gid: Option<u32>,
}

/// A live ENI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eni {
    pub id: String,
    /// 0 = primary, 1 = secondary.
    pub index: u8,
    pub subnet: String,
    /// Tap device name inside the task's netns (the vmm's `host_dev_name`).
    pub tap: String,
    /// Guest MAC (the vmm's `guest_mac`).
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub security_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<Ipv4Addr>,
    /// Host-side veth carrying this ENI's traffic (routed /32).
    pub host_if: String,
}

/// A task's network: its namespace and ENIs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: String,
    /// Namespace name (`ip netns` name).
    pub netns: String,
    /// Path for `jailer --netns`.
    pub netns_path: String,
    pub enis: Vec<Eni>,
    /// The request that created it (for idempotent re-PUTs).
    pub request: CreateTaskRequest,
}

/// `PUT /v1/tasks/{id}/enis/{index}/security-groups` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetGroupsRequest {
    pub security_groups: Vec<String>,
}

/// Persisted daemon state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub tasks: BTreeMap<String, Task>,
    #[serde(default)]
    pub security_groups: BTreeMap<String, SecurityGroup>,
    /// IPAM cursor per subnet: offset of the last address handed out.
    #[serde(default)]
    pub cursors: BTreeMap<String, u32>,
}

/// Names: task ids, security groups, subnets. ASCII letters, digits, `-`, `_`; 1..=64 chars.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        invalid(format!(
            "{what} name {name:?} must be 1-64 characters of [A-Za-z0-9_-]"
        ))
    }
}

/// Validates a group spec on its own; `exists` tells whether a referenced group exists.
pub fn validate_group(
    name: &str,
    spec: &SecurityGroupSpec,
    exists: impl Fn(&str) -> bool,
) -> Result<()> {
    validate_name("security group", name)?;
    for r in spec.ingress.iter().chain(&spec.egress) {
        r.validate()?;
        if let Some(g) = &r.group {
            if g != name && !exists(g) {
                return invalid(format!("rule refers to unknown security group {g:?}"));
            }
        }
    }
    Ok(())
}
