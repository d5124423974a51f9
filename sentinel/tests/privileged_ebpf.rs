//! Tier 3 (root, no interface): the real eBPF object, loaded into the kernel, runs every row of the
//! shared vector table through BPF_PROG_TEST_RUN; the maps must show exactly the expected counts.
//!
//! Fails (never skips) when it cannot load the program: CI runs it as root.

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
}
