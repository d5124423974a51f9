//! Tier 3 (root, no interface): the real eBPF object, loaded into the kernel, runs every row of the
//! shared vector table through BPF_PROG_TEST_RUN; the maps must show exactly the expected counts.
//! The per-remote drain is exact when the map overflows and while the program runs concurrently.
//!
//! Fails (never skips) when it cannot load the program: CI runs it as root.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

use sentinel::{
    capture::{KernelTotals, ebpf::KernelClassifier},
    testkit,
};
use sentinel_common::{
    abi::{ErrorKind, RemoteCounters, Verdict},
    vectors::{Expect, VECTORS},
};

/// The kernel refuses test frames shorter than an Ethernet header.
const MIN_TEST_RUN_FRAME: usize = 14;

fn load() -> KernelClassifier {
    KernelClassifier::load().unwrap_or_else(|e| {
        panic!(
            "loading the eBPF program failed: {e:?}\n\
             This tier needs root and a kernel with BPF (run it through `cargo xtask test`)."
        )
    })
}

#[test]
fn every_vector_gives_its_expected_result_in_the_kernel() {
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut refused = Vec::new();
    for v in VECTORS {
        let frame = testkit::frame(v);
        if frame.len() < MIN_TEST_RUN_FRAME {
            // Such a frame never reaches a TC program; the userspace test covers the row.
            continue;
        }
        // A fresh program per vector: every vector starts from empty maps, as in the seed's table.
        let mut k = load();
        k.set_addresses(&testkit::plan(v))
            .expect("filling the address tries");
        let before = k.totals().expect("reading totals");
        let ret = match k.test_run(&frame, v.gso_segs, v.gso_size, 1) {
            Ok((ret, _)) => ret,
            // The kernel's test_run refuses frames whose IP header is cut short before they
            // reach the program; only rows that expect "truncated" may end here.
            Err(e)
                if matches!(
                    v.expect,
                    Expect::Skip(ErrorKind::TruncatedL3 | ErrorKind::TruncatedL2)
                ) =>
            {
                refused.push(v.id);
                eprintln!(
                    "{}: refused by BPF_PROG_TEST_RUN ({e}); covered by the userspace test",
                    v.id
                );
                continue;
            }
            Err(e) => panic!("{}: BPF_PROG_TEST_RUN failed: {e:?}", v.id),
        };
        ran += 1;
        if ret != -1 {
            failures.push(format!("{}: returned {ret}, not TC_ACT_UNSPEC (-1)", v.id));
        }
        let after = k.totals().expect("reading totals");
        let read = k.drain_remotes().expect("reading remotes");
        if read.other != RemoteCounters::default() {
            failures.push(format!("{}: overflow moved: {:?}", v.id, read.other));
        }
        // Exact per service too: every public byte in exactly one service (the service vectors
        // of privileged_services check which one).
        let mut remotes = RemoteCounters::default();
        read.remotes.iter().for_each(|(_, c)| remotes.add(c));
        let mut services = read.other_services;
        read.services.iter().for_each(|(_, c)| services.add(c));
        if remotes != services || read.services.len() > 1 {
            failures.push(format!(
                "{}: services {:?} != remotes {remotes:?}",
                v.id, read.services
            ));
        }
        if let Err(why) = check(v.expect, &before, &after, &read.remotes) {
            failures.push(format!("{} ({}): {why}", v.id, v.case));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} vectors failed in the kernel:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The 13-byte runt and the cut IP headers cannot be fed to test_run; everything else must run.
    assert!(
        refused.len() <= 3,
        "too many vectors refused by the kernel: {refused:?}"
    );
    assert!(
        ran + refused.len() >= VECTORS.len() - 1,
        "only {ran} vectors ran"
    );
}

fn check(
    expect: Expect,
    before: &KernelTotals,
    after: &KernelTotals,
    remotes: &[(
        sentinel_common::abi::RemoteKey,
        sentinel_common::abi::RemoteCounters,
    )],
) -> Result<(), String> {
    let mut expected_errors = [0u64; ErrorKind::ALL.len()];
    match expect {
        Expect::Skip(kind) => {
            expected_errors[kind as usize] = 1;
            if after.slots != before.slots {
                return Err(format!(
                    "expected no count, totals moved: {:?}",
                    after.slots
                ));
            }
            if !remotes.is_empty() {
                return Err(format!("expected no remote, got {remotes:?}"));
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
                expected_errors[kind as usize] = 1;
            }
            let moved: Vec<usize> = (0..after.slots.len())
                .filter(|i| after.slots[*i] != before.slots[*i])
                .collect();
            let want_slot = sentinel_common::abi::totals_index(verdict, family) as usize;
            if moved != [want_slot] {
                return Err(format!(
                    "expected slot {want_slot} ({verdict:?}) to move, moved: {moved:?}"
                ));
            }
            let c = after.slots[want_slot];
            if (c.packets, c.ip_bytes, c.wire_bytes) != (packets, ip_bytes, wire_bytes) {
                return Err(format!(
                    "expected {packets} pkts / {ip_bytes} B / {wire_bytes} wire B, got {} / {} / {}",
                    c.packets, c.ip_bytes, c.wire_bytes
                ));
            }
            match verdict {
                Verdict::Up | Verdict::Down => {
                    let key = testkit::remote_key(remote);
                    let [(got_key, r)] = remotes else {
                        return Err(format!("expected one remote {remote}, got {remotes:?}"));
                    };
                    let (p, b) = if verdict == Verdict::Up {
                        (r.up_packets, r.up_bytes)
                    } else {
                        (r.down_packets, r.down_bytes)
                    };
                    if *got_key != key || got_key.family != family || p != packets || b != ip_bytes
                    {
                        return Err(format!(
                            "remote: expected {remote} {packets}/{ip_bytes}, got {:?} {r:?}",
                            sentinel::capture::remote_ip(got_key)
                        ));
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
    let errors: Vec<u64> = (0..after.errors.len())
        .map(|i| after.errors[i] - before.errors[i])
        .collect();
    if errors != expected_errors {
        return Err(format!(
            "error counters: expected {expected_errors:?}, got {errors:?}"
        ));
    }
    Ok(())
}

#[test]
fn counters_accumulate_across_runs_and_cpus_are_summed() {
    let mut k = load();
    let v = VECTORS.iter().find(|v| v.id == "seed-01").expect("seed-01");
    k.set_addresses(&testkit::plan(v)).expect("tries");
    let frame = testkit::frame(v);
    k.test_run(&frame, 0, 0, 1000).expect("test_run");
    let totals = k.totals().expect("totals");
    let up = totals.verdict(Verdict::Up);
    assert_eq!((up.packets, up.ip_bytes), (1000, 1_500_000));
    let read = k.drain_remotes().expect("remotes");
    assert_eq!(read.remotes.len(), 1);
    assert_eq!(read.remotes[0].1.up_bytes, 1_500_000);
    // Read once: the next drain finds nothing.
    assert_eq!(k.drain_remotes().expect("remotes"), Default::default());
}

#[test]
fn address_updates_take_effect_and_stale_entries_go() {
    // NAS -> 203.0.113.9: public until 203.0.113.0/24 is declared inside, public again after.
    let v = VECTORS
        .iter()
        .find(|v| v.id == "user-inside")
        .expect("user-inside");
    let frame = testkit::frame(v);
    let mut k = load();
    let mut plan = testkit::plan(v);
    let inside = std::mem::take(&mut plan.inside);
    k.set_addresses(&plan).expect("tries");
    k.test_run(&frame, 0, 0, 1).expect("run");
    assert_eq!(k.totals().expect("totals").verdict(Verdict::Up).packets, 1);
    plan.inside = inside;
    k.set_addresses(&plan).expect("tries");
    k.test_run(&frame, 0, 0, 1).expect("run");
    assert_eq!(k.totals().expect("totals").verdict(Verdict::Lan).packets, 1);
    plan.inside.clear();
    k.set_addresses(&plan).expect("tries");
    k.test_run(&frame, 0, 0, 1).expect("run");
    assert_eq!(k.totals().expect("totals").verdict(Verdict::Up).packets, 2);
}

/// A pin directory on bpffs for one test, removed on drop.
struct Pins(std::path::PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pinned_maps_are_reused_and_foreign_layouts_replaced() {
    use sentinel::capture::ebpf::MapsOrigin;
    let pins = Pins(std::path::PathBuf::from(format!(
        "/sys/fs/bpf/sentinel-test-{}-layout",
        std::process::id()
    )));
    let first = KernelClassifier::load_pinned(&pins.0).expect("load pinned");
    assert_eq!(first.origin(), MapsOrigin::Created);
    let instance = first.instance();
    drop(first);
    let again = KernelClassifier::load_pinned(&pins.0).expect("reload pinned");
    assert_eq!(
        (again.origin(), again.instance()),
        (MapsOrigin::Reused, instance),
        "same maps"
    );
    drop(again);

    // An older layout: the totals map pinned with another value size.
    let totals = pins.0.join("SNT_TOTALS");
    std::fs::remove_file(&totals).expect("unpin");
    let made = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&totals)
        .args([
            "type",
            "percpu_array",
            "key",
            "4",
            "value",
            "16",
            "entries",
            "8",
            "name",
            "SNT_TOTALS",
        ])
        .status()
        .expect("bpftool");
    assert!(made.success(), "bpftool map create");
    let replaced = KernelClassifier::load_pinned(&pins.0).expect("load over a foreign layout");
    assert_eq!(
        replaced.origin(),
        MapsOrigin::Created,
        "incompatible pins are replaced, not misread"
    );
    assert_ne!(replaced.instance(), instance);
    drop(replaced);

    // Same shapes but another layout version recorded in the config map.
    let config = pins.0.join("SNT_CONFIG");
    let updated = std::process::Command::new("bpftool")
        .args(["map", "update", "pinned"])
        .arg(&config)
        .args([
            "key", "1", "0", "0", "0", "value", "99", "0", "0", "0", "0", "0", "0", "0",
        ])
        .status()
        .expect("bpftool");
    assert!(updated.success(), "bpftool map update");
    let recreated = KernelClassifier::load_pinned(&pins.0).expect("load over another version");
    assert_eq!(recreated.origin(), MapsOrigin::Created);
    let instance = recreated.instance();
    drop(recreated);

    // Layout 2's per-remote LRU map is still pinned next to current maps (an upgrade): the set is
    // replaced and the retired pin removed, never left to be misread.
    let retired = pins.0.join("SNT_REMOTES");
    let made = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&retired)
        .args([
            "type",
            "lru_percpu_hash",
            "key",
            "20",
            "value",
            "32",
            "entries",
            "16384",
            "name",
            "SNT_REMOTES",
        ])
        .status()
        .expect("bpftool");
    assert!(made.success(), "bpftool map create");
    let upgraded = KernelClassifier::load_pinned(&pins.0).expect("load over layout 2");
    assert_eq!(upgraded.origin(), MapsOrigin::Created);
    assert_ne!(upgraded.instance(), instance);
    assert!(!retired.exists(), "the retired pin is removed");
    assert!(pins.0.join("SNT_REMOTES_A").exists() && pins.0.join("SNT_OVERFLOW").exists());
}

/// seed-01's frame (NAS 192.168.1.100 -> public, 1,500 IP bytes) sent to the public remote
/// `8.x.y.z` numbered `i` instead of 8.8.8.8.
fn frame_to(i: u32) -> Vec<u8> {
    let v = VECTORS.iter().find(|v| v.id == "seed-01").expect("seed-01");
    let mut frame = testkit::frame(v);
    // Ethernet 14 + IPv4 destination at 16.
    frame[30..34].copy_from_slice(&[8, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    frame
}

fn remote_index(key: &sentinel_common::abi::RemoteKey) -> u32 {
    u32::from_be_bytes([0, key.addr[1], key.addr[2], key.addr[3]])
}

#[test]
fn a_full_remote_map_overflows_exactly_and_has_room_again_after_a_drain() {
    use sentinel_common::abi::REMOTES_MAX_ENTRIES;
    let mut k = load();
    let v = VECTORS.iter().find(|v| v.id == "seed-01").expect("seed-01");
    k.set_addresses(&testkit::plan(v)).expect("tries");
    let sent = REMOTES_MAX_ENTRIES + 616;
    for i in 0..sent {
        k.test_run(&frame_to(i), 0, 0, 1).expect("test_run");
    }
    let started = std::time::Instant::now();
    let read = k.drain_remotes().expect("drain");
    let busy = started.elapsed();
    let totals = k.totals().expect("totals");
    let started = std::time::Instant::now();
    k.drain_remotes().expect("drain");
    println!(
        "drain of a full map ({REMOTES_MAX_ENTRIES} remotes + overflow): {busy:?}; idle drain: {:?}",
        started.elapsed()
    );
    assert_eq!(read.remotes.len(), REMOTES_MAX_ENTRIES as usize);
    assert!(
        read.remotes
            .iter()
            .all(|(_, c)| c.up_bytes == 1500 && c.up_packets == 1)
    );
    let extra = u64::from(sent - REMOTES_MAX_ENTRIES);
    assert_eq!(
        (read.other.up_packets, read.other.up_bytes),
        (extra, extra * 1500)
    );
    assert_eq!(totals.error(ErrorKind::RemoteUpdate), extra);
    let per_remote: u64 = read.remotes.iter().map(|(_, c)| c.up_bytes).sum();
    assert_eq!(
        per_remote + read.other.up_bytes,
        totals.verdict(Verdict::Up).ip_bytes,
        "per-remote sums plus overflow equal the direction total"
    );
    // Read once: nothing is left, on either side.
    assert_eq!(k.drain_remotes().expect("drain"), Default::default());
    // The map is empty again: new remotes get their own entries.
    for i in 0..10 {
        k.test_run(&frame_to(sent + i), 0, 0, 1).expect("test_run");
    }
    let read = k.drain_remotes().expect("drain");
    assert_eq!(read.remotes.len(), 10);
    assert_eq!(read.other, RemoteCounters::default());
}

#[test]
fn draining_while_the_program_runs_reads_every_byte_exactly_once() {
    use std::{
        collections::HashMap,
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
    };
    const REMOTES: u32 = 2_000;
    const ROUNDS: u32 = 20;
    const REPEAT: u32 = 3;
    let pins = Pins(std::path::PathBuf::from(format!(
        "/sys/fs/bpf/sentinel-test-{}-concurrent",
        std::process::id()
    )));
    // Two loads of the same pinned maps: one program writes while the other handle drains.
    let mut writer = KernelClassifier::load_pinned(&pins.0).expect("load pinned");
    let v = VECTORS.iter().find(|v| v.id == "seed-01").expect("seed-01");
    writer.set_addresses(&testkit::plan(v)).expect("tries");
    let mut drainer = KernelClassifier::load_pinned(&pins.0).expect("reload pinned");
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let thread = std::thread::spawn(move || {
        let frames: Vec<Vec<u8>> = (0..REMOTES).map(frame_to).collect();
        for _ in 0..ROUNDS {
            for f in &frames {
                writer.test_run(f, 0, 0, REPEAT).expect("test_run");
            }
        }
        flag.store(true, Ordering::Release);
        writer
    });
    let mut got: HashMap<u32, RemoteCounters> = HashMap::new();
    let mut other = RemoteCounters::default();
    let (mut drains, mut busy_drains) = (0u32, 0u32);
    let mut add = |read: sentinel::capture::ebpf::RemoteRead| {
        for (key, c) in &read.remotes {
            got.entry(remote_index(key)).or_default().add(c);
        }
        other.add(&read.other);
        !read.remotes.is_empty()
    };
    // Bounded: the writer sends 120,000 frames; a drain takes milliseconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
        drains += 1;
        if add(drainer.drain_remotes().expect("drain")) {
            busy_drains += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let writer = thread.join().expect("writer thread");
    // Two more drains collect both sides.
    add(drainer.drain_remotes().expect("drain"));
    add(drainer.drain_remotes().expect("drain"));
    let totals = drainer.totals().expect("totals");
    println!("{drains} drains while the program ran, {busy_drains} of them read remotes");
    let each = u64::from(ROUNDS * REPEAT);
    assert_eq!(got.len(), REMOTES as usize);
    for (i, c) in &got {
        assert_eq!(
            (c.up_packets, c.up_bytes, c.down_bytes),
            (each, each * 1500, 0),
            "remote {i}"
        );
    }
    assert_eq!(other, RemoteCounters::default(), "no overflow expected");
    let sent = u64::from(REMOTES) * each;
    assert_eq!(totals.verdict(Verdict::Up).ip_bytes, sent * 1500);
    assert!(
        busy_drains >= 2,
        "the drains must have overlapped the writer ({busy_drains} read remotes)"
    );
    drop(writer);
}

/// The maps carry BTF: `bpftool map dump` prints field names, not raw hex (docs/operations.md).
#[test]
fn bpftool_dumps_show_field_names() {
    let pins = Pins(std::path::PathBuf::from(format!(
        "/sys/fs/bpf/sentinel-test-{}-btf",
        std::process::id()
    )));
    let classifier = KernelClassifier::load_pinned(&pins.0).expect("load pinned");
    for (map, field) in [
        ("SNT_TOTALS", "ip_bytes"),
        ("SNT_ERRORS", "value"),
        ("SNT_OVERFLOW", "down_bytes"),
    ] {
        let out = std::process::Command::new("bpftool")
            .args(["map", "dump", "pinned"])
            .arg(pins.0.join(map))
            .output()
            .expect("running bpftool (installed by cargo xtask setup)");
        assert!(out.status.success(), "bpftool failed on {map}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("\"{field}\"")),
            "{map}: no field {field:?} in the dump: {text}"
        );
        assert!(
            !text.contains("value:"),
            "{map}: raw hex instead of BTF-formatted values: {text}"
        );
    }
    let show = std::process::Command::new("bpftool")
        .args(["map", "show", "pinned"])
        .arg(pins.0.join("SNT_REMOTES_A"))
        .output()
        .expect("bpftool map show");
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("btf_id"),
        "the remote map carries BTF: {text}"
    );
    drop(classifier);
}
