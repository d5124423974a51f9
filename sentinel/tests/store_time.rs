//! Time done right: DST days with fixed clocks, :30 and :45 zones, and `TZ` changes.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod store_support;

use sentinel::store::{Granularity, Period, Store};
use store_support::{TestClock, date, inspect, local, options, record, utc, zone};

/// Records one byte up every minute from `from` to `to` (UTC seconds), flushing halfway so that
/// half the day is stored and half is pending.
fn one_byte_a_minute(store: &Store, from: i64, to: i64) -> u64 {
    let minutes = (to - from) / 60;
    for i in 0..minutes {
        if i == minutes / 2 {
            store.flush_now().expect("flush halfway");
        }
        record(store, from + i * 60, 1, 2);
    }
    u64::try_from(minutes).expect("positive")
}

#[test]
fn the_fall_back_day_has_25_distinct_hours_and_an_exact_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let tz = "America/New_York";
    let clock = TestClock::at(local(tz, "2024-11-04 12:00:00"));
    let store = Store::open(&path, zone(tz), options(clock)).expect("open");
    let (from, to) = (
        local(tz, "2024-11-03 00:00:00"),
        local(tz, "2024-11-04 00:00:00"),
    );
    assert_eq!(to - from, 25 * 3600);
    let minutes = one_byte_a_minute(&store, from, to);

    let day = date("2024-11-03");
    let hours = store.series(day, day, Granularity::Hour).expect("hours");
    assert_eq!(hours.points.len(), 25);
    let labels: Vec<String> = hours.points.iter().map(|p| p.period.label()).collect();
    assert_eq!(labels[1], "2024-11-03 01:00:00");
    assert_eq!(labels[2], "2024-11-03 01:00:00");
    let offsets: Vec<i32> = hours.points[1..3]
        .iter()
        .map(|p| match p.period {
            Period::Hour { utc_offset, .. } => utc_offset,
            other => panic!("not an hour: {other:?}"),
        })
        .collect();
    assert_eq!(offsets, [-4 * 3600, -5 * 3600]);
    assert!(hours.points.iter().all(|p| p.traffic.up.ip_bytes == 60));
    assert_eq!(hours.total.up.ip_bytes, minutes);

    let days = store.series(day, day, Granularity::Day).expect("day");
    assert_eq!(days.points[0].traffic.up.ip_bytes, 1500);
    assert_eq!(days.points[0].traffic.down.ip_bytes, 3000);
    assert_eq!(
        store
            .today_hours(local(tz, "2024-11-03 23:59:00"))
            .expect("today")
            .points
            .len(),
        25
    );

    // Stored: 25 rows for the day, and the seed's view still sums the exact day.
    store.flush_now().expect("flush");
    let conn = inspect(&path);
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT start_utc) FROM traffic_hourly \
             WHERE hour_ts LIKE '2024-11-03%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("rows");
    assert_eq!((rows, distinct), (25, 25));
    let view: (i64, i64) = conn
        .query_row(
            "SELECT up_bytes, total_bytes FROM traffic_daily WHERE day = '2024-11-03'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("view");
    assert_eq!(view, (1500, 4500));
}

#[test]
fn the_spring_forward_day_has_23_hours_and_an_exact_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let tz = "America/New_York";
    let clock = TestClock::at(local(tz, "2024-03-11 12:00:00"));
    let store = Store::open(&path, zone(tz), options(clock)).expect("open");
    let (from, to) = (
        local(tz, "2024-03-10 00:00:00"),
        local(tz, "2024-03-11 00:00:00"),
    );
    one_byte_a_minute(&store, from, to);
    let day = date("2024-03-10");
    let hours = store.series(day, day, Granularity::Hour).expect("hours");
    assert_eq!(hours.points.len(), 23);
    assert!(
        !hours
            .points
            .iter()
            .any(|p| p.period.label() == "2024-03-10 02:00:00")
    );
    assert_eq!(hours.total.up.ip_bytes, 23 * 60);
    let month = store
        .series(date("2024-03-01"), date("2024-03-31"), Granularity::Month)
        .expect("month");
    assert_eq!(month.points[0].traffic.up.ip_bytes, 23 * 60);
    store.flush_now().expect("flush");
    let rows: i64 = inspect(&path)
        .query_row(
            "SELECT COUNT(*) FROM traffic_hourly WHERE hour_ts LIKE '2024-03-10%'",
            [],
            |r| r.get(0),
        )
        .expect("rows");
    assert_eq!(rows, 23);
}

#[test]
fn half_and_quarter_hour_zones_get_exact_local_days() {
    for (tz, offset) in [("Asia/Kolkata", 19_800_i64), ("Asia/Kathmandu", 20_700)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = TestClock::at(utc("2025-03-20 00:00:00"));
        let store = Store::open(dir.path().join("t.db"), zone(tz), options(clock)).expect("open");
        // One byte every 5 minutes from 2025-03-14 00:00 UTC to 2025-03-17 00:00 UTC.
        let start = utc("2025-03-14 00:00:00");
        for i in 0..(3 * 288) {
            if i == 400 {
                store.flush_now().expect("flush");
            }
            record(&store, start + i * 300, 1, 0);
        }
        let days = store
            .series(date("2025-03-14"), date("2025-03-16"), Granularity::Day)
            .expect("days");
        let got: Vec<u64> = days.points.iter().map(|p| p.traffic.up.ip_bytes).collect();
        // 2025-03-14 local starts `offset` seconds before 00:00 UTC: the samples of that day are
        // those from 00:00 UTC until the local midnight (24 h - offset later).
        let first_day = u64::try_from((24 * 3600 - offset + 299) / 300).expect("positive");
        assert_eq!(got, [first_day, 288, 288], "{tz}");
        assert_eq!(days.points[1].start, utc("2025-03-15 00:00:00") - offset);
        let hours = store
            .series(date("2025-03-15"), date("2025-03-15"), Granularity::Hour)
            .expect("hours");
        assert_eq!(hours.points.len(), 24, "{tz}");
        assert!(
            hours.points.iter().all(|p| p.traffic.up.ip_bytes == 12),
            "{tz}"
        );
    }
}

#[test]
fn a_tz_change_relabels_history_and_changing_back_restores_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let clock = TestClock::at(utc("2025-03-16 00:00:00"));
    let rows = |path: &std::path::Path| -> Vec<(i64, String, i64, i64)> {
        let conn = inspect(path);
        let mut stmt = conn
            .prepare("SELECT start_utc, hour_ts, utc_offset, up_bytes FROM traffic_hourly ORDER BY start_utc")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    {
        let store =
            Store::open(&path, zone("Asia/Shanghai"), options(clock.clone())).expect("open");
        // 10 bytes in every UTC hour of 2025-03-14 and 2025-03-15.
        let start = utc("2025-03-14 00:00:00");
        for h in 0..48 {
            record(&store, start + h * 3600 + 600, 10, 0);
        }
        store.close().expect("close");
    }
    let original = rows(&path);
    assert_eq!(original.len(), 48);
    assert_eq!(original[0].1, "2025-03-14 08:00:00");
    {
        let store = Store::open(&path, zone("UTC"), options(clock.clone())).expect("reopen in UTC");
        let report = store.open_report();
        assert_eq!(report.zone_changed_from.as_deref(), Some("Asia/Shanghai"));
        assert_eq!(report.relabelled_rows, 48);
        let days = store
            .series(date("2025-03-13"), date("2025-03-16"), Granularity::Day)
            .expect("days");
        let got: Vec<u64> = days.points.iter().map(|p| p.traffic.up.ip_bytes).collect();
        assert_eq!(got, [0, 240, 240, 0], "grouped by UTC days now");
        assert_eq!(rows(&path)[0].1, "2025-03-14 00:00:00");
    }
    {
        let store =
            Store::open(&path, zone("Asia/Kolkata"), options(clock.clone())).expect("reopen");
        // Each hour counts in the local hour where it began: 00:00 UTC is 05:30 IST, so the hours
        // beginning 00:00-18:00 UTC on 03-14 fall on 03-14 IST (19 of them).
        let days = store
            .series(date("2025-03-14"), date("2025-03-16"), Granularity::Day)
            .expect("days");
        let got: Vec<u64> = days.points.iter().map(|p| p.traffic.up.ip_bytes).collect();
        assert_eq!(got, [190, 240, 50]);
        assert_eq!(rows(&path)[0].1, "2025-03-14 05:00:00");
        let hours = store
            .series(date("2025-03-15"), date("2025-03-15"), Granularity::Hour)
            .expect("hours");
        assert_eq!(hours.points.len(), 24);
        assert_eq!(hours.total.up.ip_bytes, 240);
    }
    let store = Store::open(&path, zone("Asia/Shanghai"), options(clock)).expect("back");
    assert_eq!(rows(&path), original, "going back restores every label");
    let days = store
        .series(date("2025-03-14"), date("2025-03-16"), Granularity::Day)
        .expect("days");
    let got: Vec<u64> = days.points.iter().map(|p| p.traffic.up.ip_bytes).collect();
    assert_eq!(got, [160, 240, 80]);
}
