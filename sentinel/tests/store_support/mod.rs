//! Helpers shared by the store's integration tests: a settable clock, time parsing, samples.

#![allow(dead_code, reason = "each test crate uses a different subset")]

use std::{
    net::IpAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{NaiveDate, NaiveDateTime, TimeZone as _};
use sentinel::{
    store::{Clock, Sample, Store, StoreOptions},
    timebucket::Zone,
};
use sentinel_common::abi::{Counters, RemoteCounters};

/// A clock the test sets.
#[derive(Debug, Default)]
pub struct TestClock(pub AtomicI64);

impl TestClock {
    pub fn at(t: i64) -> Arc<TestClock> {
        Arc::new(TestClock(AtomicI64::new(t)))
    }
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Options with a long interval (flushes only on demand) and the given clock.
pub fn options(clock: Arc<TestClock>) -> StoreOptions {
    StoreOptions {
        save_interval: Duration::from_secs(3600),
        clock,
        ..StoreOptions::default()
    }
}

pub fn zone(name: &str) -> Zone {
    Zone::parse(name).expect("zone")
}

pub fn date(text: &str) -> NaiveDate {
    text.parse().expect("date")
}

/// Unix seconds of a UTC time `YYYY-MM-DD HH:MM:SS`.
pub fn utc(text: &str) -> i64 {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .expect("time")
        .and_utc()
        .timestamp()
}

/// Unix seconds of an unambiguous local time in `tz`.
pub fn local(tz: &str, text: &str) -> i64 {
    let tz: chrono_tz::Tz = tz.parse().expect("tz");
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("time");
    tz.from_local_datetime(&naive)
        .single()
        .expect("unambiguous local time")
        .timestamp()
}

pub fn counters(ip_bytes: u64) -> Counters {
    Counters {
        packets: u64::from(ip_bytes > 0),
        ip_bytes,
        wire_bytes: if ip_bytes > 0 { ip_bytes + 14 } else { 0 },
    }
}

/// Records `up`/`down` IP bytes at `at`.
pub fn record(store: &Store, at: i64, up: u64, down: u64) {
    store.record(&Sample {
        at,
        up: counters(up),
        down: counters(down),
        ..Sample::default()
    });
}

/// Records per-remote bytes at `at`.
pub fn record_remotes(store: &Store, at: i64, remotes: &[(IpAddr, u64, u64)]) {
    let list: Vec<(IpAddr, RemoteCounters)> = remotes
        .iter()
        .map(|(ip, up, down)| {
            let c = RemoteCounters {
                up_packets: u64::from(*up > 0),
                up_bytes: *up,
                down_packets: u64::from(*down > 0),
                down_bytes: *down,
            };
            (*ip, c)
        })
        .collect();
    store.record(&Sample {
        at,
        remotes: &list,
        ..Sample::default()
    });
}

/// A plain connection for inspecting the file as a user's sqlite3 would.
pub fn inspect(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("inspect")
}
