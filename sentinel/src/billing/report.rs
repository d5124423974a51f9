//! The billing figures at one instant, from the hourly history with unflushed counts merged (the
//! store does that): the current cycle, today's upload and the previous cycles' totals. Past
//! cycles are always recomputed from the days, so a changed `BILLING_DAY` regroups them.
//! Knows the store's query interface, not SQLite, HTTP or the channels.

use chrono::{Days, NaiveDate};

use super::{
    cycle::{Cycle, Figures, figures},
    settings::BillingConfig,
};
use crate::store::{Granularity, QueryError, Store, Traffic};

/// Previous cycles reported.
pub const PREVIOUS_CYCLES: usize = 12;

/// One past cycle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PastCycle {
    /// The cycle.
    pub cycle: Cycle,
    /// Its traffic.
    pub traffic: Traffic,
    /// Bytes counted against the quota (no adjustment: that applies to the current cycle).
    pub used: u64,
}

/// Everything billing-related at `now`.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// When.
    pub now: i64,
    /// Local date at `now`.
    pub today: NaiveDate,
    /// The current cycle.
    pub cycle: Cycle,
    /// Its traffic so far.
    pub traffic: Traffic,
    /// Quota arithmetic.
    pub figures: Figures,
    /// Today's traffic.
    pub today_traffic: Traffic,
    /// Previous cycles, newest first.
    pub previous: Vec<PastCycle>,
}

/// `used` with the signed adjustment applied, never below zero.
fn adjusted(used: u64, adjust: i64) -> u64 {
    if adjust >= 0 {
        used.saturating_add(adjust.unsigned_abs())
    } else {
        used.saturating_sub(adjust.unsigned_abs())
    }
}

/// Builds the report (blocking: call it off the async runtime).
pub fn build(store: &Store, config: &BillingConfig, now: i64) -> Result<Report, QueryError> {
    let zone = store.zone();
    let today = zone.local_date(now);
    let cycle = Cycle::at(zone, config.billing_day, now);
    let mut cycles = vec![cycle];
    for _ in 0..PREVIOUS_CYCLES {
        let before = cycles
            .last()
            .map_or(cycle, |c| c.previous(zone, config.billing_day));
        cycles.push(before);
    }
    let first = cycles.last().map_or(cycle.start, |c| c.start);
    let last = cycle
        .end
        .checked_sub_days(Days::new(1))
        .unwrap_or(cycle.end);
    let series = store.series(first, last, Granularity::Day)?;
    let mut totals = vec![Traffic::default(); cycles.len()];
    let mut today_traffic = Traffic::default();
    for point in &series.points {
        let crate::store::Period::Day(day) = point.period else {
            continue;
        };
        if day == today {
            today_traffic.add(&point.traffic);
        }
        if let Some(i) = cycles.iter().position(|c| c.start <= day && day < c.end) {
            totals[i].add(&point.traffic);
        }
    }
    let traffic = totals[0];
    let used = adjusted(
        config
            .basis
            .used(traffic.up.ip_bytes, traffic.down.ip_bytes),
        config.adjust,
    );
    let previous = cycles
        .iter()
        .zip(&totals)
        .skip(1)
        .map(|(c, t)| PastCycle {
            cycle: *c,
            traffic: *t,
            used: config.basis.used(t.up.ip_bytes, t.down.ip_bytes),
        })
        .collect();
    Ok(Report {
        now,
        today,
        cycle,
        traffic,
        figures: figures(&cycle, today, now, used, config.quota),
        today_traffic,
        previous,
    })
}

/// A report with no traffic (for the test message, which needs no database).
pub fn empty(config: &BillingConfig, zone: crate::timebucket::Zone, now: i64) -> Report {
    let today = zone.local_date(now);
    let cycle = Cycle::at(zone, config.billing_day, now);
    Report {
        now,
        today,
        cycle,
        traffic: Traffic::default(),
        figures: figures(&cycle, today, now, 0, config.quota),
        today_traffic: Traffic::default(),
        previous: Vec::new(),
    }
}
