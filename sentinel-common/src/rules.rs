//! The direction matrix: which packets count, in which direction, and who the remote is.
//!
//! From the seed (docs/counting.md, "Which direction"): a packet counts when exactly one end is inside;
//! `Up` when the inside end is the source, `Down` when it is the destination; the remote is the
//! other end. For IPv6, a packet whose two ends are both in LAN prefixes is LAN traffic first.
//! What "inside" means, and how it differs from the seed, is in [`crate::addr`].

use crate::{
    abi::Verdict,
    addr::{ADDR_LAN_PREFIX, AddrFlags, is_inside, v4_builtin_nonpublic, v6_builtin_nonpublic},
};

/// The verdict for a packet, given whether each end is inside.
#[inline(always)]
pub const fn direction(src_inside: bool, dst_inside: bool) -> Verdict {
    match (src_inside, dst_inside) {
        (true, false) => Verdict::Up,
        (false, true) => Verdict::Down,
        (true, true) => Verdict::Lan,
        (false, false) => Verdict::Transit,
    }
}

/// Classifies an IPv4 packet.
#[inline(always)]
pub fn classify_v4<A: AddrFlags + ?Sized>(src: [u8; 4], dst: [u8; 4], table: &A) -> Verdict {
    let (src_builtin, dst_builtin) = (v4_builtin_nonpublic(src), v4_builtin_nonpublic(dst));
    let src_inside = is_inside(table.flags_v4(src, src_builtin), src_builtin);
    let dst_inside = is_inside(table.flags_v4(dst, dst_builtin), dst_builtin);
    direction(src_inside, dst_inside)
}

/// Classifies an IPv6 packet.
#[inline(always)]
pub fn classify_v6<A: AddrFlags + ?Sized>(src: &[u8; 16], dst: &[u8; 16], table: &A) -> Verdict {
    let (src_builtin, dst_builtin) = (v6_builtin_nonpublic(src), v6_builtin_nonpublic(dst));
    let src_flags = table.flags_v6(src, src_builtin);
    let dst_flags = table.flags_v6(dst, dst_builtin);
    // Both ends in the home's delegated prefixes: LAN traffic, whatever else they are. (When a
    // built-in non-public end skipped its lookup it is inside anyway, so the verdict is Lan too.)
    if src_flags & dst_flags & ADDR_LAN_PREFIX != 0 {
        return Verdict::Lan;
    }
    direction(
        is_inside(src_flags, src_builtin),
        is_inside(dst_flags, dst_builtin),
    )
}
