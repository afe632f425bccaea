//! The host's netd configuration file (TOML) and its validation.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::error::{invalid, Error, Result};
use crate::model::{validate_name, Protocol, Rule};

/// Top-level configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// API Unix socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Persisted state (JSON, replaced atomically by rename).
    #[serde(default = "default_state")]
    pub state_file: PathBuf,
    /// Name of netd's nftables table (family inet).
    #[serde(default = "default_table")]
    pub nft_table: String,
    /// Prefix of task namespace names: `<prefix><task id>` under /var/run/netns.
    #[serde(default = "default_netns_prefix")]
    pub netns_prefix: String,
    /// Prefix (1-5 chars) of host interface names netd owns (veths, gateway dummies).
    #[serde(default = "default_ifname_prefix")]
    pub ifname_prefix: String,
    /// Uplink interface: outbound traffic of tasks is masqueraded on it.
    #[serde(default)]
    pub uplink: Option<String>,
    /// Subnets tasks get addresses from.
    #[serde(default, rename = "subnet")]
    pub subnets: Vec<SubnetConfig>,
    /// Opt-in filter of what the host's own interfaces accept.
    #[serde(default)]
    pub host_input: Option<HostInputConfig>,
}

/// One subnet: routed /32 per ENI, gateway held by the host.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetConfig {
    pub name: String,
    pub cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Extra addresses IPAM never hands out.
    #[serde(default)]
    pub reserved: Vec<Ipv4Addr>,
}

/// Host-to-host policy: on `interfaces`, accept only established traffic and `allow`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInputConfig {
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub allow: Vec<Rule>,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/netd/netd.sock")
}
fn default_state() -> PathBuf {
    PathBuf::from("/var/lib/netd/state.json")
}
fn default_table() -> String {
    "netd".into()
}
fn default_netns_prefix() -> String {
    "netd-".into()
}
fn default_ifname_prefix() -> String {
    "nd".into()
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Invalid(format!("reading config {}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| Error::Invalid(format!("config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Looks a subnet up by name.
    pub fn subnet(&self, name: &str) -> Option<&SubnetConfig> {
        self.subnets.iter().find(|s| s.name == name)
    }

    /// Name of the host (port-less bridge) interface holding a subnet's gateway address.
    pub fn gateway_ifname(&self, subnet: &str) -> String {
        format!("{}g{}", self.ifname_prefix, subnet)
    }

    fn validate(&self) -> Result<()> {
        validate_name("nft table", &self.nft_table)?;
        validate_name("netns prefix", &self.netns_prefix)?;
        let p = &self.ifname_prefix;
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_lowercase()) {
            return invalid("ifname_prefix must be 1-5 lowercase letters");
        }
        let max_subnet = 15 - p.len() - 1;
        for (i, s) in self.subnets.iter().enumerate() {
            validate_name("subnet", &s.name)?;
            if s.name.len() > max_subnet {
                return invalid(format!(
                    "subnet name {:?} longer than {max_subnet} characters",
                    s.name
                ));
            }
            if s.cidr.prefix_len() > 30 {
                return invalid(format!("subnet {}: prefix must be /30 or larger", s.name));
            }
            if s.cidr.network() != s.cidr.addr() {
                return invalid(format!("subnet {}: {} has host bits set", s.name, s.cidr));
            }
            let usable = s.gateway != s.cidr.network() && s.gateway != s.cidr.broadcast();
            if !s.cidr.contains(&s.gateway) || !usable {
                return invalid(format!(
                    "subnet {}: gateway {} is not a host address of {}",
                    s.name, s.gateway, s.cidr
                ));
            }
            for o in &self.subnets[..i] {
                if o.name == s.name {
                    return invalid(format!("subnet {} defined twice", s.name));
                }
                if o.cidr.contains(&s.cidr.network()) || s.cidr.contains(&o.cidr.network()) {
                    return invalid(format!(
                        "subnets {} ({}) and {} ({}) overlap",
                        o.name, o.cidr, s.name, s.cidr
                    ));
                }
            }
        }
        if let Some(h) = &self.host_input {
            if h.interfaces.is_empty() {
                return invalid("host_input.interfaces must name at least one interface");
            }
            for r in &h.allow {
                r.validate()?;
                if r.group.is_some() {
                    return invalid("host_input rules take a cidr, not a group");
                }
                if r.protocol == Protocol::All && r.cidr.is_none() {
                    return invalid("host_input: protocol all needs a cidr");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [[subnet]]
        name = "svc"
        cidr = "10.20.0.0/24"
        gateway = "10.20.0.1"
        dns = ["10.20.0.2"]
    "#;

    #[test]
    fn parses_defaults() {
        let c = Config::parse(BASE).unwrap();
        assert_eq!(c.nft_table, "netd");
        assert_eq!(
            c.subnet("svc").unwrap().dns,
            vec![Ipv4Addr::new(10, 20, 0, 2)]
        );
        assert_eq!(c.gateway_ifname("svc"), "ndgsvc");
    }

    #[test]
    fn rejects_overlap() {
        let text = format!(
            "{BASE}\n[[subnet]]\nname = \"cust\"\ncidr = \"10.20.0.128/25\"\ngateway = \"10.20.0.129\"\n"
        );
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("overlap"), "{e}");
    }

    #[test]
    fn rejects_gateway_outside() {
        let text = "[[subnet]]\nname = \"a\"\ncidr = \"10.1.0.0/24\"\ngateway = \"10.2.0.1\"\n";
        assert!(Config::parse(text)
            .unwrap_err()
            .to_string()
            .contains("gateway"));
        let text = "[[subnet]]\nname = \"a\"\ncidr = \"10.1.0.0/24\"\ngateway = \"10.1.0.0\"\n";
        assert!(Config::parse(text).is_err());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_rules() {
        assert!(Config::parse("bogus = 1").is_err());
        let text = format!(
            "{BASE}\n[host_input]\ninterfaces = [\"eth0\"]\nallow = [{{ protocol = \"icmp\", from_port = 1, cidr = \"0.0.0.0/0\" }}]\n"
        );
        assert!(Config::parse(&text)
            .unwrap_err()
            .to_string()
            .contains("ports"));
    }
}
