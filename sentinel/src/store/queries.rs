//! Read queries for the API, as plain structs. Every query:
//! - takes local dates (and `now` where "today" matters) and validates them into a bounded range,
//!   returning [`RangeError`] (the API's 400) otherwise;
//! - reads the database and the pending (unflushed) data in one consistent view and adds them by the
//!   same rule: an hour belongs to the local day of its label;
//! - zero-fills: one point per real local hour (23 or 25 on DST days), day or month of the range,
//!   clamped to the range (a month point covers only the days asked for).
//!
//! Knows SQLite; knows nothing of JSON or HTTP.

use std::collections::HashMap;

use chrono::{Datelike as _, Days, NaiveDate};
use rusqlite::{Connection, params};
use sentinel_common::abi::{Counters, RemoteCounters};

pub use super::types::{
    Granularity, Period, Point, QueryError, RangeError, RemoteTotal, Series, Summary, TopRemotes,
};
use super::{DbError, Store, from_sql_count, pending::Traffic, pending::add_remote, remotes};
use crate::timebucket::{
    DAY, HourSlot, Zone, add_months, date_of_day, date_of_local_seconds, day_of_date,
    day_of_local_seconds, floor_hour, local_seconds_of, month_start, naive_of_local_seconds,
};

/// Longest range at hour granularity, in days.
pub const MAX_HOUR_DAYS: u64 = 93;
/// Longest range at day granularity, in days (five years).
pub const MAX_DAY_DAYS: u64 = 1830;
/// Longest range at month granularity, in days (ten years).
pub const MAX_MONTH_DAYS: u64 = 3660;
/// Longest range for top remotes, in days.
pub const MAX_TOP_DAYS: u64 = 366;
/// Most remotes one top query returns.
pub const MAX_TOP_LIMIT: usize = 100;
/// Earliest and latest dates accepted.
const FIRST_DATE: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid constant date");
const LAST_DATE: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 30).expect("valid constant date");
/// Margin around a label range when selecting by UTC start: more than any UTC offset.
const START_MARGIN: i64 = 2 * DAY;

pub(crate) fn check_dates(
    first: NaiveDate,
    last: NaiveDate,
    what: &'static str,
    max: u64,
) -> Result<(), RangeError> {
    for date in [first, last] {
        if !(FIRST_DATE..=LAST_DATE).contains(&date) {
            return Err(RangeError::DateOutOfRange { date });
        }
    }
    if first > last {
        return Err(RangeError::StartAfterEnd {
            start: first,
            end: last,
        });
    }
    let days = u64::try_from((last - first).num_days() + 1).unwrap_or(u64::MAX);
    if days > max {
        return Err(RangeError::TooLong { what, days, max });
    }
    Ok(())
}

fn next_day(d: NaiveDate) -> NaiveDate {
    d.checked_add_days(Days::new(1)).unwrap_or(d)
}

/// Label bounds `[from, to)` (local seconds) of the days `first..=last`.
fn label_bounds(first: NaiveDate, last: NaiveDate) -> (i64, i64) {
    (
        local_seconds_of(first.and_time(chrono::NaiveTime::MIN)),
        local_seconds_of(next_day(last).and_time(chrono::NaiveTime::MIN)),
    )
}

fn read_traffic(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Traffic> {
    let c = |i: usize| -> rusqlite::Result<u64> { Ok(from_sql_count(r.get(at + i)?)) };
    Ok(Traffic {
        up: Counters {
            ip_bytes: c(0)?,
            packets: c(2)?,
            wire_bytes: c(4)?,
        },
        down: Counters {
            ip_bytes: c(1)?,
            packets: c(3)?,
            wire_bytes: c(5)?,
        },
    })
}

const COUNTER_COLUMNS: &str =
    "up_bytes, down_bytes, up_packets, down_packets, up_wire_bytes, down_wire_bytes";
const LABEL_RANGE: &str = "start_utc >= ?1 AND start_utc < ?2 \
     AND start_utc + utc_offset >= ?3 AND start_utc + utc_offset < ?4";

/// Stored hours whose label is in `[from, to)`, in UTC order.
fn stored_hours(
    conn: &Connection,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<(HourSlot, Traffic)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT start_utc, utc_offset, {COUNTER_COLUMNS} FROM traffic_hourly \
         WHERE {LABEL_RANGE} ORDER BY start_utc"
    ))?;
    let rows = stmt.query_map(
        params![from - START_MARGIN, to + START_MARGIN, from, to],
        |r| {
            let offset: i64 = r.get(1)?;
            let slot = HourSlot {
                start: r.get(0)?,
                offset: i32::try_from(offset).unwrap_or(0),
            };
            Ok((slot, read_traffic(r, 2)?))
        },
    )?;
    rows.collect()
}

/// Stored traffic per local day (day number) of the days `[first, last]` (from `traffic_day`,
/// which triggers keep equal to the sums of `traffic_hourly` by label day).
fn stored_days(conn: &Connection, first: i64, last: i64) -> rusqlite::Result<Vec<(i64, Traffic)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT day, {COUNTER_COLUMNS} FROM traffic_day WHERE day >= ?1 AND day <= ?2"
    ))?;
    let rows = stmt.query_map([first, last], |r| Ok((r.get(0)?, read_traffic(r, 1)?)))?;
    rows.collect()
}

/// Day totals of `first..=last`: stored plus pending, keyed by day number.
fn day_totals(
    store: &Store,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<HashMap<i64, Traffic>, DbError> {
    let (from, to) = label_bounds(first, last);
    let (d1, d2) = (day_of_date(first), day_of_date(last));
    let (stored, pending) = store.shared.read(
        |p| p.hours_in(from, to),
        |conn, pending| Ok((stored_days(conn, d1, d2)?, pending)),
    )?;
    let mut days: HashMap<i64, Traffic> = stored.into_iter().collect();
    for (slot, traffic) in pending {
        days.entry(day_of_local_seconds(slot.label()))
            .or_default()
            .add(&traffic);
    }
    Ok(days)
}

fn sum(points: &[Point]) -> Traffic {
    let mut total = Traffic::default();
    for p in points {
        total.add(&p.traffic);
    }
    total
}

impl Store {
    /// A zero-filled series over the local days `first..=last`.
    pub fn series(
        &self,
        first: NaiveDate,
        last: NaiveDate,
        granularity: Granularity,
    ) -> Result<Series, QueryError> {
        let zone = self.shared.zone;
        let points = match granularity {
            Granularity::Hour => {
                check_dates(first, last, "hourly series", MAX_HOUR_DAYS)?;
                self.hour_points(zone, first, last)?
            }
            Granularity::Day => {
                check_dates(first, last, "daily series", MAX_DAY_DAYS)?;
                let days = day_totals(self, first, last)?;
                first
                    .iter_days()
                    .take_while(|d| *d <= last)
                    .map(|d| Point {
                        period: Period::Day(d),
                        start: zone.day_start(d),
                        traffic: days.get(&day_of_date(d)).copied().unwrap_or_default(),
                    })
                    .collect()
            }
            Granularity::Month => {
                check_dates(first, last, "monthly series", MAX_MONTH_DAYS)?;
                let days = day_totals(self, first, last)?;
                let mut points: Vec<Point> = Vec::new();
                let mut month = month_start(first);
                while month <= last {
                    let from = first.max(month);
                    let next = add_months(month, 1);
                    let mut traffic = Traffic::default();
                    for d in from.iter_days().take_while(|d| *d < next && *d <= last) {
                        if let Some(t) = days.get(&day_of_date(d)) {
                            traffic.add(t);
                        }
                    }
                    points.push(Point {
                        period: Period::Month(month),
                        start: zone.day_start(from),
                        traffic,
                    });
                    if next <= month {
                        break;
                    }
                    month = next;
                }
                points
            }
        };
        let total = sum(&points);
        Ok(Series { points, total })
    }

    fn hour_points(
        &self,
        zone: Zone,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<Point>, DbError> {
        let (from, to) = label_bounds(first, last);
        let (stored, pending) = self.shared.read(
            |p| p.hours_in(from, to),
            |conn, pending| Ok((stored_hours(conn, from, to)?, pending)),
        )?;
        let point = |slot: HourSlot| Point {
            period: Period::Hour {
                local: naive_of_local_seconds(slot.label()).unwrap_or_default(),
                utc_offset: slot.offset,
            },
            start: slot.start,
            traffic: Traffic::default(),
        };
        let mut points: Vec<Point> = zone
            .slots_between(zone.day_start(first), zone.day_start(next_day(last)))
            .into_iter()
            .map(point)
            .collect();
        let mut index: HashMap<(i64, i32), usize> = points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.period {
                Period::Hour { utc_offset, .. } => {
                    Some(((floor_hour(p.start + i64::from(utc_offset)), utc_offset), i))
                }
                _ => None,
            })
            .collect();
        let mut extra = false;
        for (slot, traffic) in stored.into_iter().chain(pending) {
            let key = (slot.label(), slot.offset);
            let i = match index.get(&key) {
                Some(i) => *i,
                None => {
                    // An hour recorded under another zone's alignment: its own point.
                    extra = true;
                    points.push(point(slot));
                    index.insert(key, points.len() - 1);
                    points.len() - 1
                }
            };
            if let Some(p) = points.get_mut(i) {
                p.traffic.add(&traffic);
            }
        }
        if extra {
            points.sort_by_key(|p| p.start);
        }
        Ok(points)
    }

    /// Today, this month and this year in local time at `now`.
    pub fn summary(&self, now: i64) -> Result<Summary, QueryError> {
        let zone = self.shared.zone;
        let today = zone.local_date(now);
        let jan1 = NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today);
        let dec31 = NaiveDate::from_ymd_opt(today.year(), 12, 31).unwrap_or(today);
        let days = day_totals(self, jan1, dec31)?;
        let (month, today_n) = (today.month(), day_of_date(today));
        let mut summary = Summary {
            today_date: today,
            today: Traffic::default(),
            month: Traffic::default(),
            year: Traffic::default(),
        };
        for (day, traffic) in &days {
            summary.year.add(traffic);
            if date_of_day(*day).month() == month {
                summary.month.add(traffic);
            }
            if *day == today_n {
                summary.today.add(traffic);
            }
        }
        Ok(summary)
    }

    /// The 30 local days ending today, zero-filled.
    pub fn last_30_days(&self, now: i64) -> Result<Series, QueryError> {
        let today = self.shared.zone.local_date(now);
        let first = today.checked_sub_days(Days::new(29)).unwrap_or(today);
        self.series(first, today, Granularity::Day)
    }

    /// The 12 calendar months ending with the current one, zero-filled.
    pub fn last_12_months(&self, now: i64) -> Result<Series, QueryError> {
        let today = self.shared.zone.local_date(now);
        let first = add_months(today, -11);
        let last = add_months(today, 1).pred_opt().unwrap_or(today);
        self.series(first, last, Granularity::Month)
    }

    /// Every local hour of today (23, 24 or 25), zero-filled.
    pub fn today_hours(&self, now: i64) -> Result<Series, QueryError> {
        let today = self.shared.zone.local_date(now);
        self.series(today, today, Granularity::Hour)
    }

    /// The first and last local dates with traffic, stored or pending; today for both when empty.
    pub fn date_range(&self, now: i64) -> Result<(NaiveDate, NaiveDate), QueryError> {
        let (stored, pending) = self.shared.read(
            |p| p.first_and_last(),
            |conn, pending| {
                let ends = conn.query_row(
                    "SELECT (SELECT start_utc + utc_offset FROM traffic_hourly ORDER BY start_utc LIMIT 1), \
                     (SELECT start_utc + utc_offset FROM traffic_hourly ORDER BY start_utc DESC LIMIT 1)",
                    [],
                    |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
                )?;
                Ok((ends, pending))
            },
        )?;
        let mut labels: Vec<i64> = [stored.0, stored.1].into_iter().flatten().collect();
        if let Some((a, b)) = pending {
            labels.extend([a.label(), b.label()]);
        }
        let today = self.shared.zone.local_date(now);
        let min = labels
            .iter()
            .min()
            .map_or(today, |l| date_of_local_seconds(*l));
        let max = labels
            .iter()
            .max()
            .map_or(today, |l| date_of_local_seconds(*l));
        Ok((min, max))
    }

    /// The `limit` remotes with the most traffic (up + down bytes) over the local days
    /// `first..=last`, and everything else as one total.
    pub fn top_remotes(
        &self,
        first: NaiveDate,
        last: NaiveDate,
        limit: usize,
    ) -> Result<TopRemotes, QueryError> {
        check_dates(first, last, "top remotes", MAX_TOP_DAYS)?;
        if !(1..=MAX_TOP_LIMIT).contains(&limit) {
            return Err(RangeError::Limit {
                limit,
                max: MAX_TOP_LIMIT,
            }
            .into());
        }
        let (d1, d2) = (day_of_date(first), day_of_date(last));
        let depth = remotes::READ_DEPTH.max(u32::try_from(limit).unwrap_or(u32::MAX));
        let (stored, (pending, pending_other)) = self.shared.read(
            |p| p.remotes_in(d1, d2),
            |conn, pending| Ok((remotes::stored(conn, d1, d2, depth)?, pending)),
        )?;
        let (mut by_ip, mut all) = (stored.by_ip, stored.total);
        for (ip, c) in pending {
            add_remote(by_ip.entry(ip).or_default(), &c);
            add_remote(&mut all, &c);
        }
        add_remote(&mut all, &pending_other);
        let total = |c: &RemoteCounters| c.up_bytes.saturating_add(c.down_bytes);
        let mut ranked: Vec<RemoteTotal> = by_ip
            .into_iter()
            .map(|(ip, counters)| RemoteTotal { ip, counters })
            .collect();
        let distinct = ranked.len();
        ranked.sort_unstable_by(|a, b| {
            total(&b.counters)
                .cmp(&total(&a.counters))
                .then_with(|| a.ip.cmp(&b.ip))
        });
        ranked.truncate(limit);
        // Everything not listed: the total minus the list (saturating: hand-edited rows could
        // make the lists exceed the totals).
        let mut other = all;
        for listed in &ranked {
            other.up_bytes = other.up_bytes.saturating_sub(listed.counters.up_bytes);
            other.down_bytes = other.down_bytes.saturating_sub(listed.counters.down_bytes);
            other.up_packets = other.up_packets.saturating_sub(listed.counters.up_packets);
            other.down_packets = other
                .down_packets
                .saturating_sub(listed.counters.down_packets);
        }
        Ok(TopRemotes {
            remotes: ranked,
            other,
            distinct,
        })
    }

    /// The capture checkpoint stored with the last commit (not the pending one): where the capture
    /// layer resumes after a restart.
    pub fn checkpoint(&self) -> Result<Option<Vec<u8>>, QueryError> {
        Ok(self.shared.read(
            |_| (),
            |conn, ()| {
                conn.query_row(
                    "SELECT data FROM capture_checkpoint WHERE id = 1",
                    [],
                    |r| r.get(0),
                )
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
            },
        )?)
    }
}
