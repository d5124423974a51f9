//! Billing-cycle arithmetic, pure: which cycle contains a day, how much of it is left, the
//! projection to its end and the daily budget that stays within the quota.
//!
//! A cycle starts at local midnight of the billing day (1-31) and ends where the next one starts.
//! A month without that day starts its cycle on its last day (billing day 31: 31 Jan, 28 or 29
//! Feb, 31 Mar, 30 Apr...), so no month is skipped or doubled. Instants come from
//! [`Zone::day_start`], so a cycle across a DST change is an hour shorter or longer, exactly.
//!
//! Knows nothing of the store, the clock or HTTP: every instant and count is passed in.

use chrono::{Datelike as _, NaiveDate};

use crate::timebucket::{DAY, HOUR, Zone, add_months};

/// Which counts the quota applies to (ISPs differ).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Basis {
    /// Upload plus download.
    #[default]
    Total,
    /// Download only.
    Down,
    /// Upload only.
    Up,
    /// The larger of the two.
    Max,
}

impl Basis {
    /// The bytes that count against the quota.
    pub fn used(self, up: u64, down: u64) -> u64 {
        match self {
            Basis::Total => up.saturating_add(down),
            Basis::Down => down,
            Basis::Up => up,
            Basis::Max => up.max(down),
        }
    }

    /// The setting's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Basis::Total => "total",
            Basis::Down => "down",
            Basis::Up => "up",
            Basis::Max => "max",
        }
    }
}

/// One billing cycle: local days `start..end` (end exclusive) and their UTC bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// First local day.
    pub start: NaiveDate,
    /// First local day of the next cycle.
    pub end: NaiveDate,
    /// Unix seconds of the cycle's start (local midnight of `start`).
    pub start_unix: i64,
    /// Unix seconds of the next cycle's start.
    pub end_unix: i64,
}

/// The billing day in `month` (of `date`): `billing_day`, or the month's last day if shorter.
fn start_in_month(date: NaiveDate, billing_day: u8) -> NaiveDate {
    let first = add_months(date, 0);
    let last = add_months(date, 1).pred_opt().unwrap_or(first);
    let day = u32::from(billing_day).clamp(1, last.day());
    first.with_day(day).unwrap_or(first)
}

impl Cycle {
    /// The cycle containing the local day `date`.
    pub fn containing(zone: Zone, billing_day: u8, date: NaiveDate) -> Cycle {
        let this_month = start_in_month(date, billing_day);
        let start = if date >= this_month {
            this_month
        } else {
            start_in_month(add_months(date, -1), billing_day)
        };
        let end = start_in_month(add_months(start, 1), billing_day);
        Cycle {
            start,
            end,
            start_unix: zone.day_start(start),
            end_unix: zone.day_start(end),
        }
    }

    /// The cycle containing the instant `now`.
    pub fn at(zone: Zone, billing_day: u8, now: i64) -> Cycle {
        Cycle::containing(zone, billing_day, zone.local_date(now))
    }

    /// The cycle before this one.
    pub fn previous(&self, zone: Zone, billing_day: u8) -> Cycle {
        let day_before = self.start.pred_opt().unwrap_or(self.start);
        Cycle::containing(zone, billing_day, day_before)
    }

    /// Length in seconds (a day more or less than the calendar days across DST changes).
    pub fn seconds(&self) -> i64 {
        (self.end_unix - self.start_unix).max(1)
    }

    /// A stable name for alert bookkeeping: the first day, `YYYY-MM-DD`.
    pub fn key(&self) -> String {
        self.start.format("%Y-%m-%d").to_string()
    }
}

/// What the dashboard, the API and the alerts show about the current cycle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    /// Bytes counted against the quota (adjustment included).
    pub used: u64,
    /// The quota, when set.
    pub quota: Option<u64>,
    /// Quota minus used, at least 0.
    pub remaining: Option<u64>,
    /// Used as a percentage of the quota.
    pub percent: Option<f64>,
    /// Used per 24 h of the cycle so far.
    pub daily_average: u64,
    /// Used extrapolated at the cycle's average rate to its end.
    pub projection: u64,
    /// The projection is over the quota.
    pub projection_exceeds: Option<bool>,
    /// Remaining divided by the local days left (today included).
    pub safe_daily_budget: Option<u64>,
    /// Local days left, today included.
    pub days_left: u32,
    /// Seconds until the cycle ends.
    pub seconds_left: i64,
    /// Seconds of the cycle elapsed.
    pub seconds_elapsed: i64,
}

/// Computes the figures of `cycle` at `now` (local day `today`) with `used` bytes so far.
///
/// The average is taken over the elapsed time but never less than an hour, so the first minutes
/// of a cycle do not project a few bytes into petabytes.
pub fn figures(
    cycle: &Cycle,
    today: NaiveDate,
    now: i64,
    used: u64,
    quota: Option<u64>,
) -> Figures {
    let elapsed = (now - cycle.start_unix).clamp(0, cycle.seconds());
    let basis = elapsed.max(HOUR.min(cycle.seconds()));
    let rate = |span: i64| -> u64 {
        let v = u128::from(used) * u128::try_from(span).unwrap_or(0)
            / u128::try_from(basis).unwrap_or(1);
        u64::try_from(v).unwrap_or(u64::MAX)
    };
    let projection = rate(cycle.seconds()).max(used);
    let days_left = u32::try_from((cycle.end - today).num_days().max(1)).unwrap_or(1);
    let remaining = quota.map(|q| q.saturating_sub(used));
    Figures {
        used,
        quota,
        remaining,
        percent: quota.map(|q| {
            if q == 0 {
                100.0
            } else {
                used as f64 * 100.0 / q as f64
            }
        }),
        daily_average: rate(DAY),
        projection,
        projection_exceeds: quota.map(|q| projection > q),
        safe_daily_budget: remaining.map(|r| r / u64::from(days_left)),
        days_left,
        seconds_left: (cycle.end_unix - now).max(0),
        seconds_elapsed: elapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> Zone {
        Zone::parse(name).expect("zone")
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("date")
    }

    fn span(zone: Zone, day: u8, date: NaiveDate) -> (NaiveDate, NaiveDate) {
        let c = Cycle::containing(zone, day, date);
        (c.start, c.end)
    }

    #[test]
    fn short_months_end_their_cycle_on_their_last_day() {
        let utc = Zone::UTC;
        // Billing day 31 across February of a common and of a leap year.
        assert_eq!(
            span(utc, 31, d(2026, 2, 10)),
            (d(2026, 1, 31), d(2026, 2, 28))
        );
        assert_eq!(
            span(utc, 31, d(2026, 2, 28)),
            (d(2026, 2, 28), d(2026, 3, 31))
        );
        assert_eq!(
            span(utc, 31, d(2024, 2, 28)),
            (d(2024, 1, 31), d(2024, 2, 29))
        );
        assert_eq!(
            span(utc, 31, d(2024, 2, 29)),
            (d(2024, 2, 29), d(2024, 3, 31))
        );
        assert_eq!(
            span(utc, 31, d(2026, 4, 30)),
            (d(2026, 4, 30), d(2026, 5, 31))
        );
        assert_eq!(
            span(utc, 31, d(2026, 4, 29)),
            (d(2026, 3, 31), d(2026, 4, 30))
        );
        // 29 and 30.
        assert_eq!(
            span(utc, 29, d(2026, 3, 1)),
            (d(2026, 2, 28), d(2026, 3, 29))
        );
        assert_eq!(
            span(utc, 29, d(2024, 3, 1)),
            (d(2024, 2, 29), d(2024, 3, 29))
        );
        assert_eq!(
            span(utc, 30, d(2026, 2, 27)),
            (d(2026, 1, 30), d(2026, 2, 28))
        );
        assert_eq!(
            span(utc, 30, d(2026, 3, 29)),
            (d(2026, 2, 28), d(2026, 3, 30))
        );
        // 1 is the calendar month; across a year end.
        assert_eq!(
            span(utc, 1, d(2026, 12, 31)),
            (d(2026, 12, 1), d(2027, 1, 1))
        );
        assert_eq!(
            span(utc, 15, d(2027, 1, 3)),
            (d(2026, 12, 15), d(2027, 1, 15))
        );
        // 2100 is not a leap year.
        assert_eq!(
            span(utc, 30, d(2100, 3, 1)),
            (d(2100, 2, 28), d(2100, 3, 30))
        );
    }

    #[test]
    fn consecutive_cycles_tile_the_calendar() {
        for day in 1..=31u8 {
            let mut c = Cycle::containing(Zone::UTC, day, d(2027, 12, 31));
            for _ in 0..60 {
                let p = c.previous(Zone::UTC, day);
                assert_eq!(p.end, c.start, "day {day}");
                assert!(p.start < p.end);
                c = p;
            }
        }
    }

    #[test]
    fn cycles_follow_dst_in_both_directions() {
        let ny = zone("America/New_York");
        // Spring forward on 2026-03-08 02:00: the cycle from the 8th is an hour short.
        let spring = Cycle::containing(ny, 8, d(2026, 3, 20));
        assert_eq!(spring.start_unix, 1_772_946_000); // 2026-03-08 05:00 UTC = 00:00 EST
        assert_eq!(spring.seconds(), 31 * DAY - HOUR);
        // Fall back on 2026-11-01 02:00: the November cycle is an hour long.
        let fall = Cycle::containing(ny, 1, d(2026, 11, 15));
        assert_eq!(fall.seconds(), 30 * DAY + HOUR);
        assert_eq!(fall.start_unix, 1_793_505_600); // 2026-11-01 04:00 UTC = 00:00 EDT
        // A cycle that does not contain a change is whole days.
        assert_eq!(Cycle::containing(ny, 1, d(2026, 6, 2)).seconds(), 30 * DAY);
        // Asia/Shanghai has no DST.
        let sh = Cycle::containing(zone("Asia/Shanghai"), 1, d(2026, 3, 9));
        assert_eq!(sh.start_unix, 1_772_294_400); // 2026-02-28 16:00 UTC
    }

    #[test]
    fn projection_and_budget() {
        let c = Cycle::containing(Zone::UTC, 1, d(2026, 6, 10)); // June: 30 days
        let now = c.start_unix + 10 * DAY;
        let tb = 1_000_000_000_000u64;
        let f = figures(&c, d(2026, 6, 11), now, 400_000_000_000, Some(tb));
        assert_eq!(f.daily_average, 40_000_000_000);
        assert_eq!(f.projection, 1_200_000_000_000);
        assert_eq!(f.projection_exceeds, Some(true));
        assert_eq!(f.remaining, Some(600_000_000_000));
        assert_eq!(f.days_left, 20);
        assert_eq!(f.safe_daily_budget, Some(30_000_000_000));
        assert_eq!(f.seconds_left, 20 * DAY);
        assert!((f.percent.unwrap_or(0.0) - 40.0).abs() < 1e-9);
        // Over the quota: nothing remains, budget 0.
        let over = figures(&c, d(2026, 6, 11), now, 2 * tb, Some(tb));
        assert_eq!((over.remaining, over.safe_daily_budget), (Some(0), Some(0)));
        // No quota: no percentages or budgets, projection still computed.
        let free = figures(&c, d(2026, 6, 11), now, 10, None);
        assert_eq!(
            (free.percent, free.safe_daily_budget, free.projection),
            (None, None, 30)
        );
        // One minute into the cycle the average is taken over an hour.
        let early = figures(&c, d(2026, 6, 1), c.start_unix + 60, 3_600, Some(tb));
        assert_eq!(early.daily_average, 86_400);
        // The last day: one day left.
        let last = figures(&c, d(2026, 6, 30), c.end_unix - 10, 0, Some(tb));
        assert_eq!(last.days_left, 1);
        // An hour-short DST cycle projects over its real length.
        let ny = zone("America/New_York");
        let spring = Cycle::containing(ny, 8, d(2026, 3, 20));
        let f = figures(
            &spring,
            d(2026, 3, 9),
            spring.start_unix + DAY,
            86_400,
            None,
        );
        assert_eq!(f.projection, (31 * DAY - HOUR) as u64);
    }

    #[test]
    fn bases() {
        assert_eq!(Basis::Total.used(3, 4), 7);
        assert_eq!(Basis::Down.used(3, 4), 4);
        assert_eq!(Basis::Up.used(3, 4), 3);
        assert_eq!(Basis::Max.used(5, 4), 5);
        assert_eq!(Basis::Total.used(u64::MAX, 4), u64::MAX);
    }
}
