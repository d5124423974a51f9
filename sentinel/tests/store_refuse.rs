//! Damaged or foreign files: refuse to start with a clear message, and never change the file.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod store_support;

use std::path::Path;

use rusqlite::Connection;
use sentinel::store::{Store, StoreError};
use store_support::{TestClock, options, record, zone};

fn open(path: &Path) -> Result<Store, StoreError> {
    Store::open(path, zone("UTC"), options(TestClock::at(1_742_020_641)))
}

fn contents(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

/// Sibling files the store would create (WAL, backups).
fn siblings(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A valid database of ours with some history, closed.
fn good_db(path: &Path) {
    let store = open(path).expect("create");
    for h in 0..2000 {
        record(&store, 1_700_000_000 + h * 3600, 1000, 2000);
    }
    store.close().expect("close");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    std::fs::write(&path, b"these are my holiday photos, not a database\n").expect("write");
    let before = contents(&path);
    let err = open(&path).expect_err("refused");
    assert!(matches!(err, StoreError::NotSqlite { .. }), "{err}");
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
    assert_eq!(contents(&path), before);
    assert_eq!(siblings(&path), ["traffic.db"]);
}

#[test]
fn a_damaged_database_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    good_db(&path);
    let mut bytes = contents(&path);
    assert!(bytes.len() > 8 * 4096, "the history spans several pages");
    // Overwrite the middle of the file (b-tree pages) with garbage, keeping the header valid.
    for (i, b) in bytes.iter_mut().enumerate().skip(2 * 4096).take(4 * 4096) {
        *b = (i * 7 % 251) as u8;
    }
    std::fs::write(&path, &bytes).expect("damage");
    let err = open(&path).expect_err("refused");
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("damaged"), "{err}");
    assert_eq!(contents(&path), bytes);
    assert!(!siblings(&path).iter().any(|n| n.contains("backup")));

    // A truncated file too.
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..1000]).expect("write");
    let err = open(&truncated).expect_err("refused");
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    assert_eq!(contents(&truncated), &bytes[..1000]);
}

#[test]
fn another_programs_database_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("photos.db");
    {
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch("CREATE TABLE albums (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO albums (name) VALUES ('2024');")
            .expect("schema");
    }
    let before = contents(&path);
    let err = open(&path).expect_err("refused");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("table albums"), "{err}");
    assert_eq!(contents(&path), before);

    // A seed-like table with other columns is not the seed's either.
    let odd = dir.path().join("odd.db");
    Connection::open(&odd)
        .expect("create")
        .execute_batch("CREATE TABLE traffic_hourly (hour TEXT, bytes INTEGER);")
        .expect("schema");
    let err = open(&odd).expect_err("refused");
    assert!(err.to_string().contains("columns"), "{err}");

    // Another program's application id.
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .expect("create")
        .execute_batch("PRAGMA application_id = 1234; CREATE TABLE t (x);")
        .expect("schema");
    let err = open(&other).expect_err("refused");
    assert!(err.to_string().contains("application_id"), "{err}");
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    good_db(&path);
    Connection::open(&path)
        .expect("open")
        .execute_batch("PRAGMA user_version = 99")
        .expect("bump");
    let err = open(&path).expect_err("refused");
    assert!(
        matches!(err, StoreError::TooNew { version: 99, .. }),
        "{err}"
    );
}

#[test]
fn a_directory_is_refused_and_a_missing_parent_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = open(dir.path()).expect_err("a directory");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    let nested = dir.path().join("a/b/traffic.db");
    let store = open(&nested).expect("created with its directories");
    assert!(store.open_report().created);
    drop(store);
    // An empty file (e.g. `touch traffic.db`) is a new history, not damage.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("touch");
    assert!(open(&empty).expect("empty file").open_report().created);
}

/// Sets the immutable attribute (which even root cannot write through) and clears it on drop.
struct Immutable<'a>(&'a Path);

impl<'a> Immutable<'a> {
    fn set(path: &'a Path) -> Immutable<'a> {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .expect("chattr (e2fsprogs) is needed for this test");
        assert!(
            status.success(),
            "chattr +i failed: the file system must support it"
        );
        Immutable(path)
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0)
            .status();
    }
}

#[test]
fn a_database_that_cannot_be_written_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    good_db(&path);
    let before = contents(&path);
    let guard = Immutable::set(&path);
    let err = open(&path).expect_err("read-only");
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");
    drop(guard);
    assert_eq!(contents(&path), before);
    open(&path).expect("writable again");
}
