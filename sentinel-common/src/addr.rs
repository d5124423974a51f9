//! Which addresses are "inside": the built-in non-public sets and the per-address flags.
//!
//! An address is *inside* when it is one of the NAS's own addresses, lies in a LAN prefix or a
//! user-declared inside prefix, or falls in a built-in non-public range (unless the user declared
//! it public). Userspace pushes the flags into LPM tries (one entry per prefix, each carrying the
//! flags of every prefix that contains it, so the longest match answers alone); the built-in sets
//! are pure functions here so they cost no map lookup.
//!
//! The built-in sets (documented in the README):
//! - IPv4: 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10 (RFC 6598 shared space), 127.0.0.0/8,
//!   169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 224.0.0.0/4 (multicast), 240.0.0.0/4
//!   (reserved, including 255.255.255.255).
//! - IPv6: :: and ::1, fc00::/7 (ULA), fe80::/10 (link-local), ff00::/8 (multicast).
//!
//! Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) and the
//! benchmark range 198.18.0.0/15 are public on purpose: the first are what tests use as "the
//! internet", and traffic to a fake-ip proxy in 198.18/15 leaves the home.

/// One of the NAS's own addresses (from netlink), including the broadcast address of its subnets.
pub const ADDR_LOCAL: u32 = 1 << 0;
/// Inside one of the IPv6 LAN prefixes (derived /56 or `EXCLUDE_IPV6_PREFIX`).
pub const ADDR_LAN_PREFIX: u32 = 1 << 1;
/// Inside a prefix the user declared non-public.
pub const ADDR_INSIDE: u32 = 1 << 2;
/// Inside a prefix the user declared public: overrides the built-in non-public sets.
pub const ADDR_PUBLIC: u32 = 1 << 3;

/// Flags that make an address inside whatever the built-in sets say.
const INSIDE_FLAGS: u32 = ADDR_LOCAL | ADDR_LAN_PREFIX | ADDR_INSIDE;

/// The built-in non-public IPv4 ranges as prefixes (what [`v4_builtin_nonpublic`] computes).
pub const BUILTIN_NONPUBLIC_V4: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 168, 0, 0], 16),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

/// The built-in non-public IPv6 ranges as prefixes (what [`v6_builtin_nonpublic`] computes).
pub const BUILTIN_NONPUBLIC_V6: &[([u8; 16], u8)] = &[
    ([0; 16], 128),
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 128),
    ([0xfc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 7),
    ([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 10),
    ([0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8),
];

/// Whether an IPv4 address (network order) is in a built-in non-public range.
#[inline(always)]
pub const fn v4_builtin_nonpublic(a: [u8; 4]) -> bool {
    match a[0] {
        0 | 10 | 127 => true,
        100 => a[1] & 0xc0 == 64,
        169 => a[1] == 254,
        172 => a[1] & 0xf0 == 16,
        192 => a[1] == 168,
        // 224/4 multicast and 240/4 reserved + limited broadcast.
        first => first >= 224,
    }
}

/// Whether an IPv6 address (network order) is in a built-in non-public range.
#[inline(always)]
pub const fn v6_builtin_nonpublic(a: &[u8; 16]) -> bool {
    match a[0] {
        // fc00::/7 ULA and ff00::/8 multicast.
        0xfc | 0xfd | 0xff => true,
        // fe80::/10 link-local.
        0xfe => a[1] & 0xc0 == 0x80,
        0 => {
            // :: and ::1. Every other address below 0100::/64 (IPv4-mapped, NAT64's 64:ff9b::) is
            // treated as what it stands for on the wire: a public peer.
            let mut i = 1;
            while i < 15 {
                if a[i] != 0 {
                    return false;
                }
                i += 1;
            }
            a[15] <= 1
        }
        _ => false,
    }
}

/// Whether an address is inside, given its trie flags and whether it is built-in non-public.
#[inline(always)]
pub const fn is_inside(flags: u32, builtin_nonpublic: bool) -> bool {
    if flags & INSIDE_FLAGS != 0 {
        return true;
    }
    builtin_nonpublic && flags & ADDR_PUBLIC == 0
}

/// Where the per-address flags come from: LPM tries in the kernel, a prefix table in userspace.
///
/// `builtin` says whether the address is built-in non-public: a source that knows no entry could
/// change the answer for such addresses (see `abi::SKIP_*`) may return 0 without looking.
pub trait AddrFlags {
    /// Flags of the longest prefix containing `addr` (0 when none does).
    fn flags_v4(&self, addr: [u8; 4], builtin: bool) -> u32;
    /// Flags of the longest prefix containing `addr` (0 when none does).
    fn flags_v6(&self, addr: &[u8; 16], builtin: bool) -> u32;
}
