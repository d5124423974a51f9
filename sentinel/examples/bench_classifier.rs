//! `cargo xtask bench classifier`: the eBPF program's per-packet cost through BPF_PROG_TEST_RUN,
//! beside an empty TC program measured in the same run, and the userspace classifier's frames per
//! second on one core. The per-service counter's share is the "no svc" column: the same program
//! with per-service counting switched off (`CONFIG_SERVICES`), measured in the same run. Needs
//! root.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

use std::time::{Duration, Instant};

use sentinel::{capture::ebpf::KernelClassifier, testkit};
use sentinel_common::{account::account, service_vectors::SERVICE_VECTORS, vectors::VECTORS};

/// Frames measured: (label, vector id).
const CASES: &[(&str, &str)] = &[
    ("IPv4 NAS -> public", "seed-01"),
    ("IPv4 LAN (both private)", "seed-03"),
    ("IPv6 NAS GUA -> public", "seed-30"),
    ("IPv6 intra-/56", "seed-32"),
    ("802.1Q IPv4", "seed-20"),
    ("GSO TCP/IPv4 x3", "gso-tcp4"),
    ("GRO TCP/IPv6 x3", "gro-tcp6"),
    ("non-IP (ARP)", "seed-27"),
    ("raw IPv4 (ppp/tun)", "raw-v4-up"),
    ("raw IPv6 (ppp/tun)", "raw-v6-down"),
    ("PPPoE IPv4", "pppoe-v4-up"),
    ("PPPoE IPv6", "pppoe-v6-down"),
];

/// Service frames measured with the NAS listening on their port: (label, service vector id).
const SERVICE_CASES: &[(&str, &str)] = &[
    ("TCP/IPv4 server (SMB)", "svc-01"),
    ("TCP/IPv4 client (HTTPS)", "svc-03"),
    ("UDP/IPv6 client (DNS)", "svc-08"),
    ("ICMP/IPv4 (no ports)", "svc-11"),
];

/// Kernel cost with and without the service counter, and of the empty program (medians of 3).
fn kernel_costs(
    k: &mut KernelClassifier,
    frame: &[u8],
    gso: (u32, u32),
    repeat: u32,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    // Interleave to share any frequency drift between the three.
    let (mut ours, mut off, mut empty) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        k.set_services_enabled(true)?;
        ours.push(k.test_run(frame, gso.0, gso.1, repeat)?.1);
        k.set_services_enabled(false)?;
        off.push(k.test_run(frame, gso.0, gso.1, repeat)?.1);
        empty.push(k.test_run_baseline(frame, repeat)?);
    }
    k.set_services_enabled(true)?;
    // The maps are drained so a side never fills up over the run.
    k.drain_remotes()?;
    Ok((median(ours), median(off), median(empty)))
}

fn row(label: &str, (ours, off, empty): (Duration, Duration, Duration), fps: Option<f64>) {
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>7.1}x {:>14}",
        label,
        ours.as_nanos(),
        off.as_nanos(),
        empty.as_nanos(),
        ours.as_nanos() as f64 / empty.as_nanos().max(1) as f64,
        fps.map_or_else(|| "-".to_owned(), |f| format!("{f:.0}"))
    );
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let kernel_repeat: u32 = if quick { 10_000 } else { 1_000_000 };
    let user_iters: u64 = if quick { 100_000 } else { 5_000_000 };

    let mut k = KernelClassifier::load()?;
    println!(
        "classifier benchmark: kernel cost per packet via BPF_PROG_TEST_RUN ({kernel_repeat} repeats),"
    );
    println!(
        "beside an empty TC program in the same run; userspace: frames/s on one core ({user_iters} frames)."
    );
    println!();
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>8} {:>14}",
        "frame", "ebpf ns", "no svc ns", "empty ns", "ratio", "userspace f/s"
    );
    for (label, id) in CASES {
        let v = VECTORS
            .iter()
            .find(|v| v.id == *id)
            .ok_or_else(|| anyhow::anyhow!("no vector {id}"))?;
        let frame = testkit::frame(v);
        let plan = testkit::plan(v);
        k.set_addresses(&plan)?;
        let costs = kernel_costs(&mut k, &frame, (v.gso_segs, v.gso_size), kernel_repeat)?;
        let table = plan.table();
        let start = Instant::now();
        let mut counted = 0u64;
        for _ in 0..user_iters {
            if let Ok(acc) = account(std::hint::black_box(&frame[..]), v.link, v.gso_segs, &table) {
                counted += acc.packets;
            }
        }
        std::hint::black_box(counted);
        let fps = user_iters as f64 / start.elapsed().as_secs_f64();
        row(label, costs, Some(fps));
    }
    k.set_addresses(&testkit::service_plan())?;
    for (label, id) in SERVICE_CASES {
        let v = SERVICE_VECTORS
            .iter()
            .find(|v| v.id == *id)
            .ok_or_else(|| anyhow::anyhow!("no service vector {id}"))?;
        k.set_listening(&testkit::service_listen(v))?;
        let frame = testkit::service_frame(v);
        row(
            label,
            kernel_costs(&mut k, &frame, (0, 0), kernel_repeat)?,
            None,
        );
    }
    println!();
    println!("\"no svc\": the same program with the per-service counter switched off.");
    println!("Goal: IPv4 and IPv6 within 4x the empty program.");
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
