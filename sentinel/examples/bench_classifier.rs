//! `cargo xtask bench classifier`: the eBPF program's per-packet cost through BPF_PROG_TEST_RUN,
//! beside an empty TC program measured in the same run, and the userspace classifier's frames per
//! second on one core. Needs root.

use std::time::{Duration, Instant};

use sentinel::{capture::ebpf::KernelClassifier, testkit};
use sentinel_common::{account::account, vectors::VECTORS};

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
        "{:<26} {:>10} {:>10} {:>8} {:>14}",
        "frame", "ebpf ns", "empty ns", "ratio", "userspace f/s"
    );
    for (label, id) in CASES {
        let v = VECTORS
            .iter()
            .find(|v| v.id == *id)
            .ok_or_else(|| anyhow::anyhow!("no vector {id}"))?;
        let frame = testkit::frame(v);
        let plan = testkit::plan(v);
        k.set_addresses(&plan)?;
        // Interleave to share any frequency drift between the two.
        let mut ours = Vec::new();
        let mut empty = Vec::new();
        for _ in 0..3 {
            ours.push(k.test_run(&frame, v.gso_segs, v.gso_size, kernel_repeat)?.1);
            empty.push(k.test_run_baseline(&frame, kernel_repeat)?);
        }
        let ours = median(ours);
        let empty = median(empty);
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
        println!(
            "{:<26} {:>10} {:>10} {:>7.1}x {:>14.0}",
            label,
            ours.as_nanos(),
            empty.as_nanos(),
            ours.as_nanos() as f64 / empty.as_nanos().max(1) as f64,
            fps
        );
    }
    println!();
    println!("Goal: IPv4 and IPv6 within 4x the empty program.");
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
