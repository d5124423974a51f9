//! Fault injection on the writer's own connection (full disk through `max_page_count`, read-only
//! through `query_only`) and the retry of a batch whose commit outcome was unknown.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use rusqlite::{Connection, TransactionBehavior};
use sentinel_common::abi::{Counters, RemoteCounters};

use super::{
    Clock, Store, StoreOptions,
    pending::Sample,
    writer::{FlushError, Writer, write_batch},
};
use crate::timebucket::Zone;

#[derive(Debug)]
struct Fixed(AtomicI64);

impl Clock for Fixed {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const NOW: i64 = 1_742_020_641; // 2025-03-15 06:37:21 UTC

fn options(interval: Duration) -> StoreOptions {
    StoreOptions {
        save_interval: interval,
        clock: Arc::new(Fixed(AtomicI64::new(NOW))),
        ..StoreOptions::default()
    }
}

fn bytes(n: u64) -> Counters {
    Counters {
        packets: 1,
        ip_bytes: n,
        wire_bytes: n + 14,
    }
}

fn remotes(count: u32, bytes: u64) -> Vec<(IpAddr, RemoteCounters)> {
    (0..count)
        .map(|i| {
            let ip = IpAddr::from([
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
                0,
                (i >> 8) as u8,
                i as u8,
            ]);
            let c = RemoteCounters {
                up_packets: 1,
                up_bytes: bytes,
                down_packets: 0,
                down_bytes: 0,
            };
            (ip, c)
        })
        .collect()
}

fn stored_up(path: &std::path::Path) -> (i64, i64) {
    let conn = Connection::open(path).expect("open for inspection");
    conn.query_row(
        "SELECT (SELECT COALESCE(SUM(up_bytes), 0) FROM traffic_hourly), \
         (SELECT COALESCE(SUM(up_bytes), 0) FROM (SELECT up_bytes FROM remote_open UNION ALL SELECT up_bytes FROM remote_top_day))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("sums")
}

fn today_up(store: &Store) -> u64 {
    store.summary(NOW).expect("summary").today.up.ip_bytes
}

#[test]
fn a_full_disk_keeps_the_data_and_the_flush_succeeds_once_there_is_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let store = Store::open(&path, Zone::UTC, options(Duration::from_secs(3600))).expect("open");
    store.record(&Sample {
        at: NOW,
        up: bytes(1000),
        ..Sample::default()
    });
    store.flush_now().expect("first flush");
    // No page may be added: the next flush needs many pages for 5,000 remotes.
    let pages: i64 = Connection::open(&path)
        .expect("inspect")
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("page count");
    store
        .exec_on_writer(&format!("PRAGMA max_page_count = {pages}"))
        .expect("cap");
    let many = remotes(5000, 7);
    store.record(&Sample {
        at: NOW + 1,
        up: bytes(500),
        remotes: &many,
        ..Sample::default()
    });
    let err = store.flush_now().expect_err("disk full");
    let text = super::writer::error_chain(&err);
    assert!(matches!(err, FlushError::Db { .. }), "{text}");
    assert!(text.contains("full"), "{text}");
    let status = store.status();
    assert_eq!(status.consecutive_failures, 1);
    assert!(
        status
            .last_error
            .as_ref()
            .is_some_and(|e| e.message.contains("full"))
    );
    assert_eq!(status.pending_remotes, 5000);
    // Nothing lost: the queries still see it (from memory), the database has only the first flush.
    assert_eq!(today_up(&store), 1500);
    assert_eq!(stored_up(&path), (1000, 0));
    store
        .exec_on_writer("PRAGMA max_page_count = 1073741823")
        .expect("room again");
    store.flush_now().expect("flush after the disk has room");
    assert_eq!(stored_up(&path), (1500, 35_000));
    assert_eq!(today_up(&store), 1500);
    assert_eq!(store.status().consecutive_failures, 0);
    assert_eq!(store.status().pending_remotes, 0);
}

#[test]
fn a_read_only_database_is_retried_by_the_timer_until_it_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let store = Store::open(&path, Zone::UTC, options(Duration::from_secs(1))).expect("open");
    store
        .exec_on_writer("PRAGMA query_only = ON")
        .expect("read-only");
    store.record(&Sample {
        at: NOW,
        up: bytes(42),
        checkpoint: Some(b"kernel@42".to_vec()),
        ..Sample::default()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.status().flushes_failed < 2 {
        assert!(Instant::now() < deadline, "the timer did not retry");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = store.status();
    assert!(
        status
            .last_error
            .as_ref()
            .is_some_and(|e| e.message.contains("readonly") || e.message.contains("read-only")),
        "{status:?}"
    );
    assert_eq!(status.pending_hours, 1);
    assert_eq!(store.checkpoint().expect("checkpoint"), None);
    assert_eq!(today_up(&store), 42);
    store
        .exec_on_writer("PRAGMA query_only = OFF")
        .expect("writable");
    while store.status().last_flush_ok.is_none() {
        assert!(Instant::now() < deadline, "the retry did not happen");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stored_up(&path).0, 42);
    assert_eq!(
        store.checkpoint().expect("checkpoint"),
        Some(b"kernel@42".to_vec())
    );
    assert_eq!(today_up(&store), 42);
}

#[test]
fn a_batch_committed_without_our_knowing_is_released_not_written_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let store = Store::open(&path, Zone::UTC, options(Duration::from_secs(3600))).expect("open");
    store.record(&Sample {
        at: NOW,
        up: bytes(300),
        remotes: &remotes(3, 11),
        ..Sample::default()
    });
    // A second writer on the same shared state stands in for the writer thread, so that the test
    // can commit a batch and "lose" the answer.
    let mut conn = Connection::open(&path).expect("connection");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let batch = store.shared.pending.snapshot().expect("batch");
    let seq = super::schema::last_flush_seq(&conn).expect("seq");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .expect("tx");
    write_batch(&tx, &batch, seq + 1, "2025-03-15 06:37:21", 1000).expect("write");
    tx.commit().expect("commit");
    let mut writer = Writer {
        conn,
        shared: Arc::clone(&store.shared),
        seq,
        in_doubt: Some(batch),
    };
    let report = writer.flush(NOW).expect("retry");
    assert!(report.already_committed);
    assert_eq!(stored_up(&path), (300, 33));
    assert_eq!(today_up(&store), 300, "neither doubled nor lost");
    assert_eq!(store.shared.pending.counts().hours, 0);
}

#[test]
fn a_flush_cannot_slip_between_a_query_s_snapshot_and_its_copy_of_pending_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let store =
        Arc::new(Store::open(&path, Zone::UTC, options(Duration::from_secs(3600))).expect("open"));
    store.record(&Sample {
        at: NOW,
        up: bytes(100),
        ..Sample::default()
    });
    let (in_take, go) = std::sync::mpsc::channel();
    let reader = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store
                .shared
                .read(
                    |pending| {
                        in_take.send(()).expect("signal");
                        // A flush that tried to commit now would release the batch from memory
                        // after this query's database snapshot was taken.
                        std::thread::sleep(Duration::from_millis(300));
                        pending.hours_in(i64::MIN, i64::MAX)
                    },
                    |conn, pending| {
                        let stored: i64 = conn.query_row(
                            "SELECT COALESCE(SUM(up_bytes), 0) FROM traffic_hourly",
                            [],
                            |r| r.get(0),
                        )?;
                        let unflushed: u64 = pending.iter().map(|(_, t)| t.up.ip_bytes).sum();
                        Ok(u64::try_from(stored).unwrap_or(0) + unflushed)
                    },
                )
                .expect("read")
        })
    };
    go.recv().expect("reader inside");
    store.flush_now().expect("flush");
    assert_eq!(
        reader.join().expect("reader"),
        100,
        "the batch was lost or doubled"
    );
    assert_eq!(stored_up(&path).0, 100);
}

#[test]
fn a_version_1_database_is_backed_up_and_upgraded_with_its_totals_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    {
        let conn = Connection::open(&path).expect("create");
        let v1 = &super::schema::MIGRATIONS[0];
        assert_eq!(v1.version, 1);
        conn.execute_batch(v1.sql).expect("v1 schema");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        conn.pragma_update(None, "application_id", super::schema::APPLICATION_ID)
            .expect("app id");
        conn.execute_batch(
            "INSERT INTO meta (key, value) VALUES ('zone', 'UTC'), ('last_flush_seq', 7);
             INSERT INTO traffic_hourly (start_utc, hour_ts, utc_offset, up_bytes, down_bytes)
               VALUES (1742000400, '2025-03-15 01:00:00', 0, 10, 20),
                      (1742004000, '2025-03-15 02:00:00', 0, 1, 2),
                      (1742090400, '2025-03-16 02:00:00', 0, 100, 200);
             INSERT INTO remote_daily (day, ip, up_bytes, down_bytes) VALUES (20162, x'CB007101', 5, 6);
             INSERT INTO remote_daily_other (day, up_bytes, down_bytes) VALUES (20162, 50, 60);",
        )
        .expect("v1 rows");
    }
    let store = Store::open(&path, Zone::UTC, options(Duration::from_secs(3600))).expect("upgrade");
    let report = store.open_report().clone();
    assert_eq!(
        report.migrations.len(),
        3,
        "v1 -> v2 -> v3 -> v4: {report:?}"
    );
    let backup = report.backup.expect("backup before the upgrade");
    let old_version: i64 = Connection::open(&backup)
        .expect("backup")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(old_version, 1);
    let conn = Connection::open(&path).expect("inspect");
    let days: Vec<(i64, i64, i64)> = conn
        .prepare("SELECT day, up_bytes, down_bytes FROM traffic_day ORDER BY day")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(days, [(20162, 11, 22), (20163, 100, 200)]);
    let remote_total: (i64, i64) = conn
        .query_row(
            "SELECT up_bytes, down_bytes FROM remote_day_totals WHERE day = 20162",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("remote totals");
    assert_eq!(remote_total, (55, 66));
    let day = chrono::NaiveDate::from_ymd_opt(2025, 3, 15).expect("date");
    let top = store.top_remotes(day, day, 10).expect("top");
    assert_eq!(top.remotes.len(), 1);
    assert_eq!(top.other.up_bytes, 50);
    // The triggers keep the totals right through the seed README's own clean-up query.
    conn.execute(
        "DELETE FROM traffic_hourly WHERE hour_ts < '2025-03-15 02:00:00'",
        [],
    )
    .expect("user delete");
    let left: i64 = conn
        .query_row(
            "SELECT up_bytes FROM traffic_day WHERE day = 20162",
            [],
            |r| r.get(0),
        )
        .expect("day");
    assert_eq!(left, 1);
    assert_eq!(today_up(&store), 1);
}

/// Health asks whether the writer thread runs: true while it does, false once it stopped (a
/// stopped writer flushes nothing more).
#[test]
fn writer_alive_follows_the_writer_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zone = Zone::parse("UTC").expect("zone");
    let store = Store::open(
        dir.path().join("traffic.db"),
        zone,
        options(Duration::from_secs(3600)),
    )
    .expect("open");
    assert!(store.writer_alive());
    assert_eq!(store.save_interval(), Duration::from_secs(3600));
    store.stop().expect("final flush");
    assert!(!store.writer_alive());
    assert!(matches!(store.flush_now(), Err(FlushError::WriterGone)));
}
