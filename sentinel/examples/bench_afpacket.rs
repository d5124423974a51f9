//! `cargo xtask bench afpacket` (run as root, release build): the AF_PACKET backend on the lab
//! NAS's eth0 under 64-byte UDP floods at rising rates. For each rate it prints what was sent, what
//! the backend counted, its drops and the reader thread's CPU use; then the highest rate at which
//! counts stayed exact. Then a TCP bulk transfer with TSO/GSO on, with and without virtio-net
//! headers, against both ends' TCP_INFO. Bounded: about 30 s, everything inside namespaces this
//! program creates and removes.
//!
//! "64-byte" means a 64-byte Ethernet frame on a real wire: 18 bytes of UDP payload, 46 bytes of
//! IP, 60 bytes of frame plus the 4-byte FCS. The flood goes from the NAS to public documentation
//! addresses that the lab router blackholes (so the router's forwarding does not eat the sender's
//! CPU); every datagram the sender's `sendmmsg` accepted crosses the tap at eth0, so the sender's
//! count is the ground truth. The last row floods from two threads, one per core, which leaves the
//! reader no core of its own: that is where drops show (and must add up with the counts).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

#[path = "../tests/afpacket_lab/mod.rs"]
#[expect(
    dead_code,
    reason = "the tests' lab helpers; the benchmark uses some of them"
)]
mod afpacket_lab;

use std::{
    net::UdpSocket,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use afpacket_lab::{PORT, lab, nas_plan, settle, start, tcp_bulk};
use sentinel::capture::{
    Backend,
    afpacket::{AfPacketBackend, AfPacketOptions},
};
use sentinel_common::abi::{FAMILY_V4, FAMILY_V6, Verdict};
use xtask::lab::{Lab, UdpSink, ip};

const PAYLOAD: usize = 18;
const BATCH: usize = 32;

/// Public documentation addresses the lab router drops (a blackhole route).
const SINK_V4: &str = "198.51.100.1";
const SINK_V6: &str = "2001:db8:bb00::1";

/// Sends 18-byte datagrams from the NAS at `rate` per second in total (0: as fast as possible)
/// for `secs` from `threads` threads (thread i pinned to CPU i); returns how many the kernel
/// accepted.
fn flood(lab: &Lab, v6: bool, rate: u64, secs: f64, threads: usize) -> anyhow::Result<u64> {
    let senders: Vec<_> = (0..threads)
        .map(|cpu| {
            let ns = lab.nas.clone();
            let per_thread = rate / threads as u64;
            std::thread::spawn(move || flood_one(&ns, v6, per_thread, secs, cpu))
        })
        .collect();
    let mut sent = 0;
    for s in senders {
        sent += s.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    Ok(sent)
}

fn flood_one(ns: &str, v6: bool, rate: u64, secs: f64, cpu: usize) -> anyhow::Result<u64> {
    let dst: std::net::IpAddr = if v6 { SINK_V6 } else { SINK_V4 }.parse()?;
    Lab::in_ns(ns, move || {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu)?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
        let socket = UdpSocket::bind(if v6 { "[::]:0" } else { "0.0.0.0:0" })?;
        socket.connect((dst, PORT))?;
        let payload = [0x5au8; PAYLOAD];
        let mut iov = [libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: PAYLOAD,
        }; BATCH];
        // SAFETY: `mmsghdr` is plain data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        let mut sent = 0u64;
        while Instant::now() < end {
            if rate > 0 {
                let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            // SAFETY: `msgs` holds BATCH valid headers pointing at `iov` and `payload`, which
            // outlive the call; the socket is connected, so no addresses are needed.
            let n =
                unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
            if n > 0 {
                sent += n as u64;
            }
        }
        Ok(sent)
    })
}

/// CPU seconds used so far by the reader thread (named `afpacket-eth0`).
fn reader_cpu() -> f64 {
    let tick = 100.0; // USER_HZ
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "afpacket-eth0" {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the ")" of the command: state is 3rd, utime 14th, stime 15th.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            return (t(11) + t(12)) / tick;
        }
    }
    0.0
}

struct Level {
    rate: u64,
    sent: u64,
    counted: u64,
    bytes_ok: bool,
    drops: u64,
    cpu: f64,
}

fn level(
    b: &mut AfPacketBackend,
    lab: &Lab,
    v6: bool,
    (rate, threads): (u64, usize),
    secs: f64,
) -> anyhow::Result<Level> {
    let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
    let ip_len = PAYLOAD as u64 + if v6 { 48 } else { 28 };
    let before = b.snapshot()?;
    let cpu0 = reader_cpu();
    let t0 = Instant::now();
    let sent = flood(lab, v6, rate, secs, threads)?;
    let took = t0.elapsed().as_secs_f64();
    let base = before.totals.get(Verdict::Up, family).packets;
    let after = settle(b, |s| {
        s.totals.get(Verdict::Up, family).packets - base + (s.drops - before.drops) >= sent
    });
    let up = after.totals.get(Verdict::Up, family);
    let was = before.totals.get(Verdict::Up, family);
    let counted = up.packets - was.packets;
    Ok(Level {
        rate: (sent as f64 / took) as u64,
        sent,
        counted,
        bytes_ok: up.ip_bytes - was.ip_bytes == counted * ip_len,
        drops: after.drops - before.drops,
        cpu: (reader_cpu() - cpu0) / took,
    })
}

fn print((target, threads): (u64, usize), l: &Level) {
    let exact = l.counted == l.sent && l.bytes_ok && l.drops == 0;
    let result = if exact {
        "exact"
    } else if l.counted + l.drops == l.sent {
        "drops"
    } else {
        "MISMATCH"
    };
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>8} {:>7.0}% {:>8}",
        match (target, threads) {
            (0, 1) => "max".to_owned(),
            (0, _) => format!("max x{threads}"),
            _ => target.to_string(),
        },
        l.rate,
        l.sent,
        l.counted,
        l.drops,
        l.cpu * 100.0,
        result
    );
}

/// One table of rates; returns the highest exact rate and whether every rate was exact.
fn sweep(
    b: &mut AfPacketBackend,
    lab: &Lab,
    v6: bool,
    rates: &[(u64, usize)],
    secs: f64,
) -> anyhow::Result<Option<(u64, bool)>> {
    println!();
    println!(
        "IPv{} (IP length {})",
        if v6 { 6 } else { 4 },
        PAYLOAD + if v6 { 48 } else { 28 }
    );
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8}",
        "target/s", "sent/s", "sent", "counted", "drops", "reader", "result"
    );
    let (mut best, mut all) = (None, true);
    for &rate in rates {
        let l = level(b, lab, v6, rate, secs)?;
        print(rate, &l);
        if l.counted == l.sent && l.bytes_ok && l.drops == 0 {
            best = best.max(Some(l.rate));
        } else {
            all = false;
        }
    }
    Ok(best.map(|r| (r, all)))
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 0.5 } else { 1.5 };
    // (packets/s, sender threads); 0: unpaced.
    let rates: &[(u64, usize)] = if quick {
        &[(50_000, 1), (0, 2)]
    } else {
        &[
            (50_000, 1),
            (100_000, 1),
            (200_000, 1),
            (300_000, 1),
            (400_000, 1),
            (0, 1),
            (0, 2),
        ]
    };
    let lab = lab();
    ip(&[
        "-n",
        &lab.rtr,
        "route",
        "add",
        "blackhole",
        "198.51.100.0/24",
    ])?;
    ip(&[
        "-n",
        &lab.rtr,
        "-6",
        "route",
        "add",
        "blackhole",
        "2001:db8:bb00::/48",
    ])?;
    let _sink = UdpSink::bind(&lab.wan, PORT)?;
    let plan = nas_plan(&lab);
    let mut options = AfPacketOptions::default();
    // Ring shape overrides, to compare: --blocks N --block-kib K --retire-ms M.
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| -> Option<u32> {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + 1)?.parse().ok()
    };
    if let Some(n) = arg("--blocks") {
        options.ring.block_count = n;
    }
    if let Some(k) = arg("--block-kib") {
        options.ring.block_size = k * 1024;
    }
    if let Some(ms) = arg("--retire-ms") {
        options.ring.retire_ms = ms;
    }
    let ring = options.ring;
    let mut b = start(&lab, &plan, options.clone());
    println!(
        "AF_PACKET benchmark: 64-byte frames NAS -> public addresses, {secs} s per rate; ring {} x {} KiB, retire {} ms, snap {} B",
        ring.block_count,
        ring.block_size / 1024,
        ring.retire_ms,
        ring.snaplen
    );
    for v6 in [false, true] {
        let best = sweep(&mut b, &lab, v6, rates, secs)?;
        match best {
            Some((rate, true)) => println!(
                "highest exact rate: {rate} packets/s (the highest this lab's sender reached: no drops seen)"
            ),
            Some((rate, false)) => println!("highest exact rate: {rate} packets/s; drops above"),
            None => println!("no rate was exact"),
        }
    }
    drop(b);

    // The default ring does not overflow below what one lab sender reaches; a small ring shows
    // what happens above: the kernel drops, and the drops add up with the counts.
    let mut small = options.clone();
    small.ring.block_size = 16 * 1024;
    small.ring.block_count = 4;
    small.ring.retire_ms = 1;
    println!();
    println!("Overload: the same flood into a 64 KiB ring (4 x 16 KiB)");
    let mut b = start(&lab, &plan, small);
    sweep(&mut b, &lab, false, &[(100_000, 1), (0, 1), (0, 2)], secs)?;
    drop(b);

    println!();
    println!("TCP bulk (16 MiB NAS -> internet host, IPv4, TSO/GSO on) against TCP_INFO:");
    for vnet in [true, false] {
        let mut o = options.clone();
        o.ring.vnet_hdr = vnet;
        let mut b = start(&lab, &plan, o);
        let before = b.snapshot()?.totals.get(Verdict::Up, FAMILY_V4);
        let t = tcp_bulk(&lab, true, false, 16 << 20);
        let s = settle(&mut b, |s| {
            s.totals.get(Verdict::Up, FAMILY_V4).ip_bytes - before.ip_bytes >= t.up.ip_bytes
        });
        let got = s.totals.get(Verdict::Up, FAMILY_V4);
        let (p, by) = (got.packets - before.packets, got.ip_bytes - before.ip_bytes);
        println!(
            "  virtio-net headers {:<3}: counted {p} packets / {by} B, TCP_INFO {} / {} ({:+.2} % bytes, {:+.1} % packets){}",
            if vnet { "on" } else { "off" },
            t.up.packets,
            t.up.ip_bytes,
            (by as f64 / t.up.ip_bytes as f64 - 1.0) * 100.0,
            (p as f64 / t.up.packets as f64 - 1.0) * 100.0,
            if t.clean {
                ""
            } else {
                " (retransmissions: truth inexact)"
            }
        );
    }
    Ok(())
}
