//! Links, addresses and routes through rtnetlink; tap devices through /dev/net/tun.
//!
//! Per ENI (index i) of a task:
//! - host netns: veth `<host_if>` (no address), `proxy_arp=1`, route `<ip>/32 dev <host_if>`;
//! - task netns: its peer `up<i>`, a tap `tap<i>` (the vmm attaches to it) and a bridge
//!   `br<i>` joining them, so the guest's frames leave through the veth unchanged.

use std::fs::{File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteScope, RouteType};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::{Error, Result};
use crate::model::Eni;
use crate::netns;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Index of link `name`, if it exists.
pub async fn index(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m.map(|m| m.header.index)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Names of all links.
pub async fn names(h: &Handle) -> Result<Vec<String>> {
    let msgs: Vec<_> = h.link().get().execute().try_collect().await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| {
            m.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })
        })
        .collect())
}

/// Sets a link up (a no-op for a link already up).
pub async fn up(h: &Handle, idx: u32) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await?;
    Ok(())
}

/// Deletes link `name`; Ok if it does not exist.
pub async fn delete(h: &Handle, name: &str) -> Result<()> {
    if let Some(idx) = index(h, name).await? {
        match h.link().del(idx).execute().await {
            Err(e) if errno(&e) != Some(libc::ENODEV) => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// Writes an IPv4 sysctl of an interface.
fn sysctl(ifname: &str, key: &str, value: &str) -> Result<()> {
    let p = format!("/proc/sys/net/ipv4/conf/{ifname}/{key}");
    std::fs::write(&p, value).map_err(|e| Error::Kernel(format!("writing {p}: {e}")))
}

/// Enables IPv4 forwarding on the host.
pub fn enable_forwarding() -> Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| Error::Kernel(format!("enabling ip_forward: {e}")))
}

/// The subnet's gateway: a port-less bridge (a "dummy" that needs no extra kernel module) holding `gw/32`, plus an `unreachable <cidr>` route
/// so addresses of the subnet that no ENI holds never leak to the default route.
pub async fn ensure_gateway(h: &Handle, ifname: &str, gw: Ipv4Addr, cidr: Ipv4Net) -> Result<()> {
    let idx = match index(h, ifname).await? {
        Some(i) => i,
        None => {
            h.link()
                .add(LinkBridge::new(ifname).build())
                .execute()
                .await?;
            index(h, ifname)
                .await?
                .ok_or_else(|| Error::Kernel(format!("{ifname} vanished")))?
        }
    };
    h.address()
        .add(idx, IpAddr::V4(gw), 32)
        .replace()
        .execute()
        .await?;
    up(h, idx).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(cidr.network(), cidr.prefix_len())
        .kind(RouteType::Unreachable)
        .build();
    h.route().add(route).replace().execute().await?;
    Ok(())
}

/// Makes sure every kernel object of `eni` exists and is up; creates only what is missing,
/// so an intact ENI is left exactly as it is (no traffic interruption).
pub async fn ensure_eni(
    host: &Handle,
    ns: &str,
    eni: &Eni,
    owner: (Option<u32>, Option<u32>),
) -> Result<()> {
    let nsh = netns::handle(ns).await?;
    let (up_name, br_name) = (format!("up{}", eni.index), format!("br{}", eni.index));
    let peer_tmp = format!("{}p", eni.host_if);
    let ns_has_up = index(&nsh, &up_name).await?.is_some();
    let mut host_idx = index(host, &eni.host_if).await?;
    let mut peer_in_host = index(host, &peer_tmp).await?;
    if host_idx.is_some() && !ns_has_up && peer_in_host.is_none() {
        // A stale pair whose peer sits in some other (old) namespace: replace it.
        delete(host, &eni.host_if).await?;
        host_idx = None;
    }
    if host_idx.is_none() {
        host.link()
            .add(LinkVeth::new(&eni.host_if, &peer_tmp).build())
            .execute()
            .await?;
        peer_in_host = index(host, &peer_tmp).await?;
    }
    if let Some(peer) = peer_in_host {
        let nsfile = File::open(netns::path(ns))?;
        let msg = LinkUnspec::new_with_index(peer)
            .setns_by_fd(nsfile.as_raw_fd())
            .name(up_name.clone())
            .build();
        host.link().set(msg).execute().await?;
    }
    // Task side: bridge joining the veth peer and the tap.
    let br = match index(&nsh, &br_name).await? {
        Some(i) => i,
        None => {
            nsh.link()
                .add(LinkBridge::new(&br_name).build())
                .execute()
                .await?;
            index(&nsh, &br_name)
                .await?
                .ok_or_else(|| Error::Kernel("bridge vanished".into()))?
        }
    };
    let tap_name = eni.tap.clone();
    if index(&nsh, &tap_name).await?.is_none() {
        netns::run_in(ns, move || create_tap(&tap_name, owner.0, owner.1)).await?;
    }
    for name in [&up_name, &eni.tap] {
        let idx = index(&nsh, name)
            .await?
            .ok_or_else(|| Error::Kernel(format!("{name} missing in {ns}")))?;
        let msg = LinkUnspec::new_with_index(idx).controller(br).up().build();
        nsh.link().set(msg).execute().await?;
    }
    up(&nsh, br).await?;
    if let Some(lo) = index(&nsh, "lo").await? {
        up(&nsh, lo).await?;
    }
    // Host side: routed /32 with proxy ARP (the host answers ARP for the gateway and peers).
    let idx = index(host, &eni.host_if)
        .await?
        .ok_or_else(|| Error::Kernel(format!("{} missing", eni.host_if)))?;
    sysctl(&eni.host_if, "proxy_arp", "1")?;
    sysctl(&eni.host_if, "rp_filter", "1")?;
    // Answer proxy ARP at once (the default delays broadcast requests by up to 0.8 s).
    let delay = format!("/proc/sys/net/ipv4/neigh/{}/proxy_delay", eni.host_if);
    std::fs::write(&delay, "0").map_err(|e| Error::Kernel(format!("writing {delay}: {e}")))?;
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", eni.host_if),
        "1",
    );
    up(host, idx).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(eni.ip, 32)
        .output_interface(idx)
        .scope(RouteScope::Link)
        .build();
    host.route().add(route).replace().execute().await?;
    Ok(())
}

/// Removes the host side of an ENI (deleting the veth deletes its peer and the /32 route).
pub async fn remove_eni(host: &Handle, eni: &Eni) -> Result<()> {
    delete(host, &eni.host_if).await?;
    delete(host, &format!("{}p", eni.host_if)).await
}

/// The /32 addresses routed through link `name` (an ENI's host veth routes its address
/// there), so a stale ENI's addresses are known before its veth goes.
pub async fn routed_addresses(h: &Handle, name: &str) -> Result<Vec<Ipv4Addr>> {
    let Some(idx) = index(h, name).await? else {
        return Ok(Vec::new());
    };
    let routes: Vec<_> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await?;
    Ok(routes
        .into_iter()
        .filter(|r| r.header.destination_prefix_length == 32)
        .filter(|r| r.attributes.contains(&RouteAttribute::Oif(idx)))
        .filter_map(|r| {
            r.attributes.into_iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(ip),
                _ => None,
            })
        })
        .collect())
}

/// Creates a persistent tap (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, single queue) in the current netns.
fn create_tap(name: &str, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is a plain C struct; all-zero bytes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= ifr.ifr_name.len() {
        return Err(Error::Invalid(format!("tap name {name} too long")));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    let fd = f.as_raw_fd();
    // SAFETY: fd is an open /dev/net/tun descriptor; ifr is a valid, initialised ifreq that
    // outlives the call.
    let rc = unsafe { libc::ioctl(fd, TUNSETIFF as _, &mut ifr) };
    if rc < 0 {
        return Err(Error::Kernel(format!(
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        )));
    }
    let int_ioctls = [
        (TUNSETOWNER, uid.map(libc::c_ulong::from)),
        (TUNSETGROUP, gid.map(libc::c_ulong::from)),
        (TUNSETPERSIST, Some(1)),
    ];
    for (req, val) in int_ioctls {
        if let Some(v) = val {
            // SAFETY: these tun ioctls take an integer argument by value; fd is valid.
            let rc = unsafe { libc::ioctl(fd, req as _, v) };
            if rc < 0 {
                return Err(Error::Kernel(format!(
                    "tap {name} ioctl {req:#x}: {}",
                    std::io::Error::last_os_error()
                )));
            }
        }
    }
    Ok(())
}
