//! Remote addresses per local day, with bounded growth.
//!
//! While a day is open (today, or any day that just received late data) `remote_daily` holds every
//! remote seen that day, so the day's ranking stays exact across restarts. Once the day is over, the
//! first flush after it *compacts* the day: the top N remotes by total bytes (ties by address) stay,
//! the rest are added to that day's row in `remote_daily_other` and deleted. Days older than the
//! retention setting are deleted. So the table holds at most N rows per closed day plus one open
//! day, and rankings over any range are exact for remotes that made each day's top N; the
//! "other" total keeps every byte. `day` is the local date (days since 1970-01-01) in the zone in
//! force when the traffic was recorded; a later `TZ` change does not re-split past days.
//!
//! Knows SQLite; knows nothing of the writer thread or the API.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use rusqlite::{Connection, params};
use sentinel_common::abi::RemoteCounters;

use super::{from_sql_count, pending::add_remote, to_sql_count};

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

/// Adds per-remote traffic and per-day "other" totals (inside the caller's transaction).
pub(crate) fn write(
    conn: &Connection,
    remotes: &HashMap<(i64, IpAddr), RemoteCounters>,
    others: &BTreeMap<i64, RemoteCounters>,
) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO remote_daily (day, ip, up_bytes, down_bytes, up_packets, down_packets) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(day, ip) DO UPDATE SET \
         up_bytes = up_bytes + excluded.up_bytes, down_bytes = down_bytes + excluded.down_bytes, \
         up_packets = up_packets + excluded.up_packets, \
         down_packets = down_packets + excluded.down_packets",
    )?;
    let mut open =
        conn.prepare_cached("INSERT OR IGNORE INTO remote_open_days (day) VALUES (?1)")?;
    let mut days: Vec<i64> = Vec::new();
    for ((day, addr), c) in remotes {
        upsert.execute(params![
            day,
            ip_blob(addr),
            to_sql_count(c.up_bytes),
            to_sql_count(c.down_bytes),
            to_sql_count(c.up_packets),
            to_sql_count(c.down_packets)
        ])?;
        if !days.contains(day) {
            days.push(*day);
            open.execute([day])?;
        }
    }
    for (day, c) in others {
        add_other(conn, *day, c)?;
    }
    Ok(())
}

fn add_other(conn: &Connection, day: i64, c: &RemoteCounters) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO remote_daily_other (day, up_bytes, down_bytes, up_packets, down_packets) \
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

/// Compacts every open day before `today` to its top `keep` remotes and deletes days before
/// `today - retention_days` (inside the caller's transaction). Returns the days compacted.
pub(crate) fn maintain(
    conn: &Connection,
    today: i64,
    keep: u32,
    retention_days: u32,
) -> rusqlite::Result<Vec<i64>> {
    let oldest_kept = today - i64::from(retention_days) + 1;
    for table in ["remote_daily", "remote_daily_other", "remote_open_days"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE day < ?1"))?
            .execute([oldest_kept])?;
    }
    let closed: Vec<i64> = {
        let mut stmt = conn.prepare_cached("SELECT day FROM remote_open_days WHERE day < ?1")?;
        stmt.query_map([today], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    for day in &closed {
        compact_day(conn, *day, keep)?;
    }
    Ok(closed)
}

fn compact_day(conn: &Connection, day: i64, keep: u32) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT ip, up_bytes, down_bytes, up_packets, down_packets FROM remote_daily \
         WHERE day = ?1 ORDER BY up_bytes + down_bytes DESC, ip LIMIT -1 OFFSET ?2",
    )?;
    let mut folded = RemoteCounters::default();
    let mut drop: Vec<Vec<u8>> = Vec::new();
    let mut rows = stmt.query(params![day, keep])?;
    while let Some(r) = rows.next()? {
        drop.push(r.get(0)?);
        add_remote(&mut folded, &read_counters(r, 1)?);
    }
    if !drop.is_empty() {
        add_other(conn, day, &folded)?;
        let mut delete =
            conn.prepare_cached("DELETE FROM remote_daily WHERE day = ?1 AND ip = ?2")?;
        for ip in drop {
            delete.execute(params![day, ip])?;
        }
    }
    conn.prepare_cached("DELETE FROM remote_open_days WHERE day = ?1")?
        .execute([day])?;
    Ok(())
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

/// Stored per-remote totals and the "other" total of the local days `[from, to]`. Rows whose address
/// blob is neither 4 nor 16 bytes long count as "other" (never dropped).
pub(crate) fn totals(
    conn: &Connection,
    from: i64,
    to: i64,
) -> rusqlite::Result<(HashMap<IpAddr, RemoteCounters>, RemoteCounters)> {
    let mut by_ip: HashMap<IpAddr, RemoteCounters> = HashMap::new();
    let mut other = RemoteCounters::default();
    let mut stmt = conn.prepare_cached(
        "SELECT ip, up_bytes, down_bytes, up_packets, down_packets FROM remote_daily \
         WHERE day >= ?1 AND day <= ?2",
    )?;
    let mut rows = stmt.query([from, to])?;
    while let Some(r) = rows.next()? {
        let counters = read_counters(r, 1)?;
        let blob = r.get_ref(0)?.as_blob().ok().and_then(blob_ip);
        match blob {
            Some(ip) => add_remote(by_ip.entry(ip).or_default(), &counters),
            None => add_remote(&mut other, &counters),
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(SUM(up_bytes), 0), COALESCE(SUM(down_bytes), 0), \
         COALESCE(SUM(up_packets), 0), COALESCE(SUM(down_packets), 0) \
         FROM remote_daily_other WHERE day >= ?1 AND day <= ?2",
    )?;
    let stored_other = stmt.query_row([from, to], |r| read_counters(r, 0))?;
    add_remote(&mut other, &stored_other);
    Ok((by_ip, other))
}
