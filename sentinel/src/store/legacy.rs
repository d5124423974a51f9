//! Migration of a `traffic.db` written by the Python seed (reference 3.1) into schema version 1, in
//! place and in one transaction, after the caller has made a backup.
//!
//! The seed's `hour_ts` is naive local time; it is read in the zone the daemon is started with (set
//! `TZ` to what the seed ran with: its image default was UTC, its compose file Asia/Shanghai). A
//! label gets the UTC start of that local hour. The seed merged both fall-back hours into one row:
//! that row is given the earlier of the two. A label that does not exist in the zone (a DST gap,
//! only possible if the seed ran under another `TZ`) is read with the offset in force before the
//! gap and added to the hour it lands on; it stays on the same local day. Every byte is kept: rows
//! are only ever added together, never dropped. A row that is not what the seed writes (an unparsable
//! label, a negative or non-integer count) stops the migration with an error naming it; nothing is
//! changed then.
//!
//! Knows SQLite and the seed's schema; knows nothing of the writer thread or the API.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use crate::timebucket::{LabelResolution, Zone, hour_label, parse_hour_label};

/// A seed row that cannot be migrated.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// A row that the seed would never have written.
    #[error(
        "traffic_hourly row id {id} has {column} = {value}, which the seed never writes \
         (expected {expected}); fix or delete that row with sqlite3 and start again"
    )]
    BadRow {
        /// The row's `id`.
        id: i64,
        /// The column at fault.
        column: &'static str,
        /// The value found, as SQLite text.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The database failed while reading or writing.
    #[error("database error during the seed migration")]
    Db(#[from] rusqlite::Error),
}

/// What the migration did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegacyReport {
    /// Seed rows read.
    pub seed_rows: usize,
    /// Rows written (fewer when gap labels were added to an existing hour).
    pub rows: usize,
    /// Fall-back labels (two real hours in one seed row) given the earlier hour.
    pub ambiguous: usize,
    /// Labels that do not exist in the zone, added to the hour after the gap.
    pub in_gap: usize,
}

struct NewRow {
    label: i64,
    offset: i32,
    up: u64,
    down: u64,
    created_at: Option<String>,
    updated_at: Option<String>,
}

/// Converts the seed's table (inside the caller's transaction) and applies the schema.
pub(crate) fn migrate_seed(conn: &Connection, zone: Zone) -> Result<LegacyReport, LegacyError> {
    let mut report = LegacyReport::default();
    let mut rows: BTreeMap<i64, NewRow> = BTreeMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT id, hour_ts, up_bytes, down_bytes, CAST(created_at AS TEXT), \
             CAST(updated_at AS TEXT), typeof(hour_ts), typeof(up_bytes), typeof(down_bytes), \
             CAST(hour_ts AS TEXT), CAST(up_bytes AS TEXT), CAST(down_bytes AS TEXT) \
             FROM traffic_hourly ORDER BY id",
        )?;
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            report.seed_rows += 1;
            let id: i64 = r.get(0)?;
            let bad = |column, value: Option<String>, expected| LegacyError::BadRow {
                id,
                column,
                value: value.map_or_else(|| "NULL".to_owned(), |v| format!("{v:?}")),
                expected,
            };
            let label = match (
                r.get::<_, String>(6)?.as_str(),
                r.get::<_, Option<String>>(9)?,
            ) {
                ("text", Some(text)) => parse_hour_label(&text)
                    .ok_or_else(|| bad("hour_ts", Some(text), "'YYYY-MM-DD HH:00:00'"))?,
                (_, text) => return Err(bad("hour_ts", text, "'YYYY-MM-DD HH:00:00'")),
            };
            // (column, its typeof(), its text) for each count.
            let count = |at: usize, ty: usize, text: usize, column| -> Result<u64, LegacyError> {
                let value: Option<String> = r.get(text)?;
                if r.get::<_, String>(ty)? != "integer" {
                    return Err(bad(column, value, "a non-negative integer"));
                }
                let n: i64 = r.get(at)?;
                u64::try_from(n).map_err(|_| bad(column, value, "a non-negative integer"))
            };
            let up = count(2, 7, 10, "up_bytes")?;
            let down = count(3, 8, 11, "down_bytes")?;
            let (start, offset) = match zone.resolve_label(label) {
                LabelResolution::Single(slot) => (slot.start, slot.offset),
                LabelResolution::Ambiguous(earlier, _) => {
                    report.ambiguous += 1;
                    (earlier.start, earlier.offset)
                }
                LabelResolution::Gap { offset_before } => {
                    report.in_gap += 1;
                    let start = label - i64::from(offset_before);
                    (start, zone.offset_at(start))
                }
            };
            let created_at: Option<String> = r.get(4)?;
            let updated_at: Option<String> = r.get(5)?;
            match rows.get_mut(&start) {
                Some(row) => {
                    row.up = row.up.saturating_add(up);
                    row.down = row.down.saturating_add(down);
                }
                None => {
                    let label = crate::timebucket::HourSlot { start, offset }.label();
                    rows.insert(
                        start,
                        NewRow {
                            label,
                            offset,
                            up,
                            down,
                            created_at,
                            updated_at,
                        },
                    );
                }
            }
        }
    }
    conn.execute_batch(
        "DROP VIEW IF EXISTS traffic_daily;
         DROP VIEW IF EXISTS traffic_monthly;
         DROP INDEX IF EXISTS idx_hourly_hour_ts;
         DROP TABLE traffic_hourly;",
    )?;
    let has_sequence: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence')",
        [],
        |r| r.get(0),
    )?;
    if has_sequence {
        conn.execute(
            "DELETE FROM sqlite_sequence WHERE name = 'traffic_hourly'",
            [],
        )?;
    }
    super::schema::migrate(conn, 0)?;
    let mut insert = conn.prepare(
        "INSERT INTO traffic_hourly (start_utc, hour_ts, utc_offset, up_bytes, down_bytes, \
         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (start, row) in &rows {
        insert.execute(params![
            start,
            hour_label(row.label),
            row.offset,
            super::to_sql_count(row.up),
            super::to_sql_count(row.down),
            row.created_at,
            row.updated_at
        ])?;
    }
    report.rows = rows.len();
    super::schema::meta_set(conn, "zone", &zone.name())?;
    super::schema::meta_set(conn, "seed_rows_migrated", &(report.seed_rows as i64))?;
    Ok(report)
}
