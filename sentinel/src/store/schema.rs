//! The database schema: numbered migrations, recognition of what a file is (ours, the Python seed's,
//! empty, or something else), and relabelling of the hour labels when `TZ` changes.
//!
//! Schema (versions 1 and 2), chosen so the seed README's sqlite3 queries keep working:
//! - `traffic_hourly`: one row per local hour slot. `start_utc` (Unix seconds at which the local hour
//!   began) is the key. `hour_ts` is the seed's label `YYYY-MM-DD HH:00:00` in the zone recorded in
//!   `meta.zone`; it is **not unique**: the fall-back hour appears twice with one label and two
//!   `utc_offset`s, so `traffic_daily`/`traffic_monthly` (same definitions as the seed) still sum
//!   exact local days. Invariant: `hour_ts = floor_hour(start_utc + utc_offset)` as text.
//!   Packet and wire-byte counters sit beside the seed's IP byte counters.
//! - `traffic_day`: per local day (days since 1970-01-01 of `start_utc + utc_offset`), the sums of
//!   `traffic_hourly`, kept equal to them by triggers (also through a user's own `DELETE` or
//!   `UPDATE` in sqlite3), so day, month and year queries read one row per day.
//! - `remote_open`, `remote_open_days`, `remote_top_day`, `remote_top_month`,
//!   `remote_months_built`, `remote_day_totals`: see `remotes.rs`.
//! - `capture_checkpoint`: the capture layer's opaque blob, written with the rows it accounts for.
//! - `meta`: zone, last flush sequence number, provenance.
//!
//! `PRAGMA application_id` marks the file as ours and `PRAGMA user_version` is the last migration
//! applied.
//!
//! Knows SQLite; knows nothing of the writer thread or the API.

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::timebucket::{HourSlot, Zone, hour_label};

/// `PRAGMA application_id` of our databases ("SNTR").
pub(crate) const APPLICATION_ID: i64 = 0x534E_5452;

/// One schema step. Applied in order inside one transaction; `user_version` records the last one.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. Never edit a published one: add the next number.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "hourly history with UTC anchors, per-day remotes, capture checkpoint",
        sql: r#"
CREATE TABLE traffic_hourly (
    start_utc       INTEGER PRIMARY KEY,
    hour_ts         TEXT    NOT NULL,
    utc_offset      INTEGER NOT NULL,
    up_bytes        INTEGER NOT NULL DEFAULT 0,
    down_bytes      INTEGER NOT NULL DEFAULT 0,
    up_packets      INTEGER NOT NULL DEFAULT 0,
    down_packets    INTEGER NOT NULL DEFAULT 0,
    up_wire_bytes   INTEGER NOT NULL DEFAULT 0,
    down_wire_bytes INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT,
    updated_at      TEXT
);
CREATE INDEX idx_hourly_hour_ts ON traffic_hourly(hour_ts);
CREATE VIEW traffic_daily AS
SELECT substr(hour_ts, 1, 10) AS day, SUM(up_bytes) AS up_bytes, SUM(down_bytes) AS down_bytes,
       SUM(up_bytes + down_bytes) AS total_bytes
FROM traffic_hourly GROUP BY substr(hour_ts, 1, 10);
CREATE VIEW traffic_monthly AS
SELECT substr(hour_ts, 1, 7) AS month, SUM(up_bytes) AS up_bytes, SUM(down_bytes) AS down_bytes,
       SUM(up_bytes + down_bytes) AS total_bytes
FROM traffic_hourly GROUP BY substr(hour_ts, 1, 7);
CREATE TABLE remote_daily (
    day          INTEGER NOT NULL,
    ip           BLOB    NOT NULL,
    up_bytes     INTEGER NOT NULL DEFAULT 0,
    down_bytes   INTEGER NOT NULL DEFAULT 0,
    up_packets   INTEGER NOT NULL DEFAULT 0,
    down_packets INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, ip)
) WITHOUT ROWID;
CREATE TABLE remote_daily_other (
    day          INTEGER PRIMARY KEY,
    up_bytes     INTEGER NOT NULL DEFAULT 0,
    down_bytes   INTEGER NOT NULL DEFAULT 0,
    up_packets   INTEGER NOT NULL DEFAULT 0,
    down_packets INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE remote_open_days (day INTEGER PRIMARY KEY);
CREATE TABLE capture_checkpoint (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    data      BLOB    NOT NULL,
    flush_seq INTEGER NOT NULL,
    saved_at  TEXT    NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 2,
        name: "per-day traffic totals kept by triggers; remotes split into open days and ranked \
               day and month lists with per-day totals",
        sql: r#"
CREATE TABLE traffic_day (
    day             INTEGER PRIMARY KEY,
    up_bytes        INTEGER NOT NULL DEFAULT 0,
    down_bytes      INTEGER NOT NULL DEFAULT 0,
    up_packets      INTEGER NOT NULL DEFAULT 0,
    down_packets    INTEGER NOT NULL DEFAULT 0,
    up_wire_bytes   INTEGER NOT NULL DEFAULT 0,
    down_wire_bytes INTEGER NOT NULL DEFAULT 0
);
INSERT INTO traffic_day (day, up_bytes, down_bytes, up_packets, down_packets, up_wire_bytes, down_wire_bytes)
SELECT ((start_utc + utc_offset) - (((start_utc + utc_offset) % 86400) + 86400) % 86400) / 86400, SUM(up_bytes), SUM(down_bytes), SUM(up_packets), SUM(down_packets), SUM(up_wire_bytes), SUM(down_wire_bytes)
FROM traffic_hourly GROUP BY 1;
-- No OR IGNORE inside the triggers: the firing statement's conflict policy would override it.
CREATE TRIGGER traffic_day_on_insert AFTER INSERT ON traffic_hourly BEGIN
    INSERT INTO traffic_day (day) SELECT ((NEW.start_utc + NEW.utc_offset) - (((NEW.start_utc + NEW.utc_offset) % 86400) + 86400) % 86400) / 86400
        WHERE NOT EXISTS (SELECT 1 FROM traffic_day WHERE day = ((NEW.start_utc + NEW.utc_offset) - (((NEW.start_utc + NEW.utc_offset) % 86400) + 86400) % 86400) / 86400);
    UPDATE traffic_day SET up_bytes = up_bytes + NEW.up_bytes, down_bytes = down_bytes + NEW.down_bytes, up_packets = up_packets + NEW.up_packets, down_packets = down_packets + NEW.down_packets, up_wire_bytes = up_wire_bytes + NEW.up_wire_bytes, down_wire_bytes = down_wire_bytes + NEW.down_wire_bytes WHERE day = ((NEW.start_utc + NEW.utc_offset) - (((NEW.start_utc + NEW.utc_offset) % 86400) + 86400) % 86400) / 86400;
END;
CREATE TRIGGER traffic_day_on_delete AFTER DELETE ON traffic_hourly BEGIN
    UPDATE traffic_day SET up_bytes = up_bytes - OLD.up_bytes, down_bytes = down_bytes - OLD.down_bytes, up_packets = up_packets - OLD.up_packets, down_packets = down_packets - OLD.down_packets, up_wire_bytes = up_wire_bytes - OLD.up_wire_bytes, down_wire_bytes = down_wire_bytes - OLD.down_wire_bytes WHERE day = ((OLD.start_utc + OLD.utc_offset) - (((OLD.start_utc + OLD.utc_offset) % 86400) + 86400) % 86400) / 86400;
END;
CREATE TRIGGER traffic_day_on_update AFTER UPDATE ON traffic_hourly BEGIN
    UPDATE traffic_day SET up_bytes = up_bytes - OLD.up_bytes, down_bytes = down_bytes - OLD.down_bytes, up_packets = up_packets - OLD.up_packets, down_packets = down_packets - OLD.down_packets, up_wire_bytes = up_wire_bytes - OLD.up_wire_bytes, down_wire_bytes = down_wire_bytes - OLD.down_wire_bytes WHERE day = ((OLD.start_utc + OLD.utc_offset) - (((OLD.start_utc + OLD.utc_offset) % 86400) + 86400) % 86400) / 86400;
    INSERT INTO traffic_day (day) SELECT ((NEW.start_utc + NEW.utc_offset) - (((NEW.start_utc + NEW.utc_offset) % 86400) + 86400) % 86400) / 86400
        WHERE NOT EXISTS (SELECT 1 FROM traffic_day WHERE day = ((NEW.start_utc + NEW.utc_offset) - (((NEW.start_utc + NEW.utc_offset) % 86400) + 86400) % 86400) / 86400);
    UPDATE traffic_day SET up_bytes = up_bytes + NEW.up_bytes, down_bytes = down_bytes + NEW.down_bytes, up_packets = up_packets + NEW.up_packets, down_packets = down_packets + NEW.down_packets, up_wire_bytes = up_wire_bytes + NEW.up_wire_bytes, down_wire_bytes = down_wire_bytes + NEW.down_wire_bytes WHERE day = ((NEW.start_utc + NEW.utc_offset) - (((NEW.start_utc + NEW.utc_offset) % 86400) + 86400) % 86400) / 86400;
END;
CREATE TABLE remote_day_totals (
    day          INTEGER PRIMARY KEY,
    up_bytes     INTEGER NOT NULL DEFAULT 0,
    down_bytes   INTEGER NOT NULL DEFAULT 0,
    up_packets   INTEGER NOT NULL DEFAULT 0,
    down_packets INTEGER NOT NULL DEFAULT 0
);
INSERT INTO remote_day_totals (day, up_bytes, down_bytes, up_packets, down_packets)
SELECT day, SUM(up_bytes), SUM(down_bytes), SUM(up_packets), SUM(down_packets) FROM (
    SELECT day, up_bytes, down_bytes, up_packets, down_packets FROM remote_daily
    UNION ALL
    SELECT day, up_bytes, down_bytes, up_packets, down_packets FROM remote_daily_other
) GROUP BY day;
CREATE TABLE remote_open (
    day          INTEGER NOT NULL,
    ip           BLOB    NOT NULL,
    up_bytes     INTEGER NOT NULL DEFAULT 0,
    down_bytes   INTEGER NOT NULL DEFAULT 0,
    up_packets   INTEGER NOT NULL DEFAULT 0,
    down_packets INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, ip)
) WITHOUT ROWID;
CREATE INDEX remote_open_rank ON remote_open (day, up_bytes + down_bytes DESC);
INSERT INTO remote_open (day, ip, up_bytes, down_bytes, up_packets, down_packets)
SELECT day, ip, up_bytes, down_bytes, up_packets, down_packets FROM remote_daily
WHERE day IN (SELECT day FROM remote_open_days);
CREATE TABLE remote_top_day (
    day          INTEGER NOT NULL,
    rank         INTEGER NOT NULL,
    ip           BLOB    NOT NULL,
    up_bytes     INTEGER NOT NULL DEFAULT 0,
    down_bytes   INTEGER NOT NULL DEFAULT 0,
    up_packets   INTEGER NOT NULL DEFAULT 0,
    down_packets INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, rank)
) WITHOUT ROWID;
INSERT INTO remote_top_day (day, rank, ip, up_bytes, down_bytes, up_packets, down_packets)
SELECT day, ROW_NUMBER() OVER (PARTITION BY day ORDER BY up_bytes + down_bytes DESC, ip) - 1,
       ip, up_bytes, down_bytes, up_packets, down_packets
FROM remote_daily WHERE day NOT IN (SELECT day FROM remote_open_days);
DROP TABLE remote_daily;
DROP TABLE remote_daily_other;
CREATE TABLE remote_top_month (
    month        INTEGER NOT NULL,
    rank         INTEGER NOT NULL,
    ip           BLOB    NOT NULL,
    up_bytes     INTEGER NOT NULL DEFAULT 0,
    down_bytes   INTEGER NOT NULL DEFAULT 0,
    up_packets   INTEGER NOT NULL DEFAULT 0,
    down_packets INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (month, rank)
) WITHOUT ROWID;
CREATE TABLE remote_months_built (month INTEGER PRIMARY KEY);
"#,
    },
    Migration {
        version: 3,
        name: "alerts already fired, per rule and cycle or day",
        sql: r#"
CREATE TABLE alert_fired (
    rule      TEXT    NOT NULL,
    period    TEXT    NOT NULL,
    fired_at  INTEGER NOT NULL,
    PRIMARY KEY (rule, period)
) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 4,
        name: "services (protocol, port, role) per local day, and per-day other totals",
        sql: r#"
CREATE TABLE service_day (
    day          INTEGER NOT NULL,
    proto        INTEGER NOT NULL,
    port         INTEGER NOT NULL,
    role         INTEGER NOT NULL,
    up_bytes     INTEGER NOT NULL DEFAULT 0,
    down_bytes   INTEGER NOT NULL DEFAULT 0,
    up_packets   INTEGER NOT NULL DEFAULT 0,
    down_packets INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, proto, port, role)
) WITHOUT ROWID;
CREATE TABLE service_other_day (
    day          INTEGER PRIMARY KEY,
    up_bytes     INTEGER NOT NULL DEFAULT 0,
    down_bytes   INTEGER NOT NULL DEFAULT 0,
    up_packets   INTEGER NOT NULL DEFAULT 0,
    down_packets INTEGER NOT NULL DEFAULT 0
);
"#,
    },
];

/// The newest schema version this build knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What an existing database file turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// No schema objects at all: initialise.
    Empty,
    /// Ours, at this schema version.
    Ours { version: i64 },
    /// Written by the Python seed (its exact schema, nothing else).
    Seed,
    /// Something else; the reason says what gave it away.
    Foreign { reason: String },
}

/// Objects the seed creates (`sqlite_sequence` and the auto-index come with its table).
const SEED_OBJECTS: &[(&str, &str)] = &[
    ("table", "traffic_hourly"),
    ("table", "sqlite_sequence"),
    ("view", "traffic_daily"),
    ("view", "traffic_monthly"),
    ("index", "idx_hourly_hour_ts"),
    ("index", "sqlite_autoindex_traffic_hourly_1"),
];
const SEED_COLUMNS: &[&str] = &[
    "id",
    "hour_ts",
    "up_bytes",
    "down_bytes",
    "created_at",
    "updated_at",
];

/// Recognises a database (reads only).
pub(crate) fn classify(conn: &Connection) -> rusqlite::Result<FileKind> {
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app_id == APPLICATION_ID {
        return Ok(FileKind::Ours { version });
    }
    if app_id != 0 {
        return Ok(FileKind::Foreign {
            reason: format!("its application_id is {app_id:#x}, another program's"),
        });
    }
    let mut stmt = conn.prepare("SELECT type, name FROM sqlite_master ORDER BY type, name")?;
    let objects = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if objects.is_empty() {
        return Ok(FileKind::Empty);
    }
    let unknown: Vec<String> = objects
        .iter()
        .filter(|(t, n)| !SEED_OBJECTS.contains(&(t.as_str(), n.as_str())))
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    if !unknown.is_empty() {
        return Ok(FileKind::Foreign {
            reason: format!(
                "it holds objects neither we nor the seed create: {}",
                unknown.join(", ")
            ),
        });
    }
    if !objects
        .iter()
        .any(|(t, n)| t == "table" && n == "traffic_hourly")
    {
        return Ok(FileKind::Foreign {
            reason: "it has no traffic_hourly table".to_owned(),
        });
    }
    let mut stmt =
        conn.prepare("SELECT name FROM pragma_table_info('traffic_hourly') ORDER BY cid")?;
    let columns = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if columns != SEED_COLUMNS {
        return Ok(FileKind::Foreign {
            reason: format!(
                "its traffic_hourly has columns ({}), not the seed's ({})",
                columns.join(", "),
                SEED_COLUMNS.join(", ")
            ),
        });
    }
    if version != 0 {
        return Ok(FileKind::Foreign {
            reason: format!("the seed schema carries user_version {version}"),
        });
    }
    Ok(FileKind::Seed)
}

/// Applies every migration after `from` (inside the caller's transaction) and records the version.
pub(crate) fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<Vec<&'static str>> {
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > from) {
        conn.execute_batch(m.sql)?;
        conn.pragma_update(None, "user_version", m.version)?;
        applied.push(m.name);
    }
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    Ok(applied)
}

/// A value from `meta`.
pub(crate) fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT CAST(value AS TEXT) FROM meta WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .optional()
}

/// Sets a value in `meta`.
pub(crate) fn meta_set(
    conn: &Connection,
    key: &str,
    value: &dyn rusqlite::ToSql,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The last committed flush sequence number.
pub(crate) fn last_flush_seq(conn: &Connection) -> rusqlite::Result<u64> {
    Ok(meta_get(conn, "last_flush_seq")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Rewrites `hour_ts`/`utc_offset` of every row for `zone` (inside the caller's transaction).
/// Each row keeps its `start_utc`; its label becomes the local hour (in `zone`) in which it began.
/// Returns the number of rows whose label changed.
pub(crate) fn relabel(conn: &Connection, zone: Zone) -> rusqlite::Result<usize> {
    let rows = {
        let mut stmt = conn.prepare("SELECT start_utc, utc_offset FROM traffic_hourly")?;
        stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut update = conn
        .prepare("UPDATE traffic_hourly SET hour_ts = ?2, utc_offset = ?3 WHERE start_utc = ?1")?;
    let mut changed = 0;
    for (start, old_offset) in rows {
        let offset = zone.offset_at(start);
        if i64::from(offset) != old_offset {
            let label = HourSlot { start, offset }.label();
            update.execute(params![start, hour_label(label), offset])?;
            changed += 1;
        }
    }
    meta_set(conn, "zone", &zone.name())?;
    Ok(changed)
}
