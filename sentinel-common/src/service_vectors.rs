//! The per-service vector table, run by both worlds: the AF_PACKET tally's unit test and the eBPF
//! program through BPF_PROG_TEST_RUN (the `privileged_ebpf` tier) walk [`SERVICE_VECTORS`] and
//! must add each row's bytes to exactly its [`ServiceExpect`] key (see [`crate::service`] for the
//! rule): TCP and UDP over IPv4 and IPv6, server and client roles, first and later fragments,
//! ICMP, extension headers, other protocols, a packet too short for its ports.
//!
//! Every row uses the NAS addresses of [`SERVICE_LOCALS`]; `listen` is the NAS's listening set.

use crate::abi::{ROLE_CLIENT, ROLE_NONE, ROLE_SERVER, Verdict};

/// The NAS's local addresses in every row.
pub const SERVICE_LOCALS: &[&str] = &["192.168.1.10", "2001:db8:1::10"];

/// The key and bytes a row must add.
#[derive(Clone, Copy, Debug)]
pub struct ServiceExpect {
    /// Up or down.
    pub verdict: Verdict,
    /// [`crate::abi::ServiceKey::proto`].
    pub proto: u8,
    /// [`crate::abi::ServiceKey::port`].
    pub port: u16,
    /// [`crate::abi::ServiceKey::role`].
    pub role: u8,
    /// IP bytes added (one packet).
    pub ip_bytes: u64,
}

/// One row.
#[derive(Clone, Copy, Debug)]
pub struct ServiceVector {
    /// Stable identifier.
    pub id: &'static str,
    /// What the row is about.
    pub case: &'static str,
    /// The Ethernet frame, in hex.
    pub frame: &'static str,
    /// Zero bytes appended to `frame`.
    pub padding: u32,
    /// (protocol, port) pairs the NAS listens on.
    pub listen: &'static [(u8, u16)],
    /// The service the frame adds to; `None`: not public traffic, no service moves.
    pub expect: Option<ServiceExpect>,
}

/// Every row.
pub const SERVICE_VECTORS: &[ServiceVector] = &[
    ServiceVector {
        id: "svc-01",
        case: "TCP/IPv4 download from a listening port: server, keyed by the NAS port",
        frame: "0200000000010200000000020800450003e80000000040060000cb007105c0a8010ac73801bd00000000000000005010ffff00000000",
        padding: 960,
        listen: &[(6, 445)],
        expect: Some(ServiceExpect {
            verdict: Verdict::Down,
            proto: 6,
            port: 445,
            role: ROLE_SERVER,
            ip_bytes: 1000,
        }),
    },
    ServiceVector {
        id: "svc-02",
        case: "TCP/IPv4 upload from a listening port: server",
        frame: "0200000000010200000000020800450005780000000040060000c0a8010acb00710501bdc73800000000000000005010ffff00000000",
        padding: 1360,
        listen: &[(6, 445)],
        expect: Some(ServiceExpect {
            verdict: Verdict::Up,
            proto: 6,
            port: 445,
            role: ROLE_SERVER,
            ip_bytes: 1400,
        }),
    },
    ServiceVector {
        id: "svc-03",
        case: "TCP/IPv4 download to an ephemeral port: client, keyed by the remote port",
        frame: "0200000000010200000000020800450005dc0000000040060000cb007105c0a8010a01bb9c4100000000000000005010ffff00000000",
        padding: 1460,
        listen: &[],
        expect: Some(ServiceExpect {
            verdict: Verdict::Down,
            proto: 6,
            port: 443,
            role: ROLE_CLIENT,
            ip_bytes: 1500,
        }),
    },
    ServiceVector {
        id: "svc-04",
        case: "TCP/IPv4 upload from an ephemeral port: client",
        frame: "0200000000010200000000020800450000780000000040060000c0a8010acb0071059c4101bb00000000000000005010ffff00000000",
        padding: 80,
        listen: &[(6, 445)],
        expect: Some(ServiceExpect {
            verdict: Verdict::Up,
            proto: 6,
            port: 443,
            role: ROLE_CLIENT,
            ip_bytes: 120,
        }),
    },
    ServiceVector {
        id: "svc-05",
        case: "UDP/IPv4 to a listening port (WireGuard): server",
        frame: "0200000000010200000000020800450000940000000040110000cb007105c0a8010aea60ca6c00800000",
        padding: 120,
        listen: &[(17, 51820)],
        expect: Some(ServiceExpect {
            verdict: Verdict::Down,
            proto: 17,
            port: 51820,
            role: ROLE_SERVER,
            ip_bytes: 148,
        }),
    },
    ServiceVector {
        id: "svc-06",
        case: "UDP/IPv4 to a port the NAS listens on for TCP only: client (the protocol is part of the key)",
        frame: "0200000000010200000000020800450000640000000040110000cb007105c0a8010a0d96ca6c00500000",
        padding: 72,
        listen: &[(6, 51820)],
        expect: Some(ServiceExpect {
            verdict: Verdict::Down,
            proto: 17,
            port: 3478,
            role: ROLE_CLIENT,
            ip_bytes: 100,
        }),
    },
    ServiceVector {
        id: "svc-07",
        case: "TCP/IPv6 download from a listening port (Plex): server",
        frame: "02000000000102000000000286dd6000000005a0064020010db800ff0000000000000000000520010db8000100000000000000000010c3507e9000000000000000005010ffff00000000",
        padding: 1420,
        listen: &[(6, 32400)],
        expect: Some(ServiceExpect {
            verdict: Verdict::Down,
            proto: 6,
            port: 32400,
            role: ROLE_SERVER,
            ip_bytes: 1480,
        }),
    },
    ServiceVector {
        id: "svc-08",
        case: "UDP/IPv6 upload from an ephemeral port (DNS query): client",
        frame: "02000000000102000000000286dd600000000028114020010db800010000000000000000001020010db800ff00000000000000000005c350003500280000",
        padding: 32,
        listen: &[],
        expect: Some(ServiceExpect {
            verdict: Verdict::Up,
            proto: 17,
            port: 53,
            role: ROLE_CLIENT,
            ip_bytes: 80,
        }),
    },
    ServiceVector {
        id: "svc-09",
        case: "UDP/IPv4 first fragment (MF set, offset 0): ports read",
        frame: "0200000000010200000000020800450005dc0000200040110000c0a8010acb0071059c4001bb0bb80000",
        padding: 1472,
        listen: &[],
        expect: Some(ServiceExpect {
            verdict: Verdict::Up,
            proto: 17,
            port: 443,
            role: ROLE_CLIENT,
            ip_bytes: 1500,
        }),
    },
    ServiceVector {
        id: "svc-10",
        case: "UDP/IPv4 later fragment (offset 1480): no ports, keyed by protocol",
        frame: "0200000000010200000000020800450003e8000000b940110000cb007105c0a8010a01bb9c40",
        padding: 976,
        listen: &[(17, 40000), (17, 443)],
        expect: Some(ServiceExpect {
            verdict: Verdict::Down,
            proto: 17,
            port: 0,
            role: ROLE_NONE,
            ip_bytes: 1000,
        }),
    },
    ServiceVector {
        id: "svc-11",
        case: "ICMP/IPv4: keyed by protocol, port 0",
        frame: "0200000000010200000000020800450000540000000040010000cb007105c0a8010a08000000",
        padding: 60,
        listen: &[],
        expect: Some(ServiceExpect {
            verdict: Verdict::Down,
            proto: 1,
            port: 0,
            role: ROLE_NONE,
            ip_bytes: 84,
        }),
    },
    ServiceVector {
        id: "svc-12",
        case: "ICMPv6: keyed by protocol, port 0",
        frame: "02000000000102000000000286dd6000000000403a4020010db800010000000000000000001020010db800ff0000000000000000000581000000",
        padding: 60,
        listen: &[],
        expect: Some(ServiceExpect {
            verdict: Verdict::Up,
            proto: 58,
            port: 0,
            role: ROLE_NONE,
            ip_bytes: 104,
        }),
    },
    ServiceVector {
        id: "svc-13",
        case: "IPv6 fragment header (next header 44): keyed by protocol",
        frame: "02000000000102000000000286dd6000000004d82c4020010db800ff0000000000000000000520010db800010000000000000000001011000001",
        padding: 1236,
        listen: &[(17, 4352)],
        expect: Some(ServiceExpect {
            verdict: Verdict::Down,
            proto: 44,
            port: 0,
            role: ROLE_NONE,
            ip_bytes: 1280,
        }),
    },
    ServiceVector {
        id: "svc-14",
        case: "GRE/IPv4 (protocol 47): keyed by protocol",
        frame: "0200000000010200000000020800450000c800000000402f0000c0a8010acb00710500000800",
        padding: 176,
        listen: &[],
        expect: Some(ServiceExpect {
            verdict: Verdict::Up,
            proto: 47,
            port: 0,
            role: ROLE_NONE,
            ip_bytes: 200,
        }),
    },
    ServiceVector {
        id: "svc-15",
        case: "TCP/IPv4 whose IP packet is too short for ports: never read them from padding",
        frame: "0200000000010200000000020800450000160000000040060000cb007105c0a8010a01bd",
        padding: 24,
        listen: &[(6, 445)],
        expect: Some(ServiceExpect {
            verdict: Verdict::Down,
            proto: 6,
            port: 0,
            role: ROLE_NONE,
            ip_bytes: 22,
        }),
    },
    ServiceVector {
        id: "svc-16",
        case: "802.1Q-tagged TCP/IPv4 to a listening port: ports after the tag",
        frame: "0200000000010200000000028100000a0800450002580000000040060000cb007105c0a8010ac738138900000000000000005010ffff00000000",
        padding: 560,
        listen: &[(6, 5001)],
        expect: Some(ServiceExpect {
            verdict: Verdict::Down,
            proto: 6,
            port: 5001,
            role: ROLE_SERVER,
            ip_bytes: 600,
        }),
    },
    ServiceVector {
        id: "svc-17",
        case: "TCP/IPv4 to a LAN host: not public, no service",
        frame: "0200000000010200000000020800450001f40000000040060000c0a8010ac0a8011401bdc73800000000000000005010ffff00000000",
        padding: 460,
        listen: &[(6, 445)],
        expect: None,
    },
];
