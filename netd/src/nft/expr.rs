//! nftables JSON expression builders (the shapes of nft's JSON schema that netd uses).

use serde_json::{json, Value};

use crate::model::{Eni, Protocol, Rule};

pub(super) fn eni_chain(eni: &Eni, dir: &str) -> String {
    format!("{}_{dir}", eni.id.replace('-', "_"))
}
pub(super) fn sg_chain(name: &str, dir: &str) -> String {
    format!("sg_{name}_{dir}")
}
pub(super) fn sg_set(name: &str) -> String {
    format!("sg_{name}")
}
pub(super) fn accept() -> Value {
    json!({"accept": null})
}
pub(super) fn drop_() -> Value {
    json!({"drop": null})
}
pub(super) fn m(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}
pub(super) fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}
pub(super) fn payload(proto: &str, field: &str) -> Value {
    json!({"payload": {"protocol": proto, "field": field}})
}
pub(super) fn ct_established() -> Value {
    m(
        "in",
        json!({"ct": {"key": "state"}}),
        json!(["established", "related"]),
    )
}
pub(super) fn jump(target: &str) -> Value {
    json!({"jump": {"target": target}})
}

/// The match expressions + accept for one rule; `peer_field` is `saddr` or `daddr`.
pub(super) fn rule_exprs(r: &Rule, peer_field: &str) -> Vec<Value> {
    let mut e = Vec::new();
    let l4 = match r.protocol {
        Protocol::Tcp => Some("tcp"),
        Protocol::Udp => Some("udp"),
        Protocol::Icmp => Some("icmp"),
        Protocol::All => None,
    };
    e.push(m("==", meta("nfproto"), json!("ipv4")));
    if let Some(p) = l4 {
        e.push(m("==", meta("l4proto"), json!(p)));
    }
    if let (Some((f, t)), Some(p)) = (r.ports(), l4) {
        let right = if f == t {
            json!(f)
        } else {
            json!({"range": [f, t]})
        };
        e.push(m("==", payload(p, "dport"), right));
    }
    if let Some(net) = r.cidr {
        if net.prefix_len() > 0 {
            let right =
                json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}});
            e.push(m("==", payload("ip", peer_field), right));
        }
    }
    if let Some(g) = &r.group {
        e.push(m(
            "==",
            payload("ip", peer_field),
            json!(format!("@{}", sg_set(g))),
        ));
    }
    e.push(accept());
    e
}
