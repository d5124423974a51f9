//! Tier 4 (root, network namespaces): link kinds beyond the plain NAS on Ethernet, with the real
//! daemon binary and known UDP traffic, in both backends.
//!
//! - A macvlan "container" on the NAS's eth0 (its own MAC): its uploads and downloads are the
//!   NAS's traffic (its frames arrive as PACKET_OTHERHOST, before the macvlan driver sees them),
//!   while another LAN host's frames flooded to the NAS stay uncounted.
//! - A raw-IP link (tun, as ppp0 or wg0): frames start at the IP header; the daemon picks it as
//!   the default route's interface and counts both ways exactly.
//!
//! Every namespace and pin a test creates is removed when it ends, also when it fails.

mod support;

use std::{net::IpAddr, time::Duration};

use support::{Daemon, PinDir, Totals, get};
use xtask::lab::{
    CTR_MAC, CTR_V4, CTR_V6, Lab, TUN_NAS_V4, TUN_NAS_V6, TUN_SETTLE, TUN_WAN_V4, TUN_WAN_V6,
    TunPair, UdpSink, WAN_V4, WAN_V6, netns_exec, send_udp,
};

const PORT: u16 = 9000;

fn udp_ip_len(payload: u64, v6: bool) -> u64 {
    payload + 8 + if v6 { 40 } else { 20 }
}

fn delta(t: &Totals, base: &Totals, key: &str) -> u64 {
    get(t, key) - get(base, key)
}

/// Makes the LAN host send its internet traffic to a MAC nobody has: the router's bridge floods
/// those frames to the NAS's port, where they are PACKET_OTHERHOST and not one of the NAS's MACs.
fn lan_host_floods(lab: &Lab) {
    netns_exec(
        &lab.lan,
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
        &lab.lan,
        &[
            "ip",
            "route",
            "replace",
            "198.51.100.0/24",
            "via",
            "192.168.50.99",
        ],
    )
    .expect("route");
}

/// Waits (at most 10 s) for a log line saying the MAC set changed to include (or not) `mac`.
fn wait_for_mac_set(daemon: &Daemon, mac: &str, present: bool, after: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = daemon.log();
        if log.iter().skip(after).any(|l| {
            l.contains("addresses changed") && l.contains("own_macs") && l.contains(mac) == present
        }) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the MAC set did not follow the container (present: {present}): {log:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The case: a container on a macvlan network of the NAS's eth0. It comes up after the
/// daemon started (the MAC set follows netlink), its traffic counts exactly both ways, another
/// LAN host's flooded frames stay other_host, and its MAC leaves the set when it goes.
#[test]
fn a_macvlan_containers_traffic_counts_both_ways_and_other_hosts_stay_out() {
    let lab = Lab::create().expect("building the namespace lab (needs root and iproute2)");
    lan_host_floods(&lab);
    let _wan_sink = UdpSink::bind(&lab.wan, PORT).expect("sink");
    for backend in ["ebpf", "afpacket"] {
        let pins = PinDir::new(&format!("macvlan-{backend}"));
        let daemon = Daemon::start(&lab, &pins.0, &[("BACKEND", backend)]);
        let logged = daemon.log().len();
        let ctr = lab
            .add_macvlan_container("eth0")
            .expect("adding the macvlan container");
        let _ctr_sink = UdpSink::bind(&ctr.ns, PORT).expect("sink");
        wait_for_mac_set(&daemon, CTR_MAC, true, logged);
        let base = daemon.settled();
        let up4 = send_udp(&ctr.ns, WAN_V4.into(), PORT, 1000, 1000).expect("send") as u64;
        let up6 = send_udp(&ctr.ns, WAN_V6.into(), PORT, 600, 500).expect("send") as u64;
        let down4 = send_udp(&lab.wan, CTR_V4.into(), PORT, 1000, 1007).expect("send") as u64;
        let down6 = send_udp(&lab.wan, CTR_V6.into(), PORT, 300, 700).expect("send") as u64;
        let flooded = send_udp(
            &lab.lan,
            "198.51.100.7".parse::<IpAddr>().expect("addr"),
            PORT,
            700,
            400,
        )
        .expect("send") as u64;
        let t = daemon.settled();
        let (_, body) = daemon.get("/api/status").expect("status");
        let status: serde_json::Value = serde_json::from_str(&body).expect("json");
        let other_host = status["capture"]["errors"]["other_host"]
            .as_u64()
            .unwrap_or(0);
        println!(
            "{backend}: container up {} packets / {} bytes, down {} packets / {} bytes; LAN host frames flooded {flooded}, other_host {other_host}",
            delta(&t, &base, "up_packets"),
            delta(&t, &base, "up_bytes"),
            delta(&t, &base, "down_packets"),
            delta(&t, &base, "down_bytes"),
        );
        assert_eq!(
            (delta(&t, &base, "up_packets"), delta(&t, &base, "up_bytes")),
            (
                up4 + up6,
                up4 * udp_ip_len(1000, false) + up6 * udp_ip_len(600, true)
            ),
            "{backend}: the container's upload"
        );
        assert_eq!(
            (
                delta(&t, &base, "down_packets"),
                delta(&t, &base, "down_bytes")
            ),
            (
                down4 + down6,
                down4 * udp_ip_len(1000, false) + down6 * udp_ip_len(300, true)
            ),
            "{backend}: the container's download"
        );
        assert_eq!(
            delta(&t, &base, "transit_packets"),
            0,
            "{backend}: the LAN host's frames are not seen as transit"
        );
        assert!(
            other_host >= flooded,
            "{backend}: the LAN host's flooded frames are other_host ({other_host} < {flooded})"
        );
        // The container goes: its MAC leaves the set.
        let logged = daemon.log().len();
        drop(_ctr_sink);
        drop(ctr);
        wait_for_mac_set(&daemon, CTR_MAC, false, logged);
        daemon.stop();
    }
}

#[test]
fn a_raw_ip_tun_link_is_picked_by_the_default_route_and_counts_exactly_both_ways() {
    let pair = TunPair::create().expect("building the tun pair (needs root and /dev/net/tun)");
    std::thread::sleep(TUN_SETTLE);
    let _sinks = [
        UdpSink::bind(&pair.nas, PORT).expect("sink"),
        UdpSink::bind(&pair.wan, PORT).expect("sink"),
    ];
    for backend in ["ebpf", "afpacket"] {
        let pins = PinDir::new(&format!("tun-{backend}"));
        // No MONITOR_IFACE: the default route's interface is tun0.
        let daemon = Daemon::start_in(&pair.nas, None, &pins.0, &[("BACKEND", backend)]);
        assert!(
            daemon
                .log()
                .iter()
                .any(|l| l.contains("tun0") && l.contains("raw IP")),
            "{backend}: the link type is logged: {:?}",
            daemon.log()
        );
        let base = daemon.settled();
        let forwarded_before = pair.forwarded();
        let up4 = send_udp(&pair.nas, TUN_WAN_V4.into(), PORT, 1200, 1000).expect("send") as u64;
        let up6 = send_udp(&pair.nas, TUN_WAN_V6.into(), PORT, 500, 800).expect("send") as u64;
        let down4 = send_udp(&pair.wan, TUN_NAS_V4.into(), PORT, 900, 1100).expect("send") as u64;
        let down6 = send_udp(&pair.wan, TUN_NAS_V6.into(), PORT, 100, 600).expect("send") as u64;
        let t = daemon.wait_for("every datagram", Duration::from_secs(20), |t| {
            get(t, "up_packets") >= get(&base, "up_packets") + up4 + up6
                && get(t, "down_packets") >= get(&base, "down_packets") + down4 + down6
        });
        let t = {
            let settled = daemon.settled();
            if get(&settled, "up_packets") >= get(&t, "up_packets") {
                settled
            } else {
                t
            }
        };
        println!(
            "{backend}: tun up {} packets / {} bytes (wire {}), down {} packets / {} bytes; forwarder copied {}",
            delta(&t, &base, "up_packets"),
            delta(&t, &base, "up_bytes"),
            delta(&t, &base, "up_wire_bytes"),
            delta(&t, &base, "down_packets"),
            delta(&t, &base, "down_bytes"),
            pair.forwarded() - forwarded_before,
        );
        let up_bytes = up4 * udp_ip_len(1200, false) + up6 * udp_ip_len(500, true);
        let down_bytes = down4 * udp_ip_len(900, false) + down6 * udp_ip_len(100, true);
        assert_eq!(
            (delta(&t, &base, "up_packets"), delta(&t, &base, "up_bytes")),
            (up4 + up6, up_bytes),
            "{backend}: upload over tun0"
        );
        assert_eq!(
            (
                delta(&t, &base, "down_packets"),
                delta(&t, &base, "down_bytes")
            ),
            (down4 + down6, down_bytes),
            "{backend}: download over tun0"
        );
        // No link header: wire bytes are the IP bytes.
        assert_eq!(
            (
                delta(&t, &base, "up_wire_bytes"),
                delta(&t, &base, "down_wire_bytes")
            ),
            (up_bytes, down_bytes),
            "{backend}: wire bytes on a raw-IP link"
        );
        assert_eq!(get(&t, "errors"), 0, "{backend}: no parse errors");
        daemon.stop();
    }
}

/// The NAS as a VM host (README, "Bridges, VMs and macvlan containers"): with the daemon on the
/// bridge that carries the NAS's addresses, the NAS itself and its macvlan containers on the
/// bridge count both ways; a VM on a port of the bridge is another host on the LAN: the bridge
/// forwards its frames and they never count.
#[test]
fn on_a_bridge_the_nas_and_its_macvlan_containers_count_and_a_vm_does_not() {
    let lab = Lab::create().expect("building the namespace lab (needs root and iproute2)");
    let vm = lab.bridge_nas().expect("bridging the NAS");
    let ctr = lab
        .add_macvlan_container("br0")
        .expect("adding the macvlan container on br0");
    let _sinks = [
        UdpSink::bind(&lab.wan, PORT).expect("sink"),
        UdpSink::bind(&lab.nas, PORT).expect("sink"),
        UdpSink::bind(&ctr.ns, PORT).expect("sink"),
        UdpSink::bind(&vm.ns, PORT).expect("sink"),
    ];
    for backend in ["ebpf", "afpacket"] {
        let pins = PinDir::new(&format!("bridge-{backend}"));
        let daemon = Daemon::start_in(&lab.nas, Some("br0"), &pins.0, &[("BACKEND", backend)]);
        let base = daemon.settled();
        let nas_up = send_udp(&lab.nas, WAN_V4.into(), PORT, 800, 500).expect("send") as u64;
        let nas_down =
            send_udp(&lab.wan, xtask::lab::NAS_V4.into(), PORT, 800, 400).expect("send") as u64;
        let ctr_up = send_udp(&ctr.ns, WAN_V4.into(), PORT, 1000, 600).expect("send") as u64;
        let ctr_down = send_udp(&lab.wan, CTR_V4.into(), PORT, 1000, 700).expect("send") as u64;
        let vm_up = send_udp(&vm.ns, WAN_V4.into(), PORT, 1200, 800).expect("send") as u64;
        let vm_down =
            send_udp(&lab.wan, xtask::lab::VM_V4.into(), PORT, 1200, 900).expect("send") as u64;
        let t = daemon.settled();
        let (_, body) = daemon.get("/api/status").expect("status");
        let status: serde_json::Value = serde_json::from_str(&body).expect("json");
        println!(
            "{backend} on br0: up {} packets / {} bytes, down {} packets / {} bytes; VM sent {vm_up} and received {vm_down} datagrams; other_host {}",
            delta(&t, &base, "up_packets"),
            delta(&t, &base, "up_bytes"),
            delta(&t, &base, "down_packets"),
            delta(&t, &base, "down_bytes"),
            status["capture"]["errors"]["other_host"]
        );
        assert_eq!(
            (delta(&t, &base, "up_packets"), delta(&t, &base, "up_bytes")),
            (
                nas_up + ctr_up,
                nas_up * udp_ip_len(800, false) + ctr_up * udp_ip_len(1000, false)
            ),
            "{backend}: the NAS's and its container's upload, not the VM's"
        );
        assert_eq!(
            (
                delta(&t, &base, "down_packets"),
                delta(&t, &base, "down_bytes")
            ),
            (
                nas_down + ctr_down,
                nas_down * udp_ip_len(800, false) + ctr_down * udp_ip_len(1000, false)
            ),
            "{backend}: the NAS's and its container's download, not the VM's"
        );
        assert_eq!(delta(&t, &base, "transit_packets"), 0, "{backend}: transit");
        daemon.stop();
    }
}
