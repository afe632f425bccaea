//! Static network configuration from the task's ENI data, over rtnetlink (no DHCP):
//! loopback up; each interface (found by MAC, else by name) up with its MTU, addresses,
//! gateway and routes; DNS in resolv.conf.

use std::io;
use std::net::{AddrParseError, IpAddr};

use futures_util::TryStreamExt;
use guest_proto::validate::{parse_cidr, parse_mac};
use guest_proto::{Dns, NetInterface, SpecError};
use netlink_packet_route::link::LinkAttribute;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

const EEXIST: i32 = -libc::EEXIST;

/// Why the task's network could not be configured; the text goes to the host.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("listing links: {0}")]
    ListLinks(#[source] rtnetlink::Error),
    /// A netlink request failed; `what` names it ("lo up", "address A on L", ...).
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// A MAC or CIDR of the spec does not parse.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No link has the interface's MAC (or name).
    #[error("no network interface with {0}")]
    NoInterface(String),
    #[error("route via: {0}")]
    RouteVia(#[source] AddrParseError),
    #[error("gateway {gateway}: {source}")]
    Gateway {
        gateway: String,
        #[source]
        source: AddrParseError,
    },
    /// The route message builder refused a destination or gateway.
    #[error(transparent)]
    InvalidRoute(Box<dyn std::error::Error + Send + Sync>),
}

fn invalid_route(e: impl std::error::Error + Send + Sync + 'static) -> NetError {
    NetError::InvalidRoute(Box::new(e))
}

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Netlink { what, source }
}

struct Link {
    index: u32,
    name: String,
    mac: Vec<u8>,
}

async fn links(h: &Handle) -> Result<Vec<Link>, NetError> {
    let mut out = Vec::new();
    let mut s = h.link().get().execute();
    while let Some(m) = s.try_next().await.map_err(NetError::ListLinks)? {
        let mut l = Link {
            index: m.header.index,
            name: String::new(),
            mac: Vec::new(),
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n.clone(),
                LinkAttribute::Address(a) => l.mac = a.clone(),
                _ => {}
            }
        }
        out.push(l);
    }
    Ok(out)
}

fn ok_if_exists(r: Result<(), rtnetlink::Error>, what: &str) -> Result<(), NetError> {
    match r {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == EEXIST => Ok(()),
        Err(e) => Err(netlink(what)(e)),
    }
}

fn route(
    dest: IpAddr,
    prefix: u8,
    via: Option<IpAddr>,
    index: u32,
) -> Result<netlink_packet_route::route::RouteMessage, NetError> {
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dest, prefix)
        .map_err(invalid_route)?
        .output_interface(index);
    match via {
        Some(gw) => b = b.gateway(gw).map_err(invalid_route)?,
        None => b = b.scope(netlink_packet_route::route::RouteScope::Link),
    }
    Ok(b.build())
}

async fn configure_async(ifaces: &[NetInterface]) -> Result<(), NetError> {
    let (conn, h, _) = rtnetlink::new_connection().map_err(NetError::Socket)?;
    tokio::spawn(conn);
    let all = links(&h).await?;
    if let Some(lo) = all.iter().find(|l| l.name == "lo") {
        h.link()
            .set(LinkUnspec::new_with_index(lo.index).up().build())
            .execute()
            .await
            .map_err(netlink("lo up"))?;
    }
    for i in ifaces {
        let want_mac = i.mac.as_deref().map(parse_mac).transpose()?;
        let link = all
            .iter()
            .find(|l| match (&want_mac, &i.name) {
                (Some(m), _) => l.mac == m,
                (None, Some(n)) => &l.name == n,
                (None, None) => false,
            })
            .ok_or_else(|| {
                NetError::NoInterface(i.mac.clone().or(i.name.clone()).unwrap_or_default())
            })?;
        let mut msg = LinkUnspec::new_with_index(link.index).up();
        if let Some(mtu) = i.mtu {
            msg = msg.mtu(mtu);
        }
        h.link()
            .set(msg.build())
            .execute()
            .await
            .map_err(netlink(format!("{} up", link.name)))?;
        for a in &i.addresses {
            let (ip, prefix) = parse_cidr(a)?;
            ok_if_exists(
                h.address().add(link.index, ip, prefix).execute().await,
                &format!("address {a} on {}", link.name),
            )?;
        }
        for r in &i.routes {
            let (dest, prefix) = parse_cidr(&r.destination)?;
            let via = r
                .via
                .as_deref()
                .map(|v| v.parse::<IpAddr>())
                .transpose()
                .map_err(NetError::RouteVia)?;
            ok_if_exists(
                h.route()
                    .add(route(dest, prefix, via, link.index)?)
                    .execute()
                    .await,
                &format!("route {}", r.destination),
            )?;
        }
        if let Some(gw) = &i.gateway {
            let gw: IpAddr = gw.parse().map_err(|source| NetError::Gateway {
                gateway: gw.clone(),
                source,
            })?;
            let any: IpAddr = if gw.is_ipv4() {
                IpAddr::from([0u8; 4])
            } else {
                IpAddr::from([0u16; 8])
            };
            ok_if_exists(
                h.route()
                    .add(route(any, 0, Some(gw), link.index)?)
                    .execute()
                    .await,
                &format!("default route via {gw}"),
            )?;
        }
    }
    Ok(())
}

/// Configures the interfaces (blocking).
pub fn configure(ifaces: &[NetInterface]) -> Result<(), NetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(NetError::Runtime)?;
    rt.block_on(configure_async(ifaces))
}

/// resolv.conf content for the task's DNS settings.
pub fn resolv_conf(dns: &Dns) -> String {
    let mut s = String::new();
    for n in &dns.nameservers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !dns.search.is_empty() {
        s.push_str(&format!("search {}\n", dns.search.join(" ")));
    }
    s
}

/// /etc/hosts content.
pub fn hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    )
}
