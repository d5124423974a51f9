//! Services (`sentinel_common::service`) per local day, with bounded growth.
//!
//! - `service_day`: one row per (day, protocol, port, role) with up/down bytes and packets. A day
//!   holds at most `top_remotes_per_day` services (the remotes' bound); a new service beyond it
//!   is added to the day's `service_other_day` row instead, so every byte is still in the day.
//! - `service_other_day`: per day, what capture could not keep per service, plus what the row
//!   bound folded.
//! - Retention deletes days before `today - remotes_retention_days + 1`, as for remotes.
//!
//! Services are few (a NAS runs tens, and client traffic collapses onto the remote's port), so a
//! ranking over a range sums the range's rows in SQL; the "other" total is the range's bytes minus
//! the listed services, exact including unflushed counts.
//!
//! Knows SQLite; knows nothing of the writer thread or the API.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use rusqlite::{Connection, params};
use sentinel_common::abi::{RemoteCounters, ServiceKey};

use super::{
    QueryError, RangeError, Store, from_sql_count, pending::add_remote, queries::MAX_TOP_DAYS,
    queries::MAX_TOP_LIMIT, queries::check_dates, to_sql_count,
};
use crate::timebucket::day_of_date;

/// The ranking [`Store::top_services`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopServices {
    /// The services with the most traffic, most first (ties by protocol, port, role).
    pub services: Vec<(ServiceKey, RemoteCounters)>,
    /// Everything else in the range: unlisted services and what was never kept per service.
    pub other: RemoteCounters,
}

fn read_counters(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RemoteCounters> {
    Ok(RemoteCounters {
        up_bytes: from_sql_count(r.get(first)?),
        down_bytes: from_sql_count(r.get(first + 1)?),
        up_packets: from_sql_count(r.get(first + 2)?),
        down_packets: from_sql_count(r.get(first + 3)?),
    })
}

fn add_other(conn: &Connection, day: i64, c: &RemoteCounters) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO service_other_day (day, up_bytes, down_bytes, up_packets, down_packets) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(day) DO UPDATE SET \
         up_bytes = up_bytes + excluded.up_bytes, down_bytes = down_bytes + excluded.down_bytes, \
         up_packets = up_packets + excluded.up_packets, \
         down_packets = down_packets + excluded.down_packets",
    )?
    .execute(params![
        day,
        to_sql_count(c.up_bytes),
        to_sql_count(c.down_bytes),
        to_sql_count(c.up_packets),
        to_sql_count(c.down_packets)
    ])?;
    Ok(())
}

/// Adds a batch's services and "other" totals (inside the writer's transaction). At most
/// `per_day` services per day; beyond it a new service's bytes go to the day's other row.
pub(crate) fn write(
    conn: &Connection,
    services: &HashMap<(i64, ServiceKey), RemoteCounters>,
    others: &BTreeMap<i64, RemoteCounters>,
    per_day: u32,
) -> rusqlite::Result<()> {
    // Sorted, so that which services a full day keeps does not depend on hashing.
    let mut sorted: Vec<_> = services.iter().collect();
    sorted.sort_unstable_by_key(|((day, key), _)| (*day, *key));
    for ((day, key), c) in sorted {
        let updated = conn
            .prepare_cached(
                "UPDATE service_day SET up_bytes = up_bytes + ?5, down_bytes = down_bytes + ?6, \
                 up_packets = up_packets + ?7, down_packets = down_packets + ?8 \
                 WHERE day = ?1 AND proto = ?2 AND port = ?3 AND role = ?4",
            )?
            .execute(params![
                day,
                key.proto,
                key.port,
                key.role,
                to_sql_count(c.up_bytes),
                to_sql_count(c.down_bytes),
                to_sql_count(c.up_packets),
                to_sql_count(c.down_packets)
            ])?;
        if updated > 0 {
            continue;
        }
        let rows: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM service_day WHERE day = ?1")?
            .query_row([day], |r| r.get(0))?;
        if rows >= i64::from(per_day) {
            add_other(conn, *day, c)?;
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO service_day (day, proto, port, role, up_bytes, down_bytes, up_packets, \
             down_packets) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            day,
            key.proto,
            key.port,
            key.role,
            to_sql_count(c.up_bytes),
            to_sql_count(c.down_bytes),
            to_sql_count(c.up_packets),
            to_sql_count(c.down_packets)
        ])?;
    }
    for (day, c) in others {
        add_other(conn, *day, c)?;
    }
    Ok(())
}

/// Deletes the days before `today - retention_days + 1`.
pub(crate) fn retain(conn: &Connection, today: i64, retention_days: u32) -> rusqlite::Result<()> {
    let oldest_kept = today - i64::from(retention_days) + 1;
    for table in ["service_day", "service_other_day"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE day < ?1"))?
            .execute([oldest_kept])?;
    }
    Ok(())
}

/// Every stored service of the days `[d1, d2]`, summed, and the stored "other" total.
fn stored(conn: &Connection, d1: i64, d2: i64) -> rusqlite::Result<TopServices> {
    let mut stmt = conn.prepare_cached(
        "SELECT proto, port, role, SUM(up_bytes), SUM(down_bytes), SUM(up_packets), \
         SUM(down_packets) FROM service_day WHERE day BETWEEN ?1 AND ?2 \
         GROUP BY proto, port, role",
    )?;
    let services = stmt
        .query_map([d1, d2], |r| {
            Ok((
                ServiceKey {
                    proto: r.get(0)?,
                    port: r.get(1)?,
                    role: r.get(2)?,
                },
                read_counters(r, 3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let other = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(up_bytes), 0), COALESCE(SUM(down_bytes), 0), \
             COALESCE(SUM(up_packets), 0), COALESCE(SUM(down_packets), 0) \
             FROM service_other_day WHERE day BETWEEN ?1 AND ?2",
        )?
        .query_row([d1, d2], |r| read_counters(r, 0))?;
    Ok(TopServices { services, other })
}

impl Store {
    /// The `limit` services with the most traffic (up + down bytes) over the local days
    /// `first..=last`, unflushed counts included, and everything else as one total.
    pub fn top_services(
        &self,
        first: NaiveDate,
        last: NaiveDate,
        limit: usize,
    ) -> Result<TopServices, QueryError> {
        check_dates(first, last, "top services", MAX_TOP_DAYS)?;
        if !(1..=MAX_TOP_LIMIT).contains(&limit) {
            return Err(RangeError::Limit {
                limit,
                max: MAX_TOP_LIMIT,
            }
            .into());
        }
        let (d1, d2) = (day_of_date(first), day_of_date(last));
        let (stored, (pending, pending_other)) = self.shared.read(
            |p| p.services_in(d1, d2),
            |conn, pending| Ok((stored(conn, d1, d2)?, pending)),
        )?;
        let mut by_key: HashMap<ServiceKey, RemoteCounters> = stored.services.into_iter().collect();
        let mut other = stored.other;
        for (key, c) in pending {
            add_remote(by_key.entry(key).or_default(), &c);
        }
        add_remote(&mut other, &pending_other);
        let total = |c: &RemoteCounters| c.up_bytes.saturating_add(c.down_bytes);
        let mut ranked: Vec<(ServiceKey, RemoteCounters)> = by_key.into_iter().collect();
        ranked.sort_unstable_by(|a, b| total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0)));
        for (_, c) in ranked.iter().skip(limit) {
            add_remote(&mut other, c);
        }
        ranked.truncate(limit);
        Ok(TopServices {
            services: ranked,
            other,
        })
    }
}
