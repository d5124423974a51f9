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
//! It reads netlink and sysfs; it does not know how the capture uses what it finds.

use std::{fs, io};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use sentinel_common::frame::LinkKind;

/// Reading the link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// `/sys/class/net/IF/type` could not be read or parsed.
    #[error("reading the link type of {iface:?} from /sys/class/net failed")]
    Type {
        iface: String,
        #[source]
        source: io::Error,
    },
    /// The link type is not one the parser reads.
    #[error("interface {iface:?} has link type {hatype} (ARPHRD_*), which is neither Ethernet nor raw IP; not supported")]
    Unsupported { iface: String, hatype: u16 },
    /// The netlink dump of the unicast address lists failed.
    #[error("listing the unicast addresses of interface index {ifindex} over netlink failed")]
    Dump {
        ifindex: u32,
        #[source]
        source: io::Error,
    },
}

/// The ARPHRD type of `iface` (`/sys/class/net/IF/type`, linux/if_arp.h).
pub fn arphrd(iface: &str) -> Result<u16, LinkError> {
    let err = |source| LinkError::Type {
        iface: iface.to_owned(),
        source,
    };
    let text = fs::read_to_string(format!("/sys/class/net/{iface}/type")).map_err(err)?;
    text.trim()
        .parse::<u16>()
        .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// The link kind of `iface`, refusing link types the parser cannot read.
pub fn kind(iface: &str) -> Result<LinkKind, LinkError> {
    let hatype = arphrd(iface)?;
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
        519 => "rawip",
        0xfffe => "none (tun/wireguard, raw IP)",
        768 => "ipip (raw IP)",
        769 => "ip6tnl (raw IP)",
        776 => "sit (raw IP)",
        _ => "unsupported",
    }
}

/// The NAS's MACs on `iface` (index `ifindex`) besides its own: its macvlan/macvtap children's
/// and its master bridge's. Sorted, no duplicates.
pub fn own_macs(iface: &str, ifindex: u32) -> Result<Vec<[u8; 6]>, LinkError> {
    let own = read_mac(&format!("/sys/class/net/{iface}/address"));
    let mut out = unicast_list(ifindex)?;
    if let Some(master) = read_mac(&format!("/sys/class/net/{iface}/master/address")) {
        out.push(master);
    }
    out.retain(|m| Some(*m) != own);
    out.sort();
    out.dedup();
    Ok(out)
}

/// A MAC address as sysfs prints it (`aa:bb:cc:dd:ee:ff`), `None` when absent or not one.
fn read_mac(path: &str) -> Option<[u8; 6]> {
    parse_mac(fs::read_to_string(path).ok()?.trim())
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
/// `struct ndmsg`: family, pad, pad, ifindex, state, flags, type.
const NDMSG_LEN: usize = 12;
const NDA_LLADDR: u16 = 2;
/// The entry is the device's own (its address list), not a bridge's learned entry.
const NTF_SELF: u8 = 0x02;
const AF_BRIDGE: u8 = 7;

/// The unicast entries of the interface's own address list, by a netlink dump.
fn unicast_list(ifindex: u32) -> Result<Vec<[u8; 6]>, LinkError> {
    let err = |source| LinkError::Dump { ifindex, source };
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(err)?;
    socket.bind_auto().map_err(err)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(err)?;
    let mut req = [0u8; NLMSG_HDRLEN + NDMSG_LEN];
    let len = req.len() as u32;
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[NLMSG_HDRLEN] = AF_BRIDGE;
    socket.send(&req, 0).map_err(err)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // A dump ends with NLMSG_DONE; the bound only guards against a kernel that never says so.
    for _ in 0..10_000 {
        let n = socket.recv(&mut &mut buf[..], 0).map_err(err)?;
        match parse_dump(&buf[..n.min(buf.len())], ifindex, &mut out) {
            Dump::More => {}
            Dump::Done => return Ok(out),
            Dump::Error(code) => return Err(err(io::Error::from_raw_os_error(code))),
        }
    }
    Err(err(io::Error::other("the netlink dump did not end")))
}

/// What one buffer of a dump said.
#[derive(Debug, PartialEq, Eq)]
enum Dump {
    More,
    Done,
    Error(i32),
}

/// Collects the unicast `self` entries of `ifindex` from one buffer of netlink messages.
fn parse_dump(mut buf: &[u8], ifindex: u32, out: &mut Vec<[u8; 6]>) -> Dump {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Dump::Error(libc::EBADMSG);
        }
        let body = &buf[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return Dump::Done,
            NLMSG_ERROR => {
                let code = body
                    .get(..4)
                    .map_or(libc::EBADMSG, |b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                return if code == 0 { Dump::Done } else { Dump::Error(code) };
            }
            RTM_NEWNEIGH if body.len() >= NDMSG_LEN => {
                let index = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
                if index == ifindex
                    && body[10] & NTF_SELF != 0
                    && let Some(mac) = lladdr(&body[NDMSG_LEN..])
                    // Multicast and broadcast entries (group bit set) are not a host's address.
                    && mac[0] & 1 == 0
                {
                    out.push(mac);
                }
            }
            _ => {}
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    Dump::More
}

/// The 6-byte NDA_LLADDR attribute among `attrs`.
fn lladdr(mut attrs: &[u8]) -> Option<[u8; 6]> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NDA_LLADDR && len == 4 + 6 {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&attrs[4..10]);
            return Some(mac);
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
        assert_eq!(parse_dump(&buf, 3, &mut out), Dump::More);
        assert_eq!(out, vec![child]);
        let mut done = vec![0u8; NLMSG_HDRLEN + 4];
        done[0] = done.len() as u8;
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(parse_dump(&done, 3, &mut out), Dump::Done);
        // A cut message is an error, not a silent partial answer.
        assert_eq!(
            parse_dump(&buf[..20], 3, &mut out),
            Dump::Error(libc::EBADMSG)
        );
    }

    #[test]
    fn macs_parse_as_sysfs_prints_them() {
        assert_eq!(
            parse_mac("4e:11:85:93:6a:4c"),
            Some([0x4e, 0x11, 0x85, 0x93, 0x6a, 0x4c])
        );
        assert_eq!(parse_mac("4e:11:85:93:6a"), None);
        assert_eq!(parse_mac("4e:11:85:93:6a:4c:00"), None);
        assert_eq!(parse_mac(""), None);
    }
}
