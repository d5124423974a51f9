//! Parse + classify + GSO correction: what one frame adds to the counters.
//!
//! Both capture paths call [`account`] and nothing else, so they count identically.
//! A GSO (egress) or GRO (ingress) super-packet is counted as the segments that crossed the wire:
//! `ip_len + (segs - 1) * (l3 + l4 header length)` IP bytes and `segs` packets.
//! It also says where the ports are ([`Accounting::ports_at`], the rule of
//! [`crate::frame::l4_ports`]), for [`crate::service`].

use crate::{
    abi::{ErrorKind, RemoteKey, Verdict},
    addr::AddrFlags,
    frame::{Addrs, Frame, LinkKind, l4_header_len, parse_link, ports_offset},
    rules::{classify_v4, classify_v6},
};

/// What one frame adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accounting {
    /// Direction, or why it is not public traffic.
    pub verdict: Verdict,
    /// [`crate::abi::FAMILY_V4`] or [`crate::abi::FAMILY_V6`].
    pub family: u8,
    /// The public end (meaningful for [`Verdict::Up`] and [`Verdict::Down`]).
    pub remote: RemoteKey,
    /// Segments on the wire.
    pub packets: u64,
    /// IP-layer bytes on the wire.
    pub ip_bytes: u64,
    /// IP bytes plus the link-layer header of each segment.
    pub wire_bytes: u64,
    /// A correction that was applied and should be counted as an event.
    pub note: Option<ErrorKind>,
    /// IPv4 protocol or IPv6 next header.
    pub protocol: u8,
    /// Frame offset of the TCP/UDP ports, 0 when the packet carries none ([`crate::frame::ports_offset`]'s rule:
    /// later fragments, other protocols, a packet too short for them). Read only when the
    /// per-service counter wants them.
    pub ports_at: u32,
}

/// Accounts one frame of a `link` link. `gso_segs` is the kernel's segment count (0 or 1 for a
/// plain packet).
#[inline(always)]
pub fn account<F: Frame + ?Sized, A: AddrFlags + ?Sized>(
    frame: &F,
    link: LinkKind,
    gso_segs: u32,
    table: &A,
) -> Result<Accounting, ErrorKind> {
    let ip = parse_link(frame, link)?;
    let (verdict, remote) = match &ip.addrs {
        Addrs::V4(src, dst) => {
            let v = classify_v4(*src, *dst, table);
            let remote = if matches!(v, Verdict::Down) {
                *src
            } else {
                *dst
            };
            (v, RemoteKey::v4(remote))
        }
        Addrs::V6(src, dst) => {
            let v = classify_v6(src, dst, table);
            let remote = if matches!(v, Verdict::Down) {
                *src
            } else {
                *dst
            };
            (v, RemoteKey::v6(remote))
        }
    };
    let mut note = if ip.clamped {
        Some(ErrorKind::LengthBeyondFrame)
    } else {
        None
    };
    let segs = if gso_segs > 1 { gso_segs as u64 } else { 1 };
    let mut ip_bytes = ip.ip_len as u64;
    if segs > 1 {
        // Every segment after the first repeats the IP and transport headers.
        let l4 = match l4_header_len(frame, &ip) {
            Some(len) => len,
            None => {
                note = Some(ErrorKind::GsoNoL4);
                0
            }
        };
        ip_bytes += (segs - 1) * (ip.l3_hdr_len + l4) as u64;
    }
    Ok(Accounting {
        protocol: ip.protocol,
        ports_at: ports_offset(&ip),
        verdict,
        family: ip.addrs.family(),
        remote,
        packets: segs,
        ip_bytes,
        wire_bytes: ip_bytes + segs * ip.l2_len as u64,
        note,
    })
}
