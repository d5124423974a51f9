//! The frame parser: Ethernet, at most one 802.1Q/802.1ad tag, an optional PPPoE session header,
//! IPv4 (with options) or IPv6; or, on raw-IP links (ppp0, wg0, tun), IPv4 or IPv6 from the
//! frame's first byte.
//!
//! It reads through the [`Frame`] trait so that the same code runs on a `&[u8]` in userspace and on
//! an `__sk_buff` in the kernel. It applies the length rule of docs/counting.md ("How many bytes"): count the IP
//! length field, but a length of 0 (GSO/BIG TCP) or one larger than the frame means "what is
//! actually there"; never count bytes that are not on the wire.

use crate::abi::{ErrorKind, FAMILY_V4, FAMILY_V6, LINK_RAW_IP};

const ETH_HLEN: u32 = 14;
const VLAN_HLEN: u32 = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// PPPoE session stage (RFC 2516): a 6-byte PPPoE header, then the 2-byte PPP protocol.
const ETH_P_PPPOE_SES: u16 = 0x8864;
const PPPOE_HLEN: u32 = 6 + 2;
/// PPPoE version 1, type 1; code 0 is session data (RFC 2516 section 4).
const PPPOE_VER_TYPE: u8 = 0x11;
const PPPOE_CODE_SESSION: u8 = 0;
/// PPP protocol numbers of IPv4 and IPv6 (RFC 1332, RFC 5072).
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
const IPV4_MIN_HLEN: u32 = 20;
const IPV6_HLEN: u32 = 40;

/// IP protocol numbers the GSO correction understands.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol numbers the GSO correction understands.
pub const IPPROTO_UDP: u8 = 17;

/// What a link puts before the IP header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkKind {
    /// An Ethernet header, perhaps a VLAN tag, perhaps a PPPoE session header.
    #[default]
    Ethernet,
    /// Nothing: the frame starts with the IP header (ARPHRD_PPP, ARPHRD_NONE for tun and
    /// WireGuard, ARPHRD_RAWIP, IP-in-IP tunnels).
    RawIp,
}

impl LinkKind {
    /// The kind stored in [`crate::abi::CONFIG_LINK`] (anything but [`LINK_RAW_IP`] is Ethernet,
    /// the initial zero included).
    #[inline(always)]
    pub const fn from_config(value: u64) -> Self {
        if value == LINK_RAW_IP {
            LinkKind::RawIp
        } else {
            LinkKind::Ethernet
        }
    }

    /// The value for [`crate::abi::CONFIG_LINK`].
    pub const fn config(self) -> u64 {
        match self {
            LinkKind::Ethernet => crate::abi::LINK_ETHERNET,
            LinkKind::RawIp => LINK_RAW_IP,
        }
    }

    /// The kind of a device's ARPHRD type (`/sys/class/net/IF/type`, linux/if_arp.h), `None` for
    /// links whose frames this parser cannot read.
    pub const fn from_arphrd(hatype: u16) -> Option<Self> {
        match hatype {
            // ETHER, LOOPBACK (an all-zero Ethernet header).
            1 | 772 => Some(LinkKind::Ethernet),
            // PPP, RAWIP, NONE (tun, WireGuard), TUNNEL (ipip), TUNNEL6 (ip6tnl), SIT: no
            // header_ops, so the skb and the packet socket see the IP header first.
            512 | 519 | 0xfffe | 768 | 769 | 776 => Some(LinkKind::RawIp),
            _ => None,
        }
    }
}

/// Read access to one captured frame, starting at its link-layer header (which may be empty).
pub trait Frame {
    /// Length of the whole frame as the kernel holds it (link-layer header included).
    fn frame_len(&self) -> u32;

    /// `N` bytes at `offset`, or `None` when the frame is shorter than `offset + N`.
    fn read<const N: usize>(&self, offset: u32) -> Option<[u8; N]>;
}

impl Frame for [u8] {
    fn frame_len(&self) -> u32 {
        u32::try_from(<[u8]>::len(self)).unwrap_or(u32::MAX)
    }

    fn read<const N: usize>(&self, offset: u32) -> Option<[u8; N]> {
        let start = offset as usize;
        let bytes = self.get(start..start.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
}

/// The two ends of an IP packet, in network order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addrs {
    /// IPv4 source and destination.
    V4([u8; 4], [u8; 4]),
    /// IPv6 source and destination.
    V6([u8; 16], [u8; 16]),
}

impl Addrs {
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    #[inline(always)]
    pub const fn family(&self) -> u8 {
        match self {
            Addrs::V4(..) => FAMILY_V4,
            Addrs::V6(..) => FAMILY_V6,
        }
    }
}

/// What the parser learned from a frame's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpHeader {
    /// Source and destination.
    pub addrs: Addrs,
    /// Bytes before the IP header (Ethernet header, tag, PPPoE session header; 0 on raw IP).
    pub l2_len: u32,
    /// IP header length (IPv4 IHL * 4; 40 for IPv6: extension headers are payload here).
    pub l3_hdr_len: u32,
    /// IP-layer bytes of this (possibly super-) packet after the length rule.
    pub ip_len: u32,
    /// IPv4 protocol or IPv6 next header.
    pub protocol: u8,
    /// The length field claimed more than the frame holds, so `ip_len` was clamped.
    pub clamped: bool,
    /// An IPv4 fragment other than the first (non-zero fragment offset): no transport header.
    pub later_fragment: bool,
}

/// Ethernet with one tag and a fixed IPv6 header: what the fast path reads at once. Every real
/// Ethernet frame (60 bytes at least) is this long.
const FAST_READ: usize = 18 + 40;

/// Parses the link and IP headers of a frame of a link of kind `link`.
#[inline(always)]
pub fn parse_link<F: Frame + ?Sized>(frame: &F, link: LinkKind) -> Result<IpHeader, ErrorKind> {
    match link {
        LinkKind::Ethernet => parse(frame),
        LinkKind::RawIp => parse_raw(frame),
    }
}

/// Parses a raw-IP frame: the version nibble of the first byte says which IP it is.
#[inline(always)]
fn parse_raw<F: Frame + ?Sized>(frame: &F) -> Result<IpHeader, ErrorKind> {
    let len = frame.frame_len();
    // One read covers an IPv6 header or an IPv4 one with room to spare; shorter packets (small
    // IPv4 ones) take a second, smaller read.
    if let Some(h) = frame.read::<40>(0) {
        return match h[0] >> 4 {
            4 => {
                let mut v4 = [0u8; 20];
                v4.copy_from_slice(&h[..20]);
                ipv4_header(&v4, 0, len)
            }
            6 => ipv6_header(&h, 0, len),
            _ => Err(ErrorKind::BadVersion),
        };
    }
    match frame.read::<20>(0) {
        Some(h) if h[0] >> 4 == 4 => ipv4_header(&h, 0, len),
        Some(h) if h[0] >> 4 == 6 => Err(ErrorKind::TruncatedL3),
        Some(_) => Err(ErrorKind::BadVersion),
        None => Err(ErrorKind::TruncatedL3),
    }
}

/// A PPPoE session frame whose PPPoE header starts at `at`: the IP packet behind it.
#[inline(always)]
fn parse_pppoe<F: Frame + ?Sized>(frame: &F, at: u32) -> Result<IpHeader, ErrorKind> {
    let h = frame.read::<8>(at).ok_or(ErrorKind::TruncatedL2)?;
    if h[0] != PPPOE_VER_TYPE || h[1] != PPPOE_CODE_SESSION {
        return Err(ErrorKind::NotIp);
    }
    let l2 = at + PPPOE_HLEN;
    let present = frame.frame_len().saturating_sub(l2);
    // LCP, IPCP, IPv6CP, CHAP... are the link's own chatter, not traffic.
    match u16::from_be_bytes([h[6], h[7]]) {
        PPP_IPV4 => parse_ipv4(frame, l2, present),
        PPP_IPV6 => parse_ipv6(frame, l2, present),
        _ => Err(ErrorKind::NotIp),
    }
}

/// Parses the Ethernet and IP headers of a frame.
#[inline(always)]
pub fn parse<F: Frame + ?Sized>(frame: &F) -> Result<IpHeader, ErrorKind> {
    // Fast path: one read covers the link header and the whole fixed IP header (in the kernel
    // every read is a helper call). Runts and cut frames take the general path below, which
    // applies the same rules read by read.
    if let Some(head) = frame.read::<FAST_READ>(0) {
        let outer = u16::from_be_bytes([head[12], head[13]]);
        // Constant offsets on each branch: in the kernel a copy at a variable offset is a loop.
        return if outer == ETH_P_8021Q || outer == ETH_P_8021AD {
            let inner = u16::from_be_bytes([head[16], head[17]]);
            fast::<18, F>(frame, &head, inner, frame.frame_len().saturating_sub(18))
        } else {
            fast::<14, F>(frame, &head, outer, frame.frame_len().saturating_sub(14))
        };
    }
    let [t0, t1] = frame.read::<2>(12).ok_or(ErrorKind::TruncatedL2)?;
    let mut ethertype = u16::from_be_bytes([t0, t1]);
    let mut l2_len = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let [i0, i1] = frame.read::<2>(16).ok_or(ErrorKind::TruncatedL2)?;
        ethertype = u16::from_be_bytes([i0, i1]);
        l2_len = ETH_HLEN + VLAN_HLEN;
    }
    // `read` above proved the frame holds at least `l2_len` bytes.
    let present = frame.frame_len().saturating_sub(l2_len);
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(frame, l2_len, present),
        ETH_P_IPV6 => parse_ipv6(frame, l2_len, present),
        ETH_P_PPPOE_SES => parse_pppoe(frame, l2_len),
        // Anything else, including a second VLAN tag, is not ours to count.
        _ => Err(ErrorKind::NotIp),
    }
}

/// The fast path's IP parsing, with the link header `L2` bytes long. PPPoE takes the general
/// path's reads (its header does not fit in the fast read), so plain IP pays nothing for it.
#[inline(always)]
fn fast<const L2: usize, F: Frame + ?Sized>(
    frame: &F,
    head: &[u8; FAST_READ],
    ethertype: u16,
    present: u32,
) -> Result<IpHeader, ErrorKind> {
    match ethertype {
        ETH_P_IPV4 => {
            let mut h = [0u8; 20];
            h.copy_from_slice(&head[L2..L2 + 20]);
            ipv4_header(&h, L2 as u32, present)
        }
        ETH_P_IPV6 => {
            let mut h = [0u8; 40];
            h.copy_from_slice(&head[L2..L2 + 40]);
            ipv6_header(&h, L2 as u32, present)
        }
        ETH_P_PPPOE_SES => parse_pppoe(frame, L2 as u32),
        // Anything else, including a second VLAN tag, is not ours to count.
        _ => Err(ErrorKind::NotIp),
    }
}

#[inline(always)]
fn parse_ipv4<F: Frame + ?Sized>(frame: &F, l2: u32, present: u32) -> Result<IpHeader, ErrorKind> {
    let h = frame.read::<20>(l2).ok_or(ErrorKind::TruncatedL3)?;
    ipv4_header(&h, l2, present)
}

/// The IPv4 rules over a fixed header read from offset `l2`.
#[inline(always)]
fn ipv4_header(h: &[u8; 20], l2: u32, present: u32) -> Result<IpHeader, ErrorKind> {
    if present < IPV4_MIN_HLEN {
        return Err(ErrorKind::TruncatedL3);
    }
    if h[0] >> 4 != 4 {
        return Err(ErrorKind::BadVersion);
    }
    let hdr_len = ((h[0] & 0x0f) as u32) * 4;
    if hdr_len < IPV4_MIN_HLEN || hdr_len > present {
        return Err(ErrorKind::BadHeader);
    }
    let tot_len = u16::from_be_bytes([h[2], h[3]]) as u32;
    let (ip_len, clamped) = match tot_len {
        // GSO and BIG TCP super-packets may carry 0: count what is there.
        0 => (present, false),
        n if n < hdr_len => return Err(ErrorKind::BadHeader),
        n if n > present => (present, true),
        n => (n, false),
    };
    Ok(IpHeader {
        addrs: Addrs::V4([h[12], h[13], h[14], h[15]], [h[16], h[17], h[18], h[19]]),
        l2_len: l2,
        l3_hdr_len: hdr_len,
        ip_len,
        protocol: h[9],
        clamped,
        // Fragment offset (RFC 791): the low 13 bits of bytes 6-7.
        later_fragment: u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0,
    })
}

#[inline(always)]
fn parse_ipv6<F: Frame + ?Sized>(frame: &F, l2: u32, present: u32) -> Result<IpHeader, ErrorKind> {
    // One read of the whole fixed header: in the kernel every read is a helper call.
    let h = frame.read::<40>(l2).ok_or(ErrorKind::TruncatedL3)?;
    ipv6_header(&h, l2, present)
}

/// The IPv6 rules over a fixed header read from offset `l2`.
#[inline(always)]
fn ipv6_header(h: &[u8; 40], l2: u32, present: u32) -> Result<IpHeader, ErrorKind> {
    if present < IPV6_HLEN {
        return Err(ErrorKind::TruncatedL3);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    if h[0] >> 4 != 6 {
        return Err(ErrorKind::BadVersion);
    }
    let payload_len = u16::from_be_bytes([h[4], h[5]]) as u32;
    let (ip_len, clamped) = match payload_len {
        // Jumbograms and BIG TCP carry 0: count what is there.
        0 => (present, false),
        n if IPV6_HLEN + n > present => (present, true),
        n => (IPV6_HLEN + n, false),
    };
    Ok(IpHeader {
        addrs: Addrs::V6(src, dst),
        l2_len: l2,
        l3_hdr_len: IPV6_HLEN,
        ip_len,
        protocol: h[6],
        clamped,
        // Extension headers are payload here: a fragment header shows as next header 44.
        later_fragment: false,
    })
}

/// Transport header length of a TCP or UDP packet, for the GSO correction.
#[inline(always)]
pub fn l4_header_len<F: Frame + ?Sized>(frame: &F, ip: &IpHeader) -> Option<u32> {
    let l4 = ip.l2_len + ip.l3_hdr_len;
    match ip.protocol {
        IPPROTO_TCP => {
            let [doff] = frame.read::<1>(l4 + 12)?;
            let len = ((doff >> 4) as u32) * 4;
            if len >= 20 { Some(len) } else { None }
        }
        IPPROTO_UDP => Some(8),
        _ => None,
    }
}

/// Source and destination ports (host order) of a TCP or UDP packet that carries its transport
/// header: not for later IPv4 fragments, other protocols, or a header the frame does not hold.
#[inline(always)]
pub fn l4_ports<F: Frame + ?Sized>(frame: &F, ip: &IpHeader) -> Option<(u16, u16)> {
    match ports_offset(ip) {
        0 => None,
        at => ports_at(frame, at),
    }
}

/// Frame offset of the ports of a TCP or UDP packet that carries its transport header; 0 for
/// later IPv4 fragments, other protocols (ICMP, an IPv6 extension header such as a fragment
/// header), or an IP packet too short to hold the ports (never read ports from padding).
#[inline(always)]
pub fn ports_offset(ip: &IpHeader) -> u32 {
    let tcp_or_udp = ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP;
    if ip.later_fragment || !tcp_or_udp || ip.ip_len < ip.l3_hdr_len + 4 {
        return 0;
    }
    ip.l2_len + ip.l3_hdr_len
}

/// The two ports (host order) at frame offset `at`, when the frame holds them.
#[inline(always)]
pub fn ports_at<F: Frame + ?Sized>(frame: &F, at: u32) -> Option<(u16, u16)> {
    let p = frame.read::<4>(at)?;
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}
