//! Tier 4 (root, network namespaces): the AF_PACKET backend on the lab NAS's eth0 counts real
//! traffic of known size exactly, in both directions and families, leaves LAN traffic and other
//! hosts' frames out, follows address changes, and survives its interface going down and being
//! re-created. TCP bulk transfers with the veths' offloads on check the GSO segment counting.
//!
//! Fails (never skips) when it cannot run: CI runs it as root.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod afpacket_lab;

use std::net::IpAddr;

use afpacket_lab::*;
use sentinel::capture::{
    Backend,
    afpacket::{AfPacketBackend, AfPacketError, AfPacketOptions, CaptureState},
};
use sentinel_common::abi::{
    Counters, ErrorKind, FAMILY_V4, FAMILY_V6, RemoteCounters, RemoteKey, Verdict,
};
use xtask::lab::{
    LAN_V4, LAN_V6, Lab, NAS_V4, NAS_V6, UdpSink, WAN_V4, WAN_V6, netns_exec, send_udp,
};

fn key(a: IpAddr) -> RemoteKey {
    match a {
        IpAddr::V4(v4) => RemoteKey::v4(v4.octets()),
        IpAddr::V6(v6) => RemoteKey::v6(v6.octets()),
    }
}

/// `(packets, ip bytes, wire bytes)` of `n` UDP datagrams with `payload` bytes.
fn udp(n: usize, payload: usize, v6: bool) -> Counters {
    let ip = payload as u64 + if v6 { 48 } else { 28 };
    Counters {
        packets: n as u64,
        ip_bytes: n as u64 * ip,
        wire_bytes: n as u64 * (ip + 14),
    }
}

fn send(ns: &str, dst: IpAddr, payload: usize, count: usize) -> usize {
    let sent = send_udp(ns, dst, PORT, payload, count).expect("sending UDP");
    assert_eq!(sent, count, "the kernel refused datagrams from {ns}");
    sent
}

#[test]
fn counts_known_udp_traffic_exactly_in_both_directions_and_families() {
    let lab = lab();
    let _sinks = [&lab.wan, &lab.nas, &lab.lan].map(|ns| UdpSink::bind(ns, PORT).expect("sink"));
    let plan = nas_plan(&lab);
    let mut b = start(&lab, &plan, AfPacketOptions::default());
    assert!(matches!(b.status().state, CaptureState::Running { .. }));
    let before = b.snapshot().expect("snapshot");
    assert_eq!(before.totals.verdict(Verdict::Up).packets, 0);
    let (nas_v4_0, nas_v6_0) = udp_received(&lab.nas);

    let up4 = send(&lab.nas, WAN_V4.into(), 1000, 2000);
    let up6 = send(&lab.nas, WAN_V6.into(), 200, 1000);
    send(&lab.wan, NAS_V4.into(), 500, 1500);
    send(&lab.wan, NAS_V6.into(), 1200, 800);
    // LAN: IPv4 private to private, IPv6 within the NAS's /56, both directions.
    let lan4 = send(&lab.nas, LAN_V4.into(), 1400, 1000);
    let lan6 = send(&lab.lan, NAS_V6.into(), 300, 1000);
    let lan6_out = send(&lab.nas, LAN_V6.into(), 64, 500);

    // Ground truth for the down direction: what the NAS's UDP stack received (LAN included).
    // Datagrams may still be in flight when the senders return: wait (bounded) for them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (down4, down6) = loop {
        let (nas_v4_1, nas_v6_1) = udp_received(&lab.nas);
        let got = (
            (nas_v4_1 - nas_v4_0) as usize,
            ((nas_v6_1 - nas_v6_0) as usize).saturating_sub(lan6),
        );
        if got == (1500, 800) || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!((down4, down6), (1500, 800), "datagrams lost inside the lab");

    let want_up4 = udp(up4, 1000, false);
    let want_down6 = udp(down6, 1200, true);
    let s = settle(&mut b, |s| {
        s.totals.get(Verdict::Up, FAMILY_V4).packets >= want_up4.packets
            && s.totals.get(Verdict::Down, FAMILY_V6).packets >= want_down6.packets
    });
    let t = &s.totals;
    assert_eq!(t.get(Verdict::Up, FAMILY_V4), want_up4, "up IPv4");
    assert_eq!(
        t.get(Verdict::Up, FAMILY_V6),
        udp(up6, 200, true),
        "up IPv6"
    );
    assert_eq!(
        t.get(Verdict::Down, FAMILY_V4),
        udp(down4, 500, false),
        "down IPv4"
    );
    assert_eq!(t.get(Verdict::Down, FAMILY_V6), want_down6, "down IPv6");
    assert_eq!(t.verdict(Verdict::Transit), Counters::default(), "transit");
    // LAN traffic never counts as up or down; it lands in the LAN slot, next to the few IGMP and
    // MLD reports fresh namespaces send (multicast: LAN traffic too, at most ~200 bytes each).
    let lan = |got: Counters, want: Counters, what: &str| {
        let extra = (got.packets - want.packets, got.ip_bytes - want.ip_bytes);
        assert!(
            got.packets >= want.packets && extra.0 <= 20 && extra.1 <= extra.0 * 200,
            "{what}: got {got:?}, sent {want:?}"
        );
    };
    lan(
        t.get(Verdict::Lan, FAMILY_V4),
        udp(lan4, 1400, false),
        "LAN IPv4",
    );
    let (a, z) = (udp(lan6, 300, true), udp(lan6_out, 64, true));
    let lan_v6 = Counters {
        packets: a.packets + z.packets,
        ip_bytes: a.ip_bytes + z.ip_bytes,
        wire_bytes: a.wire_bytes + z.wire_bytes,
    };
    lan(t.get(Verdict::Lan, FAMILY_V6), lan_v6, "LAN IPv6");
    assert_eq!(t.errors, [0; ErrorKind::ALL.len()], "error counters");
    assert_eq!(s.drops, 0, "drops at modest rates");

    let mut remotes = s.remotes.clone();
    remotes.sort_by_key(|(k, _)| *k);
    let mut want = vec![
        (
            key(WAN_V4.into()),
            RemoteCounters {
                up_packets: up4 as u64,
                up_bytes: want_up4.ip_bytes,
                down_packets: down4 as u64,
                down_bytes: udp(down4, 500, false).ip_bytes,
            },
        ),
        (
            key(WAN_V6.into()),
            RemoteCounters {
                up_packets: up6 as u64,
                up_bytes: udp(up6, 200, true).ip_bytes,
                down_packets: down6 as u64,
                down_bytes: want_down6.ip_bytes,
            },
        ),
    ];
    want.sort_by_key(|(k, _)| *k);
    assert_eq!(remotes, want, "per-remote counters");

    let status = b.status();
    assert_eq!(status.frames.foreign, 0);
    assert_eq!(status.kernel_drops, 0);
    assert!(
        status.gso_metadata,
        "the ring should carry virtio-net headers"
    );
    assert_eq!(status.opens, 1);
}

#[test]
fn address_changes_take_effect_without_restarting() {
    let lab = lab();
    let _sink = UdpSink::bind(&lab.wan, PORT).expect("sink");
    // Start knowing none of the NAS's addresses: its global IPv6 address looks public, so its
    // traffic with the internet host is transit (both ends public).
    let mut b = start(&lab, &Default::default(), AfPacketOptions::default());
    let n = send(&lab.nas, WAN_V6.into(), 100, 300);
    let s = settle(&mut b, |s| {
        s.totals.verdict(Verdict::Transit).packets >= n as u64
    });
    assert_eq!(s.totals.verdict(Verdict::Transit), udp(n, 100, true));
    assert_eq!(s.totals.verdict(Verdict::Up).packets, 0);
    // The daemon learns the addresses: the same traffic is upload from now on.
    b.set_addresses(&nas_plan(&lab)).expect("set_addresses");
    let m = send(&lab.nas, WAN_V6.into(), 100, 300);
    let s = settle(&mut b, |s| {
        s.totals.verdict(Verdict::Up).packets >= m as u64
    });
    assert_eq!(s.totals.verdict(Verdict::Up), udp(m, 100, true));
    assert_eq!(s.totals.verdict(Verdict::Transit), udp(n, 100, true));
}

/// Frames for another host's MAC reach the NAS's eth0 (the router's bridge floods unknown
/// unicast): PACKET_OTHERHOST. The seed counted a LAN host's internet traffic seen this way as
/// the NAS's upload (D9); they must only show as skipped.
#[test]
fn other_hosts_frames_are_skipped() {
    let lab = lab();
    let mut b = start(&lab, &nas_plan(&lab), AfPacketOptions::default());
    // The LAN host routes 198.51.100.0/24 through a gateway whose MAC nobody has.
    let lan = lab.lan.as_str();
    netns_exec(
        lan,
        &[
            "ip",
            "neigh",
            "replace",
            "192.168.50.99",
            "lladdr",
            "02:53:4e:00:00:99",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    )
    .expect("neighbour");
    netns_exec(
        lan,
        &[
            "ip",
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            "192.168.50.99",
        ],
    )
    .expect("route");
    let n = send(lan, "198.51.100.7".parse().expect("addr"), 700, 400);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while b.status().frames.foreign < n as u64 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let s = settle(&mut b, |_| true);
    assert_eq!(b.status().frames.foreign, n as u64, "skipped frames");
    assert_eq!(s.totals.verdict(Verdict::Up), Counters::default());
    assert_eq!(s.totals.verdict(Verdict::Transit), Counters::default());
    assert!(s.remotes.is_empty());
}

#[test]
fn a_missing_interface_is_an_error_not_a_silent_zero() {
    let lab = lab();
    let err = Lab::in_ns(&lab.nas, || {
        Ok(AfPacketBackend::open("nosuch0", &Default::default()).err())
    })
    .expect("thread");
    assert!(
        matches!(err, Some(AfPacketError::NoSuchInterface { .. })),
        "got {err:?}"
    );
}

#[test]
fn capture_survives_interface_down_up_and_recreation() {
    let lab = lab();
    let _sink = UdpSink::bind(&lab.wan, PORT).expect("sink");
    let nas_mac = mac_of(&lab.nas, "eth0");
    let router_mac = mac_of(&lab.rtr, "br0");
    let options = AfPacketOptions {
        retry_min: std::time::Duration::from_millis(50),
        retry_max: std::time::Duration::from_millis(400),
        ..AfPacketOptions::default()
    };
    let mut b = start(&lab, &nas_plan(&lab), options);
    let CaptureState::Running { ifindex: first } = b.status().state else {
        panic!("not running: {:?}", b.status());
    };
    let mut sent = send(&lab.nas, WAN_V4.into(), 300, 200);
    let up = |b: &mut AfPacketBackend, sent: usize| {
        settle(b, |s| s.totals.verdict(Verdict::Up).packets >= sent as u64)
            .totals
            .verdict(Verdict::Up)
    };
    assert_eq!(up(&mut b, sent), udp(sent, 300, false));

    // Down: the socket reports ENETDOWN; the reader says so and retries.
    xtask::lab::ip(&["-n", &lab.nas, "link", "set", "eth0", "down"]).expect("down");
    let state = wait_state(&b, 5, |s| matches!(s, CaptureState::Retrying { .. }));
    let CaptureState::Retrying { last_error, .. } = &state else {
        panic!("expected retrying after link down, got {state:?}");
    };
    assert!(last_error.contains("down"), "{last_error}");
    // Counters stay readable while retrying.
    assert_eq!(
        b.snapshot()
            .expect("snapshot")
            .totals
            .verdict(Verdict::Up)
            .packets,
        sent as u64
    );

    // Up again: same interface, capture resumes.
    rewire_nas(&lab, &router_mac);
    let state = wait_state(&b, 5, |s| matches!(s, CaptureState::Running { .. }));
    assert_eq!(state, CaptureState::Running { ifindex: first });
    sent += send(&lab.nas, WAN_V4.into(), 300, 200);
    assert_eq!(up(&mut b, sent), udp(sent, 300, false));

    // Deleted: retrying with "does not exist"; re-created: a new index, capture resumes.
    delete_nas_eth0(&lab);
    let state = wait_state(
        &b,
        5,
        |s| matches!(s, CaptureState::Retrying { last_error, .. } if last_error.contains("does not exist")),
    );
    assert!(matches!(state, CaptureState::Retrying { .. }), "{state:?}");
    recreate_nas_eth0(&lab, &nas_mac, &router_mac);
    let state = wait_state(&b, 5, |s| matches!(s, CaptureState::Running { .. }));
    let CaptureState::Running { ifindex: second } = state else {
        panic!("not running after re-creation: {state:?}");
    };
    assert_ne!(second, first, "the re-created interface has a new index");
    sent += send(&lab.nas, WAN_V4.into(), 300, 200);
    assert_eq!(up(&mut b, sent), udp(sent, 300, false));
    let status = b.status();
    assert_eq!(status.opens, 3, "{status:?}");
    assert_eq!(b.snapshot().expect("snapshot").drops, 0);
}

/// TCP bulk transfers with TSO/GSO on: the NAS's eth0 carries 64 KB super-packets (and their
/// GRO'd counterparts on ingress). With virtio-net headers the ring gives each one's gso_size, so
/// packets and IP bytes match both ends' TCP_INFO segment for segment.
#[test]
fn tcp_bulk_transfers_with_offloads_count_every_segment() {
    let lab = lab();
    let mut b = start(&lab, &nas_plan(&lab), AfPacketOptions::default());
    // Closing a connection would add FIN segments to the next transfer's counts: keep them open.
    let mut open = Vec::new();
    for (upload, v6) in [(true, false), (false, false), (true, true), (false, true)] {
        let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
        let case = format!(
            "{} IPv{}",
            if upload { "upload" } else { "download" },
            if v6 { 6 } else { 4 }
        );
        let mut exact = false;
        // A retransmission or a SACK makes the ground truth inexact: try again (rare when both
        // ends share a CPU).
        for _attempt in 0..3 {
            let before = b.snapshot().expect("snapshot").totals;
            let t = tcp_bulk(&lab, upload, v6, 16 << 20);
            let delta = |s: &sentinel::capture::Snapshot, v: Verdict| {
                let (a, z) = (before.get(v, family), s.totals.get(v, family));
                (z.packets - a.packets, z.ip_bytes - a.ip_bytes)
            };
            let s = settle(&mut b, |s| {
                delta(s, Verdict::Up).0 >= t.up.packets
                    && delta(s, Verdict::Down).0 >= t.down.packets
            });
            open.push(t.sockets);
            if !t.clean {
                eprintln!("{case}: retransmission or reordering, trying again");
                continue;
            }
            assert_eq!(
                delta(&s, Verdict::Up),
                (t.up.packets, t.up.ip_bytes),
                "{case}: up"
            );
            assert_eq!(
                delta(&s, Verdict::Down),
                (t.down.packets, t.down.ip_bytes),
                "{case}: down"
            );
            exact = true;
            break;
        }
        assert!(exact, "{case}: no clean transfer in 3 attempts");
    }
    let status = b.status();
    assert!(
        status.frames.super_packets > 0,
        "no super-packets seen: {status:?}"
    );
    assert_eq!(b.snapshot().expect("snapshot").drops, 0);
}

/// A ring too small for a flood (two 4 KiB blocks: 36 frames) loses frames; PACKET_STATISTICS
/// must account for every one of them, so counted + drops adds up to what was sent.
#[test]
fn a_full_ring_reports_its_drops() {
    let lab = lab();
    let _sink = UdpSink::bind(&lab.wan, PORT).expect("sink");
    let mut options = AfPacketOptions::default();
    options.ring.block_size = 4096;
    options.ring.block_count = 2;
    options.ring.retire_ms = 1;
    let mut b = start(&lab, &nas_plan(&lab), options);
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let ns = lab.nas.clone();
            std::thread::spawn(move || send(&ns, WAN_V4.into(), 18, 100_000))
        })
        .collect();
    let sent: usize = senders.into_iter().map(|t| t.join().expect("sender")).sum();
    let s = settle(&mut b, |s| {
        s.totals.get(Verdict::Up, FAMILY_V4).packets + s.drops >= sent as u64
    });
    let counted = s.totals.get(Verdict::Up, FAMILY_V4).packets;
    let status = b.status();
    eprintln!(
        "sent {sent}, counted {counted}, drops {}: {status:?}",
        s.drops
    );
    assert!(s.drops > 0, "a 8 KiB ring kept up with a flood?");
    // The lab's own few frames (MLD) may be among the drops.
    assert!(
        (sent as u64..sent as u64 + 10).contains(&(counted + s.drops)),
        "sent {sent}, counted {counted} + drops {} do not add up",
        s.drops
    );
    assert_eq!(status.kernel_drops, s.drops);
    assert!(status.ring_freezes > 0);
}

/// Dropping the backend stops the reader thread, unmaps the ring and closes the socket.
#[test]
fn dropping_the_backend_closes_the_ring_and_the_socket() {
    let lab = lab();
    let packet_sockets = || -> Vec<String> {
        Lab::in_ns(&lab.nas.clone(), || {
            let table = std::fs::read_to_string("/proc/thread-self/net/packet")?;
            // The last column is the socket's inode.
            Ok(table
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
                .collect())
        })
        .expect("reading /proc/net/packet")
    };
    let b = start(&lab, &nas_plan(&lab), AfPacketOptions::default());
    let sockets = packet_sockets();
    let [inode] = sockets.as_slice() else {
        panic!("expected one packet socket in the NAS namespace, got {sockets:?}");
    };
    let mapping = format!("socket:[{inode}]");
    let maps = || std::fs::read_to_string("/proc/self/maps").expect("maps");
    assert!(maps().contains(&mapping), "the ring is not mapped");
    let t0 = std::time::Instant::now();
    drop(b);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(1),
        "drop took {:?}",
        t0.elapsed()
    );
    assert!(packet_sockets().is_empty(), "the socket is still open");
    assert!(!maps().contains(&mapping), "the ring is still mapped");
}
