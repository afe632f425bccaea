//! IP address management: hands out host addresses of a subnet, round-robin from a
//! persisted cursor so a just-released address is the last to be reused.

use std::collections::HashSet;
use std::io::Read;
use std::net::Ipv4Addr;

use crate::config::SubnetConfig;
use crate::error::{Error, Result};

/// Picks a free address of `subnet` after offset `cursor`. Returns the address and the new cursor.
pub fn allocate(
    subnet: &SubnetConfig,
    used: &HashSet<Ipv4Addr>,
    cursor: u32,
) -> Result<(Ipv4Addr, u32)> {
    let base = u32::from(subnet.cidr.network());
    // Host offsets are 1 ..= size-2 (no network, no broadcast address).
    let hosts = (1u64 << (32 - u32::from(subnet.cidr.prefix_len()))) - 2;
    let hosts = hosts as u32;
    for step in 0..hosts {
        let offset = (cursor.wrapping_add(step) % hosts) + 1;
        let ip = Ipv4Addr::from(base + offset);
        let taken = used.contains(&ip)
            || ip == subnet.gateway
            || subnet.dns.contains(&ip)
            || subnet.reserved.contains(&ip);
        if !taken {
            return Ok((ip, offset));
        }
    }
    Err(Error::Exhausted(format!(
        "subnet {} ({}) has no free address",
        subnet.name, subnet.cidr
    )))
}

/// Random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// A locally administered unicast MAC not in `used`.
pub fn random_mac(used: &HashSet<String>) -> Result<String> {
    loop {
        let b: [u8; 5] = random_bytes()?;
        let mac = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4]
        );
        if !used.contains(&mac) {
            return Ok(mac);
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(mac: &str) -> Option<Vec<u8>> {
    let v: Vec<u8> = mac
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    (v.len() == 6).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(cidr: &str, gw: &str) -> SubnetConfig {
        SubnetConfig {
            name: "t".into(),
            cidr: cidr.parse().unwrap(),
            gateway: gw.parse().unwrap(),
            dns: vec![],
            reserved: vec![],
        }
    }

    #[test]
    fn skips_gateway_and_used_and_exhausts() {
        let s = subnet("10.9.0.0/29", "10.9.0.1"); // hosts .1-.6, gateway .1
        let mut used = HashSet::new();
        let mut cursor = 0;
        let mut got = vec![];
        while let Ok((ip, c)) = allocate(&s, &used, cursor) {
            assert!(used.insert(ip), "{ip} handed out twice");
            got.push(ip);
            cursor = c;
        }
        let want: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 9, 0, i)).collect();
        assert_eq!(got, want);
        let e = allocate(&s, &used, cursor).unwrap_err();
        assert!(matches!(e, Error::Exhausted(_)));
    }

    #[test]
    fn round_robin_after_release() {
        let s = subnet("10.9.0.0/29", "10.9.0.1");
        let mut used = HashSet::new();
        let (a, c) = allocate(&s, &used, 0).unwrap();
        used.insert(a);
        let (b, c) = allocate(&s, &used, c).unwrap();
        used.remove(&a);
        // a was released, but the cursor moves on: next is after b, not a.
        let (n, _) = allocate(&s, &used, c).unwrap();
        assert!(n != a && n != b && u32::from(n) > u32::from(b));
    }

    #[test]
    fn mac_format() {
        let m = random_mac(&HashSet::new()).unwrap();
        assert!(m.starts_with("02:"));
        assert_eq!(parse_mac(&m).unwrap().len(), 6);
        assert!(parse_mac("02:zz:00:00:00:00").is_none());
    }
}
