//! Remote addresses per local day and per month, with bounded growth and bounded query cost.
//!
//! - `remote_open`: every remote of each *open* day (today, or a past day that just received late
//!   data), so the day's ranking at its end is exact across restarts.
//! - `remote_top_day`: once a day is over, the first flush *compacts* it: its top N remotes by total
//!   bytes (ties by address) are stored with their rank, the rest only in the day's total.
//! - `remote_day_totals`: every remote byte of each day, ranked or not.
//! - `remote_top_month`: the top N of each closed month, built from its days' lists at the first
//!   flush of the next month, and rebuilt if late data reaches one of its days.
//! - Retention deletes days (and months that began) before `today - retention + 1`.
//!
//! A ranking over a range reads, for each whole closed month, the month's list, and for every
//! other day, the day's list, each only down to rank [`READ_DEPTH`] (or the query's limit if
//! larger). A year therefore costs at most about 75 short index range reads. Rankings count a
//! remote in each period where it made that depth; the "other" total (day totals minus the listed
//! remotes) is always exact. `day` is the local date (days since 1970-01-01) in the zone in force
//! when the traffic was recorded; a later `TZ` change does not re-split past days.
//!
//! Knows SQLite; knows nothing of the writer thread or the API.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use chrono::Datelike as _;
use rusqlite::{Connection, params};
use sentinel_common::abi::RemoteCounters;

use super::{from_sql_count, pending::add_remote, to_sql_count};
use crate::timebucket::{add_months, date_of_day, day_of_date};

/// How deep into each period's list a ranking reads (at least the query's limit).
pub const READ_DEPTH: u32 = 200;

/// The stored form of an address: 4 bytes for IPv4, 16 for IPv6.
pub(crate) fn ip_blob(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The address of a stored blob.
pub(crate) fn blob_ip(blob: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(blob) {
        Some(IpAddr::from(v4))
    } else {
        <[u8; 16]>::try_from(blob).ok().map(IpAddr::from)
    }
}

/// Month number (months since year 0) of a day number.
pub(crate) fn month_of_day(day: i64) -> i64 {
    let d = date_of_day(day);
    i64::from(d.year()) * 12 + i64::from(d.month0())
}

/// First and last day numbers of a month number.
pub(crate) fn month_days(month: i64) -> (i64, i64) {
    let year = i32::try_from(month.div_euclid(12)).unwrap_or(0);
    let month0 = u32::try_from(month.rem_euclid(12)).unwrap_or(0);
    let first = chrono::NaiveDate::from_ymd_opt(year, month0 + 1, 1).unwrap_or_default();
    let next = add_months(first, 1);
    (day_of_date(first), day_of_date(next) - 1)
}

const ADD_COUNTERS: &str = "ON CONFLICT DO UPDATE SET \
     up_bytes = up_bytes + excluded.up_bytes, down_bytes = down_bytes + excluded.down_bytes, \
     up_packets = up_packets + excluded.up_packets, \
     down_packets = down_packets + excluded.down_packets";
const COUNTERS: &str = "up_bytes, down_bytes, up_packets, down_packets";

fn counter_params(c: &RemoteCounters) -> [i64; 4] {
    [
        to_sql_count(c.up_bytes),
        to_sql_count(c.down_bytes),
        to_sql_count(c.up_packets),
        to_sql_count(c.down_packets),
    ]
}

/// Adds per-remote traffic to the open days, and to each day's totals everything including remotes
/// folded in memory (inside the caller's transaction).
pub(crate) fn write(
    conn: &Connection,
    remotes: &HashMap<(i64, IpAddr), RemoteCounters>,
    others: &BTreeMap<i64, RemoteCounters>,
) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(&format!(
        "INSERT INTO remote_open (day, ip, {COUNTERS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) {ADD_COUNTERS}"
    ))?;
    let mut per_day: BTreeMap<i64, RemoteCounters> = others.clone();
    let mut listed_days: BTreeSet<i64> = BTreeSet::new();
    for ((day, addr), c) in remotes {
        let [ub, db, up, dp] = counter_params(c);
        upsert.execute(params![day, ip_blob(addr), ub, db, up, dp])?;
        add_remote(per_day.entry(*day).or_default(), c);
        listed_days.insert(*day);
    }
    let mut open =
        conn.prepare_cached("INSERT OR IGNORE INTO remote_open_days (day) VALUES (?1)")?;
    let mut totals = conn.prepare_cached(&format!(
        "INSERT INTO remote_day_totals (day, {COUNTERS}) VALUES (?1, ?2, ?3, ?4, ?5) {ADD_COUNTERS}"
    ))?;
    for (day, c) in &per_day {
        if listed_days.contains(day) {
            open.execute([day])?;
        }
        let [ub, db, up, dp] = counter_params(c);
        totals.execute(params![day, ub, db, up, dp])?;
    }
    Ok(())
}

/// Limits of the remote tables.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Remotes kept per closed day and per closed month.
    pub keep: u32,
    /// Days of history kept, today included.
    pub retention_days: u32,
    /// Rows today may hold before its tail is dropped (a flood of distinct, maybe spoofed,
    /// sources); today's top half of this is kept, and the day's totals keep every byte.
    pub max_open_rows: u32,
}

/// Compacts every open day before `today` to its top `keep` remotes, bounds today's rows, builds the
/// lists of closed months, and deletes what is older than the retention (inside the caller's
/// transaction). Returns the number of days compacted.
pub(crate) fn maintain(conn: &Connection, today: i64, limits: Limits) -> rusqlite::Result<usize> {
    let Limits {
        keep,
        retention_days,
        max_open_rows,
    } = limits;
    let oldest_kept = today - i64::from(retention_days) + 1;
    for table in [
        "remote_open",
        "remote_top_day",
        "remote_day_totals",
        "remote_open_days",
    ] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE day < ?1"))?
            .execute([oldest_kept])?;
    }
    // The first month whose every day is within the retention.
    let first_full_month = {
        let m = month_of_day(oldest_kept);
        if month_days(m).0 < oldest_kept {
            m + 1
        } else {
            m
        }
    };
    for table in ["remote_top_month", "remote_months_built"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE month < ?1"))?
            .execute([first_full_month])?;
    }
    let this_month = month_of_day(today);
    let closed: Vec<i64> = {
        let mut stmt = conn.prepare_cached("SELECT day FROM remote_open_days WHERE day < ?1")?;
        stmt.query_map([today], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    for day in &closed {
        compact_day(conn, *day, keep)?;
        let month = month_of_day(*day);
        if month < this_month {
            // Late data for a closed month: its list is built again below.
            for table in ["remote_top_month", "remote_months_built"] {
                conn.prepare_cached(&format!("DELETE FROM {table} WHERE month = ?1"))?
                    .execute([month])?;
            }
        }
    }
    let months: BTreeSet<i64> = {
        let mut stmt = conn.prepare_cached(
            "SELECT day FROM remote_day_totals WHERE day >= ?1 AND day < ?2 \
             AND NOT EXISTS (SELECT 1 FROM remote_open_days o WHERE o.day = remote_day_totals.day)",
        )?;
        stmt.query_map(
            [month_days(first_full_month).0, month_days(this_month).0],
            |r| r.get::<_, i64>(0),
        )?
        .map(|d| d.map(month_of_day))
        .collect::<rusqlite::Result<_>>()?
    };
    let today_rows: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM remote_open WHERE day = ?1")?
        .query_row([today], |r| r.get(0))?;
    if today_rows > i64::from(max_open_rows) {
        conn.prepare_cached(
            "DELETE FROM remote_open WHERE day = ?1 AND ip IN (SELECT ip FROM remote_open \
             WHERE day = ?1 ORDER BY up_bytes + down_bytes DESC, ip LIMIT -1 OFFSET ?2)",
        )?
        .execute(params![today, max_open_rows / 2])?;
        tracing::warn!(
            rows = today_rows,
            kept = max_open_rows / 2,
            "more distinct remotes today than the open-day limit: the smallest were dropped \
             from today's ranking (the day's totals keep their bytes)"
        );
    }
    let mut is_built =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM remote_months_built WHERE month = ?1)")?;
    for month in months {
        if !is_built.query_row([month], |r| r.get::<_, bool>(0))? {
            build_month(conn, month, keep)?;
        }
    }
    Ok(closed.len())
}

/// Ranks an open day (merged with its earlier list, if late data reopened it) into its top list.
fn compact_day(conn: &Connection, day: i64, keep: u32) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO remote_open (day, ip, {COUNTERS}) SELECT day, ip, {COUNTERS} \
         FROM remote_top_day WHERE day = ?1 {ADD_COUNTERS}"
    ))?
    .execute([day])?;
    conn.prepare_cached("DELETE FROM remote_top_day WHERE day = ?1")?
        .execute([day])?;
    conn.prepare_cached(&format!(
        "INSERT INTO remote_top_day (day, rank, ip, {COUNTERS}) \
         SELECT day, ROW_NUMBER() OVER (ORDER BY up_bytes + down_bytes DESC, ip) - 1, ip, {COUNTERS} \
         FROM remote_open WHERE day = ?1 ORDER BY up_bytes + down_bytes DESC, ip LIMIT ?2"
    ))?
    .execute(params![day, keep])?;
    for table in ["remote_open", "remote_open_days"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE day = ?1"))?
            .execute([day])?;
    }
    Ok(())
}

fn build_month(conn: &Connection, month: i64, keep: u32) -> rusqlite::Result<()> {
    let (first, last) = month_days(month);
    let mut by_ip: HashMap<Vec<u8>, RemoteCounters> = HashMap::new();
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT ip, {COUNTERS} FROM remote_top_day WHERE day >= ?1 AND day <= ?2"
        ))?;
        let mut rows = stmt.query([first, last])?;
        while let Some(r) = rows.next()? {
            add_remote(by_ip.entry(r.get(0)?).or_default(), &read_counters(r, 1)?);
        }
    }
    let mut ranked: Vec<(Vec<u8>, RemoteCounters)> = by_ip.into_iter().collect();
    ranked.sort_unstable_by(|a, b| total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0)));
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO remote_top_month (month, rank, ip, {COUNTERS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))?;
    for (rank, (ip, c)) in ranked
        .iter()
        .take(usize::try_from(keep).unwrap_or(usize::MAX))
        .enumerate()
    {
        let [ub, db, up, dp] = counter_params(c);
        insert.execute(params![month, rank, ip, ub, db, up, dp])?;
    }
    conn.prepare_cached("INSERT OR IGNORE INTO remote_months_built (month) VALUES (?1)")?
        .execute([month])?;
    Ok(())
}

fn total(c: &RemoteCounters) -> u64 {
    c.up_bytes.saturating_add(c.down_bytes)
}

/// Reads four counters (up bytes, down bytes, up packets, down packets) starting at column `at`.
fn read_counters(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RemoteCounters> {
    Ok(RemoteCounters {
        up_bytes: from_sql_count(r.get(at)?),
        down_bytes: from_sql_count(r.get(at + 1)?),
        up_packets: from_sql_count(r.get(at + 2)?),
        down_packets: from_sql_count(r.get(at + 3)?),
    })
}

/// What the database knows of the remotes of the local days `[from, to]`.
pub(crate) struct StoredRemotes {
    /// Per remote, from the period lists read (rows with a malformed address blob are left out
    /// here, and so count as "other").
    pub by_ip: HashMap<IpAddr, RemoteCounters>,
    /// Every remote byte of the range.
    pub total: RemoteCounters,
}

fn add_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    args: [i64; 2],
    by_ip: &mut HashMap<IpAddr, RemoteCounters>,
) -> rusqlite::Result<()> {
    let mut rows = stmt.query(args)?;
    while let Some(r) = rows.next()? {
        let counters = read_counters(r, 1)?;
        if let Some(ip) = r.get_ref(0)?.as_blob().ok().and_then(blob_ip) {
            add_remote(by_ip.entry(ip).or_default(), &counters);
        }
    }
    Ok(())
}

/// Reads the lists covering `[from, to]` down to rank `depth`: monthly lists for whole built
/// months, daily lists (or the open-day table) for the other days.
pub(crate) fn stored(
    conn: &Connection,
    from: i64,
    to: i64,
    depth: u32,
) -> rusqlite::Result<StoredRemotes> {
    let total = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(up_bytes), 0), COALESCE(SUM(down_bytes), 0), \
             COALESCE(SUM(up_packets), 0), COALESCE(SUM(down_packets), 0) \
             FROM remote_day_totals WHERE day >= ?1 AND day <= ?2",
        )?
        .query_row([from, to], |r| read_counters(r, 0))?;
    let mut by_ip = HashMap::new();
    let depth = i64::from(depth);
    let built: Vec<i64> = conn
        .prepare_cached("SELECT month FROM remote_months_built WHERE month >= ?1 AND month <= ?2")?
        .query_map([month_of_day(from), month_of_day(to)], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut monthly = conn.prepare_cached(&format!(
        "SELECT ip, {COUNTERS} FROM remote_top_month WHERE month = ?1 AND rank < ?2"
    ))?;
    let mut covered: BTreeSet<i64> = BTreeSet::new();
    for month in built {
        let (first, last) = month_days(month);
        if first >= from && last <= to {
            add_rows(&mut monthly, [month, depth], &mut by_ip)?;
            covered.extend(first..=last);
        }
    }
    let open: BTreeSet<i64> = conn
        .prepare_cached("SELECT day FROM remote_open_days WHERE day >= ?1 AND day <= ?2")?
        .query_map([from, to], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut open_day = conn.prepare_cached(&format!(
        "SELECT ip, {COUNTERS} FROM remote_open WHERE day = ?1 \
         ORDER BY up_bytes + down_bytes DESC LIMIT ?2"
    ))?;
    let mut closed_day = conn.prepare_cached(&format!(
        "SELECT ip, {COUNTERS} FROM remote_top_day WHERE day = ?1 AND rank < ?2"
    ))?;
    for day in (from..=to).filter(|d| !covered.contains(d)) {
        let stmt = if open.contains(&day) {
            &mut open_day
        } else {
            &mut closed_day
        };
        add_rows(stmt, [day, depth], &mut by_ip)?;
    }
    Ok(StoredRemotes { by_ip, total })
}
