//! The monitored link itself: what it puts before the IP header (its ARPHRD type), and which
//! other MAC addresses on it are the NAS's own.
//!
//! The MACs come from the kernel's own list of unicast addresses the interface must accept
//! besides its own (`dev->uc`, dumped by RTM_GETNEIGH for AF_BRIDGE as `self` entries: what
//! `bridge fdb show dev IF` prints). A macvlan or macvtap child adds its MAC there while it is up
//! (`macvlan_open`), whichever network namespace it was moved into, so a container's macvlan
//! interface is found although the daemon cannot see the container's namespace. ipvlan children
//! share the parent's MAC and need nothing. When the interface is a bridge port, the master
//! bridge's MAC is the NAS's too (the NAS's addresses live on the bridge).
//!
//! It reads netlink only (sysfs shows the namespace that mounted it, which under `nsenter --net`
//! is not ours); it does not know how the capture uses what it finds.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use sentinel_common::frame::LinkKind;

/// Reading the link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The link type is not one the parser reads.
    #[error(
        "interface {iface:?} has link type {hatype} (ARPHRD_*), which is neither Ethernet nor raw IP; not supported"
    )]
    Unsupported { iface: String, hatype: u16 },
    /// A netlink request about the link failed.
    #[error("reading link {ifindex} over netlink ({what}) failed")]
    Netlink {
        ifindex: u32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// What netlink says about one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkAttrs {
    /// The ARPHRD type (linux/if_arp.h).
    pub hatype: u16,
    /// Its MAC address, if it has one.
    pub mac: Option<[u8; 6]>,
    /// The index of its master (a bridge, a bond), if any.
    pub master: Option<u32>,
}

/// The link with index `ifindex`, from netlink: sysfs is not an option, since `/sys/class/net`
/// shows the namespace that mounted it, not necessarily ours (`nsenter --net`, some containers).
pub fn attrs(ifindex: u32) -> Result<LinkAttrs, LinkError> {
    let mut req = [0u8; NLMSG_HDRLEN + IFINFOMSG_LEN];
    header(&mut req, RTM_GETLINK, NLM_F_REQUEST);
    req[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&ifindex.to_ne_bytes());
    let mut found = None;
    transact(&req, ifindex, "RTM_GETLINK", |kind, body| {
        if kind == RTM_NEWLINK && body.len() >= IFINFOMSG_LEN {
            let index = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
            if index == ifindex {
                found = Some(link_attrs(body));
            }
        }
    })?;
    found.ok_or(LinkError::Netlink {
        ifindex,
        what: "RTM_GETLINK",
        source: io::Error::from(io::ErrorKind::NotFound),
    })
}

/// The link kind of `iface` (index `ifindex`), refusing link types the parser cannot read.
pub fn kind(iface: &str, ifindex: u32) -> Result<LinkKind, LinkError> {
    let hatype = attrs(ifindex)?.hatype;
    LinkKind::from_arphrd(hatype).ok_or(LinkError::Unsupported {
        iface: iface.to_owned(),
        hatype,
    })
}

/// A name for a link type, for logs.
pub fn describe(hatype: u16) -> &'static str {
    match hatype {
        1 => "ethernet",
        772 => "loopback",
        512 => "ppp (raw IP)",
        519 => "rawip (raw IP)",
        0xfffe => "none: tun/wireguard (raw IP)",
        768 => "ipip (raw IP)",
        769 => "ip6tnl (raw IP)",
        776 => "sit (raw IP)",
        _ => "unsupported",
    }
}

/// MACs as `aa:bb:cc:dd:ee:ff`, comma-separated, for logs.
pub fn format_macs(macs: &[[u8; 6]]) -> String {
    let one = |m: &[u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    macs.iter().map(one).collect::<Vec<_>>().join(",")
}

/// Logs what a user needs to check about the link at start-up: its type, how frames are parsed,
/// the NAS's other MACs on it, and whether it is a bridge port (see the README: monitor the
/// bridge instead).
pub fn log_link(iface: &str, ifindex: Option<u32>, plan: &crate::classify::AddressPlan) {
    let link = ifindex.map(attrs).and_then(Result::ok).unwrap_or_default();
    tracing::info!(
        iface,
        link_type = describe(link.hatype),
        arphrd = link.hatype,
        parse = ?plan.link,
        own_macs = %format_macs(&plan.own_macs),
        "link"
    );
    if link.master.is_some() {
        tracing::warn!(
            iface,
            "the interface is a bridge port: the NAS's own traffic counts (the bridge's MAC is in the set), but frames the bridge forwards for VMs or other ports are other hosts' traffic; set MONITOR_IFACE to the bridge"
        );
    }
}

/// The NAS's MACs on the link with index `ifindex` besides its own: its macvlan/macvtap
/// children's and its master bridge's. Sorted, no duplicates.
pub fn own_macs(ifindex: u32) -> Result<Vec<[u8; 6]>, LinkError> {
    let link = attrs(ifindex)?;
    let mut out = unicast_list(ifindex)?;
    if let Some(master) = link.master
        && let Some(mac) = attrs(master)?.mac
    {
        out.push(mac);
    }
    out.retain(|m| Some(*m) != link.mac);
    out.sort();
    out.dedup();
    Ok(out)
}

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
/// `struct ifinfomsg`: family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;
const IFLA_ADDRESS: u16 = 1;
const IFLA_MASTER: u16 = 10;
/// `struct ndmsg`: family, pad, pad, ifindex, state, flags, type.
const NDMSG_LEN: usize = 12;
const NDA_LLADDR: u16 = 2;
/// The entry is the device's own (its address list), not a bridge's learned entry.
const NTF_SELF: u8 = 0x02;
const AF_BRIDGE: u8 = 7;

fn header(req: &mut [u8], kind: u16, flags: u16) {
    let len = req.len() as u32;
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&kind.to_ne_bytes());
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
}

/// Sends `req` and hands every reply message to `each` until the kernel is done: NLMSG_DONE for
/// a dump, the one answer (or an error) otherwise.
fn transact(
    req: &[u8],
    ifindex: u32,
    what: &'static str,
    mut each: impl FnMut(u16, &[u8]),
) -> Result<(), LinkError> {
    let err = |source| LinkError::Netlink {
        ifindex,
        what,
        source,
    };
    let dump = u16::from_ne_bytes([req[6], req[7]]) & NLM_F_DUMP != 0;
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(err)?;
    socket.bind_auto().map_err(err)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(err)?;
    socket.send(req, 0).map_err(err)?;
    let mut buf = vec![0u8; 64 * 1024];
    // A dump ends with NLMSG_DONE; the bound only guards against a kernel that never says so.
    for _ in 0..10_000 {
        let n = socket.recv(&mut &mut buf[..], 0).map_err(err)?;
        match walk(&buf[..n.min(buf.len())], &mut each) {
            Reply::More if dump => {}
            Reply::More | Reply::Done => return Ok(()),
            Reply::Error(code) => return Err(err(io::Error::from_raw_os_error(code))),
        }
    }
    Err(err(io::Error::other("the netlink dump did not end")))
}

/// What one buffer of replies said.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    More,
    Done,
    Error(i32),
}

/// Hands each message of one buffer to `each`, stopping at NLMSG_DONE or an error.
fn walk(mut buf: &[u8], each: &mut impl FnMut(u16, &[u8])) -> Reply {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Reply::Error(libc::EBADMSG);
        }
        let body = &buf[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return Reply::Done,
            NLMSG_ERROR => {
                let code = body.get(..4).map_or(libc::EBADMSG, |b| {
                    -i32::from_ne_bytes([b[0], b[1], b[2], b[3]])
                });
                return if code == 0 {
                    Reply::Done
                } else {
                    Reply::Error(code)
                };
            }
            _ => each(kind, body),
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    Reply::More
}

/// The unicast entries of the interface's own address list, by a netlink dump.
fn unicast_list(ifindex: u32) -> Result<Vec<[u8; 6]>, LinkError> {
    let mut req = [0u8; NLMSG_HDRLEN + NDMSG_LEN];
    header(&mut req, RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP);
    req[NLMSG_HDRLEN] = AF_BRIDGE;
    let mut out = Vec::new();
    let dumped = transact(&req, ifindex, "RTM_GETNEIGH AF_BRIDGE", |kind, body| {
        if kind == RTM_NEWNEIGH
            && let Some(mac) = self_unicast(body, ifindex)
        {
            out.push(mac);
        }
    });
    match dumped {
        Ok(_) => Ok(out),
        // No AF_BRIDGE neighbour dump at all (netlink emulations such as qemu-user's, stripped
        // kernels): there is no unicast list to read, so no children's MACs are known; the
        // interface's own traffic still counts.
        Err(LinkError::Netlink { source, .. })
            if source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
        {
            tracing::debug!(
                ifindex,
                "no AF_BRIDGE neighbour dump here; no child MACs known"
            );
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// The MAC of an RTM_NEWNEIGH body when it is a unicast `self` entry of `ifindex`.
fn self_unicast(body: &[u8], ifindex: u32) -> Option<[u8; 6]> {
    if body.len() < NDMSG_LEN {
        return None;
    }
    let index = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
    let mac = attr::<6>(&body[NDMSG_LEN..], NDA_LLADDR)?;
    // Multicast and broadcast entries (group bit set) are not a host's address; NTF_MASTER
    // entries are what a bridge learned (other hosts).
    (index == ifindex && body[10] & NTF_SELF != 0 && mac[0] & 1 == 0).then_some(mac)
}

/// The attributes of an RTM_NEWLINK body.
fn link_attrs(body: &[u8]) -> LinkAttrs {
    let attrs = &body[IFINFOMSG_LEN..];
    LinkAttrs {
        hatype: u16::from_ne_bytes([body[2], body[3]]),
        mac: attr::<6>(attrs, IFLA_ADDRESS),
        master: attr::<4>(attrs, IFLA_MASTER).map(u32::from_ne_bytes),
    }
}

/// The `N`-byte attribute of type `want` among `attrs`.
fn attr<const N: usize>(mut attrs: &[u8], want: u16) -> Option<[u8; N]> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == want && len == 4 + N {
            let mut out = [0u8; N];
            out.copy_from_slice(&attrs[4..4 + N]);
            return Some(out);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neigh(ifindex: u32, flags: u8, mac: [u8; 6]) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDRLEN + NDMSG_LEN];
        m[4..6].copy_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
        m[NLMSG_HDRLEN] = AF_BRIDGE;
        m[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&ifindex.to_ne_bytes());
        m[NLMSG_HDRLEN + 10] = flags;
        m.extend_from_slice(&10u16.to_ne_bytes());
        m.extend_from_slice(&NDA_LLADDR.to_ne_bytes());
        m.extend_from_slice(&mac);
        m.extend_from_slice(&[0, 0]);
        let len = (m.len() - 2) as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    #[test]
    fn the_dump_keeps_only_the_interfaces_own_unicast_entries() {
        let child = [0x4e, 0x11, 0x85, 0x93, 0x6a, 0x4c];
        let mut buf = neigh(3, NTF_SELF, child);
        buf.extend(neigh(3, NTF_SELF, [0x33, 0x33, 0, 0, 0, 1])); // multicast
        buf.extend(neigh(4, NTF_SELF, [0x02, 0, 0, 0, 0, 9])); // another interface
        buf.extend(neigh(3, 0x04, [0x02, 0, 0, 0, 0, 8])); // NTF_MASTER: a learned LAN host
        let mut out = Vec::new();
        let mut keep = |kind: u16, body: &[u8]| {
            if kind == RTM_NEWNEIGH
                && let Some(mac) = self_unicast(body, 3)
            {
                out.push(mac);
            }
        };
        assert_eq!(walk(&buf, &mut keep), Reply::More);
        let mut done = vec![0u8; NLMSG_HDRLEN + 4];
        done[0] = done.len() as u8;
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(walk(&done, &mut keep), Reply::Done);
        // A cut message is an error, not a silent partial answer.
        assert_eq!(walk(&buf[..20], &mut keep), Reply::Error(libc::EBADMSG));
        assert_eq!(out, vec![child]);
    }

    #[test]
    fn the_links_own_attributes_are_read_from_netlink() {
        // Loopback exists in every namespace: index 1, ARPHRD_LOOPBACK, an all-zero MAC.
        let lo = attrs(1).expect("RTM_GETLINK of lo");
        assert_eq!(lo.hatype, 772);
        assert_eq!(lo.mac, Some([0; 6]));
        assert_eq!(lo.master, None);
        assert_eq!(kind("lo", 1).expect("kind"), LinkKind::Ethernet);
        assert!(own_macs(1).expect("own macs of lo").is_empty());
    }
}
