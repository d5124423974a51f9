//! Flushing: on the timer, on demand and at close, with the checkpoint in the same transaction; a
//! locked database; queries during flushes neither lose nor double a batch; query bounds.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod store_support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rusqlite::Connection;
use sentinel::store::{Granularity, QueryError, RangeError, Sample, Store, StoreOptions};
use store_support::{TestClock, counters, date, inspect, options, record, utc, zone};

const NOW: i64 = 1_742_020_641; // 2025-03-15 06:37:21 UTC

fn stored_up(path: &std::path::Path) -> i64 {
    inspect(path)
        .query_row(
            "SELECT COALESCE(SUM(up_bytes), 0) FROM traffic_hourly",
            [],
            |r| r.get(0),
        )
        .expect("sum")
}

#[test]
fn the_timer_flushes_and_close_flushes_the_rest_with_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let store = Store::open(
        &path,
        zone("UTC"),
        StoreOptions {
            save_interval: Duration::from_millis(300),
            ..options(TestClock::at(NOW))
        },
    )
    .expect("open");
    store.record(&Sample {
        at: NOW,
        up: counters(10),
        checkpoint: Some(b"ckpt-1".to_vec()),
        ..Sample::default()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.status().last_flush_ok.is_none() {
        assert!(Instant::now() < deadline, "no periodic flush");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stored_up(&path), 10);
    assert_eq!(
        store.checkpoint().expect("checkpoint"),
        Some(b"ckpt-1".to_vec())
    );
    assert_eq!(store.status().pending_hours, 0);
    store.record(&Sample {
        at: NOW + 1,
        up: counters(5),
        checkpoint: Some(b"ckpt-2".to_vec()),
        ..Sample::default()
    });
    let report = store.close().expect("final flush");
    assert_eq!(report.hours, 1);
    assert_eq!(stored_up(&path), 15);
    let (data, seq): (Vec<u8>, i64) = inspect(&path)
        .query_row("SELECT data, flush_seq FROM capture_checkpoint", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("checkpoint row");
    assert_eq!(data, b"ckpt-2");
    assert!(seq >= 2);
    // After a restart the store hands the checkpoint back.
    let store = Store::open(&path, zone("UTC"), options(TestClock::at(NOW))).expect("reopen");
    assert_eq!(
        store.checkpoint().expect("checkpoint"),
        Some(b"ckpt-2".to_vec())
    );
}

#[test]
fn a_database_locked_by_another_program_keeps_the_data_until_it_is_free() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let store = Store::open(
        &path,
        zone("UTC"),
        StoreOptions {
            busy_timeout: Duration::from_millis(200),
            ..options(TestClock::at(NOW))
        },
    )
    .expect("open");
    record(&store, NOW, 100, 0);
    store.flush_now().expect("flush");
    // A user's sqlite3 session holding the write lock.
    let other = Connection::open(&path).expect("other program");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    record(&store, NOW, 23, 0);
    let err = store.flush_now().expect_err("locked");
    let status = store.status();
    assert_eq!(status.consecutive_failures, 1);
    let message = status.last_error.expect("error shown").message;
    assert!(message.contains("locked"), "{message}");
    assert!(err.to_string().contains("1 hours"), "{err}");
    // Reads are not blocked by the lock, and see the unflushed bytes.
    assert_eq!(store.summary(NOW).expect("summary").today.up.ip_bytes, 123);
    other.execute_batch("COMMIT").expect("unlock");
    store.flush_now().expect("flush once free");
    assert_eq!(stored_up(&path), 123);
    assert_eq!(store.summary(NOW).expect("summary").today.up.ip_bytes, 123);
}

#[test]
fn queries_during_flushes_never_lose_or_double_a_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        Store::open(
            dir.path().join("t.db"),
            zone("UTC"),
            options(TestClock::at(NOW)),
        )
        .expect("open"),
    );
    let recorded = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (store, recorded, done) = (store.clone(), recorded.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..3000_i64 {
                record(&store, NOW + i % 600, 1, 0);
                recorded.fetch_add(1, Ordering::SeqCst);
                if i % 50 == 0 {
                    store.flush_now().expect("flush");
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut checks = 0;
    while !done.load(Ordering::SeqCst) {
        let before = recorded.load(Ordering::SeqCst);
        let seen = store.summary(NOW).expect("summary").today.up.ip_bytes;
        let hours = store
            .series(date("2025-03-15"), date("2025-03-15"), Granularity::Hour)
            .expect("hours")
            .total
            .up
            .ip_bytes;
        let after = recorded.load(Ordering::SeqCst);
        assert!(
            (before..=after).contains(&seen),
            "{before} <= {seen} <= {after}"
        );
        assert!(
            hours >= seen && hours <= after,
            "{seen} <= {hours} <= {after}"
        );
        checks += 1;
    }
    producer.join().expect("producer");
    assert!(checks > 10, "only {checks} checks overlapped the flushes");
    assert_eq!(store.summary(NOW).expect("summary").today.up.ip_bytes, 3000);
}

#[test]
fn queries_are_bounded_with_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path().join("t.db"),
        zone("UTC"),
        options(TestClock::at(NOW)),
    )
    .expect("open");
    let range = |e: QueryError| match e {
        QueryError::Range(r) => r,
        other => panic!("not a range error: {other}"),
    };
    let err = store
        .series(date("2025-03-15"), date("2025-03-14"), Granularity::Day)
        .expect_err("reversed");
    assert!(matches!(range(err), RangeError::StartAfterEnd { .. }));
    let err = store
        .series(date("2025-01-01"), date("2025-04-04"), Granularity::Hour)
        .expect_err("94 days of hours");
    assert!(matches!(
        range(err),
        RangeError::TooLong {
            days: 94,
            max: 93,
            ..
        }
    ));
    assert_eq!(
        store
            .series(date("2025-01-01"), date("2025-04-03"), Granularity::Hour)
            .expect("93 days")
            .points
            .len(),
        93 * 24
    );
    let err = store
        .series(date("1900-01-01"), date("1900-01-02"), Granularity::Day)
        .expect_err("before 1970");
    assert!(matches!(range(err), RangeError::DateOutOfRange { .. }));
    let err = store
        .series(date("9999-12-01"), date("9999-12-31"), Granularity::Day)
        .expect_err("end of time");
    assert!(matches!(range(err), RangeError::DateOutOfRange { .. }));
    let err = store
        .series(date("2015-01-01"), date("2025-03-15"), Granularity::Month)
        .expect_err("over ten years");
    assert!(matches!(range(err), RangeError::TooLong { .. }));
    let err = store
        .top_remotes(date("2025-03-15"), date("2025-03-15"), 0)
        .expect_err("limit 0");
    assert!(matches!(range(err), RangeError::Limit { .. }));
    let err = store
        .top_remotes(date("2024-01-01"), date("2025-03-15"), 10)
        .expect_err("too long");
    assert!(matches!(range(err), RangeError::TooLong { .. }));
}

#[test]
fn month_points_cover_only_the_days_asked_for_and_everything_is_zero_filled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path().join("t.db"),
        zone("UTC"),
        options(TestClock::at(NOW)),
    )
    .expect("open");
    record(&store, utc("2025-02-10 10:00:00"), 5, 0);
    record(&store, utc("2025-02-20 10:00:00"), 7, 0);
    store.flush_now().expect("flush");
    record(&store, utc("2025-03-01 00:30:00"), 11, 0);
    let months = store
        .series(date("2025-02-15"), date("2025-03-15"), Granularity::Month)
        .expect("months");
    let got: Vec<(String, u64)> = months
        .points
        .iter()
        .map(|p| (p.period.label(), p.traffic.up.ip_bytes))
        .collect();
    assert_eq!(got, [("2025-02".to_owned(), 7), ("2025-03".to_owned(), 11)]);
    assert_eq!(months.points[0].start, utc("2025-02-15 00:00:00"));
    let days = store.last_30_days(NOW).expect("30 days");
    assert_eq!(days.points.len(), 30);
    assert_eq!(days.points[29].period.label(), "2025-03-15");
    assert_eq!(
        days.total.up.ip_bytes, 18,
        "02-20 and 03-01 are within the 30 days"
    );
    let hours = store
        .series(date("2025-03-01"), date("2025-03-02"), Granularity::Hour)
        .expect("hours");
    assert_eq!(hours.points.len(), 48);
    assert_eq!(
        hours.points[0].traffic.up.ip_bytes, 11,
        "unflushed hours are merged too"
    );
    assert_eq!(
        store.date_range(NOW).expect("range"),
        (date("2025-02-10"), date("2025-03-01"))
    );
}
