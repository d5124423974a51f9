//! The monitored interface: which one (the default route's), and its addresses.
//!
//! This is a start-up snapshot read from `/proc/net` and `getifaddrs`; the live netlink watch
//! replaces it where it matters.

use std::{
    fs,
    net::{IpAddr, Ipv6Addr},
};

use ipnet::Ipv6Net;

/// Finding the interface or its addresses failed.
#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    /// No default route in either family.
    #[error("no default route found in /proc/net/route or /proc/net/ipv6_route; set MONITOR_IFACE")]
    NoDefaultRoute,
    /// The interface does not exist.
    #[error("interface {0:?} does not exist (see `ip link`)")]
    NoSuchInterface(String),
    /// Looking up the interface's index failed for another reason than its absence.
    #[error("looking up interface {iface:?} failed")]
    Index {
        iface: String,
        #[source]
        source: nix::Error,
    },
    /// getifaddrs failed.
    #[error("listing interface addresses failed")]
    Addresses(#[source] nix::Error),
    /// The link type or the link's MAC set could not be read.
    #[error(transparent)]
    Link(#[from] crate::links::LinkError),
}

/// The interface of the default route: IPv4 first (lowest metric), then IPv6.
pub fn default_route_interface() -> Result<String, IfaceError> {
    if let Ok(table) = fs::read_to_string("/proc/net/route")
        && let Some(name) = default_v4(&table)
    {
        return Ok(name);
    }
    if let Ok(table) = fs::read_to_string("/proc/net/ipv6_route")
        && let Some(name) = default_v6(&table)
    {
        return Ok(name);
    }
    Err(IfaceError::NoDefaultRoute)
}

/// `/proc/net/route`: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
fn default_v4(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (name, dest, metric, mask) = (f.first()?, f.get(1)?, f.get(6)?, f.get(7)?);
            (*dest == "00000000" && *mask == "00000000").then(|| {
                (
                    metric.parse::<u32>().unwrap_or(u32::MAX),
                    (*name).to_owned(),
                )
            })
        })
        .min()
        .map(|(_, name)| name)
}

/// `/proc/net/ipv6_route`: dest dest_len src src_len next_hop metric refcnt use flags iface.
fn default_v6(table: &str) -> Option<String> {
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, len, metric, name) = (f.first()?, f.get(1)?, f.get(5)?, f.get(9)?);
            (dest.chars().all(|c| c == '0') && *len == "00" && *name != "lo").then(|| {
                (
                    u32::from_str_radix(metric, 16).unwrap_or(u32::MAX),
                    (*name).to_owned(),
                )
            })
        })
        .min()
        .map(|(_, name)| name)
}

/// Addresses of `iface`: every IPv4/IPv6 address, plus the broadcast address of each IPv4 subnet.
pub fn local_addresses(iface: &str) -> Result<Vec<IpAddr>, IfaceError> {
    if nix::net::if_::if_nametoindex(iface).is_err() {
        return Err(IfaceError::NoSuchInterface(iface.to_owned()));
    }
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(IfaceError::Addresses)? {
        if ifa.interface_name != iface {
            continue;
        }
        let addrs = [ifa.address, ifa.broadcast];
        for sa in addrs.iter().flatten() {
            if let Some(v4) = sa.as_sockaddr_in() {
                out.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                out.push(IpAddr::V6(v6.ip()));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The LAN prefix of every global unicast (2000::/3) address, `len` bits long.
pub fn derived_lan_prefixes(addrs: &[IpAddr], len: u8) -> Vec<Ipv6Net> {
    let mut out: Vec<Ipv6Net> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(v6) if is_global_unicast(v6) => {
                Ipv6Net::new(*v6, len).ok().map(|n| n.trunc())
            }
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn is_global_unicast(a: &Ipv6Addr) -> bool {
    a.octets()[0] & 0xe0 == 0x20
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_picks_the_lowest_metric() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
            eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_v4(table).as_deref(), Some("eth0"));
        assert_eq!(default_v4("Iface\tDestination\n"), None);
    }

    #[test]
    fn ipv6_default_route_ignores_loopback() {
        let table = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n\
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     wan0\n";
        assert_eq!(default_v6(table).as_deref(), Some("wan0"));
    }

    #[test]
    fn lan_prefixes_come_from_global_addresses_only() {
        let addrs: Vec<IpAddr> = [
            "240e:33e:2f08:d601::1",
            "240e:33e:2f08:d601:a1b2::1",
            "fe80::1",
            "fd00::1",
            "192.168.1.2",
        ]
        .iter()
        .map(|s| s.parse().expect("addr"))
        .collect();
        let want: Vec<Ipv6Net> = vec!["240e:33e:2f08:d600::/56".parse().expect("net")];
        assert_eq!(derived_lan_prefixes(&addrs, 56), want);
    }
}
