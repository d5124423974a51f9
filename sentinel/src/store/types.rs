//! The query results and errors the API formats: plain data, no SQLite, no JSON.

use std::net::IpAddr;

use chrono::{NaiveDate, NaiveDateTime};
use sentinel_common::abi::RemoteCounters;

use super::{DbError, pending::Traffic};

/// A request outside what the store answers (the API maps it to 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// `start` after `end`.
    #[error("start {start} is after end {end}")]
    StartAfterEnd {
        /// First day asked for.
        start: NaiveDate,
        /// Last day asked for.
        end: NaiveDate,
    },
    /// Too many days for the granularity.
    #[error("{days} days is too long a range for {what} (at most {max})")]
    TooLong {
        /// The query.
        what: &'static str,
        /// Days asked for.
        days: u64,
        /// The limit.
        max: u64,
    },
    /// A date outside 1970-01-01..9999-12-30.
    #[error("{date} is outside 1970-01-01..9999-12-30")]
    DateOutOfRange {
        /// The date.
        date: NaiveDate,
    },
    /// A top-list size of 0 or beyond the limit.
    #[error("limit {limit} is outside 1..={max}")]
    Limit {
        /// Asked for.
        limit: usize,
        /// The limit.
        max: usize,
    },
}

/// A query that failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request is out of bounds (HTTP 400).
    #[error(transparent)]
    Range(#[from] RangeError),
    /// The database failed (HTTP 500).
    #[error("reading the traffic database failed")]
    Db(#[from] DbError),
}

/// Granularity of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// Local clock hours.
    Hour,
    /// Local days.
    Day,
    /// Local calendar months.
    Month,
}

/// The period of one point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// A local hour: its wall-clock start and its UTC offset (two points share a label on the
    /// fall-back day and differ by offset).
    Hour {
        /// Local start, `HH:00`.
        local: NaiveDateTime,
        /// Seconds east of UTC.
        utc_offset: i32,
    },
    /// A local day.
    Day(NaiveDate),
    /// A month, by its first day.
    Month(NaiveDate),
}

impl Period {
    /// The seed's label: `YYYY-MM-DD HH:00:00`, `YYYY-MM-DD` or `YYYY-MM`.
    pub fn label(&self) -> String {
        match self {
            Period::Hour { local, .. } => local.format("%Y-%m-%d %H:00:00").to_string(),
            Period::Day(d) => d.format("%Y-%m-%d").to_string(),
            Period::Month(d) => d.format("%Y-%m").to_string(),
        }
    }
}

/// One point of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// The period.
    pub period: Period,
    /// Unix seconds of the period's first instant (within the range).
    pub start: i64,
    /// Its traffic, unflushed data included.
    pub traffic: Traffic,
}

/// A zero-filled series and its total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    /// Points in time order.
    pub points: Vec<Point>,
    /// The sum of the points.
    pub total: Traffic,
}

/// Today, this month and this year (local, whole periods).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The local date of `now`.
    pub today_date: NaiveDate,
    /// Today.
    pub today: Traffic,
    /// This calendar month.
    pub month: Traffic,
    /// This calendar year.
    pub year: Traffic,
}

/// One remote's traffic over a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteTotal {
    /// The remote address.
    pub ip: IpAddr,
    /// Its traffic.
    pub counters: RemoteCounters,
}

/// The top remotes of a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopRemotes {
    /// By total bytes, descending (ties by address).
    pub remotes: Vec<RemoteTotal>,
    /// Everything else: remotes beyond the list, and those folded into per-day "other" totals.
    pub other: RemoteCounters,
    /// Distinct remotes known individually in the range.
    pub distinct: usize,
}
