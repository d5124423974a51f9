//! Tier 4 (root, network namespaces): the real daemon on the lab NAS counts which service used
//! the traffic, exactly, through the kernel, the drain, the store and `/api/services`: two UDP
//! services the NAS listens on (traffic each way, IPv4 and IPv6), a UDP upload and a TCP transfer
//! the NAS opened (client traffic keyed by the remote's port), and the history surviving a
//! restart. Fails (never skips) when it cannot run: CI runs it as root.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod support;

use std::net::{IpAddr, UdpSocket};

use serde_json::Value;
use support::{Daemon, PinDir};
use xtask::lab::{Lab, NAS_V4, UdpSink, WAN_V4, WAN_V6, send_udp, tcp_transfer};

/// The WAN host's sink for everything the NAS sends.
const SINK: u16 = 7000;

fn lab() -> Lab {
    Lab::create().unwrap_or_else(|e| {
        panic!("building the namespace lab failed (needs root and iproute2): {e:#}")
    })
}

/// A UDP socket bound in the NAS's namespace (a socket stays in the namespace it was made in):
/// unconnected, so the NAS "listens" on its port.
fn nas_socket(lab: &Lab, bind: &'static str) -> UdpSocket {
    Lab::in_ns(&lab.nas, move || Ok(UdpSocket::bind(bind)?)).expect("bind in the NAS")
}

/// Sends `count` datagrams of `payload` bytes from `socket` to `to`; returns how many went out.
fn send_from(socket: &UdpSocket, to: (IpAddr, u16), payload: usize, count: usize) -> u64 {
    let buf = vec![0x33u8; payload];
    (0..count)
        .filter(|_| socket.send_to(&buf, to).is_ok())
        .count() as u64
}

/// `(up_bytes, down_bytes)` of the service `proto/port role` in an `/api/services` answer.
fn service(v: &Value, proto: &str, port: u64, role: &str) -> (u64, u64) {
    let s = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["proto"] == proto && s["port"] == port && s["role"] == role)
        .unwrap_or_else(|| panic!("no {proto}/{port} {role} in {v}"));
    (
        s["up_bytes"].as_u64().expect("up"),
        s["down_bytes"].as_u64().expect("down"),
    )
}

fn services(daemon: &Daemon) -> Value {
    let (status, body) = daemon
        .get("/api/services?limit=100")
        .expect("/api/services");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

#[test]
fn two_services_and_client_traffic_are_exact_per_service_and_survive_a_restart() {
    let lab = lab();
    lab.emulate_wire().expect("ethtool in the lab");
    let pins = PinDir::new("services");
    let _sink = UdpSink::bind(&lab.wan, SINK).expect("sink");
    // Listening before the daemon starts: the set it reads at start already has them.
    let wg = nas_socket(&lab, "0.0.0.0:9000");
    let game = nas_socket(&lab, "[::]:9001");
    let daemon = Daemon::start(&lab, &pins.0, &[]);
    daemon.settled();

    // Service 1 (UDP 9000, IPv4): 300 x 1,000 bytes in, 200 x 500 bytes out from its port.
    let down_9000 = send_udp(&lab.wan, NAS_V4.into(), 9000, 1000, 300).expect("send") as u64;
    let up_9000 = send_from(&wg, (WAN_V4.into(), SINK), 500, 200);
    // Service 2 (UDP 9001, IPv6): 400 x 200 bytes in, 300 x 100 bytes out.
    let down_9001 =
        send_udp(&lab.wan, xtask::lab::NAS_V6.into(), 9001, 200, 400).expect("send") as u64;
    let up_9001 = send_from(&game, (WAN_V6.into(), SINK), 100, 300);
    // Client traffic: a UDP upload from an ephemeral port, and a TCP transfer the NAS opened to
    // the WAN host's port 8443 (its ACKs come back as the download).
    let client_udp = send_udp(&lab.nas, WAN_V4.into(), SINK, 700, 250).expect("send") as u64;
    let (nas_tcp, wan_tcp) =
        tcp_transfer(&lab.nas, &lab.wan, WAN_V4.into(), 8443, 4 << 20).expect("tcp");
    assert_eq!(
        (nas_tcp.total_retrans, wan_tcp.total_retrans),
        (0, 0),
        "retransmissions make exact ground truth impossible: {nas_tcp:?} {wan_tcp:?}"
    );
    daemon.settled();

    let want = [
        (("udp", 9000, "server"), (up_9000 * 528, down_9000 * 1028)),
        (("udp", 9001, "server"), (up_9001 * 148, down_9001 * 248)),
        (("udp", u64::from(SINK), "client"), (client_udp * 728, 0)),
        (
            ("tcp", 8443, "client"),
            (nas_tcp.ip_bytes(false), wan_tcp.ip_bytes(false)),
        ),
    ];
    let check = |v: &Value, when: &str| {
        for ((proto, port, role), bytes) in want {
            assert_eq!(
                service(v, proto, port, role),
                bytes,
                "{when}: {proto}/{port} {role}: {v}"
            );
        }
        assert_eq!(
            v["services"].as_array().map(Vec::len),
            Some(want.len()),
            "{when}: nothing else moved: {v}"
        );
        assert_eq!(
            (
                v["other"]["up_bytes"].as_u64(),
                v["other"]["down_bytes"].as_u64()
            ),
            (Some(0), Some(0)),
            "{when}: {v}"
        );
    };
    let before = services(&daemon);
    check(&before, "live");
    println!("per service: {before}");

    // The history survives a restart (flushed at SIGTERM, read back from the database).
    daemon.stop();
    let daemon = Daemon::start(&lab, &pins.0, &[]);
    daemon.settled();
    let after = services(&daemon);
    check(&after, "after a restart");
    daemon.stop();
    drop((wg, game));
}
