//! Local time for the hourly history: the zone from `TZ` (an IANA name resolved from the tz database
//! embedded by `chrono-tz`) and the rules that put an instant into a local hour, day, month or year.
//!
//! An *hour slot* is the local clock hour that contains an instant, identified by its UTC start and
//! its UTC offset. Its *label* is the local wall-clock time of its start (`YYYY-MM-DD HH:00:00`).
//! Labels repeat on the DST fall-back day (01:00 EDT and 01:00 EST are two slots with one label and
//! two offsets), a skipped hour has no slot, and zones with :30 and :45 offsets get slots that start
//! at :30 or :45 UTC, so local days are exact everywhere.
//!
//! This module knows nothing of SQLite, the network or the wall clock: every instant is passed in
//! as Unix seconds.

use std::{fmt, str::FromStr};

use chrono::{
    Datelike as _, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset as _, TimeZone as _,
    Timelike as _,
};
use chrono_tz::Tz;

/// Seconds in an hour.
pub const HOUR: i64 = 3600;
/// Seconds in a day of wall-clock time.
pub const DAY: i64 = 86_400;
/// Day number of 1970-01-01 counted from 0001-01-01 (chrono's `num_days_from_ce`).
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// `TZ` is not a zone of the embedded tz database.
#[derive(Debug, thiserror::Error)]
#[error(
    "TZ: {name:?} is not an IANA time zone name of the embedded tz database (such as Asia/Shanghai, \
     America/New_York or UTC)"
)]
pub struct ZoneError {
    /// The rejected value.
    pub name: String,
}

/// An IANA time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone {
    tz: Tz,
}

impl Zone {
    /// UTC.
    pub const UTC: Zone = Zone { tz: Tz::UTC };

    /// Resolves an IANA name. A leading `:` (allowed by POSIX `TZ`) is ignored; POSIX rule strings
    /// such as `CST-8` are refused, because they carry no history of DST rules.
    pub fn parse(name: &str) -> Result<Zone, ZoneError> {
        let trimmed = name.trim();
        let bare = trimmed.strip_prefix(':').unwrap_or(trimmed);
        Tz::from_str(bare)
            .map(|tz| Zone { tz })
            .map_err(|_| ZoneError {
                name: name.to_owned(),
            })
    }

    /// The zone's IANA name.
    pub fn name(&self) -> &'static str {
        self.tz.name()
    }

    /// The UTC offset in force at `unix`, in seconds east of UTC.
    pub fn offset_at(&self, unix: i64) -> i32 {
        match self.tz.timestamp_opt(unix, 0) {
            LocalResult::Single(t) => t.offset().fix().local_minus_utc(),
            // Out of chrono's range (±262,000 years): no zone rules apply there.
            _ => 0,
        }
    }

    /// Local wall-clock time of `unix`, as seconds since 1970-01-01 00:00 of the local calendar.
    pub fn local_seconds(&self, unix: i64) -> i64 {
        unix + i64::from(self.offset_at(unix))
    }

    /// The local hour that contains `unix`.
    pub fn slot(&self, unix: i64) -> HourSlot {
        let offset = self.offset_at(unix);
        let local = unix + i64::from(offset);
        let into_hour = local.rem_euclid(HOUR);
        HourSlot {
            start: unix - into_hour,
            offset,
        }
    }

    /// The local date of `unix`.
    pub fn local_date(&self, unix: i64) -> NaiveDate {
        date_of_local_seconds(self.local_seconds(unix))
    }

    /// The first instant whose local date is `day` or later. On a day that begins in a DST gap
    /// (clocks jump over midnight) that is the end of the gap; on a day skipped entirely (Pacific/Apia
    /// 2011-12-30) it is the start of the next day.
    pub fn day_start(&self, day: NaiveDate) -> i64 {
        let midnight = local_seconds_of(day.and_time(NaiveTime::MIN));
        // Candidates: local midnight under every offset in force within two days of it; the answer is
        // the smallest instant at or after which the local date is >= day.
        let mut best: Option<i64> = None;
        for guess in [midnight - 2 * DAY, midnight - DAY, midnight, midnight + DAY] {
            let offset = i64::from(self.offset_at(guess));
            let t = midnight - offset;
            if self.local_seconds(t) >= midnight && best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        }
        // When midnight falls inside a gap the best candidate lies after the gap's end; the day
        // starts at the end of the gap, found by bisection (offsets jump by at most a day).
        let mut hi = best.unwrap_or(midnight - i64::from(self.offset_at(midnight)) + 2 * DAY);
        let mut lo = hi - DAY - HOUR;
        if self.local_seconds(lo) >= midnight {
            return hi;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.local_seconds(mid) >= midnight {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// Every local hour slot that intersects `[from, to)` (UTC seconds), in time order, each once.
    pub fn slots_between(&self, from: i64, to: i64) -> Vec<HourSlot> {
        let mut out: Vec<HourSlot> = Vec::new();
        let mut t = from;
        while t < to {
            let slot = self.slot(t);
            if out.last() != Some(&slot) {
                out.push(slot);
            }
            let end = slot.start + HOUR;
            t = self.first_offset_change(t, end).unwrap_or(end).max(t + 1);
        }
        out
    }

    /// The first instant in `(from, to)` whose offset differs from the offset at `from`, assuming at
    /// most one change in the interval (true of the tz database for intervals of one hour).
    fn first_offset_change(&self, from: i64, to: i64) -> Option<i64> {
        let at_from = self.offset_at(from);
        if to - from < 2 || self.offset_at(to - 1) == at_from {
            return None;
        }
        let (mut lo, mut hi) = (from, to - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.offset_at(mid) == at_from {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(hi)
    }

    /// The UTC instants of the local hour `label` (local seconds, hour-aligned): none in a DST gap,
    /// two on the fall-back hour (earlier first).
    pub fn resolve_label(&self, label: i64) -> LabelResolution {
        let Some(naive) = naive_of_local_seconds(label) else {
            return LabelResolution::Gap { offset_before: 0 };
        };
        match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => LabelResolution::Single(HourSlot {
                start: t.timestamp(),
                offset: t.offset().fix().local_minus_utc(),
            }),
            LocalResult::Ambiguous(a, b) => LabelResolution::Ambiguous(
                HourSlot {
                    start: a.timestamp(),
                    offset: a.offset().fix().local_minus_utc(),
                },
                HourSlot {
                    start: b.timestamp(),
                    offset: b.offset().fix().local_minus_utc(),
                },
            ),
            LocalResult::None => LabelResolution::Gap {
                // The offset in force just before the gap: a day earlier is safely before it.
                offset_before: self.offset_at(label - i64::from(self.offset_at(label)) - DAY / 2),
            },
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a local hour label falls in a zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelResolution {
    /// An ordinary hour.
    Single(HourSlot),
    /// The repeated hour of a fall-back: earlier, later.
    Ambiguous(HourSlot, HourSlot),
    /// A skipped hour; the offset in force before the gap.
    Gap {
        /// Seconds east of UTC before the gap.
        offset_before: i32,
    },
}

/// One local clock hour: the bucket of the hourly history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourSlot {
    /// Unix seconds at which the hour began (the UTC anchor).
    pub start: i64,
    /// Seconds east of UTC during the hour.
    pub offset: i32,
}

impl HourSlot {
    /// Local wall-clock time of the hour's start, in local seconds since 1970-01-01 (hour-aligned).
    pub fn label(&self) -> i64 {
        floor_hour(self.start + i64::from(self.offset))
    }
}

/// `t` rounded down to a whole hour.
pub fn floor_hour(t: i64) -> i64 {
    t - t.rem_euclid(HOUR)
}

/// The day number (days since 1970-01-01) of local seconds.
pub fn day_of_local_seconds(local: i64) -> i64 {
    local.div_euclid(DAY)
}

/// The date of a day number (days since 1970-01-01); out-of-range numbers are clamped.
pub fn date_of_day(day: i64) -> NaiveDate {
    let days = day.saturating_add(i64::from(UNIX_EPOCH_DAYS_FROM_CE));
    let days = i32::try_from(days).unwrap_or(if day < 0 { i32::MIN } else { i32::MAX });
    NaiveDate::from_num_days_from_ce_opt(days).unwrap_or(if day < 0 {
        NaiveDate::MIN
    } else {
        NaiveDate::MAX
    })
}

/// The day number (days since 1970-01-01) of a date.
pub fn day_of_date(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce()) - i64::from(UNIX_EPOCH_DAYS_FROM_CE)
}

/// The date of local seconds.
pub fn date_of_local_seconds(local: i64) -> NaiveDate {
    date_of_day(day_of_local_seconds(local))
}

/// Local seconds of a naive local date-time.
pub fn local_seconds_of(naive: NaiveDateTime) -> i64 {
    naive.and_utc().timestamp()
}

/// The naive local date-time of local seconds, if chrono can represent it.
pub fn naive_of_local_seconds(local: i64) -> Option<NaiveDateTime> {
    chrono::DateTime::from_timestamp(local, 0).map(|t| t.naive_utc())
}

/// The seed's hour label, `YYYY-MM-DD HH:00:00`, of hour-aligned local seconds.
pub fn hour_label(label: i64) -> String {
    let date = date_of_local_seconds(label);
    let hour = label.rem_euclid(DAY) / HOUR;
    format!(
        "{:04}-{:02}-{:02} {hour:02}:00:00",
        date.year(),
        date.month(),
        date.day()
    )
}

/// Parses a seed hour label (`YYYY-MM-DD HH:00:00`, exactly) into local seconds.
pub fn parse_hour_label(text: &str) -> Option<i64> {
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
    let canonical = text.len() == 19 && naive.minute() == 0 && naive.second() == 0;
    canonical.then(|| local_seconds_of(naive))
}

/// `YYYY-MM-DD HH:MM:SS` of `unix` in `zone` (the seed's `created_at`/`updated_at` format).
pub fn local_timestamp_text(zone: Zone, unix: i64) -> String {
    match naive_of_local_seconds(zone.local_seconds(unix)) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => String::new(),
    }
}

/// The first day of the month of `date`.
pub fn month_start(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// The first day of the month `months` after (or before) the month of `date`, clamped to chrono's
/// range.
pub fn add_months(date: NaiveDate, months: i32) -> NaiveDate {
    let first = month_start(date);
    let shifted = if months >= 0 {
        first.checked_add_months(chrono::Months::new(months.unsigned_abs()))
    } else {
        first.checked_sub_months(chrono::Months::new(months.unsigned_abs()))
    };
    shifted.unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> Zone {
        Zone::parse(name).expect("zone")
    }

    fn utc(text: &str) -> i64 {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .expect("test time")
            .and_utc()
            .timestamp()
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().expect("test date")
    }

    fn labels_of_day(z: Zone, d: &str) -> Vec<String> {
        let day = date(d);
        let succ = day.succ_opt().expect("next day");
        z.slots_between(z.day_start(day), z.day_start(succ))
            .iter()
            .map(|s| hour_label(s.label()))
            .collect()
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(zone("Asia/Shanghai").name(), "Asia/Shanghai");
        assert_eq!(zone(":UTC").name(), "UTC");
        for bad in ["Foo/Bar", "", "CST-8", "asia/shanghai"] {
            let err = Zone::parse(bad).expect_err("refused");
            assert!(err.to_string().contains("IANA"), "{err}");
        }
    }

    #[test]
    fn fall_back_day_has_25_hours_with_a_repeated_label() {
        let ny = zone("America/New_York");
        let labels = labels_of_day(ny, "2024-11-03");
        assert_eq!(labels.len(), 25);
        assert_eq!(labels[1], "2024-11-03 01:00:00");
        assert_eq!(labels[2], "2024-11-03 01:00:00");
        assert_eq!(labels[24], "2024-11-03 23:00:00");
        // 01:30 EDT and 01:30 EST: two slots, one label.
        let (a, b) = (
            ny.slot(utc("2024-11-03 05:30:00")),
            ny.slot(utc("2024-11-03 06:30:00")),
        );
        assert_ne!(a, b);
        assert_eq!(a.label(), b.label());
        assert_eq!((a.offset, b.offset), (-4 * 3600, -5 * 3600));
    }

    #[test]
    fn spring_forward_day_has_23_hours() {
        let labels = labels_of_day(zone("America/New_York"), "2024-03-10");
        assert_eq!(labels.len(), 23);
        assert!(!labels.contains(&"2024-03-10 02:00:00".to_owned()));
        assert_eq!(labels[2], "2024-03-10 03:00:00");
    }

    #[test]
    fn half_and_quarter_hour_zones_have_exact_days() {
        for (name, offset) in [("Asia/Kolkata", 19_800), ("Asia/Kathmandu", 20_700)] {
            let z = zone(name);
            let start = z.day_start(date("2025-03-15"));
            assert_eq!(start, utc("2025-03-15 00:00:00") - offset, "{name}");
            let slots = z.slots_between(start, z.day_start(date("2025-03-16")));
            assert_eq!(slots.len(), 24, "{name}");
            assert!(
                slots.iter().all(|s| s.start.rem_euclid(HOUR) != 0),
                "{name}"
            );
            // The last second of the local day and the first of the next one.
            assert_eq!(z.local_date(start - 1), date("2025-03-14"));
            assert_eq!(z.local_date(start), date("2025-03-15"));
        }
    }

    #[test]
    fn a_thirty_minute_dst_shift_is_followed() {
        // Australia/Lord_Howe: +10:30 standard, +11 DST, changes by 30 minutes.
        let z = zone("Australia/Lord_Howe");
        let day = date("2025-04-06"); // DST ends at 02:00 local (back to 01:30).
        let slots = z.slots_between(z.day_start(day), z.day_start(date("2025-04-07")));
        let total: i64 = slots
            .windows(2)
            .map(|w| w[1].start - w[0].start)
            .sum::<i64>()
            + (z.day_start(date("2025-04-07")) - slots.last().expect("slot").start);
        assert_eq!(total, 24 * HOUR + HOUR / 2);
    }

    #[test]
    fn days_starting_in_a_gap_or_skipped_entirely() {
        // America/Santiago springs forward at 24:00 -> 01:00 (2024-09-08 starts at 01:00).
        let z = zone("America/Santiago");
        let start = z.day_start(date("2024-09-08"));
        assert_eq!(hour_label(z.slot(start).label()), "2024-09-08 01:00:00");
        assert_eq!(z.local_date(start - 1), date("2024-09-07"));
        // Pacific/Apia skipped 2011-12-30.
        let apia = zone("Pacific/Apia");
        assert_eq!(
            apia.day_start(date("2011-12-30")),
            apia.day_start(date("2011-12-31"))
        );
    }

    #[test]
    fn labels_resolve_back_to_slots() {
        let ny = zone("America/New_York");
        let label = |t: &str| parse_hour_label(t).expect("label");
        assert!(matches!(
            ny.resolve_label(label("2024-11-03 01:00:00")),
            LabelResolution::Ambiguous(a, b) if a.start + 3600 == b.start
        ));
        assert_eq!(
            ny.resolve_label(label("2024-03-10 02:00:00")),
            LabelResolution::Gap {
                offset_before: -5 * 3600
            }
        );
        assert_eq!(
            ny.resolve_label(label("2024-07-01 12:00:00")),
            LabelResolution::Single(ny.slot(utc("2024-07-01 16:00:00")))
        );
    }

    #[test]
    fn seed_labels_parse_strictly() {
        assert_eq!(
            parse_hour_label("2025-03-15 14:00:00"),
            Some(utc("2025-03-15 14:00:00"))
        );
        for bad in [
            "2025-03-15 14:30:00",
            "2025-3-15 14:00:00",
            "2025-03-15",
            "garbage",
            "2025-02-30 00:00:00",
        ] {
            assert_eq!(parse_hour_label(bad), None, "{bad}");
        }
        assert_eq!(
            hour_label(utc("1969-12-31 23:00:00")),
            "1969-12-31 23:00:00"
        );
    }

    #[test]
    fn months_shift_across_years() {
        assert_eq!(add_months(date("2025-03-15"), -11), date("2024-04-01"));
        assert_eq!(add_months(date("2024-12-31"), 1), date("2025-01-01"));
        assert_eq!(day_of_date(date("1970-01-01")), 0);
        assert_eq!(date_of_day(-1), date("1969-12-31"));
    }
}
