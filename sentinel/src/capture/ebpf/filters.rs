//! Whether our netlink (clsact) filter is still on an interface: one RTM_GETTFILTER dump per
//! direction, looking for a `bpf` filter running our program id. aya 0.14 has no public query for
//! this; the message layout is linux/rtnetlink.h (`struct tcmsg`) and linux/pkt_cls.h
//! (`TCA_BPF_ID`). Parsing is bounds-checked: a malformed answer is an error, never a panic.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

const RTM_NEWTFILTER: u16 = 44;
const RTM_GETTFILTER: u16 = 46;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
const TCMSG_LEN: usize = 20;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_ID: u16 = 11;
/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)` and `..._EGRESS`.
pub const PARENT_INGRESS: u32 = 0xFFFF_FFF2;
/// See [`PARENT_INGRESS`].
pub const PARENT_EGRESS: u32 = 0xFFFF_FFF3;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {what}"))
}

/// The attributes of a block: (type without flags, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & 0x3fff;
        let payload = b.get(4..len)?;
        b = b.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// Whether one RTM_NEWTFILTER payload (after the header) is a bpf filter running `program_id`.
fn runs(payload: &[u8], program_id: u32) -> bool {
    let Some(rest) = payload.get(TCMSG_LEN..) else {
        return false;
    };
    let mut is_bpf = false;
    let mut id = None;
    for (kind, value) in attrs(rest) {
        match kind {
            TCA_KIND => is_bpf = value.starts_with(b"bpf"),
            TCA_OPTIONS => {
                id = attrs(value)
                    .find(|(k, _)| *k == TCA_BPF_ID)
                    .and_then(|(_, v)| u32_at(v, 0))
            }
            _ => {}
        }
    }
    is_bpf && id == Some(program_id)
}

/// Whether a bpf filter running `program_id` sits under `parent` of interface `ifindex`.
pub fn has_program(ifindex: u32, parent: u32, program_id: u32) -> io::Result<bool> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + TCMSG_LEN);
    req.extend_from_slice(&((NLMSG_HDRLEN + TCMSG_LEN) as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETTFILTER.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    req.extend_from_slice(&[0u8; 4]); // family AF_UNSPEC, padding
    req.extend_from_slice(&ifindex.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // handle
    req.extend_from_slice(&parent.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // info
    socket.send(&req, 0)?;
    let mut found = false;
    let mut buf = vec![0u8; 32 * 1024];
    // A dump of one interface's filters is a few messages; bound the loop anyway.
    for _ in 0..1024 {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        let mut at = 0;
        while at + NLMSG_HDRLEN <= n {
            let len = u32_at(&buf, at).ok_or_else(|| bad("short header"))? as usize;
            let kind = u16_at(&buf, at + 4).ok_or_else(|| bad("short header"))?;
            if len < NLMSG_HDRLEN || at + len > n {
                return Err(bad("message length"));
            }
            let payload = &buf[at + NLMSG_HDRLEN..at + len];
            match kind {
                NLMSG_DONE => return Ok(found),
                NLMSG_ERROR => {
                    let code = u32_at(payload, 0).ok_or_else(|| bad("short error"))? as i32;
                    return match code {
                        0 => Ok(found),
                        // No clsact qdisc (or no such interface): no filter of ours.
                        c if -c == libc::EINVAL || -c == libc::ENOENT => Ok(false),
                        c => Err(io::Error::from_raw_os_error(-c)),
                    };
                }
                RTM_NEWTFILTER => found |= runs(payload, program_id),
                _ => {}
            }
            at += len.next_multiple_of(4);
        }
    }
    Err(bad("the filter dump did not end"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    #[test]
    fn a_bpf_filter_with_our_id_is_recognised_and_garbage_is_not() {
        let mut payload = vec![0u8; TCMSG_LEN];
        payload.extend(attr(TCA_KIND, b"bpf\0"));
        let mut options = attr(7, b"sentinel\0");
        options.extend(attr(TCA_BPF_ID, &42u32.to_ne_bytes()));
        payload.extend(attr(TCA_OPTIONS | 0x8000, &options));
        assert!(runs(&payload, 42));
        assert!(!runs(&payload, 43));
        let mut u32_filter = vec![0u8; TCMSG_LEN];
        u32_filter.extend(attr(TCA_KIND, b"u32\0"));
        assert!(!runs(&u32_filter, 42));
        // Truncated or lying lengths end the walk; they never panic.
        for cut in 0..payload.len() {
            let _ = runs(&payload[..cut], 42);
        }
        let mut lying = vec![0u8; TCMSG_LEN];
        lying.extend_from_slice(&[0xff, 0xff, 1, 0]);
        assert!(!runs(&lying, 42));
    }
}
