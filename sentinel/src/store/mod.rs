//! Storage: the hourly history, per-day remote addresses and the capture checkpoint in SQLite.
//! Only this module knows rusqlite. It knows nothing of capture, HTTP or the async runtime.
//!
//! # Interface
//! - [`Store::open`] opens or creates the database, refuses a damaged or foreign file (never
//!   repairs or overwrites it), backs up and migrates a Python seed `traffic.db` in place
//!   ([`legacy`]), applies numbered migrations, relabels hours when `TZ` changed, and starts the
//!   writer thread. WAL mode; reads use their own connections and never wait for a flush.
//! - [`Store::record`] adds one drain of the capture counters ([`Sample`]: deltas per direction,
//!   per remote, and the capture checkpoint) to the in-memory [`Pending`] accumulator. Traffic is
//!   bucketed by local hour slot (see [`crate::timebucket`]) and remotes by local day, both in the
//!   store's zone, at the sample's timestamp.
//! - The writer thread flushes every `save_interval`, on [`Store::flush_now`] and at
//!   [`Store::close`] (call it on SIGTERM/SIGINT); see [`writer`] for the guarantees.
//!   [`Store::status`] tells health and metrics how that goes.
//! - Queries ([`queries`]) return plain structs: summary, series at hour/day/month, last 30 days,
//!   last 12 months, today's hours, date range, top remotes. Each is bounded (a typed
//!   [`RangeError`] for the API's 400) and each adds unflushed traffic the same way: a query reads
//!   the database snapshot and the pending data together, so a flush in between can neither hide
//!   nor double a batch. Queries are blocking: call them from `spawn_blocking`.
//! - [`Store::mark_alert`] and [`Store::alerts_fired`] keep which alerts fired in which cycle or
//!   day, so that alerts do not repeat across restarts (written by the writer thread).
//! - [`Store::checkpoint`] returns the capture checkpoint of the last commit, for the capture
//!   layer to resume from after a restart.
//!
//! # Remote addresses
//! Kept per local day: every remote of the current day, the top `top_remotes_per_day` of each past
//! day and of each past month, and every byte in per-day totals; `remotes_retention_days` bounds
//! the history. Growth is bounded by about `top_remotes_per_day * 50` bytes a day (measured by
//! `examples/bench_store.rs`). See [`remotes`] for what rankings over a range mean exactly.
//!
//! # Time zone changes
//! Every hour row keeps its UTC start. Opened with a `TZ` other than the one recorded in the
//! database, the store relabels every row in one transaction: an hour belongs to the local hour (of
//! the new zone) in which it began. Days, months and years then follow the new zone. Between zones
//! whose offsets differ by whole hours the regrouping is exact; otherwise (e.g. UTC to Asia/Kolkata)
//! each old hour is counted in the local hour where it began. Going back to the old zone restores
//! the old labels exactly. Per-day remote lists keep the day they were recorded under.

mod alerts;
pub mod legacy;
mod open;
pub mod pending;
pub mod queries;
pub mod remotes;
mod schema;
pub mod services;
mod types;
pub mod writer;

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc},
    thread::JoinHandle,
    time::Duration,
};

use rusqlite::Connection;

use self::writer::Command;
pub use self::{
    legacy::{LegacyError, LegacyReport},
    pending::{Pending, PendingCounts, Sample, Traffic},
    queries::{
        Granularity, Period, Point, QueryError, RangeError, RemoteTotal, Series, Summary,
        TopRemotes,
    },
    services::TopServices,
    writer::{FlushError, FlushReport},
};
use crate::timebucket::Zone;

/// The current time as Unix seconds. The store asks it only to stamp and maintain writes; queries
/// take `now` as an argument.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Unix seconds.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// Settings of a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Time between regular flushes (`SAVE_INTERVAL`).
    pub save_interval: Duration,
    /// Remotes kept per closed day (`TOP_REMOTES_PER_DAY`); the rest go into the day's "other".
    pub top_remotes_per_day: u32,
    /// Days of per-remote history kept (`REMOTES_RETENTION_DAYS`), today included.
    pub remotes_retention_days: u32,
    /// (day, remote) entries held in memory between flushes; beyond it, new remotes are added to the
    /// day's "other" total (totals stay exact).
    pub max_pending_remotes: usize,
    /// Remotes today's ranking may hold in the database before its smallest half is dropped (a
    /// flood of distinct sources); the day's totals keep every byte.
    pub max_open_day_remotes: u32,
    /// How long a write waits for a lock held by another program (a user's `sqlite3`).
    pub busy_timeout: Duration,
    /// The clock of the writer.
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            save_interval: Duration::from_secs(300),
            top_remotes_per_day: 1000,
            remotes_retention_days: 400,
            max_pending_remotes: 200_000,
            max_open_day_remotes: 400_000,
            busy_timeout: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
        }
    }
}

/// An SQLite error (kept opaque so that rusqlite stays inside this module).
#[derive(Debug)]
pub struct DbError(pub(crate) rusqlite::Error);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why the database could not be opened. Nothing was changed in the file unless the variant says so.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an SQLite database.
    #[error(
        "refusing to use {path}: it is not an SQLite database (it does not start with the SQLite \
         header). Nothing was changed. Point DB_PATH elsewhere, or restore a backup if this was a \
         traffic.db that got damaged"
    )]
    NotSqlite {
        /// The file.
        path: PathBuf,
    },
    /// The file is a damaged SQLite database.
    #[error(
        "refusing to use {path}: the database is damaged ({detail}). Nothing was changed. Restore \
         a backup, or move the file away to start a new history"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// An SQLite database of some other program.
    #[error(
        "refusing to use {path}: it is not a NetTraffic-Sentinel database ({reason}). Nothing was \
         changed. Point DB_PATH at a traffic.db or at a new file"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// Written by a newer version of this program.
    #[error(
        "refusing to use {path}: its schema version {version} is newer than this program's \
         ({supported}); run the newer version or restore a backup"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// The file or its directory cannot be written.
    #[error(
        "{path} can only be opened read-only; the daemon needs to write its history there (check \
         the volume's permissions and mount options)"
    )]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// The backup before a migration failed; nothing was migrated.
    #[error("backing up {path} to {backup} before migrating it failed; nothing was changed")]
    Backup {
        /// The file.
        path: PathBuf,
        /// The intended backup.
        backup: PathBuf,
        /// SQLite's error.
        #[source]
        source: DbError,
    },
    /// The seed database could not be migrated; it is unchanged and a backup exists.
    #[error("migrating the seed database {path} failed; it is unchanged (backup: {backup})")]
    Legacy {
        /// The file.
        path: PathBuf,
        /// The backup made before the attempt.
        backup: PathBuf,
        /// Why.
        #[source]
        source: LegacyError,
    },
    /// Any other SQLite failure while opening.
    #[error("{action} {path}")]
    Db {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: DbError,
    },
}

/// How the last failed flush failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusError {
    /// When (Unix seconds).
    pub at: i64,
    /// The error with its causes.
    pub message: String,
}

/// The writer's health, for `/api/health` and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// When the last flush that wrote something committed (Unix seconds).
    pub last_flush_ok: Option<i64>,
    /// When the last flush succeeded, whether or not it had anything to write (Unix seconds).
    pub last_success: Option<i64>,
    /// The last failure (kept after recovery; compare `at` with `last_flush_ok`).
    pub last_error: Option<StatusError>,
    /// Failures since the last success; non-zero means data is waiting in memory.
    pub consecutive_failures: u32,
    /// Successful flushes that wrote something.
    pub flushes_ok: u64,
    /// Failed flushes.
    pub flushes_failed: u64,
    /// Hour slots pending after the last flush attempt.
    pub pending_hours: usize,
    /// Remote entries pending after the last flush attempt.
    pub pending_remotes: usize,
    /// Remote entries folded into "other" in memory since start (memory cap reached).
    pub folded_remotes: u64,
}

/// What [`Store::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The file did not exist or was empty: a new history.
    pub created: bool,
    /// A backup made before a migration.
    pub backup: Option<PathBuf>,
    /// The seed database migration, if one ran.
    pub seed: Option<LegacyReport>,
    /// Migrations applied, by name.
    pub migrations: Vec<&'static str>,
    /// `TZ` changed from this zone: labels were recomputed.
    pub zone_changed_from: Option<String>,
    /// Hour rows whose label changed with the zone.
    pub relabelled_rows: usize,
}

/// State shared by the store handle, the writer thread and readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub path: PathBuf,
    pub zone: Zone,
    pub options: StoreOptions,
    pub pending: Pending,
    /// Held (write) around each COMMIT and the release of its batch, and (read) while a query
    /// starts its database snapshot and copies pending data: microseconds either way.
    gate: RwLock<()>,
    status: Mutex<StoreStatus>,
    readers: Mutex<Vec<Connection>>,
}

impl Shared {
    pub(crate) fn gate_write(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn gate_read(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, StoreStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The storage handle. Share it with `Arc`; every method takes `&self` except [`Store::close`].
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    commands: mpsc::SyncSender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    report: OpenReport,
}

impl Store {
    /// Opens (creating, migrating or relabelling as needed) the database at `path` for `zone`, and
    /// starts the writer thread.
    pub fn open(
        path: impl AsRef<Path>,
        zone: Zone,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        open::open(path.as_ref(), zone, options)
    }

    /// What opening found and did.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The zone the store buckets in.
    pub fn zone(&self) -> Zone {
        self.shared.zone
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Adds one drain of the capture counters to the pending data.
    pub fn record(&self, sample: &Sample<'_>) {
        self.shared.pending.record(sample);
    }

    /// The pending accumulator (for callers that only record).
    pub fn pending(&self) -> &Pending {
        &self.shared.pending
    }

    /// The writer's health, with the current pending counts.
    pub fn status(&self) -> StoreStatus {
        let counts = self.shared.pending.counts();
        let mut status = self.shared.status().clone();
        status.pending_hours = counts.hours;
        status.pending_remotes = counts.remotes;
        status.folded_remotes = counts.folded_remotes;
        status
    }

    /// Whether the writer thread is still running (a dead writer means nothing is flushed).
    pub fn writer_alive(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Time between regular flushes (`SAVE_INTERVAL`).
    pub fn save_interval(&self) -> Duration {
        self.shared.options.save_interval
    }

    /// Flushes now and waits for the commit or the error (blocking).
    pub fn flush_now(&self) -> Result<FlushReport, FlushError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.commands
            .send(Command::Flush(reply))
            .map_err(|_| FlushError::WriterGone)?;
        answer.recv().map_err(|_| FlushError::WriterGone)?
    }

    /// Flushes a last time and stops the writer (blocking). On error, the unsaved traffic is lost
    /// with the process: the caller should log it.
    pub fn close(self) -> Result<FlushReport, FlushError> {
        self.stop()
    }

    fn stop(&self) -> Result<FlushReport, FlushError> {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(handle) = handle else {
            return Err(FlushError::WriterGone);
        };
        let (reply, answer) = mpsc::sync_channel(1);
        let result = match self.commands.send(Command::Stop(reply)) {
            Ok(()) => answer.recv().map_err(|_| FlushError::WriterGone)?,
            Err(_) => Err(FlushError::WriterGone),
        };
        if handle.join().is_err() {
            tracing::error!("the database writer thread panicked");
        }
        result
    }

    #[cfg(test)]
    pub(crate) fn exec_on_writer(&self, sql: &str) -> Result<(), DbError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.commands
            .send(Command::Exec(sql.to_owned(), reply))
            .map_err(|_| DbError(rusqlite::Error::InvalidQuery))?;
        answer
            .recv()
            .map_err(|_| DbError(rusqlite::Error::InvalidQuery))?
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
            && let Err(e) = self.stop()
        {
            tracing::error!(error = %writer::error_chain(&e), "final flush failed; unsaved traffic is lost");
        }
    }
}

/// A count as SQLite stores it (counts beyond `i64::MAX`, 9.2 EB, are clamped).
pub(crate) fn to_sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count (a negative value, only possible by hand-editing, reads as 0).
pub(crate) fn from_sql_count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests;
