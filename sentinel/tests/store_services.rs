//! Services per day: exact including unflushed counts, ranked over a range with an exact "other",
//! bounded per day like remotes, kept for the remotes' retention, and surviving a restart.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod store_support;

use std::{path::Path, sync::Arc};

use sentinel::store::{Sample, Store, StoreOptions, TopServices};
use sentinel_common::abi::{ROLE_CLIENT, ROLE_NONE, ROLE_SERVER, RemoteCounters, ServiceKey};
use store_support::{TestClock, date, inspect, options, utc, zone};

const SMB: ServiceKey = ServiceKey {
    port: 445,
    proto: 6,
    role: ROLE_SERVER,
};
const HTTPS_CLIENT: ServiceKey = ServiceKey {
    port: 443,
    proto: 6,
    role: ROLE_CLIENT,
};
const ICMP: ServiceKey = ServiceKey {
    port: 0,
    proto: 1,
    role: ROLE_NONE,
};

fn open(path: &Path, clock: Arc<TestClock>, keep: u32, retention: u32) -> Store {
    Store::open(
        path,
        zone("UTC"),
        StoreOptions {
            top_remotes_per_day: keep,
            remotes_retention_days: retention,
            ..options(clock)
        },
    )
    .expect("open")
}

fn c(up: u64, down: u64) -> RemoteCounters {
    RemoteCounters {
        up_packets: up / 100,
        up_bytes: up,
        down_packets: down / 100,
        down_bytes: down,
    }
}

fn record(
    store: &Store,
    at: i64,
    services: &[(ServiceKey, RemoteCounters)],
    other: RemoteCounters,
) {
    store.record(&Sample {
        at,
        services,
        other_services: other,
        ..Sample::default()
    });
}

fn bytes(top: &TopServices) -> u64 {
    top.services
        .iter()
        .map(|(_, c)| c.up_bytes + c.down_bytes)
        .sum::<u64>()
        + top.other.up_bytes
        + top.other.down_bytes
}

#[test]
fn rankings_include_unflushed_counts_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let clock = TestClock::at(utc("2025-03-14 10:00:00"));
    let store = open(&path, clock.clone(), 100, 400);
    record(
        &store,
        utc("2025-03-14 10:00:00"),
        &[(SMB, c(8_000, 100)), (HTTPS_CLIENT, c(300, 90_000))],
        c(7, 0),
    );
    let day = date("2025-03-14");
    let top = store.top_services(day, day, 10).expect("query");
    assert_eq!(
        top.services,
        vec![(HTTPS_CLIENT, c(300, 90_000)), (SMB, c(8_000, 100))],
        "unflushed counts are included, most first"
    );
    assert_eq!(top.other, c(7, 0));
    store.flush_now().expect("flush");
    // More after the flush: stored plus pending add up.
    record(
        &store,
        utc("2025-03-14 11:00:00"),
        &[(SMB, c(2_000, 0)), (ICMP, c(84, 84))],
        c(0, 3),
    );
    let top = store.top_services(day, day, 10).expect("query");
    assert_eq!(top.services[0], (HTTPS_CLIENT, c(300, 90_000)));
    assert_eq!(top.services[1], (SMB, c(10_000, 100)));
    assert_eq!(top.services[2], (ICMP, c(84, 84)));
    assert_eq!(top.other, c(7, 3));
    let before = store.top_services(day, day, 10).expect("query");
    store.close().expect("close");
    let store = open(&path, clock, 100, 400);
    assert_eq!(
        store.top_services(day, day, 10).expect("query"),
        before,
        "the history survives a restart"
    );
    // A limit folds the rest into "other", exactly.
    let top1 = store.top_services(day, day, 1).expect("query");
    assert_eq!(top1.services, vec![(HTTPS_CLIENT, c(300, 90_000))]);
    assert_eq!(bytes(&top1), bytes(&before));
    // Bad limits and ranges are refused.
    assert!(store.top_services(day, day, 0).is_err());
    assert!(store.top_services(day, date("2025-03-13"), 10).is_err());
}

#[test]
fn a_day_keeps_at_most_the_remote_bound_of_services_and_every_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let clock = TestClock::at(utc("2025-03-14 10:00:00"));
    let store = open(&path, clock, 2, 400);
    let many: Vec<(ServiceKey, RemoteCounters)> = (0..5u16)
        .map(|i| {
            (
                ServiceKey {
                    port: 1000 + i,
                    proto: 17,
                    role: ROLE_CLIENT,
                },
                c(100 * u64::from(i + 1), 0),
            )
        })
        .collect();
    record(
        &store,
        utc("2025-03-14 10:00:00"),
        &many,
        RemoteCounters::default(),
    );
    store.flush_now().expect("flush");
    let rows: i64 = inspect(&path)
        .query_row("SELECT COUNT(*) FROM service_day", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 2, "at most `top_remotes_per_day` services a day");
    let day = date("2025-03-14");
    let top = store.top_services(day, day, 10).expect("query");
    assert_eq!(top.services.len(), 2);
    assert_eq!(
        bytes(&top),
        100 + 200 + 300 + 400 + 500,
        "every byte is in the day"
    );
    // A service already stored keeps counting on a full day.
    record(
        &store,
        utc("2025-03-14 12:00:00"),
        &many[..1],
        RemoteCounters::default(),
    );
    store.flush_now().expect("flush");
    let top = store.top_services(day, day, 10).expect("query");
    assert_eq!(
        top.services
            .iter()
            .find(|(k, _)| k.port == 1000)
            .expect("kept")
            .1,
        c(200, 0)
    );
}

#[test]
fn days_beyond_the_retention_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let clock = TestClock::at(utc("2025-03-10 10:00:00"));
    let store = open(&path, clock.clone(), 100, 3);
    record(
        &store,
        utc("2025-03-10 10:00:00"),
        &[(SMB, c(500, 0))],
        c(1, 0),
    );
    store.flush_now().expect("flush");
    clock.set(utc("2025-03-12 10:00:00"));
    record(
        &store,
        utc("2025-03-12 10:00:00"),
        &[(SMB, c(700, 0))],
        RemoteCounters::default(),
    );
    store.flush_now().expect("flush");
    let range = (date("2025-03-01"), date("2025-03-31"));
    assert_eq!(
        store
            .top_services(range.0, range.1, 10)
            .expect("q")
            .services[0]
            .1,
        c(1_200, 0)
    );
    clock.set(utc("2025-03-13 10:00:00"));
    store.flush_now().expect("flush");
    let top = store.top_services(range.0, range.1, 10).expect("q");
    assert_eq!(
        top.services,
        vec![(SMB, c(700, 0))],
        "day 10 is past a 3-day retention"
    );
    assert_eq!(top.other, RemoteCounters::default());
}
