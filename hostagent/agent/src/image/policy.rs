//! Where images may come from: the operator's registry allow-list and the address classes
//! a tenant's image reference may never reach.
//!
//! Image references are tenant input, and registries are fetched from the host's network
//! namespace, so every destination the pipeline connects to (the registry, its token
//! realm, every redirect target) is checked here, with every address its name resolves
//! to, before the connection is made (the HTTP client then connects only to the checked
//! addresses, see `fetch.rs`).
//!
//! The rules, in order:
//! 1. Never: unspecified (`0.0.0.0`, `::`), multicast, broadcast addresses.
//! 2. A destination named by a host entry of the allow-list (`host`, `host:port`, an IP
//!    literal or `[v6]:port`) is allowed, whatever unicast addresses it resolves to.
//! 3. Otherwise every address must be inside a CIDR entry of the list, or, when public
//!    registries are allowed (no allow-list at all, or the entry `public`), be a public
//!    address: not loopback, link-local, private (RFC 1918, unique-local, shared
//!    100.64/10), documentation / benchmarking / reserved ranges, and not one of the
//!    host's own addresses (any interface).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// One entry of the registry allow-list (`--allow-registry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRegistry {
    /// A host name or IP literal, on any port (`port: None`) or one port.
    Host {
        /// Lower-case host name, or an IP address in its canonical text form.
        host: String,
        /// The port, if the entry names one.
        port: Option<u16>,
    },
    /// Every address in a network.
    Cidr {
        /// The network address (host bits cleared).
        net: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
    /// Any registry at public addresses (the default when the list is empty).
    Public,
}

/// An allow-list entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry allow-list entry {entry:?}: {why} (expected host, host:port, [v6]:port, CIDR or `public`)")]
pub struct BadAllowEntry {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl FromStr for AllowRegistry {
    type Err = BadAllowEntry;

    fn from_str(s: &str) -> Result<Self, BadAllowEntry> {
        let bad = |why| BadAllowEntry {
            entry: s.to_string(),
            why,
        };
        if s == "public" {
            return Ok(AllowRegistry::Public);
        }
        if let Some((addr, len)) = s.split_once('/') {
            let ip: IpAddr = addr.parse().map_err(|_| bad("not an IP network"))?;
            let prefix: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(bad("prefix length too long"));
            }
            return Ok(AllowRegistry::Cidr {
                net: mask(ip, prefix),
                prefix,
            });
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(host_entry(ip.to_string(), None));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (v6, tail) = rest.split_once(']').ok_or(bad("unclosed '['"))?;
            let ip: Ipv6Addr = v6.parse().map_err(|_| bad("not an IPv6 address"))?;
            let port = match tail {
                "" => None,
                t => Some(
                    parse_port(t.strip_prefix(':').ok_or(bad("junk after ']'"))?)
                        .ok_or(bad("bad port"))?,
                ),
            };
            return Ok(host_entry(ip.to_string(), port));
        }
        let (name, port) = match s.rsplit_once(':') {
            Some((n, p)) => (n, Some(parse_port(p).ok_or(bad("bad port"))?)),
            None => (s, None),
        };
        if let Ok(ip) = name.parse::<Ipv4Addr>() {
            return Ok(host_entry(ip.to_string(), port));
        }
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(bad("not a host name"));
        }
        // A dotted-decimal look-alike that is not an address (`1.2.3`) is refused, so an
        // entry never means something else than it reads as.
        if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(bad("not an IPv4 address"));
        }
        Ok(host_entry(name.to_ascii_lowercase(), port))
    }
}

fn host_entry(host: String, port: Option<u16>) -> AllowRegistry {
    AllowRegistry::Host { host, port }
}

fn parse_port(p: &str) -> Option<u16> {
    p.parse::<u16>().ok().filter(|&p| p != 0)
}

impl fmt::Display for AllowRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowRegistry::Host { host, port: None } => f.write_str(host),
            AllowRegistry::Host {
                host,
                port: Some(p),
            } if host.contains(':') => write!(f, "[{host}]:{p}"),
            AllowRegistry::Host {
                host,
                port: Some(p),
            } => write!(f, "{host}:{p}"),
            AllowRegistry::Cidr { net, prefix } => write!(f, "{net}/{prefix}"),
            AllowRegistry::Public => f.write_str("public"),
        }
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let ip = canonical(ip);
    ip.is_ipv4() == net.is_ipv4() && mask(ip, prefix) == net
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable and not the host's.
    Public,
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// Multicast or the IPv4 broadcast address.
    Multicast,
    /// 127/8, `::1`.
    Loopback,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7.
    Private,
    /// 0/8, 192.0.0/24, documentation, benchmarking, 240/4, IPv4-compatible and other
    /// non-global IPv6 ranges.
    Reserved,
    /// One of the host's own addresses.
    HostOwn,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "a public address",
            AddressClass::Unspecified => "the unspecified address",
            AddressClass::Multicast => "a multicast or broadcast address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::Private => "a private address",
            AddressClass::Reserved => "a reserved address",
            AddressClass::HostOwn => "one of this host's own addresses",
        })
    }
}

/// The class of `ip`, given the host's own addresses.
pub fn classify(ip: IpAddr, own: &[IpAddr]) -> AddressClass {
    let ip = canonical(ip);
    let class = match ip {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    };
    if class == AddressClass::Public && own.iter().any(|o| canonical(*o) == ip) {
        return AddressClass::HostOwn;
    }
    class
}

fn classify_v4(a: Ipv4Addr) -> AddressClass {
    let n = u32::from(a);
    let within = |net: u32, prefix: u32| n & u32::MAX.checked_shl(32 - prefix).unwrap_or(0) == net;
    if a.is_unspecified() {
        AddressClass::Unspecified
    } else if a.is_multicast() || a.is_broadcast() {
        AddressClass::Multicast
    } else if a.is_loopback() {
        AddressClass::Loopback
    } else if a.is_link_local() {
        AddressClass::LinkLocal
    } else if a.is_private() || within(0x6440_0000, 10) {
        AddressClass::Private
    } else if within(0, 8)
        || within(0xc000_0000, 24) // 192.0.0.0/24 IETF protocol assignments
        || a.is_documentation()
        || within(0xc612_0000, 15) // 198.18.0.0/15 benchmarking
        || within(0xf000_0000, 4)
    // 240.0.0.0/4 reserved
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(a: Ipv6Addr) -> AddressClass {
    let s = a.segments();
    if a.is_unspecified() {
        AddressClass::Unspecified
    } else if a.is_multicast() {
        AddressClass::Multicast
    } else if a.is_loopback() {
        AddressClass::Loopback
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        // unique-local, and the deprecated site-local
        AddressClass::Private
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64 (64:ff9b::/96): what the translator reaches is the embedded IPv4 address.
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        classify_v4(Ipv4Addr::new(a, b, c, d))
    } else if s[0] & 0xe000 != 0x2000 || (s[0] == 0x2001 && s[1] == 0x0db8) {
        // outside global unicast 2000::/3 (IPv4-compatible ::/96 included), or documentation
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// A destination the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The address refused.
    pub addr: IpAddr,
    /// Its class (`Public` when a public address is not in an explicit allow-list).
    pub class: AddressClass,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.class == AddressClass::Public {
            write!(f, "{} is not in this host's registry allow-list", self.addr)
        } else {
            write!(
                f,
                "{} is {}, which the registry allow-list does not name",
                self.addr, self.class
            )
        }
    }
}

/// The checked allow-list.
#[derive(Debug, Clone, Default)]
pub struct RegistryPolicy {
    entries: Vec<AllowRegistry>,
}

impl RegistryPolicy {
    /// A policy from the operator's entries (empty: public registries only).
    pub fn new(entries: &[AllowRegistry]) -> Self {
        RegistryPolicy {
            entries: entries.to_vec(),
        }
    }

    fn public_allowed(&self) -> bool {
        self.entries.is_empty() || self.entries.contains(&AllowRegistry::Public)
    }

    /// Whether a host entry names `host` (lower case; an IP literal in canonical form)
    /// on `port`.
    fn names(&self, host: &str, port: u16) -> bool {
        self.entries.iter().any(|e| match e {
            AllowRegistry::Host { host: h, port: p } => h == host && p.is_none_or(|p| p == port),
            _ => false,
        })
    }

    /// Checks a destination: `host` (a lower-case name, or an IP literal's canonical
    /// text) on `port`, resolving to `addrs` (all of them are checked), given the host's
    /// own addresses `own`.
    pub fn check(
        &self,
        host: &str,
        port: u16,
        addrs: &[IpAddr],
        own: &[IpAddr],
    ) -> Result<(), Refusal> {
        for &a in addrs {
            let class = classify(a, &[]);
            if matches!(class, AddressClass::Unspecified | AddressClass::Multicast) {
                return Err(Refusal { addr: a, class });
            }
        }
        if self.names(host, port) {
            return Ok(());
        }
        for &a in addrs {
            let listed = self.entries.iter().any(|e| match e {
                AllowRegistry::Cidr { net, prefix } => in_cidr(a, *net, *prefix),
                _ => false,
            });
            if listed {
                continue;
            }
            let class = classify(a, own);
            if class == AddressClass::Public && self.public_allowed() {
                continue;
            }
            return Err(Refusal { addr: a, class });
        }
        Ok(())
    }
}

/// The addresses of every interface of this host (its network namespace).
pub fn host_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes the head of a list it allocates into `head`; the list is
    // released with freeifaddrs below and not used after that.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of at least the generic size.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: the family says this sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: the family says this sockaddr is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn entries(list: &[&str]) -> RegistryPolicy {
        RegistryPolicy::new(&list.iter().map(|e| e.parse().unwrap()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_entries() {
        let p = |s: &str| s.parse::<AllowRegistry>();
        assert_eq!(p("public").unwrap(), AllowRegistry::Public);
        assert_eq!(
            p("Registry.Example.com:5000").unwrap(),
            host_entry("registry.example.com".into(), Some(5000))
        );
        assert_eq!(p("10.0.2.2").unwrap(), host_entry("10.0.2.2".into(), None));
        assert_eq!(
            p("10.0.2.2:5000").unwrap(),
            host_entry("10.0.2.2".into(), Some(5000))
        );
        assert_eq!(
            p("[::1]:5000").unwrap(),
            host_entry("::1".into(), Some(5000))
        );
        assert_eq!(p("fd00::1").unwrap(), host_entry("fd00::1".into(), None));
        assert_eq!(
            p("10.1.2.3/8").unwrap(),
            AllowRegistry::Cidr {
                net: ip("10.0.0.0"),
                prefix: 8
            }
        );
        assert_eq!(p("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(p("[::1]:5000").unwrap().to_string(), "[::1]:5000");
        for bad in [
            "",
            "a b",
            "host:",
            "host:0",
            "host:99999",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "[::1",
            "[::1]x",
            "1.2.3",
            "-",
            "a..b",
            "ho_st",
        ] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn classifies_addresses() {
        let own = [ip("203.0.113.250"), ip("8.8.4.4")];
        for (a, c) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.9.9.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("10.0.2.2", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("fd12::1", AddressClass::Private),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("0.1.2.3", AddressClass::Reserved),
            ("192.0.2.1", AddressClass::Reserved),
            ("240.0.0.1", AddressClass::Reserved),
            ("::127.0.0.1", AddressClass::Reserved),
            ("2001:db8::1", AddressClass::Reserved),
            ("64:ff9b::7f00:1", AddressClass::Loopback),
            ("64:ff9b::808:808", AddressClass::Public),
            ("8.8.8.8", AddressClass::Public),
            ("2a00:1450::1", AddressClass::Public),
            ("8.8.4.4", AddressClass::HostOwn),
            ("::ffff:8.8.4.4", AddressClass::HostOwn),
        ] {
            assert_eq!(classify(ip(a), &own), c, "{a}");
        }
    }

    #[test]
    fn default_policy_is_public_only() {
        let p = RegistryPolicy::default();
        let own = [ip("8.8.4.4")];
        assert!(p
            .check("registry.example", 443, &[ip("8.8.8.8")], &own)
            .is_ok());
        for a in [
            "127.0.0.1",
            "169.254.169.254",
            "10.0.0.1",
            "8.8.4.4",
            "::1",
            "fe80::1",
        ] {
            let e = p.check("x.example", 443, &[ip(a)], &own).unwrap_err();
            assert_eq!(e.addr, ip(a));
        }
        // One bad address among good ones refuses the name.
        let e = p
            .check("x.example", 443, &[ip("8.8.8.8"), ip("127.0.0.1")], &own)
            .unwrap_err();
        assert_eq!(e.class, AddressClass::Loopback);
        assert!(
            e.to_string().contains("127.0.0.1 is a loopback address"),
            "{e}"
        );
    }

    #[test]
    fn allow_list_entries() {
        let p = entries(&["10.0.2.2:5000", "registry.corp", "192.168.7.0/24"]);
        // A named host:port, and only on its port.
        assert!(p.check("10.0.2.2", 5000, &[ip("10.0.2.2")], &[]).is_ok());
        assert!(p.check("10.0.2.2", 22, &[ip("10.0.2.2")], &[]).is_err());
        // A named host on any port, whatever it resolves to (the operator trusts it).
        assert!(p
            .check("registry.corp", 8443, &[ip("10.9.9.9")], &[])
            .is_ok());
        // A CIDR admits every address inside it, for any name.
        assert!(p.check("any.name", 443, &[ip("192.168.7.9")], &[]).is_ok());
        assert!(p
            .check(
                "any.name",
                443,
                &[ip("192.168.7.9"), ip("192.168.8.1")],
                &[]
            )
            .is_err());
        // With a list, public registries are out unless `public` is listed.
        let e = p
            .check("hub.example", 443, &[ip("8.8.8.8")], &[])
            .unwrap_err();
        assert_eq!(e.class, AddressClass::Public);
        let p = entries(&["public", "127.0.0.1"]);
        assert!(p.check("hub.example", 443, &[ip("8.8.8.8")], &[]).is_ok());
        assert!(p.check("127.0.0.1", 5000, &[ip("127.0.0.1")], &[]).is_ok());
        // A name is not its address: `localhost` is not named by `127.0.0.1`.
        assert!(p.check("localhost", 5000, &[ip("127.0.0.1")], &[]).is_err());
        // Never unspecified or multicast, even when named.
        let p = entries(&["0.0.0.0", "224.0.0.0/4"]);
        assert!(p.check("0.0.0.0", 80, &[ip("0.0.0.0")], &[]).is_err());
        assert!(p.check("m", 80, &[ip("224.0.0.1")], &[]).is_err());
    }

    #[test]
    fn lists_host_addresses() {
        let own = host_addresses().unwrap();
        assert!(own.contains(&ip("127.0.0.1")), "{own:?}");
    }
}
