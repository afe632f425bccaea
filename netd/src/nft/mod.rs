//! Security groups, NAT and host policy compiled to nftables JSON documents (serde_json),
//! each applied as ONE atomic transaction through `nft -j -f -`.
//!
//! Layout of netd's table (`inet <nft_table>`):
//! - base chains `forward_egress` (forward, prio 0) and `forward_ingress` (forward, prio 1):
//!   an `accept` in the first still lets the second judge the packet, so a task-to-task
//!   packet must pass the sender's egress AND the receiver's ingress;
//! - verdict maps `eni_egress` / `eni_ingress`: host veth name -> `jump eni_<id>_out|in`;
//! - per-ENI chains `eni_<id>_out` (anti-spoof, jumps to its groups, drop) and `eni_<id>_in`;
//! - per-group chains `sg_<name>_in|out` (the rules, each `accept`) and set `sg_<name>`
//!   (member IPs, used by rules that name the group as peer);
//! - `task_input` / `task_to_host`: what tasks may send to the host itself;
//! - `nat_pre` / `nat_post`: public-IP DNAT/SNAT maps and uplink masquerade;
//! - `host_input` / `host_filter`: opt-in host-to-host policy on configured interfaces.

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{Eni, SecurityGroup, State};

mod expr;
use expr::*;

/// A transaction under construction for one table.
pub struct Tx {
    table: String,
    cmds: Vec<Value>,
}

impl Tx {
    /// An empty transaction on `table`.
    pub fn new(table: &str) -> Tx {
        Tx {
            table: table.to_string(),
            cmds: Vec::new(),
        }
    }

    /// True when there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    fn cmd(&mut self, verb: &str, kind: &str, mut body: Value) {
        body["family"] = json!("inet");
        if kind == "table" {
            body["name"] = json!(self.table);
        } else {
            body["table"] = json!(self.table);
        }
        self.cmds.push(json!({ verb: { kind: body } }));
    }
    fn chain(&mut self, name: &str) {
        self.cmd("add", "chain", json!({"name": name}));
    }
    fn base_chain(&mut self, name: &str, kind: &str, hook: &str, prio: i32) {
        let body =
            json!({"name": name, "type": kind, "hook": hook, "prio": prio, "policy": "accept"});
        self.cmd("add", "chain", body);
    }
    fn rule(&mut self, chain: &str, expr: Vec<Value>) {
        self.cmd("add", "rule", json!({"chain": chain, "expr": expr}));
    }
    fn elems(&mut self, verb: &str, set: &str, elem: Vec<Value>) {
        if !elem.is_empty() {
            self.cmd(verb, "element", json!({"name": set, "elem": elem}));
        }
    }

    /// Replaces the whole table with the one for `state`, in one transaction.
    pub fn full(cfg: &Config, state: &State) -> Tx {
        let mut tx = Tx::new(&cfg.nft_table);
        tx.cmd("add", "table", json!({}));
        tx.cmd("delete", "table", json!({}));
        tx.cmd("add", "table", json!({}));
        for (name, kind) in [("eni_egress", "verdict"), ("eni_ingress", "verdict")] {
            tx.cmd(
                "add",
                "map",
                json!({"name": name, "type": "ifname", "map": kind}),
            );
        }
        for name in ["public_dnat", "public_snat"] {
            tx.cmd(
                "add",
                "map",
                json!({"name": name, "type": "ipv4_addr", "map": "ipv4_addr"}),
            );
        }
        tx.cmd("add", "set", json!({"name": "eni_ifs", "type": "ifname"}));
        // Groups first (ENI chains jump to them; group rules may name each other's sets).
        for sg in state.security_groups.values() {
            tx.cmd(
                "add",
                "set",
                json!({"name": sg_set(&sg.name), "type": "ipv4_addr"}),
            );
        }
        for sg in state.security_groups.values() {
            tx.add_group_chains(sg);
        }
        for eni in state.tasks.values().flat_map(|t| &t.enis) {
            tx.add_eni(eni);
        }
        tx.base(cfg);
        tx
    }

    fn base(&mut self, cfg: &Config) {
        self.base_chain("forward_egress", "filter", "forward", 0);
        self.rule("forward_egress", vec![ct_established(), accept()]);
        let vmap =
            |k: &str, map: &str| json!({"vmap": {"key": meta(k), "data": format!("@{map}")}});
        self.rule("forward_egress", vec![vmap("iifname", "eni_egress")]);
        self.base_chain("forward_ingress", "filter", "forward", 1);
        self.rule("forward_ingress", vec![ct_established(), accept()]);
        self.rule("forward_ingress", vec![vmap("oifname", "eni_ingress")]);

        self.chain("task_to_host");
        self.rule("task_to_host", vec![ct_established(), accept()]);
        self.rule(
            "task_to_host",
            vec![m("==", meta("l4proto"), json!("icmp")), accept()],
        );
        for p in ["udp", "tcp"] {
            let e = vec![
                m("==", meta("l4proto"), json!(p)),
                m("==", payload(p, "dport"), json!(53)),
                accept(),
            ];
            self.rule("task_to_host", e);
        }
        self.rule("task_to_host", vec![drop_()]);
        self.base_chain("task_input", "filter", "input", 0);
        let from_task = m("==", meta("iifname"), json!("@eni_ifs"));
        self.rule("task_input", vec![from_task, jump("task_to_host")]);

        self.base_chain("nat_pre", "nat", "prerouting", -100);
        let dnat = json!({"dnat": {"family": "ip", "addr": {"map": {"key": payload("ip", "daddr"), "data": "@public_dnat"}}}});
        self.rule(
            "nat_pre",
            vec![m("==", meta("nfproto"), json!("ipv4")), dnat],
        );
        self.base_chain("nat_post", "nat", "postrouting", 100);
        if let Some(up) = &cfg.uplink {
            let snat = json!({"snat": {"family": "ip", "addr": {"map": {"key": payload("ip", "saddr"), "data": "@public_snat"}}}});
            self.rule(
                "nat_post",
                vec![
                    m("==", meta("oifname"), json!(up)),
                    m("==", meta("nfproto"), json!("ipv4")),
                    snat,
                ],
            );
            for s in &cfg.subnets {
                let src = json!({"prefix": {"addr": s.cidr.network().to_string(), "len": s.cidr.prefix_len()}});
                let e = vec![
                    m("==", meta("oifname"), json!(up)),
                    m("==", payload("ip", "saddr"), src),
                    json!({"masquerade": null}),
                ];
                self.rule("nat_post", e);
            }
        }
        if let Some(h) = &cfg.host_input {
            self.chain("host_filter");
            self.rule("host_filter", vec![ct_established(), accept()]);
            for r in &h.allow {
                self.rule("host_filter", rule_exprs(r, "saddr"));
            }
            self.rule("host_filter", vec![drop_()]);
            self.base_chain("host_input", "filter", "input", -1);
            let ifs = json!({"set": h.interfaces});
            self.rule(
                "host_input",
                vec![m("==", meta("iifname"), ifs), jump("host_filter")],
            );
        }
    }

    fn group_rules(&mut self, sg: &SecurityGroup) {
        for r in &sg.spec.ingress {
            self.rule(&sg_chain(&sg.name, "in"), rule_exprs(r, "saddr"));
        }
        for r in &sg.spec.egress {
            self.rule(&sg_chain(&sg.name, "out"), rule_exprs(r, "daddr"));
        }
    }

    fn add_group_chains(&mut self, sg: &SecurityGroup) {
        self.chain(&sg_chain(&sg.name, "in"));
        self.chain(&sg_chain(&sg.name, "out"));
        self.group_rules(sg);
    }

    /// Creates a group's member set and chains.
    pub fn add_group(&mut self, sg: &SecurityGroup) {
        self.cmd(
            "add",
            "set",
            json!({"name": sg_set(&sg.name), "type": "ipv4_addr"}),
        );
        self.add_group_chains(sg);
    }

    /// Replaces a group's rules (members and ENI chains are untouched).
    pub fn update_group(&mut self, sg: &SecurityGroup) {
        for dir in ["in", "out"] {
            self.cmd("flush", "chain", json!({"name": sg_chain(&sg.name, dir)}));
        }
        self.group_rules(sg);
    }

    /// Removes a group that nothing uses any more.
    pub fn delete_group(&mut self, name: &str) {
        for dir in ["in", "out"] {
            self.cmd("flush", "chain", json!({"name": sg_chain(name, dir)}));
            self.cmd("delete", "chain", json!({"name": sg_chain(name, dir)}));
        }
        self.cmd("delete", "set", json!({"name": sg_set(name)}));
    }

    fn eni_rules(&mut self, eni: &Eni) {
        let out = eni_chain(eni, "out");
        let inn = eni_chain(eni, "in");
        self.rule(&out, vec![m("!=", meta("nfproto"), json!("ipv4")), drop_()]);
        let spoof = m("!=", payload("ip", "saddr"), json!(eni.ip.to_string()));
        self.rule(&out, vec![spoof, drop_()]);
        for g in &eni.security_groups {
            self.rule(&out, vec![jump(&sg_chain(g, "out"))]);
            self.rule(&inn, vec![jump(&sg_chain(g, "in"))]);
        }
        self.rule(&out, vec![drop_()]);
        self.rule(&inn, vec![drop_()]);
    }

    fn eni_elems(&mut self, verb: &str, eni: &Eni, groups: &[String]) {
        let ip = json!(eni.ip.to_string());
        for g in groups {
            self.elems(verb, &sg_set(g), vec![ip.clone()]);
        }
    }

    /// Adds an ENI's chains and hooks it into the maps.
    pub fn add_eni(&mut self, eni: &Eni) {
        self.chain(&eni_chain(eni, "out"));
        self.chain(&eni_chain(eni, "in"));
        self.eni_rules(eni);
        let host = json!(eni.host_if);
        let j = |c: String| json!([eni.host_if, jump(&c)]);
        self.elems("add", "eni_egress", vec![j(eni_chain(eni, "out"))]);
        self.elems("add", "eni_ingress", vec![j(eni_chain(eni, "in"))]);
        self.elems("add", "eni_ifs", vec![host]);
        self.eni_elems("add", eni, &eni.security_groups);
        if let Some(p) = eni.public_ip {
            let (p, ip) = (p.to_string(), eni.ip.to_string());
            self.elems("add", "public_dnat", vec![json!([p, ip])]);
            self.elems("add", "public_snat", vec![json!([ip, p])]);
        }
    }

    /// Removes an ENI from the maps and deletes its chains.
    pub fn delete_eni(&mut self, eni: &Eni) {
        let host = json!(eni.host_if);
        self.elems("delete", "eni_egress", vec![host.clone()]);
        self.elems("delete", "eni_ingress", vec![host.clone()]);
        self.elems("delete", "eni_ifs", vec![host]);
        self.eni_elems("delete", eni, &eni.security_groups);
        if let Some(p) = eni.public_ip {
            self.elems("delete", "public_dnat", vec![json!(p.to_string())]);
            self.elems("delete", "public_snat", vec![json!(eni.ip.to_string())]);
        }
        for dir in ["out", "in"] {
            self.cmd("flush", "chain", json!({"name": eni_chain(eni, dir)}));
            self.cmd("delete", "chain", json!({"name": eni_chain(eni, dir)}));
        }
    }

    /// Moves an ENI from `old` groups to the groups now in `eni.security_groups`.
    pub fn set_eni_groups(&mut self, eni: &Eni, old: &[String]) {
        for dir in ["out", "in"] {
            self.cmd("flush", "chain", json!({"name": eni_chain(eni, dir)}));
        }
        self.eni_rules(eni);
        let gone: Vec<String> = old
            .iter()
            .filter(|g| !eni.security_groups.contains(g))
            .cloned()
            .collect();
        let new: Vec<String> = eni
            .security_groups
            .iter()
            .filter(|g| !old.contains(g))
            .cloned()
            .collect();
        self.eni_elems("delete", eni, &gone);
        self.eni_elems("add", eni, &new);
    }

    /// The JSON document.
    pub fn document(&self) -> Value {
        json!({ "nftables": self.cmds })
    }

    /// Applies the transaction atomically (`nft -j -f -`).
    pub async fn apply(self) -> Result<()> {
        if self.cmds.is_empty() {
            return Ok(());
        }
        let doc = serde_json::to_vec(&self.document())
            .map_err(|e| Error::Nft(format!("encoding: {e}")))?;
        let mut child = tokio::process::Command::new("nft")
            .args(["-j", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::Nft(format!("running nft: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&doc).await?;
        }
        let out = child.wait_with_output().await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Nft(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }
}

/// Deletes netd's table (used by tests and `--flush-on-exit`-style cleanups).
pub async fn delete_table(table: &str) -> Result<()> {
    let mut tx = Tx::new(table);
    tx.cmd("add", "table", json!({}));
    tx.cmd("delete", "table", json!({}));
    tx.apply().await
}
