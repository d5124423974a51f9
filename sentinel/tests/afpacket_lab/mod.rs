//! Helpers of the AF_PACKET lab tests: starting the backend inside the lab's NAS namespace,
//! ground truth from the namespaces' own counters, waiting for counts to settle, and putting the
//! NAS's eth0 back after a test took it down or re-created it.

use std::time::{Duration, Instant};

use sentinel::{
    capture::{
        Backend, Snapshot,
        afpacket::{AfPacketBackend, AfPacketOptions, CaptureState},
    },
    classify::AddressPlan,
    iface,
};
use xtask::lab::{Lab, ip};

/// Where the sinks listen.
pub const PORT: u16 = 9999;

/// A lab, or a loud failure: this tier runs as root in CI and must not skip.
pub fn lab() -> Lab {
    let lab = Lab::create().unwrap_or_else(|e| {
        panic!(
            "creating the namespace lab failed: {e:?}\n\
             This tier needs root and iproute2 (run it through `cargo xtask test`)."
        )
    });
    wait_ready(&lab);
    lab
}

fn run_ip(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("running ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the router's links are up and its bridge ports forward. A veth's carrier reaches
/// the bridge through linkwatch, which batches events up to a second: traffic sent earlier is
/// dropped by a bridge port still "disabled".
pub fn wait_ready(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let links = run_ip(&["-n", &lab.rtr, "-br", "link", "show"]);
        let up = ["nas0", "lan0", "wan0"].iter().all(|dev| {
            links.lines().any(|l| {
                l.starts_with(&format!("{dev}@")) && l.split_whitespace().nth(1) == Some("UP")
            })
        });
        let ports = std::process::Command::new("bridge")
            .args(["-n", &lab.rtr, "link", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let forwarding = ["nas0", "lan0"].iter().all(|dev| {
            ports
                .lines()
                .any(|l| l.contains(&format!(" {dev}")) && l.contains("state forwarding"))
        });
        if up && forwarding {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the lab's links did not come up: {links}\n{ports}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The NAS's address plan as the daemon would derive it (read inside the NAS namespace).
pub fn nas_plan(lab: &Lab) -> AddressPlan {
    Lab::in_ns(&lab.nas, || {
        let locals = iface::local_addresses("eth0")?;
        Ok(AddressPlan {
            lan_prefixes: iface::derived_lan_prefixes(&locals, 56),
            locals,
            ..AddressPlan::default()
        })
    })
    .expect("reading the NAS's addresses")
}

/// Starts the backend on the NAS's eth0, from a thread inside the NAS namespace.
pub fn start(lab: &Lab, plan: &AddressPlan, options: AfPacketOptions) -> AfPacketBackend {
    let plan = plan.clone();
    Lab::in_ns(&lab.nas, move || {
        Ok(AfPacketBackend::open_with("eth0", &plan, options)?)
    })
    .unwrap_or_else(|e| panic!("starting the AF_PACKET backend on the lab NAS failed: {e:?}"))
}

/// Polls the backend until `done` holds (or 5 s pass), then waits a little more so that frames
/// counted twice or late would show, and returns the last snapshot with the per-remote growth
/// (and overflow) of every snapshot taken here added up, sorted by remote: each snapshot hands
/// remotes over once.
pub fn settle(b: &mut AfPacketBackend, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let mut sum = Snapshot::default();
    let take = |sum: &mut Snapshot, s: Snapshot| {
        let mut remotes: std::collections::BTreeMap<_, _> = sum.remotes.drain(..).collect();
        for (k, c) in &s.remotes {
            remotes
                .entry(*k)
                .or_insert_with(sentinel_common::abi::RemoteCounters::default)
                .add(c);
        }
        let mut other = sum.other_remotes;
        other.add(&s.other_remotes);
        *sum = Snapshot {
            remotes: remotes.into_iter().collect(),
            other_remotes: other,
            ..s
        };
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        take(&mut sum, b.snapshot().expect("snapshot"));
        if done(&sum) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    take(&mut sum, b.snapshot().expect("snapshot"));
    sum
}

/// Waits (at most `secs`) for the reader to reach a state; returns the state seen last.
pub fn wait_state(
    b: &AfPacketBackend,
    secs: u64,
    want: impl Fn(&CaptureState) -> bool,
) -> CaptureState {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let state = b.status().state;
        if want(&state) || Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Datagrams received in namespace `ns` (IPv4, IPv6): `InDatagrams + RcvbufErrors` of its UDP
/// MIBs, the receiving side's ground truth.
pub fn udp_received(ns: &str) -> (u64, u64) {
    Lab::in_ns(ns, || {
        // thread-self: /proc/self/net would show the main thread's namespace.
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp: "));
        let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        let field = |want: &str| -> u64 {
            names
                .split_whitespace()
                .zip(values.split_whitespace())
                .find(|(n, _)| *n == want)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        let v4 = field("InDatagrams") + field("RcvbufErrors");
        let snmp6 = std::fs::read_to_string("/proc/thread-self/net/snmp6")?;
        let field6 = |want: &str| -> u64 {
            snmp6
                .lines()
                .filter_map(|l| l.split_once(char::is_whitespace))
                .find(|(n, _)| *n == want)
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let v6 = field6("Udp6InDatagrams") + field6("Udp6RcvbufErrors");
        Ok((v4, v6))
    })
    .expect("reading UDP counters")
}

/// The MAC address of `dev` in `ns`.
pub fn mac_of(ns: &str, dev: &str) -> String {
    let text = run_ip(&["-n", ns, "-br", "link", "show", dev]);
    text.split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no MAC for {dev} in {ns}: {text:?}"))
        .to_owned()
}

/// Puts the NAS's eth0 configuration back (after it went down, or was re-created): addresses,
/// default routes, static neighbours for the router, then waits for the bridge. Idempotent.
pub fn rewire_nas(lab: &Lab, router_mac: &str) {
    let nas = lab.nas.as_str();
    let run = |args: &[&str]| ip(args).unwrap_or_else(|e| panic!("{e:?}"));
    run(&["-n", nas, "link", "set", "eth0", "up"]);
    run(&[
        "-n",
        nas,
        "addr",
        "replace",
        "192.168.50.10/24",
        "dev",
        "eth0",
    ]);
    run(&[
        "-n",
        nas,
        "addr",
        "replace",
        "2001:db8:aa00:1::10/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    for (a, gw) in [("-4", "192.168.50.1"), ("-6", "2001:db8:aa00:1::1")] {
        run(&["-n", nas, a, "route", "replace", "default", "via", gw]);
        run(&[
            "-n",
            nas,
            "neigh",
            "replace",
            gw,
            "lladdr",
            router_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }
    wait_ready(lab);
}

/// Deletes the NAS's eth0 (and its router-side peer).
pub fn delete_nas_eth0(lab: &Lab) {
    ip(&["-n", &lab.nas, "link", "del", "eth0"]).expect("deleting eth0");
}

/// Creates the NAS's eth0 again (a new interface index), with the same MAC, on the router's
/// bridge, and rewires it.
pub fn recreate_nas_eth0(lab: &Lab, nas_mac: &str, router_mac: &str) {
    let (nas, rtr) = (lab.nas.as_str(), lab.rtr.as_str());
    ip(&[
        "-n", nas, "link", "add", "eth0", "address", nas_mac, "type", "veth", "peer", "name",
        "nas0", "netns", rtr,
    ])
    .expect("re-creating eth0");
    ip(&["-n", rtr, "link", "set", "nas0", "master", "br0"]).expect("bridging nas0");
    ip(&["-n", rtr, "link", "set", "nas0", "up"]).expect("nas0 up");
    rewire_nas(lab, router_mac);
    wait_ready(lab);
}

/// What one TCP transfer put on the wire at the NAS's eth0, from both ends' TCP_INFO.
pub struct TcpTruth {
    /// NAS -> internet host.
    pub up: sentinel_common::abi::Counters,
    /// Internet host -> NAS.
    pub down: sentinel_common::abi::Counters,
    /// No retransmission, reordering or SACK: every segment's header size is known.
    pub clean: bool,
    /// Both ends, still open (closing would add FIN segments).
    pub sockets: (std::net::TcpStream, std::net::TcpStream),
}

const TCP_PORT: u16 = 9898;

fn tcp_info(s: &std::net::TcpStream) -> libc::tcp_info {
    use std::os::fd::AsRawFd;
    // SAFETY: `tcp_info` is plain data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a live `tcp_info` of `len` bytes the kernel may write.
    let ret = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(ret, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info
}

/// Pins the calling thread to CPU 0: both ends of a veth transfer on one CPU keep segments in
/// order (docs/toolchain.md, "The namespace lab"), so no SACK options change header sizes.
fn pin_to_cpu0() {
    let mut set = nix::sched::CpuSet::new();
    set.set(0).expect("cpu 0");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("affinity");
}

/// Sends `bytes` over TCP between the NAS and the internet host (`upload`: from the NAS) with
/// the veths' offloads as they are (TSO/GSO on), and returns the ground truth: per side,
/// `tcpi_segs_out` segments and `tcpi_bytes_sent + segs * (IP + TCP header)` bytes, where every
/// TCP header carries timestamps (32 bytes) and the SYN / SYN-ACK 8 bytes more.
pub fn tcp_bulk(lab: &Lab, upload: bool, v6: bool, bytes: usize) -> TcpTruth {
    use std::io::{Read, Write};
    use xtask::lab::{NAS_V4, NAS_V6, WAN_V4, WAN_V6};
    let (server_ns, client_ns) = if upload {
        (&lab.wan, &lab.nas)
    } else {
        (&lab.nas, &lab.wan)
    };
    let server: std::net::IpAddr = match (upload, v6) {
        (true, false) => WAN_V4.into(),
        (true, true) => WAN_V6.into(),
        (false, false) => NAS_V4.into(),
        (false, true) => NAS_V6.into(),
    };
    let listener = Lab::in_ns(server_ns, move || {
        Ok(std::net::TcpListener::bind((server, TCP_PORT))?)
    })
    .expect("listen");
    let client = Lab::in_ns(client_ns, move || {
        Ok(std::net::TcpStream::connect((server, TCP_PORT))?)
    })
    .expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    // The client sends, the server receives: upload is NAS -> internet host, download the reverse.
    let (sender, receiver) = (client, accepted);
    let reader = std::thread::spawn(move || {
        pin_to_cpu0();
        let mut r = receiver;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0;
        while got < bytes {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        (r, got)
    });
    let writer = std::thread::spawn(move || {
        pin_to_cpu0();
        let mut w = sender;
        w.write_all(&vec![0x5a; bytes]).expect("write");
        w
    });
    let sender = writer.join().expect("writer");
    let (receiver, got) = reader.join().expect("reader");
    assert_eq!(got, bytes, "transfer incomplete");
    // Let delayed ACKs go out before reading the counters.
    std::thread::sleep(Duration::from_millis(300));
    let (nas, wan) = if upload {
        (&sender, &receiver)
    } else {
        (&receiver, &sender)
    };
    let (n, w) = (tcp_info(nas), tcp_info(wan));
    let ip_hdr = if v6 { 40 } else { 20 };
    // The client's SYN is in its segs_out; the server's SYN-ACK is not (the request socket sends
    // it, before the child socket exists), so it is added here. Both carry 8 option bytes more
    // than the timestamp-only headers of every other segment.
    let side = |i: &libc::tcp_info, server: bool| {
        let syn = u64::from(server);
        let segs = u64::from(i.tcpi_segs_out);
        sentinel_common::abi::Counters {
            packets: segs + syn,
            ip_bytes: i.tcpi_bytes_sent + (segs + syn) * (ip_hdr + 32) + 8,
            wire_bytes: 0,
        }
    };
    let quiet = |i: &libc::tcp_info| {
        i.tcpi_total_retrans == 0
            && i.tcpi_rcv_ooopack == 0
            && i.tcpi_dsack_dups == 0
            && i.tcpi_reord_seen == 0
    };
    TcpTruth {
        up: side(&n, !upload),
        down: side(&w, upload),
        clean: quiet(&n) && quiet(&w) && n.tcpi_options & 1 != 0,
        sockets: (sender, receiver),
    }
}
