//! Tier 3 (root, no interface): the per-service counters of the real eBPF object, through
//! BPF_PROG_TEST_RUN. Every row of the shared per-service table adds its bytes to exactly its
//! key; a full service map overflows exactly and is drained with the remotes; the listening map
//! follows the set pushed to it; the off switch (the benchmark's baseline) adds nothing.
//!
//! Fails (never skips) when it cannot load the program: CI runs it as root.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

use sentinel::{capture::ebpf::KernelClassifier, testkit};
use sentinel_common::{
    abi::{
        ListenKey, ROLE_CLIENT, ROLE_SERVER, RemoteCounters, SERVICES_MAX_ENTRIES, ServiceKey,
        Verdict,
    },
    service_vectors::SERVICE_VECTORS,
};

fn load() -> KernelClassifier {
    KernelClassifier::load().unwrap_or_else(|e| {
        panic!(
            "loading the eBPF program failed: {e:?}\n\
             This tier needs root and a kernel with BPF (run it through `cargo xtask test`)."
        )
    })
}

#[test]
fn every_service_vector_adds_to_its_service_in_the_kernel() {
    let mut failures = Vec::new();
    for v in SERVICE_VECTORS {
        let mut k = load();
        k.set_addresses(&testkit::service_plan()).expect("tries");
        k.set_listening(&testkit::service_listen(v))
            .expect("listening map");
        let frame = testkit::service_frame(v);
        let (ret, _) = k.test_run(&frame, 0, 0, 1).expect("BPF_PROG_TEST_RUN");
        assert_eq!(ret, -1, "{}: the program passes every packet on", v.id);
        let read = k.drain_remotes().expect("drain");
        let got: Vec<_> = read
            .services
            .iter()
            .map(|(k, c)| (*k, c.up_packets, c.up_bytes, c.down_packets, c.down_bytes))
            .collect();
        let want: Vec<_> = v
            .expect
            .iter()
            .map(|e| {
                let key = ServiceKey {
                    port: e.port,
                    proto: e.proto,
                    role: e.role,
                };
                if e.verdict == Verdict::Up {
                    (key, 1, e.ip_bytes, 0, 0)
                } else {
                    (key, 0, 0, 1, e.ip_bytes)
                }
            })
            .collect();
        if got != want || read.other_services != RemoteCounters::default() {
            failures.push(format!("{} ({}): want {want:?}, got {got:?}", v.id, v.case));
        }
        // The service and the remote got the same bytes.
        let mut remotes = read.other;
        read.remotes.iter().for_each(|(_, c)| remotes.add(c));
        let mut services = read.other_services;
        read.services.iter().for_each(|(_, c)| services.add(c));
        if remotes != services {
            failures.push(format!(
                "{}: remotes {remotes:?} != services {services:?}",
                v.id
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} service vectors failed in the kernel:\n{}",
        failures.len(),
        SERVICE_VECTORS.len(),
        failures.join("\n")
    );
}

/// svc-03's frame (remote:443 -> NAS:40001, TCP, 1,500 IP bytes) from remote port `port`.
fn download_from_port(port: u16) -> Vec<u8> {
    let v = SERVICE_VECTORS
        .iter()
        .find(|v| v.id == "svc-03")
        .expect("svc-03");
    let mut frame = testkit::service_frame(v);
    // Ethernet 14 + IPv4 20: the TCP source port.
    frame[34..36].copy_from_slice(&port.to_be_bytes());
    frame
}

#[test]
fn a_full_service_map_overflows_exactly_and_is_drained_with_the_remotes() {
    let mut k = load();
    k.set_addresses(&testkit::service_plan()).expect("tries");
    let sent = SERVICES_MAX_ENTRIES + 100;
    for i in 0..sent {
        k.test_run(&download_from_port(1 + i as u16), 0, 0, 1)
            .expect("test_run");
    }
    let started = std::time::Instant::now();
    let read = k.drain_remotes().expect("drain");
    println!(
        "drain of a full service map ({SERVICES_MAX_ENTRIES} services + overflow, one remote): {:?}",
        started.elapsed()
    );
    let totals = k.totals().expect("totals");
    assert_eq!(read.services.len(), SERVICES_MAX_ENTRIES as usize);
    assert!(read.services.iter().all(|(key, c)| key.role == ROLE_CLIENT
        && key.proto == 6
        && (c.down_packets, c.down_bytes) == (1, 1500)));
    let extra = u64::from(sent - SERVICES_MAX_ENTRIES);
    assert_eq!(
        (
            read.other_services.down_packets,
            read.other_services.down_bytes
        ),
        (extra, extra * 1500)
    );
    let per_service: u64 = read.services.iter().map(|(_, c)| c.down_bytes).sum();
    assert_eq!(
        per_service + read.other_services.down_bytes,
        totals.verdict(Verdict::Down).ip_bytes,
        "per-service sums plus overflow equal the direction total"
    );
    // One remote took it all.
    assert_eq!(read.remotes.len(), 1);
    assert_eq!(read.remotes[0].1.down_bytes, u64::from(sent) * 1500);
    // Read once: nothing is left on either side, and the map has room again.
    assert_eq!(k.drain_remotes().expect("drain"), Default::default());
    k.test_run(&download_from_port(9), 0, 0, 1)
        .expect("test_run");
    let read = k.drain_remotes().expect("drain");
    assert_eq!(read.services.len(), 1);
    assert_eq!(read.other_services, RemoteCounters::default());
}

#[test]
fn the_listening_map_follows_the_set_and_the_off_switch_counts_nothing() {
    let mut k = load();
    k.set_addresses(&testkit::service_plan()).expect("tries");
    let frame = download_from_port(443);
    // Sorted as `listening` returns them (port first).
    let first = [ListenKey::new(17, 53), ListenKey::new(6, 40001)];
    k.set_listening(&first).expect("listening");
    assert_eq!(k.listening().expect("read back"), first.to_vec());
    k.test_run(&frame, 0, 0, 1).expect("test_run");
    let read = k.drain_remotes().expect("drain");
    assert_eq!(
        read.services.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        [ServiceKey {
            port: 40001,
            proto: 6,
            role: ROLE_SERVER
        }],
        "the NAS listens on 40001: server"
    );
    // 40001 no longer listening (stale entry removed): the same packet is client traffic.
    k.set_listening(&[ListenKey::new(17, 53)])
        .expect("listening");
    assert_eq!(
        k.listening().expect("read back"),
        vec![ListenKey::new(17, 53)]
    );
    k.test_run(&frame, 0, 0, 1).expect("test_run");
    let read = k.drain_remotes().expect("drain");
    assert_eq!(read.services[0].0.role, ROLE_CLIENT);
    assert_eq!(read.services[0].0.port, 443);
    // Off: remotes and totals move, services do not.
    k.set_services_enabled(false).expect("off");
    k.test_run(&frame, 0, 0, 1).expect("test_run");
    let read = k.drain_remotes().expect("drain");
    assert!(read.services.is_empty());
    assert_eq!(read.remotes.len(), 1);
    k.set_services_enabled(true).expect("on");
    k.test_run(&frame, 0, 0, 1).expect("test_run");
    assert_eq!(k.drain_remotes().expect("drain").services.len(), 1);
}
