//! Remote addresses per day: exact while the day is open, top N plus "other" once it is over,
//! rankings over ranges that survive restarts, late data, retention, bounded growth.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod store_support;

use std::{net::IpAddr, path::Path, sync::Arc};

use sentinel::store::{Store, StoreOptions, TopRemotes};
use store_support::{TestClock, date, inspect, options, record_remotes, utc, zone};

fn ip(last: u8) -> IpAddr {
    IpAddr::from([203, 0, 113, last])
}

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

fn ranking(top: &TopRemotes) -> Vec<(IpAddr, u64)> {
    top.remotes
        .iter()
        .map(|r| (r.ip, r.counters.up_bytes + r.counters.down_bytes))
        .collect()
}

fn all_bytes(top: &TopRemotes) -> u64 {
    ranking(top).iter().map(|(_, b)| b).sum::<u64>() + top.other.up_bytes + top.other.down_bytes
}

fn rows_of_day(path: &Path, day: &str) -> i64 {
    let day_number = (utc(&format!("{day} 00:00:00")) / 86_400).to_string();
    inspect(path)
        .query_row(
            "SELECT (SELECT COUNT(*) FROM remote_open WHERE day = ?1) + (SELECT COUNT(*) FROM remote_top_day WHERE day = ?1)",
            [day_number.parse::<i64>().expect("day")],
            |r| r.get(0),
        )
        .expect("count")
}

#[test]
fn closed_days_keep_their_top_n_and_an_exact_other_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let clock = TestClock::at(utc("2025-03-14 23:00:00"));
    let store = open(&path, clock.clone(), 3, 400);
    let day1: Vec<(IpAddr, u64, u64)> = (1..=10u8)
        .map(|i| (ip(i), u64::from(i) * 60, u64::from(i) * 40))
        .collect();
    record_remotes(&store, utc("2025-03-14 12:00:00"), &day1);
    store.flush_now().expect("flush");
    let d14 = date("2025-03-14");
    // The day is open: every remote is stored, and ranked exactly.
    assert_eq!(rows_of_day(&path, "2025-03-14"), 10);
    let top = store.top_remotes(d14, d14, 5).expect("top");
    assert_eq!(
        ranking(&top),
        [
            (ip(10), 1000),
            (ip(9), 900),
            (ip(8), 800),
            (ip(7), 700),
            (ip(6), 600)
        ]
    );
    assert_eq!(all_bytes(&top), 5500);
    assert_eq!(top.distinct, 10);
    let top = store.top_remotes(d14, d14, 2).expect("top");
    assert_eq!(top.other.up_bytes + top.other.down_bytes, 3600);

    // Next day: the first flush compacts 03-14 to its top 3.
    clock.set(utc("2025-03-15 00:05:00"));
    record_remotes(&store, utc("2025-03-15 00:04:00"), &[(ip(1), 5000, 0)]);
    let report = store.flush_now().expect("flush");
    assert_eq!(report.compacted_days, 1);
    assert_eq!(rows_of_day(&path, "2025-03-14"), 3);
    let top = store.top_remotes(d14, d14, 5).expect("top");
    assert_eq!(ranking(&top), [(ip(10), 1000), (ip(9), 900), (ip(8), 800)]);
    assert_eq!(all_bytes(&top), 5500, "the other total keeps every byte");

    // A range ranks across days, and survives a restart.
    let both = store.top_remotes(d14, date("2025-03-15"), 2).expect("top");
    assert_eq!(ranking(&both), [(ip(1), 5000), (ip(10), 1000)]);
    assert_eq!(all_bytes(&both), 10_500);
    store.close().expect("close");
    let store = open(&path, clock.clone(), 3, 400);
    assert_eq!(
        store.top_remotes(d14, date("2025-03-15"), 2).expect("top"),
        both
    );

    // Late data for a day already compacted re-ranks that day in the same commit.
    record_remotes(&store, utc("2025-03-14 23:59:59"), &[(ip(99), 850, 0)]);
    store.flush_now().expect("flush");
    assert_eq!(rows_of_day(&path, "2025-03-14"), 3);
    let top = store.top_remotes(d14, d14, 5).expect("top");
    assert_eq!(ranking(&top), [(ip(10), 1000), (ip(9), 900), (ip(99), 850)]);
    assert_eq!(all_bytes(&top), 6350);
}

#[test]
fn unflushed_remotes_are_ranked_with_the_stored_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::at(utc("2025-03-15 10:00:00"));
    let store = open(&dir.path().join("t.db"), clock, 10, 400);
    record_remotes(
        &store,
        utc("2025-03-15 09:00:00"),
        &[(ip(1), 100, 0), (ip(2), 300, 0)],
    );
    store.flush_now().expect("flush");
    record_remotes(
        &store,
        utc("2025-03-15 09:30:00"),
        &[(ip(1), 250, 0), (ip(3), 300, 0)],
    );
    let d = date("2025-03-15");
    let top = store.top_remotes(d, d, 2).expect("top");
    // ip(1) has 350 (100 stored + 250 pending); ip(2) and ip(3) tie at 300 and rank by address.
    assert_eq!(ranking(&top), [(ip(1), 350), (ip(2), 300)]);
    assert_eq!(top.other.up_bytes, 300);
    assert_eq!(top.distinct, 3);
}

#[test]
fn retention_deletes_old_days_and_growth_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let clock = TestClock::at(utc("2025-03-10 12:00:00"));
    let store = open(&path, clock.clone(), 20, 3);
    for day in 10..=14u8 {
        let at = utc(&format!("2025-03-{day} 12:00:00"));
        clock.set(at);
        let many: Vec<(IpAddr, u64, u64)> = (0..2000u32)
            .map(|i| {
                let a = IpAddr::from([
                    0x20,
                    0x01,
                    0x0d,
                    0xb8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    day,
                    (i >> 8) as u8,
                    i as u8,
                ]);
                (a, u64::from(i) + 1, 0)
            })
            .collect();
        record_remotes(&store, at, &many);
        store.flush_now().expect("flush");
    }
    clock.set(utc("2025-03-15 00:10:00"));
    store.flush_now().expect("flush");
    let total: i64 = inspect(&path)
        .query_row(
            "SELECT (SELECT COUNT(*) FROM remote_open) + (SELECT COUNT(*) FROM remote_top_day)",
            [],
            |r| r.get(0),
        )
        .expect("count");
    // Retention 3 days at 03-15: 03-13 and 03-14 (compacted to 20 each) are kept, older deleted.
    assert_eq!(total, 40);
    assert_eq!(rows_of_day(&path, "2025-03-12"), 0);
    let old = store
        .top_remotes(date("2025-03-10"), date("2025-03-12"), 10)
        .expect("top");
    assert!(old.remotes.is_empty() && all_bytes(&old) == 0, "{old:?}");
    let kept = store
        .top_remotes(date("2025-03-14"), date("2025-03-14"), 1)
        .expect("top");
    assert_eq!(ranking(&kept)[0].1, 2000);
    assert_eq!(all_bytes(&kept), 2000 * 2001 / 2);
}

#[test]
fn closed_months_are_ranked_from_their_own_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let clock = TestClock::at(utc("2025-02-01 12:00:00"));
    let store = open(&path, clock.clone(), 5, 400);
    // Every day of February: remote i gets i bytes, plus remote 200+day gets 1000 bytes that day
    // only; remote 100 gets 300 bytes a day (never in a day's top 5, first of the month).
    for day in 1..=28u8 {
        let at = utc(&format!("2025-02-{day:02} 12:00:00"));
        clock.set(at);
        let mut list: Vec<(IpAddr, u64, u64)> =
            (1..=9u8).map(|i| (ip(i), u64::from(i), 0)).collect();
        list.push((ip(200 + day / 10), 0, 1000));
        list.push((ip(100), 150, 150));
        record_remotes(&store, at, &list);
        store.flush_now().expect("flush");
    }
    clock.set(utc("2025-03-01 00:10:00"));
    store.flush_now().expect("flush builds February");
    let monthly: i64 = inspect(&path)
        .query_row("SELECT COUNT(*) FROM remote_top_month", [], |r| r.get(0))
        .expect("count");
    assert_eq!(monthly, 5);
    let feb = store
        .top_remotes(date("2025-02-01"), date("2025-02-28"), 3)
        .expect("february");
    // Per day the top 5 are 200+day/10 (1000), 100 (300), 9, 8, 7.
    assert_eq!(
        ranking(&feb),
        [(ip(201), 10_000), (ip(200), 9000), (ip(202), 9000)]
    );
    let four = store
        .top_remotes(date("2025-02-01"), date("2025-02-28"), 4)
        .expect("february");
    assert_eq!(ranking(&four)[3], (ip(100), 8400));
    let every_byte = 28 * (45 + 1000 + 300);
    assert_eq!(all_bytes(&feb), every_byte);
    // Read day by day (the range does not cover the month whole).
    let most = store
        .top_remotes(date("2025-02-02"), date("2025-02-28"), 4)
        .expect("days");
    assert_eq!(
        ranking(&most),
        [
            (ip(201), 10_000),
            (ip(202), 9000),
            (ip(100), 8100),
            (ip(200), 8000)
        ]
    );
    // A late byte for a February day re-ranks that day and rebuilds the month.
    record_remotes(&store, utc("2025-02-28 23:59:59"), &[(ip(77), 20_000, 0)]);
    store.flush_now().expect("flush");
    let feb = store
        .top_remotes(date("2025-02-01"), date("2025-02-28"), 1)
        .expect("february");
    assert_eq!(ranking(&feb), [(ip(77), 20_000)]);
    assert_eq!(all_bytes(&feb), every_byte + 20_000);
}

#[test]
fn a_flood_of_distinct_remotes_today_is_bounded_without_losing_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let now = utc("2025-03-15 12:00:00");
    let store = Store::open(
        &path,
        zone("UTC"),
        StoreOptions {
            max_open_day_remotes: 100,
            ..options(TestClock::at(now))
        },
    )
    .expect("open");
    let flood: Vec<(IpAddr, u64, u64)> = (0..300u32)
        .map(|i| {
            (
                IpAddr::from([198, 18, (i >> 8) as u8, i as u8]),
                0,
                u64::from(i) + 1,
            )
        })
        .collect();
    record_remotes(&store, now, &flood);
    store.flush_now().expect("flush");
    assert_eq!(rows_of_day(&path, "2025-03-15"), 50);
    let d = date("2025-03-15");
    let top = store.top_remotes(d, d, 3).expect("top");
    assert_eq!(ranking(&top)[0], (IpAddr::from([198, 18, 1, 43]), 300));
    assert_eq!(all_bytes(&top), 300 * 301 / 2);
}
