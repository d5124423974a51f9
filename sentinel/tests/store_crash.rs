//! kill -9 during a flush: a child process writes large batches in a loop and is killed while a
//! transaction is in flight; the database must reopen intact with rows and checkpoint agreeing.
//!
//! The child is this test binary run again with `SENTINEL_STORE_CRASH_CHILD` set to the database
//! path; it records, per batch, exactly 1 byte of hourly traffic, 1 byte for each of 20,000
//! remotes and the checkpoint "batch number". Whatever the moment of the kill, the committed
//! state must satisfy: hourly bytes == remote bytes per remote == checkpoint.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod store_support;

use std::{
    io::{BufRead as _, BufReader},
    net::IpAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sentinel::store::{Sample, Store};
use sentinel_common::abi::RemoteCounters;
use store_support::{TestClock, counters, inspect, options, zone};

const CHILD_ENV: &str = "SENTINEL_STORE_CRASH_CHILD";
const NOW: i64 = 1_742_020_641;
const REMOTES: u32 = 20_000;

fn open(path: &Path) -> Store {
    Store::open(path, zone("UTC"), options(TestClock::at(NOW))).expect("open")
}

fn checkpoint_number(store: &Store) -> u64 {
    store
        .checkpoint()
        .expect("checkpoint")
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// The child: flush batch after batch until killed.
fn child(path: &Path) {
    let store = open(path);
    let remotes: Vec<(IpAddr, RemoteCounters)> = (0..REMOTES)
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
                (i >> 16) as u8,
                (i >> 8) as u8,
                i as u8,
            ]);
            let c = RemoteCounters {
                up_packets: 1,
                up_bytes: 1,
                ..RemoteCounters::default()
            };
            (ip, c)
        })
        .collect();
    let mut batch = checkpoint_number(&store);
    loop {
        batch += 1;
        store.record(&Sample {
            at: NOW,
            up: counters(1),
            remotes: &remotes,
            checkpoint: Some(batch.to_le_bytes().to_vec()),
            ..Sample::default()
        });
        println!("flushing {batch}");
        store.flush_now().expect("flush");
        println!("committed {batch}");
    }
}

/// The committed state: (hourly up bytes, min and max remote up bytes, remote rows, checkpoint).
fn committed(path: &Path) -> (i64, i64, i64, i64, u64) {
    let store = open(path);
    let checkpoint = checkpoint_number(&store);
    drop(store);
    let conn = inspect(path);
    let (hourly, min, max, rows) = conn
        .query_row(
            "SELECT (SELECT COALESCE(SUM(up_bytes), 0) FROM traffic_hourly), \
             (SELECT COALESCE(MIN(up_bytes), 0) FROM remote_open), \
             (SELECT COALESCE(MAX(up_bytes), 0) FROM remote_open), \
             (SELECT COUNT(*) FROM remote_open)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("state");
    (hourly, min, max, rows, checkpoint)
}

#[test]
fn kill_9_during_a_flush_leaves_rows_and_checkpoint_consistent() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let exe = std::env::current_exe().expect("test binary");
    let mut last = 0u64;
    for round in 0..3u32 {
        let mut child = Command::new(&exe)
            .args([
                "kill_9_during_a_flush_leaves_rows_and_checkpoint_consistent",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(120);
        // Let two batches commit, then kill shortly after the next flush starts: the flush of
        // 20,000 remotes takes far longer than the delay, so the kill lands inside it.
        let mut committed_here = 0;
        loop {
            assert!(Instant::now() < deadline, "child too slow");
            let line = lines.next().expect("child output").expect("child line");
            if line.starts_with("committed") {
                committed_here += 1;
            }
            if committed_here >= 2 && line.starts_with("flushing") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5 + u64::from(round) * 7));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let (hourly, min, max, rows, checkpoint) = committed(&path);
        assert!(
            checkpoint >= last + 2,
            "round {round}: {checkpoint} after {last}"
        );
        let c = i64::try_from(checkpoint).expect("small");
        assert_eq!(
            hourly, c,
            "round {round}: hourly bytes match the checkpoint"
        );
        assert_eq!(
            (min, max),
            (c, c),
            "round {round}: every remote matches the checkpoint"
        );
        assert_eq!(rows, i64::from(REMOTES));
        last = checkpoint;
    }
}
