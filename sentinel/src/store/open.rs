//! Opening a database: checks before anything is written (header, integrity, kind, version),
//! the backup before any migration, migrations, the `TZ` relabelling, the writer thread; and the
//! read connections with their consistent snapshot of database plus pending data.
//!
//! Knows SQLite and the file system; knows nothing of the API.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock, mpsc},
};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{
    DbError, OpenReport, Shared, Store, StoreError, StoreOptions, StoreStatus, legacy,
    pending::Pending,
    schema::{self, FileKind},
    writer::Writer,
};
use crate::timebucket::Zone;

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 4;

pub(crate) fn open(path: &Path, zone: Zone, options: StoreOptions) -> Result<Store, StoreError> {
    let path = path.to_path_buf();
    let existed = check_header(&path)?;
    if !existed && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            action: "creating the database directory for",
            path: path.clone(),
            source,
        })?;
    }
    let db = |action: &'static str| {
        let path = path.clone();
        move |e: rusqlite::Error| classify_db_error(action, &path, e)
    };
    let mut conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db("opening"))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(db("configuring"))?;
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(db("opening"))? {
        return Err(StoreError::ReadOnly { path });
    }
    if existed {
        let problems: Vec<String> = {
            let mut stmt = conn.prepare("PRAGMA quick_check").map_err(db("checking"))?;
            stmt.query_map([], |r| r.get::<_, String>(0))
                .map_err(db("checking"))?
                .collect::<rusqlite::Result<_>>()
                .map_err(db("checking"))?
        };
        if problems != ["ok"] {
            return Err(StoreError::Damaged {
                path,
                detail: problems.into_iter().take(5).collect::<Vec<_>>().join("; "),
            });
        }
    }
    let mut report = OpenReport {
        created: !existed,
        ..OpenReport::default()
    };
    let kind = schema::classify(&conn).map_err(db("reading the schema of"))?;
    let latest = schema::latest_version();
    match kind {
        FileKind::Foreign { reason } => return Err(StoreError::Foreign { path, reason }),
        FileKind::Ours { version } if version > latest => {
            return Err(StoreError::TooNew {
                path,
                version,
                supported: latest,
            });
        }
        FileKind::Ours { version } if version == latest => {}
        FileKind::Empty | FileKind::Ours { .. } => {
            let from = match kind {
                FileKind::Ours { version } => {
                    report.backup = Some(backup(&conn, &path, "pre-migration")?);
                    version
                }
                _ => 0,
            };
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("migrating"))?;
            report.migrations = schema::migrate(&tx, from).map_err(db("migrating"))?;
            if from == 0 {
                schema::meta_set(&tx, "zone", &zone.name()).map_err(db("migrating"))?;
            }
            tx.commit().map_err(db("migrating"))?;
        }
        FileKind::Seed => {
            let backup = backup(&conn, &path, "seed-backup")?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("migrating"))?;
            let seed = legacy::migrate_seed(&tx, zone)
                .and_then(|r| tx.commit().map(|()| r).map_err(Into::into))
                .map_err(|source| StoreError::Legacy {
                    path: path.clone(),
                    backup: backup.clone(),
                    source,
                })?;
            tracing::info!(path = %path.display(), backup = %backup.display(), zone = %zone,
                seed_rows = seed.seed_rows, rows = seed.rows, fall_back_rows = seed.ambiguous,
                gap_rows = seed.in_gap, "migrated the Python seed's database in place");
            report.backup = Some(backup);
            report.seed = Some(seed);
            report.migrations = schema::MIGRATIONS.iter().map(|m| m.name).collect();
        }
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db("switching to WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Db {
            action: "switching to WAL (the file system may not support it)",
            path,
            source: DbError(rusqlite::Error::InvalidQuery),
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db("configuring"))?;
    let recorded = schema::meta_get(&conn, "zone").map_err(db("reading"))?;
    if recorded.as_deref() != Some(zone.name()) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("relabelling hours in"))?;
        report.relabelled_rows = schema::relabel(&tx, zone).map_err(db("relabelling hours in"))?;
        tx.commit().map_err(db("relabelling hours in"))?;
        tracing::warn!(from = recorded.as_deref().unwrap_or("(none)"), to = %zone,
            rows = report.relabelled_rows,
            "TZ changed: hours now carry labels of the new zone (their UTC times are unchanged)");
        report.zone_changed_from = recorded;
    }
    let seq = schema::last_flush_seq(&conn).map_err(db("reading"))?;
    let shared = Arc::new(Shared {
        path: path.clone(),
        zone,
        pending: Pending::new(zone, options.max_pending_remotes),
        options,
        gate: RwLock::new(()),
        status: Mutex::new(StoreStatus::default()),
        readers: Mutex::new(Vec::new()),
    });
    let (commands, receiver) = mpsc::sync_channel(4);
    let writer = Writer {
        conn,
        shared: Arc::clone(&shared),
        seq,
        in_doubt: None,
    };
    let thread = std::thread::Builder::new()
        .name("store-writer".to_owned())
        .spawn(move || writer.run(receiver))
        .map_err(|source| StoreError::Io {
            action: "starting the writer thread for",
            path,
            source,
        })?;
    Ok(Store {
        shared,
        commands,
        thread: Mutex::new(Some(thread)),
        report,
    })
}

/// `Ok(true)`: an existing SQLite file; `Ok(false)`: missing or empty (a new history).
fn check_header(path: &Path) -> Result<bool, StoreError> {
    let io = |action| {
        let path = path.to_path_buf();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io("opening")(e)),
    };
    let meta = file.metadata().map_err(io("reading"))?;
    if !meta.is_file() {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            reason: "it is not a regular file".to_owned(),
        });
    }
    if meta.len() == 0 {
        return Ok(false);
    }
    let mut header = [0u8; 16];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]).map_err(io("reading"))? {
            0 => break,
            n => read += n,
        }
    }
    if &header != SQLITE_HEADER {
        return Err(StoreError::NotSqlite {
            path: path.to_path_buf(),
        });
    }
    Ok(true)
}

fn classify_db_error(action: &'static str, path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match e.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => StoreError::Damaged {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => StoreError::Db {
            action,
            path: path.to_path_buf(),
            source: DbError(e),
        },
    }
}

/// Copies the database next to itself (`<name>.<tag>-<n>`, never overwriting a file) with
/// `VACUUM INTO`, which gives a consistent copy including anything still in a WAL.
fn backup(conn: &Connection, path: &Path, tag: &str) -> Result<PathBuf, StoreError> {
    let name = path
        .file_name()
        .map_or_else(|| "traffic.db".into(), |n| n.to_string_lossy().into_owned());
    let target = (1..)
        .map(|n| path.with_file_name(format!("{name}.{tag}-{n}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| path.with_file_name(format!("{name}.{tag}")));
    conn.execute("VACUUM INTO ?1", [target.to_string_lossy()])
        .map_err(|e| StoreError::Backup {
            path: path.to_path_buf(),
            backup: target.clone(),
            source: DbError(e),
        })?;
    tracing::info!(path = %path.display(), backup = %target.display(), "backed up the database before migrating it");
    Ok(target)
}

impl Shared {
    /// Runs a query against one consistent view: the database snapshot and the pending data copied
    /// by `take` at the same moment with respect to flushes.
    pub(crate) fn read<P, T>(
        &self,
        take: impl FnOnce(&Pending) -> P,
        work: impl FnOnce(&Connection, P) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        let conn = match self.pooled() {
            Some(c) => c,
            None => self.open_reader().map_err(DbError)?,
        };
        let result = (|| {
            conn.execute_batch("BEGIN")?;
            let copy = {
                let _gate = self.gate_read();
                // The first read fixes the transaction's snapshot.
                conn.query_row("SELECT COUNT(*) FROM meta", [], |_| Ok(()))?;
                take(&self.pending)
            };
            work(&conn, copy)
        })();
        let ended = conn.execute_batch(if conn.is_autocommit() { "" } else { "ROLLBACK" });
        if ended.is_ok() {
            let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result.map_err(DbError)
    }

    fn pooled(&self) -> Option<Connection> {
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.options.busy_timeout)?;
        Ok(conn)
    }
}
