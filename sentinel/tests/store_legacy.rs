//! A `traffic.db` written by the Python seed: the exact DDL of reference 3.1, rows as the seed's
//! `commit_stats` writes them. It must open, be backed up next to itself, be migrated in place and
//! have its whole history served.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod store_support;

use std::path::Path;

use rusqlite::{Connection, params};
use sentinel::store::{Granularity, Store, StoreError};
use store_support::{TestClock, date, inspect, local, options, record, zone};

/// The seed's `init_schema`, verbatim.
const SEED_DDL: &str = "
CREATE TABLE IF NOT EXISTS traffic_hourly (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    hour_ts    TEXT NOT NULL UNIQUE,
    up_bytes   INTEGER NOT NULL DEFAULT 0,
    down_bytes INTEGER NOT NULL DEFAULT 0,
    created_at TEXT,
    updated_at TEXT
);
CREATE VIEW IF NOT EXISTS traffic_daily AS
SELECT substr(hour_ts, 1, 10) AS day, SUM(up_bytes) AS up_bytes, SUM(down_bytes) AS down_bytes,
       SUM(up_bytes + down_bytes) AS total_bytes
FROM traffic_hourly GROUP BY substr(hour_ts, 1, 10);
CREATE VIEW IF NOT EXISTS traffic_monthly AS
SELECT substr(hour_ts, 1, 7) AS month, SUM(up_bytes) AS up_bytes, SUM(down_bytes) AS down_bytes,
       SUM(up_bytes + down_bytes) AS total_bytes
FROM traffic_hourly GROUP BY substr(hour_ts, 1, 7);
CREATE INDEX IF NOT EXISTS idx_hourly_hour_ts ON traffic_hourly(hour_ts);
";

/// The fixture of reference 2.2 (TZ=Asia/Shanghai).
const FIXTURE: &[(&str, i64, i64)] = &[
    ("2024-12-31 23:00:00", 7, 9),
    ("2025-02-10 10:00:00", 5_368_709_120, 21_474_836_480),
    ("2025-03-01 08:00:00", 1000, 24_000),
    ("2025-03-14 21:00:00", 209_715_200, 1_073_741_824),
    ("2025-03-15 00:00:00", 52_428_800, 314_572_800),
    ("2025-03-15 13:00:00", 1_073_741_824, 4_294_967_296),
];

/// Builds a seed database the way the seed does: WAL, its DDL, its upsert per flush.
fn seed_db(path: &Path, rows: &[(&str, i64, i64)]) {
    let mut conn = Connection::open(path).expect("seed db");
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("wal");
    assert_eq!(mode, "wal");
    conn.execute_batch(SEED_DDL).expect("seed schema");
    let tx = conn.transaction().expect("tx");
    for (hour_ts, up, down) in rows {
        let now_str = format!("{} 05:00:01", &hour_ts[..10]);
        tx.execute(
            "INSERT INTO traffic_hourly (hour_ts, up_bytes, down_bytes, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT(hour_ts) DO UPDATE SET \
             up_bytes = up_bytes + excluded.up_bytes, down_bytes = down_bytes + excluded.down_bytes, \
             updated_at = excluded.updated_at",
            params![hour_ts, up, down, now_str, now_str],
        )
        .expect("seed row");
    }
    tx.commit().expect("commit");
}

fn daily_view(conn: &Connection) -> Vec<(String, i64, i64, i64)> {
    let mut stmt = conn
        .prepare("SELECT day, up_bytes, down_bytes, total_bytes FROM traffic_daily ORDER BY day")
        .expect("view");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn a_seed_database_is_backed_up_migrated_in_place_and_fully_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    seed_db(&path, FIXTURE);
    let view_before = daily_view(&inspect(&path));

    let tz = "Asia/Shanghai";
    let now = local(tz, "2025-03-15 14:37:21");
    let store = Store::open(&path, zone(tz), options(TestClock::at(now))).expect("open seed db");
    let report = store.open_report().clone();
    let seed = report.seed.expect("seed migration ran");
    assert_eq!(
        (seed.seed_rows, seed.rows, seed.ambiguous, seed.in_gap),
        (6, 6, 0, 0)
    );

    // The backup sits next to the file and is the untouched seed database.
    let backup = report.backup.expect("backup made");
    assert_eq!(backup.parent(), path.parent());
    let old = Connection::open(&backup).expect("backup opens");
    let rows: Vec<(String, i64, i64, String)> = old
        .prepare("SELECT hour_ts, up_bytes, down_bytes, created_at FROM traffic_hourly ORDER BY id")
        .expect("seed table in backup")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 6);
    assert_eq!(
        rows[0],
        (
            "2024-12-31 23:00:00".to_owned(),
            7,
            9,
            "2024-12-31 05:00:01".to_owned()
        )
    );

    // Migrated in place: the seed README's queries give the same answers.
    let conn = inspect(&path);
    assert_eq!(daily_view(&conn), view_before);
    let months: Vec<(String, f64)> = conn
        .prepare("SELECT month, total_bytes/1073741824.0 AS total_GB FROM traffic_monthly ORDER BY month DESC")
        .expect("monthly")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(months.len(), 3);
    assert_eq!(months[1], ("2025-02".to_owned(), 25.0));
    let created: String = conn
        .query_row(
            "SELECT created_at FROM traffic_hourly WHERE hour_ts = '2025-03-15 13:00:00'",
            [],
            |r| r.get(0),
        )
        .expect("created_at kept");
    assert_eq!(created, "2025-03-15 05:00:01");

    // Every row is served, and with the reference's unflushed memory the summary is the seed's.
    let days = store
        .series(date("2024-12-31"), date("2025-03-15"), Granularity::Day)
        .expect("days");
    assert_eq!(days.points.len(), 75);
    let nonzero: Vec<(String, u64, u64)> = days
        .points
        .iter()
        .filter(|p| !p.traffic.is_zero())
        .map(|p| {
            (
                p.period.label(),
                p.traffic.up.ip_bytes,
                p.traffic.down.ip_bytes,
            )
        })
        .collect();
    let want: Vec<(String, u64, u64)> = view_before
        .iter()
        .map(|(d, u, dn, _)| {
            (
                d.clone(),
                u64::try_from(*u).expect("u"),
                u64::try_from(*dn).expect("d"),
            )
        })
        .collect();
    assert_eq!(nonzero, want);
    let hours = store
        .series(date("2025-03-15"), date("2025-03-15"), Granularity::Hour)
        .expect("hours");
    assert_eq!(hours.points[0].traffic.up.ip_bytes, 52_428_800);
    assert_eq!(hours.points[13].traffic.down.ip_bytes, 4_294_967_296);
    assert_eq!(
        store.date_range(now).expect("range"),
        (date("2024-12-31"), date("2025-03-15"))
    );
    record(&store, now, 1_048_576, 11_796_480);
    let summary = store.summary(now).expect("summary");
    assert_eq!(
        (summary.today.up.ip_bytes, summary.today.down.ip_bytes),
        (1_127_219_200, 4_621_336_576)
    );
    assert_eq!(
        (summary.month.up.ip_bytes, summary.month.down.ip_bytes),
        (1_336_935_400, 5_695_102_400)
    );
    assert_eq!(
        (summary.year.up.ip_bytes, summary.year.down.ip_bytes),
        (6_705_644_520, 27_169_938_880)
    );
    let months = store.last_12_months(now).expect("12 months");
    assert_eq!(months.points.len(), 12);
    assert_eq!(months.points[8].period.label(), "2024-12");
    assert_eq!(months.points[8].traffic.total_bytes(), 16);
    store.close().expect("close");

    // Opened again: already ours, no second backup, nothing changed.
    let again = Store::open(&path, zone(tz), options(TestClock::at(now))).expect("reopen");
    assert_eq!(again.open_report().backup, None);
    assert_eq!(again.open_report().seed, None);
    let days_again = again
        .series(date("2024-12-31"), date("2025-03-15"), Granularity::Day)
        .expect("days");
    assert_eq!(
        days_again.total.up.ip_bytes,
        days.total.up.ip_bytes + 1_048_576
    );
    // And the README's clean-up query still works on the new table.
    drop(again);
    let deleted = inspect(&path)
        .execute(
            "DELETE FROM traffic_hourly WHERE hour_ts < '2025-01-01 00:00:00'",
            [],
        )
        .expect("delete");
    assert_eq!(deleted, 1);
}

#[test]
fn seed_rows_on_dst_days_keep_every_byte_on_their_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    // The seed merged both 01:00 hours of the fall-back day into one row; a 02:00 label on the
    // spring-forward day can only come from a seed that ran under another TZ.
    seed_db(
        &path,
        &[
            ("2024-11-03 00:00:00", 1, 0),
            ("2024-11-03 01:00:00", 100, 0),
            ("2024-11-03 02:00:00", 1000, 0),
            ("2024-03-10 02:00:00", 5, 0),
            ("2024-03-10 03:00:00", 7, 0),
        ],
    );
    let tz = "America/New_York";
    let store = Store::open(
        &path,
        zone(tz),
        options(TestClock::at(local(tz, "2024-12-01 00:00:00"))),
    )
    .expect("open");
    let seed = store.open_report().seed.expect("migrated");
    assert_eq!(
        (seed.seed_rows, seed.rows, seed.ambiguous, seed.in_gap),
        (5, 4, 1, 1)
    );
    let fall = store
        .series(date("2024-11-03"), date("2024-11-03"), Granularity::Hour)
        .expect("hours");
    let got: Vec<u64> = fall
        .points
        .iter()
        .take(4)
        .map(|p| p.traffic.up.ip_bytes)
        .collect();
    assert_eq!(
        got,
        [1, 100, 0, 1000],
        "the merged hour goes to the first 01:00"
    );
    let spring = store
        .series(date("2024-03-10"), date("2024-03-10"), Granularity::Day)
        .expect("day");
    assert_eq!(spring.total.up.ip_bytes, 12);
    let rows: i64 = inspect(&path)
        .query_row(
            "SELECT up_bytes FROM traffic_hourly WHERE hour_ts = '2024-03-10 03:00:00'",
            [],
            |r| r.get(0),
        )
        .expect("merged row");
    assert_eq!(rows, 12);
}

#[test]
fn a_seed_row_the_seed_never_writes_stops_the_migration_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    seed_db(&path, FIXTURE);
    inspect(&path)
        .execute(
            "INSERT INTO traffic_hourly (hour_ts, up_bytes, down_bytes) VALUES ('2025-3-1 8:00', 1, 2)",
            [],
        )
        .expect("hand-made row");
    let before = daily_view(&inspect(&path));
    let err =
        Store::open(&path, zone("Asia/Shanghai"), options(TestClock::at(0))).expect_err("refused");
    let text = err.to_string();
    let StoreError::Legacy { backup, .. } = &err else {
        panic!("unexpected error: {text}");
    };
    assert!(backup.exists(), "{text}");
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        source.contains("id 7") && source.contains("2025-3-1 8:00"),
        "{source}"
    );
    // Still the seed's schema and rows.
    let conn = inspect(&path);
    assert_eq!(daily_view(&conn), before);
    let id_column: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('traffic_hourly') WHERE name = 'id'",
            [],
            |r| r.get(0),
        )
        .expect("columns");
    assert_eq!(id_column, 1);
}
