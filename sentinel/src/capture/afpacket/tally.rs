//! What the ring's frames add up to: the per-frame function (packet type filter, GSO segments from
//! the virtio-net header, then [`sentinel_common::account::account`] and
//! [`sentinel_common::record::record`], the same calls the eBPF program makes) and the counters
//! they feed: monotonic totals and errors, and per-remote counters handed over (and forgotten) at
//! each snapshot, bounded like one of the kernel's per-remote maps, with an overflow total for
//! remotes beyond the bound; per-service counters ([`sentinel_common::service`]) the same way.
//!
//! This module must not know sockets or the ring's memory: it sees [`RingFrame`]s.

use std::collections::{HashMap, HashSet};

use sentinel_common::{
    abi::Verdict,
    abi::{
        Counters, ErrorKind, ListenKey, REMOTES_MAX_ENTRIES, RemoteCounters, RemoteKey,
        SERVICES_MAX_ENTRIES, ServiceKey,
    },
    account::account,
    addr::AddrFlags,
    frame::{self, Frame, LinkKind},
    owner::{self, MacSet},
    record::{self, CounterStore},
    service::{self, ListenSet},
};

use super::walk::{RingFrame, VnetHdr};
use crate::capture::KernelTotals;

/// `sll_pkttype` values (`include/uapi/linux/if_packet.h`).
pub(crate) const PACKET_HOST: u8 = 0;
pub(crate) const PACKET_BROADCAST: u8 = 1;
pub(crate) const PACKET_MULTICAST: u8 = 2;
pub(crate) const PACKET_OTHERHOST: u8 = 3;
pub(crate) const PACKET_OUTGOING: u8 = 4;

/// `VIRTIO_NET_HDR_GSO_NONE`: a plain packet.
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;

/// A captured frame as the shared parser reads it: `tp_snaplen` bytes present, `tp_len` long.
///
/// The parser's length rule ("never count more than the frame holds") then applies to the
/// frame's real length, although only its headers were copied into the ring.
pub(crate) struct Captured<'a> {
    data: &'a [u8],
    len: u32,
}

impl<'a> Captured<'a> {
    pub(crate) fn new(frame: &RingFrame<'a>) -> Self {
        Self {
            data: frame.data,
            len: frame.len,
        }
    }
}

impl Frame for Captured<'_> {
    fn frame_len(&self) -> u32 {
        self.len
    }

    fn read<const N: usize>(&self, offset: u32) -> Option<[u8; N]> {
        self.data.read::<N>(offset)
    }
}

/// Which packet types can be the NAS's own traffic: received for it (unicast, broadcast,
/// multicast), sent by it, or received for another MAC (PACKET_OTHERHOST), which
/// [`owner::check`] then decides by the MAC set: a macvlan child's frames are the NAS's, other
/// hosts' frames that a promiscuous interface (a bridge port, a VM host, a capture tool's
/// promiscuous mode) also delivers are not (the seed counted them, defect D9).
/// PACKET_LOOPBACK never reaches a packet socket (`tpacket_rcv` drops it); anything else is not
/// an interface's traffic either.
pub(crate) fn is_own_traffic(pkttype: u8) -> bool {
    matches!(
        pkttype,
        PACKET_HOST | PACKET_BROADCAST | PACKET_MULTICAST | PACKET_OUTGOING
    )
}

/// Segments of a GSO (egress) or GRO (ingress) super-packet, from the virtio-net header's
/// `gso_size`: `ceil(transport payload / gso_size)`, which is how the kernel itself sets
/// `gso_segs` (`tcp_set_skb_tso_segs`, and GRO merges equal segments but the last). 0 for a
/// plain packet or when there is no header. A protocol without a known transport header counts
/// its whole IP payload (what `account` notes as `GsoNoL4`).
pub(crate) fn gso_segments<F: Frame + ?Sized>(
    frame: &F,
    link: LinkKind,
    vnet: Option<VnetHdr>,
) -> u32 {
    let Some(v) = vnet else { return 0 };
    if v.gso_type == VIRTIO_NET_HDR_GSO_NONE || v.gso_size == 0 {
        return 0;
    }
    // A frame that does not parse is reported by `account` itself.
    let Ok(ip) = frame::parse_link(frame, link) else {
        return 0;
    };
    let l4 = frame::l4_header_len(frame, &ip).unwrap_or(0);
    let payload = ip.ip_len.saturating_sub(ip.l3_hdr_len.saturating_add(l4));
    payload.div_ceil(u32::from(v.gso_size)).max(1)
}

/// Counters of frames the rules never saw, for the status (not part of the snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames read from the ring (all packet types).
    pub frames: u64,
    /// Frames skipped because they were not the NAS's own (PACKET_OTHERHOST and the like).
    pub foreign: u64,
    /// Super-packets whose segments came from the virtio-net header.
    pub super_packets: u64,
    /// Blocks the walker found corrupt (their unread frames are counted as drops).
    pub corrupt_blocks: u64,
    /// Packets whose remote did not fit in the per-remote map (counted under "other").
    pub remotes_overflowed: u64,
}

/// The counters, as a [`crate::capture::Snapshot`] reports them.
#[derive(Clone, Debug)]
pub(crate) struct Tally {
    /// Direction totals and error counters (monotonic).
    pub totals: KernelTotals,
    /// Frames lost: the kernel's ring drops plus frames in corrupt blocks.
    pub drops: u64,
    /// Counters outside the snapshot.
    pub stats: FrameStats,
    /// Per-remote growth since the last [`Self::take_remotes`], at most `cap` remotes.
    remotes: HashMap<RemoteKey, RemoteCounters>,
    cap: usize,
    /// What `remotes` had no room for since the last [`Self::take_remotes`].
    overflow: RemoteCounters,
    /// Per-service growth since the last [`Self::take_services`], bounded like the kernel's map.
    services: HashMap<ServiceKey, RemoteCounters>,
    service_cap: usize,
    /// What `services` had no room for since the last [`Self::take_services`].
    service_overflow: RemoteCounters,
    /// The NAS's listening ports (server or client role, `sentinel_common::service`).
    listening: Listening,
}

/// The listening set as [`ListenSet`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Listening(HashSet<ListenKey>);

impl ListenSet for Listening {
    fn listens(&self, key: &ListenKey) -> bool {
        self.0.contains(key)
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self::with_capacity(REMOTES_MAX_ENTRIES as usize)
    }
}

impl Tally {
    /// A tally whose remote map holds at most `cap` entries.
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Self {
            totals: KernelTotals::default(),
            drops: 0,
            stats: FrameStats::default(),
            remotes: HashMap::new(),
            cap: cap.max(1),
            overflow: RemoteCounters::default(),
            services: HashMap::new(),
            service_cap: SERVICES_MAX_ENTRIES as usize,
            service_overflow: RemoteCounters::default(),
            listening: Listening::default(),
        }
    }

    /// A tally whose service map holds at most `cap` entries.
    #[cfg(test)]
    pub(crate) fn with_service_capacity(mut self, cap: usize) -> Self {
        self.service_cap = cap.max(1);
        self
    }

    /// Replaces the listening set the service rule uses from the next frame on.
    pub(crate) fn set_listening(&mut self, ports: &[ListenKey]) {
        self.listening = Listening(ports.iter().copied().collect());
    }

    /// Hands over every service's growth since the previous call, and the overflow; both start
    /// again from zero.
    pub(crate) fn take_services(&mut self) -> (Vec<(ServiceKey, RemoteCounters)>, RemoteCounters) {
        let services = std::mem::take(&mut self.services).into_iter().collect();
        (services, std::mem::take(&mut self.service_overflow))
    }

    /// Counts one frame from the ring of a `link` link: the function every ring frame goes
    /// through.
    pub(crate) fn count<A: AddrFlags + MacSet + ?Sized>(
        &mut self,
        f: &RingFrame<'_>,
        link: LinkKind,
        table: &A,
    ) {
        self.stats.frames += 1;
        let frame = Captured::new(f);
        let other_host = f.pkttype == PACKET_OTHERHOST;
        if !other_host && !is_own_traffic(f.pkttype) {
            self.stats.foreign += 1;
            return;
        }
        if let Err(kind) = owner::check(&frame, link, other_host, table) {
            // The same error slot as the kernel program's, so both backends report it alike.
            self.stats.foreign += 1;
            record::count_error(self, kind);
            return;
        }
        let segs = gso_segments(&frame, link, f.vnet);
        if segs > 1 {
            self.stats.super_packets += 1;
        }
        match account(&frame, link, segs, table) {
            Ok(acc) => {
                record::record(self, &acc);
                if matches!(acc.verdict, Verdict::Up | Verdict::Down) {
                    let key = service::service_key(&frame, &acc, &self.listening);
                    service::add_service(self, &key, &acc);
                }
            }
            Err(kind) => record::count_error(self, kind),
        }
    }

    /// A block the walker gave up on: its unread frames are lost.
    pub(crate) fn corrupt(&mut self, unread: u32) {
        self.stats.corrupt_blocks += 1;
        self.drops += u64::from(unread);
    }

    /// Hands over every remote's growth since the previous call, and the overflow; both start
    /// again from zero.
    pub(crate) fn take_remotes(&mut self) -> (Vec<(RemoteKey, RemoteCounters)>, RemoteCounters) {
        let remotes = std::mem::take(&mut self.remotes).into_iter().collect();
        (remotes, std::mem::take(&mut self.overflow))
    }

    /// How many frames of an error kind were seen.
    #[cfg(test)]
    pub(crate) fn error_count(&self, kind: ErrorKind) -> u64 {
        self.totals.errors[kind as usize]
    }
}

/// The tally as the shared recording rule's storage: the same slots the kernel program's maps
/// have, with one per-remote map and its overflow.
impl CounterStore for Tally {
    fn totals(&mut self, index: u32) -> Option<&mut Counters> {
        self.totals.slots.get_mut(index as usize)
    }

    fn error(&mut self, kind: ErrorKind) -> Option<&mut u64> {
        self.totals.errors.get_mut(kind as usize)
    }

    fn remote(&mut self, remote: &RemoteKey) -> Option<&mut RemoteCounters> {
        if self.remotes.len() >= self.cap && !self.remotes.contains_key(remote) {
            return None;
        }
        Some(self.remotes.entry(*remote).or_default())
    }

    fn overflow(&mut self) -> Option<&mut RemoteCounters> {
        self.stats.remotes_overflowed = self.stats.remotes_overflowed.wrapping_add(1);
        Some(&mut self.overflow)
    }

    fn service(&mut self, key: &ServiceKey) -> Option<&mut RemoteCounters> {
        if self.services.len() >= self.service_cap && !self.services.contains_key(key) {
            return None;
        }
        Some(self.services.entry(*key).or_default())
    }

    fn service_overflow(&mut self) -> Option<&mut RemoteCounters> {
        Some(&mut self.service_overflow)
    }
}

#[cfg(test)]
mod tests {
    use sentinel_common::abi::{ErrorKind, FAMILY_V4, FAMILY_V6, Verdict};

    use super::*;
    use crate::classify::{AddressPlan, PrefixTable};

    /// An IPv4/UDP frame from `src` to `dst` whose IP length is `ip_len`.
    fn udp4(src: [u8; 4], dst: [u8; 4], ip_len: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + ip_len as usize];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[23] = 17;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f
    }

    fn table() -> PrefixTable {
        AddressPlan {
            locals: vec!["192.168.1.10".parse().expect("addr")],
            ..AddressPlan::default()
        }
        .table()
    }

    fn ring_frame(bytes: &[u8], pkttype: u8, snap: usize) -> RingFrame<'_> {
        RingFrame {
            len: bytes.len() as u32,
            data: &bytes[..bytes.len().min(snap)],
            pkttype,
            vnet: None,
        }
    }

    #[test]
    fn the_frame_length_is_tp_len_not_the_snap() {
        let f = udp4([192, 168, 1, 10], [198, 51, 100, 7], 1028);
        let mut t = Tally::default();
        t.count(
            &ring_frame(&f, PACKET_OUTGOING, 128),
            LinkKind::Ethernet,
            &table(),
        );
        let up = t.totals.get(Verdict::Up, FAMILY_V4);
        assert_eq!((up.packets, up.ip_bytes, up.wire_bytes), (1, 1028, 1042));
        assert_eq!(t.error_count(ErrorKind::LengthBeyondFrame), 0);
        let (remotes, _) = t.clone().take_remotes();
        assert_eq!(remotes.len(), 1);
        assert_eq!(remotes[0].0, RemoteKey::v4([198, 51, 100, 7]));
        assert_eq!((remotes[0].1.up_packets, remotes[0].1.up_bytes), (1, 1028));
    }

    #[test]
    fn other_hosts_frames_are_not_counted() {
        let f = udp4([192, 168, 1, 99], [198, 51, 100, 7], 500);
        let mut t = Tally::default();
        t.count(
            &ring_frame(&f, PACKET_OTHERHOST, 128),
            LinkKind::Ethernet,
            &table(),
        );
        // PACKET_LOOPBACK (5), PACKET_USER (6), PACKET_KERNEL (7) neither.
        for pkttype in [5, 6, 7] {
            t.count(&ring_frame(&f, pkttype, 128), LinkKind::Ethernet, &table());
        }
        assert_eq!(t.totals.slots, KernelTotals::default().slots);
        assert_eq!(
            t.totals.error(sentinel_common::abi::ErrorKind::OtherHost),
            1,
            "only PACKET_OTHERHOST is other_host"
        );
        assert_eq!((t.stats.frames, t.stats.foreign), (4, 4));
        // Broadcast and multicast frames are the NAS's and go through the rules (here: LAN).
        let b = udp4([192, 168, 1, 10], [255, 255, 255, 255], 100);
        t.count(
            &ring_frame(&b, PACKET_BROADCAST, 128),
            LinkKind::Ethernet,
            &table(),
        );
        let m = udp4([192, 168, 1, 10], [239, 255, 255, 250], 100);
        t.count(
            &ring_frame(&m, PACKET_MULTICAST, 128),
            LinkKind::Ethernet,
            &table(),
        );
        assert_eq!(t.totals.verdict(Verdict::Lan).packets, 2);
    }

    #[test]
    fn frames_for_a_macvlan_childs_mac_count_and_other_hosts_do_not() {
        let child = [0x02, 0xaa, 0, 0, 0, 0x07];
        let table = AddressPlan {
            locals: vec!["192.168.1.10".parse().expect("addr")],
            own_macs: vec![child],
            ..AddressPlan::default()
        }
        .table();
        // A download of the child container (its private address is inside by the built-in set).
        let mut down = udp4([198, 51, 100, 7], [192, 168, 1, 77], 1028);
        down[..6].copy_from_slice(&child);
        let mut t = Tally::default();
        t.count(
            &ring_frame(&down, PACKET_OTHERHOST, 128),
            LinkKind::Ethernet,
            &table,
        );
        let d = t.totals.get(Verdict::Down, FAMILY_V4);
        assert_eq!((d.packets, d.ip_bytes), (1, 1028));
        // The same frame for another host's MAC stays out.
        down[5] = 0x08;
        t.count(
            &ring_frame(&down, PACKET_OTHERHOST, 128),
            LinkKind::Ethernet,
            &table,
        );
        assert_eq!(t.totals.get(Verdict::Down, FAMILY_V4).packets, 1);
        assert_eq!(t.error_count(ErrorKind::OtherHost), 1);
        assert_eq!(t.stats.foreign, 1);
    }

    #[test]
    fn raw_ip_frames_count_from_their_first_byte() {
        let f = udp4([192, 168, 1, 10], [198, 51, 100, 7], 1028);
        let raw = &f[14..];
        let mut t = Tally::default();
        t.count(
            &ring_frame(raw, PACKET_OUTGOING, 128),
            LinkKind::RawIp,
            &table(),
        );
        let up = t.totals.get(Verdict::Up, FAMILY_V4);
        assert_eq!((up.packets, up.ip_bytes, up.wire_bytes), (1, 1028, 1028));
    }

    #[test]
    fn gso_segments_follow_gso_size() {
        // TCP/IPv6 super-packet: 40 + 32 header bytes, 4000 payload bytes in 1448-byte segments.
        let mut f = vec![0u8; 14 + 40 + 32 + 4000];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&(32u16 + 4000).to_be_bytes());
        f[20] = 6;
        f[22..24].copy_from_slice(&[0x24, 0x0e]); // src 240e:: (public)
        f[38] = 0xfd; // dst fd00:: (ULA: inside)
        f[14 + 40 + 12] = 8 << 4;
        let mut rf = ring_frame(&f, PACKET_HOST, 128);
        rf.vnet = Some(VnetHdr {
            gso_type: 4,
            gso_size: 1448,
        });
        assert_eq!(
            gso_segments(&Captured::new(&rf), LinkKind::Ethernet, rf.vnet),
            3
        );
        let mut t = Tally::default();
        t.count(&rf, LinkKind::Ethernet, &table());
        let down = t.totals.get(Verdict::Down, FAMILY_V6);
        assert_eq!(down.packets, 3);
        assert_eq!(down.ip_bytes, 40 + 32 + 4000 + 2 * (40 + 32));
        assert_eq!(t.stats.super_packets, 1);
        // GSO_NONE, or no header at all: one packet.
        rf.vnet = Some(VnetHdr::default());
        assert_eq!(
            gso_segments(&Captured::new(&rf), LinkKind::Ethernet, rf.vnet),
            0
        );
        rf.vnet = None;
        assert_eq!(
            gso_segments(&Captured::new(&rf), LinkKind::Ethernet, rf.vnet),
            0
        );
    }

    #[test]
    fn the_remote_map_is_bounded_overflow_takes_the_rest_and_each_byte_is_handed_over_once() {
        let mut t = Tally::with_capacity(32);
        let table = table();
        let keep = udp4([192, 168, 1, 10], [198, 51, 100, 1], 100);
        t.count(
            &ring_frame(&keep, PACKET_OUTGOING, 128),
            LinkKind::Ethernet,
            &table,
        );
        for i in 0..100u8 {
            let f = udp4([192, 168, 1, 10], [203, 0, 113, i], 100);
            t.count(
                &ring_frame(&f, PACKET_OUTGOING, 128),
                LinkKind::Ethernet,
                &table,
            );
            // A remote already in the map keeps counting when the map is full.
            t.count(
                &ring_frame(&keep, PACKET_OUTGOING, 128),
                LinkKind::Ethernet,
                &table,
            );
        }
        let (remotes, other) = t.take_remotes();
        assert_eq!(remotes.len(), 32);
        let busy = remotes
            .iter()
            .find(|(k, _)| *k == RemoteKey::v4([198, 51, 100, 1]))
            .expect("the busy remote is kept");
        assert_eq!(busy.1.up_packets, 101);
        // 31 other remotes fitted; 69 went to the overflow.
        assert_eq!((other.up_packets, other.up_bytes), (69, 6900));
        assert_eq!(t.stats.remotes_overflowed, 69);
        assert_eq!(t.error_count(ErrorKind::RemoteUpdate), 69);
        let per_remote: u64 = remotes.iter().map(|(_, c)| c.up_bytes).sum();
        assert_eq!(
            per_remote + other.up_bytes,
            t.totals.verdict(Verdict::Up).ip_bytes
        );
        assert!(remotes.iter().all(|(k, _)| k.family == FAMILY_V4));
        // Handed over once: the next take starts from zero, and the map has room again.
        assert_eq!(t.take_remotes(), (Vec::new(), RemoteCounters::default()));
        let f = udp4([192, 168, 1, 10], [203, 0, 113, 99], 100);
        t.count(
            &ring_frame(&f, PACKET_OUTGOING, 128),
            LinkKind::Ethernet,
            &table,
        );
        let (remotes, other) = t.take_remotes();
        assert_eq!(remotes.len(), 1);
        assert_eq!(other, RemoteCounters::default());
    }

    /// The shared vector table through the ring: every vector becomes a frame in a synthetic
    /// TPACKET_V3 block (cut to the ring's snap length, GSO metadata in a virtio-net header, as
    /// the kernel writes it), walked and counted by the code the reader thread runs.
    #[test]
    fn every_vector_gives_its_expected_result_through_the_ring() {
        use sentinel_common::vectors::VECTORS;

        use super::super::{
            SNAPLEN,
            walk::{
                synth::{SynthFrame, block},
                walk,
            },
        };

        let mut failures = Vec::new();
        for v in VECTORS {
            let bytes = crate::testkit::frame(v);
            let table = crate::testkit::plan(v).table();
            // The GSO type the kernel would report (TCPV4 1, UDP_L4 5, TCPV6 4); any non-zero
            // type makes the walker derive segments from gso_size.
            let vnet = (v.gso_segs > 1).then_some(VnetHdr {
                gso_type: if v.case.contains("IPv6") { 4 } else { 1 },
                gso_size: v.gso_size as u16,
            });
            let b = block(
                &[SynthFrame {
                    bytes: &bytes,
                    pkttype: PACKET_HOST,
                    vnet: Some(vnet.unwrap_or_default()),
                }],
                SNAPLEN as usize,
                true,
                8192,
            );
            let mut t = Tally::default();
            for f in walk(&b, true).expect("synthetic block") {
                t.count(&f.expect("synthetic frame"), v.link, &table);
            }
            if let Err(why) = check(v.expect, &t) {
                failures.push(format!("{} ({}): {why}", v.id, v.case));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} vectors failed through the ring:\n{}",
            failures.len(),
            VECTORS.len(),
            failures.join("\n")
        );
    }

    /// The shared per-service table through the ring: each row adds its bytes to exactly its key.
    #[test]
    fn every_service_vector_adds_to_its_service_through_the_ring() {
        use sentinel_common::{
            abi::ServiceKey,
            service_vectors::{SERVICE_LOCALS, SERVICE_VECTORS},
        };

        use super::super::{
            SNAPLEN,
            walk::{
                synth::{SynthFrame, block},
                walk,
            },
        };

        let table = AddressPlan {
            locals: SERVICE_LOCALS
                .iter()
                .map(|a| a.parse().expect("addr"))
                .collect(),
            ..AddressPlan::default()
        }
        .table();
        let mut failures = Vec::new();
        for v in SERVICE_VECTORS {
            let bytes = crate::testkit::service_frame(v);
            let b = block(
                &[SynthFrame {
                    bytes: &bytes,
                    pkttype: PACKET_HOST,
                    vnet: Some(VnetHdr::default()),
                }],
                SNAPLEN as usize,
                true,
                8192,
            );
            let mut t = Tally::default();
            let listen: Vec<ListenKey> = v
                .listen
                .iter()
                .map(|&(proto, port)| ListenKey::new(proto, port))
                .collect();
            t.set_listening(&listen);
            for f in walk(&b, true).expect("synthetic block") {
                t.count(&f.expect("synthetic frame"), LinkKind::Ethernet, &table);
            }
            let (services, other) = t.take_services();
            let got: Vec<_> = services
                .iter()
                .map(|(k, c)| (*k, c.up_packets, c.up_bytes, c.down_packets, c.down_bytes))
                .collect();
            let want: Vec<_> = v
                .expect
                .iter()
                .map(|e| {
                    let key = ServiceKey {
                        port: e.port,
                        proto: e.proto,
                        role: e.role,
                    };
                    if e.verdict == Verdict::Up {
                        (key, 1, e.ip_bytes, 0, 0)
                    } else {
                        (key, 0, 0, 1, e.ip_bytes)
                    }
                })
                .collect();
            if got != want || other != RemoteCounters::default() {
                failures.push(format!("{} ({}): want {want:?}, got {got:?}", v.id, v.case));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn the_service_map_is_bounded_and_overflow_keeps_the_sum_exact() {
        let mut t = Tally::default().with_service_capacity(4);
        let table = table();
        // Ten client connections to ten remote ports: four fit, six go to the overflow.
        for port in 0..10u16 {
            let mut f = udp4([192, 168, 1, 10], [198, 51, 100, 7], 100);
            f[34..36].copy_from_slice(&40000u16.to_be_bytes());
            f[36..38].copy_from_slice(&(1000 + port).to_be_bytes());
            t.count(
                &ring_frame(&f, PACKET_OUTGOING, 128),
                LinkKind::Ethernet,
                &table,
            );
        }
        let (services, other) = t.take_services();
        assert_eq!(services.len(), 4);
        assert!(
            services
                .iter()
                .all(|(k, _)| k.role == sentinel_common::abi::ROLE_CLIENT)
        );
        assert_eq!((other.up_packets, other.up_bytes), (6, 600));
        let per_service: u64 = services.iter().map(|(_, c)| c.up_bytes).sum();
        assert_eq!(
            per_service + other.up_bytes,
            t.totals.verdict(Verdict::Up).ip_bytes
        );
        assert_eq!(t.take_services(), (Vec::new(), RemoteCounters::default()));
    }

    fn check(expect: sentinel_common::vectors::Expect, t: &Tally) -> Result<(), String> {
        use sentinel_common::vectors::Expect;
        let mut want_errors = [0u64; ErrorKind::ALL.len()];
        let (remotes, _) = t.clone().take_remotes();
        // Every public byte is in exactly one service too (no listening set: client or none).
        let (services, svc_other) = t.clone().take_services();
        let mut svc = svc_other;
        services.iter().for_each(|(_, c)| svc.add(c));
        let mut rem = RemoteCounters::default();
        remotes.iter().for_each(|(_, c)| rem.add(c));
        if svc != rem || services.len() > 1 {
            return Err(format!(
                "services {services:?} do not add up to remotes {rem:?}"
            ));
        }
        match expect {
            Expect::Skip(kind) => {
                want_errors[kind as usize] = 1;
                if t.totals.slots.iter().any(|c| c.packets != 0) || !remotes.is_empty() {
                    return Err(format!("expected no count, got {:?}", t.totals.slots));
                }
            }
            Expect::Count {
                verdict,
                family,
                remote,
                packets,
                ip_bytes,
                wire_bytes,
                note,
            } => {
                if let Some(kind) = note {
                    want_errors[kind as usize] = 1;
                }
                let c = t.totals.get(verdict, family);
                if (c.packets, c.ip_bytes, c.wire_bytes) != (packets, ip_bytes, wire_bytes) {
                    return Err(format!(
                        "expected {verdict:?} {packets}/{ip_bytes}/{wire_bytes}, got {c:?}"
                    ));
                }
                let all = t.totals.slots.iter().map(|c| c.packets).sum::<u64>();
                if all != packets {
                    return Err(format!("other slots moved: {:?}", t.totals.slots));
                }
                match verdict {
                    Verdict::Up | Verdict::Down => {
                        let key = crate::testkit::remote_key(remote);
                        let [(k, r)] = remotes.as_slice() else {
                            return Err(format!("expected one remote, got {remotes:?}"));
                        };
                        let (p, b) = if verdict == Verdict::Up {
                            (r.up_packets, r.up_bytes)
                        } else {
                            (r.down_packets, r.down_bytes)
                        };
                        if *k != key || k.family != family || (p, b) != (packets, ip_bytes) {
                            return Err(format!("remote {remote}: got {k:?} {r:?}"));
                        }
                    }
                    Verdict::Lan | Verdict::Transit => {
                        if !remotes.is_empty() {
                            return Err(format!("expected no remote, got {remotes:?}"));
                        }
                    }
                }
            }
        }
        if t.totals.errors != want_errors {
            return Err(format!(
                "errors: expected {want_errors:?}, got {:?}",
                t.totals.errors
            ));
        }
        Ok(())
    }
}
