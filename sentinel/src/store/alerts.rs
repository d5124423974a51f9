//! Which alerts already fired: one row per (rule, period), where the period names the billing
//! cycle or the local day the alert belongs to. Inserted by the writer thread; read like any
//! query. Knows nothing of what the rules mean.

use rusqlite::{Connection, params};

use super::{DbError, FlushError, Store, writer::Command};

/// One alert to record.
#[derive(Clone, Debug)]
pub(crate) struct Mark {
    pub rule: String,
    pub period: String,
    pub at: i64,
}

/// Rows older than this many days are forgotten (a cycle is at most 31 days).
const KEEP_DAYS: i64 = 400;

/// Inserts the mark; true when it was not there before. Old marks are pruned on the way.
pub(crate) fn mark(conn: &Connection, m: &Mark) -> Result<bool, DbError> {
    (|| {
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO alert_fired (rule, period, fired_at) VALUES (?1, ?2, ?3)",
            params![m.rule, m.period, m.at],
        )?;
        conn.execute(
            "DELETE FROM alert_fired WHERE fired_at < ?1",
            [m.at - KEEP_DAYS * 86_400],
        )?;
        Ok(inserted == 1)
    })()
    .map_err(DbError)
}

impl Store {
    /// Records that `rule` fired for `period` at `at` (Unix seconds), durably; returns false when
    /// it had already fired (then nothing changes). Blocking: waits for the writer thread.
    pub fn mark_alert(&self, rule: &str, period: &str, at: i64) -> Result<bool, FlushError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let m = Mark {
            rule: rule.to_owned(),
            period: period.to_owned(),
            at,
        };
        self.commands
            .send(Command::MarkAlert(m, reply))
            .map_err(|_| FlushError::WriterGone)?;
        answer
            .recv()
            .map_err(|_| FlushError::WriterGone)?
            .map_err(|source| FlushError::Db {
                hours: 0,
                remotes: 0,
                source,
            })
    }

    /// Every (rule, period) recorded by [`Store::mark_alert`], newest first.
    pub fn alerts_fired(&self) -> Result<Vec<(String, String, i64)>, super::QueryError> {
        Ok(self.shared.read(
            |_| (),
            |conn, ()| {
                let mut stmt = conn.prepare_cached(
                    "SELECT rule, period, fired_at FROM alert_fired ORDER BY fired_at DESC",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect()
            },
        )?)
    }
}
