//! Map names, key and value layouts shared by the eBPF program and the daemon.
//!
//! Every type is `#[repr(C)]`, `Copy`, has explicit padding and a size assertion, and uses integers
//! instead of `bool`/`Option`/enums, so both sides read the same bytes. Names stay within the
//! kernel's 15-byte limit. Bump [`ABI_VERSION`] whenever a layout here changes: the daemon uses it
//! to recognise pinned maps of an older layout.

/// Layout version of the maps below; pinned maps carry it in their directory name.
pub const ABI_VERSION: u32 = 5;

/// Name of the TC classifier program in the object file.
pub const PROGRAM_NAME: &str = "sentinel_tc";

/// Name of the empty baseline program used by the classifier benchmark (never attached).
pub const BASELINE_PROGRAM_NAME: &str = "sentinel_nop";

/// Per-CPU array of [`Counters`], indexed by [`totals_index`].
pub const MAP_TOTALS: &str = "SNT_TOTALS";
/// Per-CPU array of `u64`, indexed by [`ErrorKind`].
pub const MAP_ERRORS: &str = "SNT_ERRORS";
/// LPM trie of `[u8; 4]` keys (prefix length first, as the kernel's `bpf_lpm_trie_key`) -> `u32` address flags (see [`crate::addr`]).
pub const MAP_ADDRS_V4: &str = "SNT_ADDRS_V4";
/// LPM trie of `[u8; 16]` keys -> `u32` address flags (see [`crate::addr`]).
pub const MAP_ADDRS_V6: &str = "SNT_ADDRS_V6";

/// Array of `u64`: slot [`CONFIG_SKIP`] holds `SKIP_*` bits (lookups the program may leave out
/// because userspace knows no trie entry could change their answer; zero, the initial value,
/// means "always look up"); [`CONFIG_ABI`] and [`CONFIG_INSTANCE`] identify pinned maps.
pub const MAP_CONFIG: &str = "SNT_CONFIG";
/// Slots of [`MAP_CONFIG`] ([`CONFIG_SIDE`], [`CONFIG_LINK`] and [`CONFIG_SERVICES`] are in the
/// blocks below).
pub const CONFIG_SLOTS: u32 = 6;
/// [`MAP_CONFIG`] slot of the `SKIP_*` bits, read by the program.
pub const CONFIG_SKIP: u32 = 0;
/// [`MAP_CONFIG`] slot of the [`ABI_VERSION`] that created the pinned maps (userspace only).
pub const CONFIG_ABI: u32 = 1;
/// [`MAP_CONFIG`] slot of a random id given to a set of maps when created (userspace only): a
/// checkpoint taken from other maps does not apply to these.
pub const CONFIG_INSTANCE: u32 = 2;
/// No IPv4 trie entry can change the verdict of a built-in non-public IPv4 address.
pub const SKIP_V4_NONPUBLIC: u32 = 1 << 0;
/// No IPv4 trie entry can change the verdict of a public IPv4 address.
pub const SKIP_V4_PUBLIC: u32 = 1 << 1;
/// No IPv6 trie entry can change the verdict of a built-in non-public IPv6 address.
pub const SKIP_V6_NONPUBLIC: u32 = 1 << 2;
/// No IPv6 trie entry can change the verdict of a public IPv6 address.
pub const SKIP_V6_PUBLIC: u32 = 1 << 3;

// --- Per-remote counters: two maps swapped by the drain (the daemon's `capture::ebpf::remotes`
// module has the whole protocol). The program adds to the map [`CONFIG_SIDE`] names; each drain that finds it moved
// flips the slot, waits for an RCU grace period (every program run that could still see the old
// side has ended), then reads and deletes the now-idle map and zeroes its overflow slot. So the
// drain reads only remotes that moved, and every byte is read exactly once.

/// Per-CPU hash (not LRU: nothing is ever evicted) of [`RemoteKey`] -> [`RemoteCounters`], side 0.
pub const MAP_REMOTES_A: &str = "SNT_REMOTES_A";
/// The same for side 1.
pub const MAP_REMOTES_B: &str = "SNT_REMOTES_B";
/// Per-CPU array of [`RemoteCounters`], one slot per side: what a side's map had no room for
/// (more than [`REMOTES_MAX_ENTRIES`] distinct remotes between two drains). Per-remote sums plus
/// overflow always equal the up/down direction totals.
pub const MAP_OVERFLOW: &str = "SNT_OVERFLOW";
/// Slots of [`MAP_OVERFLOW`]: one per side.
pub const OVERFLOW_SLOTS: u32 = 2;
/// [`MAP_CONFIG`] slot of the side (0: [`MAP_REMOTES_A`], 1: [`MAP_REMOTES_B`]) the program adds
/// remotes to; written by the drain only.
pub const CONFIG_SIDE: u32 = 3;
/// Capacity of each per-remote map: distinct remotes between two drains (one second), with room
/// to spare; beyond it a side's [`MAP_OVERFLOW`] slot takes the bytes.
pub const REMOTES_MAX_ENTRIES: u32 = 16_384;
// --- End of the per-remote block.

// --- Per-service counters: the same two-sided protocol as the per-remote maps, on the same side
// slot ([`CONFIG_SIDE`]): one flip, one grace period, then the drain reads and deletes the idle
// side of both. Keyed by [`ServiceKey`] (see `sentinel_common::service` for the rule).

/// Per-CPU hash of [`ServiceKey`] -> [`RemoteCounters`], side 0.
pub const MAP_SERVICES_A: &str = "SNT_SVC_A";
/// The same for side 1.
pub const MAP_SERVICES_B: &str = "SNT_SVC_B";
/// Per-CPU array of [`RemoteCounters`], one slot per side: what a side's service map had no room
/// for. Per-service sums plus this overflow always equal the up/down direction totals.
pub const MAP_SVC_OVERFLOW: &str = "SNT_SVC_OVF";
/// Capacity of each per-service map: distinct services between two drains.
pub const SERVICES_MAX_ENTRIES: u32 = 4_096;
/// Hash of [`ListenKey`] -> `u32` (always 1): the ports the NAS listens on, pushed by userspace
/// from `/proc/net/{tcp,tcp6,udp,udp6}` every few seconds.
pub const MAP_LISTEN: &str = "SNT_LISTEN";
/// Capacity of [`MAP_LISTEN`].
pub const LISTEN_MAX_ENTRIES: u32 = 4_096;
/// [`MAP_CONFIG`] slot: [`SERVICES_ON`] (the initial zero) or [`SERVICES_OFF`], read by the
/// program for every public packet. Off exists for the benchmark (cost with and without).
pub const CONFIG_SERVICES: u32 = 5;
/// Per-service counting is on.
pub const SERVICES_ON: u64 = 0;
/// Per-service counting is off: the program adds nothing to the service maps.
pub const SERVICES_OFF: u64 = 1;
/// [`ServiceKey::role`]: the NAS-side port is one the NAS listens on; the key is that port.
pub const ROLE_SERVER: u8 = 0;
/// [`ServiceKey::role`]: the NAS-side port is not a listening one (the NAS is the client); the
/// key is the remote's port.
pub const ROLE_CLIENT: u8 = 1;
/// [`ServiceKey::role`]: the packet has no ports (ICMP, later fragments, other protocols, a
/// transport header cut short); the key is the protocol alone, port 0.
pub const ROLE_NONE: u8 = 2;

/// Key of [`MAP_SERVICES_A`] and [`MAP_SERVICES_B`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The port, in host order (0 for [`ROLE_NONE`]).
    pub port: u16,
    /// IPv4 protocol or IPv6 next header (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 44 an IPv6 fragment
    /// header...).
    pub proto: u8,
    /// [`ROLE_SERVER`], [`ROLE_CLIENT`] or [`ROLE_NONE`].
    pub role: u8,
}
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 4);

/// Key of [`MAP_LISTEN`]: a protocol and a port the NAS listens on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenKey {
    /// The port, in host order.
    pub port: u16,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Always zero.
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<ListenKey>() == 4);

impl ListenKey {
    /// The key of `port` of `proto`.
    #[inline(always)]
    pub const fn new(proto: u8, port: u16) -> Self {
        Self {
            port,
            proto,
            _pad: 0,
        }
    }
}
// --- End of the per-service block.
/// Capacity of each address trie: local addresses plus LAN and user prefixes.
pub const ADDRS_MAX_ENTRIES: u32 = 1_024;

// ---- Link layer: the link header kind and the MAC addresses of the NAS's own children ----

/// [`MAP_CONFIG`] slot of the monitored link's header kind, read by the program for every frame:
/// [`LINK_ETHERNET`] (the initial zero) or [`LINK_RAW_IP`].
pub const CONFIG_LINK: u32 = 4;
/// Frames start with an Ethernet header (Ethernet, Wi-Fi as the kernel presents it, veth, bridges,
/// macvlan, loopback).
pub const LINK_ETHERNET: u64 = 0;
/// Frames start at the IP header (ppp0, wg0, tun0/tailscale0, ipip...).
pub const LINK_RAW_IP: u64 = 1;
/// Hash of [`MacKey`] -> `u32` (always 1): unicast MAC addresses that are the NAS's own although
/// they are not the monitored interface's (macvlan/macvtap children, the master bridge). A
/// received frame for one of them is counted although the kernel marks it PACKET_OTHERHOST.
pub const MAP_MACS: &str = "SNT_MACS";
/// Capacity of [`MAP_MACS`]: children of one interface.
pub const MACS_MAX_ENTRIES: u32 = 256;

/// Key of [`MAP_MACS`]: a MAC address, padded to 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacKey {
    /// The address as on the wire.
    pub addr: [u8; 6],
    /// Always zero.
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<MacKey>() == 8);

impl MacKey {
    /// The key of `addr`.
    #[inline(always)]
    pub const fn new(addr: [u8; 6]) -> Self {
        Self { addr, _pad: [0; 2] }
    }
}

// ---- end of the link-layer block ----

/// Address family as stored in keys and indices.
pub const FAMILY_V4: u8 = 0;
/// Address family as stored in keys and indices.
pub const FAMILY_V6: u8 = 1;

/// What a counted (or deliberately ignored) IP packet was.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Inside -> public: the NAS uploads.
    Up = 0,
    /// Public -> inside: the NAS downloads.
    Down = 1,
    /// Both ends inside (LAN, loopback, multicast, intra-prefix IPv6): never counted as traffic.
    Lan = 2,
    /// Both ends public (transit through a bridge or a promiscuous NIC): never counted.
    Transit = 3,
}

impl Verdict {
    /// All verdicts, in index order.
    pub const ALL: [Verdict; 4] = [Verdict::Up, Verdict::Down, Verdict::Lan, Verdict::Transit];
}

/// Number of slots in [`MAP_TOTALS`]: one per verdict and family.
pub const TOTALS_SLOTS: u32 = 8;

/// Slot of [`MAP_TOTALS`] for a verdict and a family.
#[inline(always)]
pub const fn totals_index(verdict: Verdict, family: u8) -> u32 {
    (verdict as u32) * 2 + (family as u32 & 1)
}

/// Packet and byte counters of one [`MAP_TOTALS`] slot. Monotonic; never reset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets as they crossed the wire (a GSO/GRO super-packet counts its segments).
    pub packets: u64,
    /// IP-layer bytes as they crossed the wire (IPv4 `tot_len`, IPv6 `40 + payload_len`, per segment).
    pub ip_bytes: u64,
    /// `ip_bytes` plus the link-layer header of every segment (Ethernet and VLAN tag; no FCS).
    pub wire_bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counters>() == 24);

/// Key of [`MAP_REMOTES_A`] and [`MAP_REMOTES_B`]: the remote (public) end of a counted packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteKey {
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Always zero.
    pub _pad: [u8; 3],
    /// The address in network order; an IPv4 address uses the first four bytes, the rest are zero.
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<RemoteKey>() == 20);

impl RemoteKey {
    /// Key of an IPv4 remote.
    #[inline(always)]
    pub const fn v4(a: [u8; 4]) -> Self {
        let mut addr = [0u8; 16];
        addr[0] = a[0];
        addr[1] = a[1];
        addr[2] = a[2];
        addr[3] = a[3];
        Self {
            family: FAMILY_V4,
            _pad: [0; 3],
            addr,
        }
    }

    /// Key of an IPv6 remote.
    #[inline(always)]
    pub const fn v6(addr: [u8; 16]) -> Self {
        Self {
            family: FAMILY_V6,
            _pad: [0; 3],
            addr,
        }
    }
}

/// Value of [`MAP_REMOTES_A`], [`MAP_REMOTES_B`] and [`MAP_OVERFLOW`]: what the NAS exchanged with
/// one remote since the drain last read (and deleted) its entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteCounters {
    /// Packets sent to the remote.
    pub up_packets: u64,
    /// IP bytes sent to the remote (GSO-corrected).
    pub up_bytes: u64,
    /// Packets received from the remote.
    pub down_packets: u64,
    /// IP bytes received from the remote (GSO-corrected).
    pub down_bytes: u64,
}
const _: () = assert!(core::mem::size_of::<RemoteCounters>() == 32);

/// Why a frame was not counted, or was counted with a correction. Indices of [`MAP_ERRORS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not IPv4 or IPv6 (ARP, LLDP, PPPoE discovery and control, a second VLAN tag...): passed
    /// on, not counted.
    NotIp = 0,
    /// Shorter than its Ethernet (or VLAN, or PPPoE session) header.
    TruncatedL2 = 1,
    /// Shorter than the minimal IP header.
    TruncatedL3 = 2,
    /// The IP version nibble does not match the EtherType.
    BadVersion = 3,
    /// IPv4 IHL below 5, header beyond the frame, or `tot_len` shorter than the header.
    BadHeader = 4,
    /// The IP length field claims more bytes than the frame holds; what is there was counted.
    LengthBeyondFrame = 5,
    /// A GSO super-packet whose transport header could not be read; counted without the correction.
    GsoNoL4 = 6,
    /// The per-remote map had no room for a new remote: its bytes went to the side's overflow slot
    /// ([`MAP_OVERFLOW`], shown as "other"); direction totals were counted as always.
    RemoteUpdate = 7,
    /// Received for another host's MAC address (PACKET_OTHERHOST: a promiscuous NIC, a bridge
    /// flooding unknown unicast) that is not one of the NAS's own ([`MAP_MACS`]): other hosts'
    /// traffic, never the NAS's (the seed counted it, D9).
    OtherHost = 8,
}

/// Number of slots in [`MAP_ERRORS`].
pub const ERROR_SLOTS: u32 = 9;

/// `skb->pkt_type` / `sll_pkttype` of a frame addressed to another host (linux/if_packet.h).
pub const PACKET_OTHERHOST: u32 = 3;

impl ErrorKind {
    /// All kinds, in index order.
    pub const ALL: [ErrorKind; ERROR_SLOTS as usize] = [
        ErrorKind::NotIp,
        ErrorKind::TruncatedL2,
        ErrorKind::TruncatedL3,
        ErrorKind::BadVersion,
        ErrorKind::BadHeader,
        ErrorKind::LengthBeyondFrame,
        ErrorKind::GsoNoL4,
        ErrorKind::RemoteUpdate,
        ErrorKind::OtherHost,
    ];

    /// A stable snake_case name, for logs, the API and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::NotIp => "not_ip",
            ErrorKind::TruncatedL2 => "truncated_l2",
            ErrorKind::TruncatedL3 => "truncated_l3",
            ErrorKind::BadVersion => "bad_version",
            ErrorKind::BadHeader => "bad_header",
            ErrorKind::LengthBeyondFrame => "length_beyond_frame",
            ErrorKind::GsoNoL4 => "gso_no_l4",
            ErrorKind::RemoteUpdate => "remote_update",
            ErrorKind::OtherHost => "other_host",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: (all four) `#[repr(C)]` plain integers and byte arrays with explicit padding fields
    // and a size assertion each: no implicit padding, and every bit pattern is a valid value.
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RemoteKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RemoteCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::MacKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ServiceKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ListenKey {}
}
