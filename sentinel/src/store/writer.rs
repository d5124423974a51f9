//! The single writer thread: flushes pending traffic every `SAVE_INTERVAL`, on demand
//! ([`super::Store::flush_now`]) and at shutdown, each time in one transaction that also stores the
//! capture checkpoint and a flush sequence number. Memory is released only after the commit; a
//! failed flush keeps everything, is logged and shown in [`super::StoreStatus`], and is retried with
//! backoff (1 s doubling up to a minute, never later than the next regular flush).
//!
//! Writes add deltas to the stored rows. They are made safe to retry by the sequence number: each
//! batch carries `last committed + 1`; a batch whose number the database already holds was
//! committed (its outcome was unknown to us) and is released instead of being written again.
//! A crash loses only uncommitted memory, and the checkpoint stored with the last commit tells the
//! capture layer where to resume, so nothing is lost or counted twice.
//!
//! Knows SQLite and std threads; knows nothing of the async runtime or the API.

use std::{
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use rusqlite::{Connection, TransactionBehavior, params};

use super::{DbError, Shared, pending::Batch, remotes, schema, services, to_sql_count};
use crate::timebucket::{HourSlot, day_of_local_seconds, hour_label, local_timestamp_text};

/// A flush that did not commit. The data stays pending.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// SQLite refused the write (disk full, read-only, locked, I/O error...).
    #[error("writing {hours} hours and {remotes} remote entries to the database failed")]
    Db {
        /// Hours in the batch.
        hours: usize,
        /// Remote entries in the batch.
        remotes: usize,
        /// SQLite's error.
        #[source]
        source: DbError,
    },
    /// The writer thread is gone (it stopped, or panicked).
    #[error("the database writer thread is not running")]
    WriterGone,
}

/// What a successful flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Hour rows written.
    pub hours: usize,
    /// Remote entries written.
    pub remotes: usize,
    /// Closed days compacted to their top remotes.
    pub compacted_days: usize,
    /// True when nothing was pending.
    pub nothing_to_do: bool,
    /// True when a batch in doubt turned out to be committed already and was only released.
    pub already_committed: bool,
}

pub(crate) enum Command {
    Flush(mpsc::SyncSender<Result<FlushReport, FlushError>>),
    Stop(mpsc::SyncSender<Result<FlushReport, FlushError>>),
    /// Records an alert as fired (see `super::alerts`).
    MarkAlert(super::alerts::Mark, mpsc::SyncSender<Result<bool, DbError>>),
    #[cfg(test)]
    Exec(String, mpsc::SyncSender<Result<(), DbError>>),
}

/// The writer's state; lives on its thread.
pub(crate) struct Writer {
    pub conn: Connection,
    pub shared: Arc<Shared>,
    /// Sequence number of the last commit.
    pub seq: u64,
    /// A batch whose commit may or may not have happened (its number is `seq + 1`).
    pub in_doubt: Option<Batch>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Writer {
    /// The thread's loop.
    pub fn run(mut self, commands: mpsc::Receiver<Command>) {
        let interval = self.shared.options.save_interval;
        let mut due = Instant::now() + interval;
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            let command = match commands.recv_timeout(wait) {
                Ok(c) => Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.flush_logged("final (store dropped)");
                    return;
                }
            };
            match command {
                Some(Command::Flush(reply)) => {
                    let result = self.flush_logged("on demand");
                    let _ = reply.send(result);
                }
                Some(Command::Stop(reply)) => {
                    let result = self.flush_logged("final");
                    let _ = reply.send(result);
                    return;
                }
                Some(Command::MarkAlert(mark, reply)) => {
                    let _ = reply.send(super::alerts::mark(&self.conn, &mark));
                }
                #[cfg(test)]
                Some(Command::Exec(sql, reply)) => {
                    let _ = reply.send(self.conn.execute_batch(&sql).map_err(DbError));
                }
                None => match self.flush_logged("periodic") {
                    Ok(_) => {
                        backoff = Duration::from_secs(1);
                        due = Instant::now() + interval;
                    }
                    Err(_) => {
                        due = Instant::now() + backoff.min(interval);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                },
            }
        }
    }

    /// Flushes and records the outcome in the status and the logs.
    fn flush_logged(&mut self, why: &'static str) -> Result<FlushReport, FlushError> {
        let now = self.shared.options.clock.now();
        let result = self.flush(now);
        let counts = self.shared.pending.counts();
        let mut status = self.shared.status();
        status.pending_hours = counts.hours;
        status.pending_remotes = counts.remotes;
        status.folded_remotes = counts.folded_remotes;
        match &result {
            Ok(report) => {
                status.last_success = Some(now);
                if !report.nothing_to_do {
                    status.last_flush_ok = Some(now);
                    status.flushes_ok += 1;
                    tracing::debug!(
                        why,
                        hours = report.hours,
                        remotes = report.remotes,
                        compacted_days = report.compacted_days,
                        "flushed to the database"
                    );
                }
                if status.consecutive_failures > 0 {
                    tracing::info!(
                        after_failures = status.consecutive_failures,
                        "database writes work again; pending traffic saved"
                    );
                }
                status.consecutive_failures = 0;
            }
            Err(e) => {
                status.flushes_failed += 1;
                status.consecutive_failures += 1;
                status.last_error = Some(super::StatusError {
                    at: now,
                    message: error_chain(e),
                });
                tracing::error!(why, error = %error_chain(e), pending_hours = counts.hours,
                    pending_remotes = counts.remotes,
                    "flush failed; the traffic stays in memory and the write will be retried");
            }
        }
        result
    }

    /// One flush attempt.
    pub fn flush(&mut self, now: i64) -> Result<FlushReport, FlushError> {
        let mut report = FlushReport::default();
        if let Some(batch) = self.in_doubt.take() {
            match schema::last_flush_seq(&self.conn) {
                Ok(stored) if stored > self.seq => {
                    // The earlier commit happened after all: release, never write twice.
                    let _gate = self.shared.gate_write();
                    self.shared.pending.release(&batch);
                    self.seq = stored;
                    report.already_committed = true;
                }
                Ok(_) => {}
                Err(e) => {
                    self.in_doubt = Some(batch);
                    return Err(FlushError::Db {
                        hours: 0,
                        remotes: 0,
                        source: DbError(e),
                    });
                }
            }
        }
        let batch = self.shared.pending.snapshot();
        let (hours, remote_count) = batch
            .as_ref()
            .map_or((0, 0), |b| (b.hours.len(), b.remotes.len()));
        let fail = |e| FlushError::Db {
            hours,
            remotes: remote_count,
            source: DbError(e),
        };
        let seq = self.seq + 1;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let options = &self.shared.options;
        if let Some(batch) = &batch {
            let stamp = local_timestamp_text(self.shared.zone, now);
            write_batch(&tx, batch, seq, &stamp, options.top_remotes_per_day).map_err(fail)?;
        }
        // After the batch, so that late data for a day already over is compacted in this commit.
        let today = day_of_local_seconds(self.shared.zone.local_seconds(now));
        let limits = remotes::Limits {
            keep: options.top_remotes_per_day,
            retention_days: options.remotes_retention_days,
            max_open_rows: options.max_open_day_remotes,
        };
        report.compacted_days = remotes::maintain(&tx, today, limits).map_err(fail)?;
        services::retain(&tx, today, options.remotes_retention_days).map_err(fail)?;
        {
            let _gate = self.shared.gate_write();
            if let Err(e) = tx.commit() {
                // SQLite rolls back a failed COMMIT; keep the batch in doubt all the same, so that
                // the next attempt checks the stored sequence number before writing again.
                if batch.is_some() {
                    self.in_doubt = batch;
                }
                return Err(fail(e));
            }
            if let Some(batch) = &batch {
                self.shared.pending.release(batch);
                self.seq = seq;
            }
        }
        report.hours = hours;
        report.remotes = remote_count;
        report.nothing_to_do = batch.is_none() && report.compacted_days == 0;
        Ok(report)
    }
}

/// Writes one batch: hours, remotes, checkpoint, sequence number.
pub(crate) fn write_batch(
    conn: &Connection,
    batch: &Batch,
    seq: u64,
    stamp: &str,
    per_day: u32,
) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO traffic_hourly (start_utc, hour_ts, utc_offset, up_bytes, down_bytes, \
         up_packets, down_packets, up_wire_bytes, down_wire_bytes, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) \
         ON CONFLICT(start_utc) DO UPDATE SET \
         up_bytes = up_bytes + excluded.up_bytes, down_bytes = down_bytes + excluded.down_bytes, \
         up_packets = up_packets + excluded.up_packets, \
         down_packets = down_packets + excluded.down_packets, \
         up_wire_bytes = up_wire_bytes + excluded.up_wire_bytes, \
         down_wire_bytes = down_wire_bytes + excluded.down_wire_bytes, \
         updated_at = excluded.updated_at",
    )?;
    for (start, hour) in &batch.hours {
        let label = HourSlot {
            start: *start,
            offset: hour.offset,
        }
        .label();
        let (up, down) = (&hour.traffic.up, &hour.traffic.down);
        upsert.execute(params![
            start,
            hour_label(label),
            hour.offset,
            to_sql_count(up.ip_bytes),
            to_sql_count(down.ip_bytes),
            to_sql_count(up.packets),
            to_sql_count(down.packets),
            to_sql_count(up.wire_bytes),
            to_sql_count(down.wire_bytes),
            stamp
        ])?;
    }
    remotes::write(conn, &batch.remotes, &batch.others)?;
    services::write(conn, &batch.services, &batch.service_others, per_day)?;
    if let Some(checkpoint) = &batch.checkpoint {
        conn.prepare_cached(
            "INSERT INTO capture_checkpoint (id, data, flush_seq, saved_at) VALUES (1, ?1, ?2, ?3) \
             ON CONFLICT(id) DO UPDATE SET data = excluded.data, flush_seq = excluded.flush_seq, \
             saved_at = excluded.saved_at",
        )?
        .execute(params![checkpoint, to_sql_count(seq), stamp])?;
    }
    schema::meta_set(conn, "last_flush_seq", &to_sql_count(seq))
}

/// An error and its sources on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
