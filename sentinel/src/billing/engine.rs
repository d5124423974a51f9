//! The alert rules, evaluated on a [`Report`] at each tick: each quota threshold and the
//! projection once per cycle, the daily upload limit and the sustained-upload rule once per
//! local day. [`Rules::evaluate`] is pure apart from the sustained-rate tracker it owns; which
//! alerts already fired is passed in (the store keeps it across restarts).
//! Knows nothing of the store, the channels or the clock.

use std::collections::HashSet;

use super::{report::Report, settings::BillingConfig};
use crate::timebucket::DAY;

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// Used crossed a percentage of the quota.
    Quota,
    /// The projection to the cycle's end is over the quota.
    Projection,
    /// Today's upload reached `UPLOAD_DAILY_LIMIT`.
    UploadDaily,
    /// Upload stayed above `UPLOAD_RATE_ALERT`'s rate for its duration.
    UploadRate,
    /// `sentinel notify-test`.
    Test,
}

impl AlertKind {
    /// The `kind` of the webhook payload.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Quota => "quota_threshold",
            AlertKind::Projection => "quota_projection",
            AlertKind::UploadDaily => "upload_daily_limit",
            AlertKind::UploadRate => "upload_sustained_rate",
            AlertKind::Test => "test",
        }
    }

    /// What `threshold` is measured in.
    pub fn threshold_unit(self) -> &'static str {
        match self {
            AlertKind::Quota => "percent",
            AlertKind::Projection | AlertKind::UploadDaily | AlertKind::Test => "bytes",
            AlertKind::UploadRate => "bytes_per_second",
        }
    }
}

/// One alert that fires now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// What it is about.
    pub kind: AlertKind,
    /// Rule name in the store (`quota:80`, `projection`, `upload_daily`, `upload_rate`).
    pub rule: String,
    /// The cycle (`YYYY-MM-DD` of its first day) or day it belongs to.
    pub period: String,
    /// Percent (quota), bytes (projection: the quota; daily limit) or bytes/s (rate).
    pub threshold: u64,
    /// The measured value (bytes, or bytes/s for the rate rule).
    pub value: u64,
    /// How long the rate held (rate rule), seconds.
    pub duration_s: u64,
}

/// The projection alert waits this long into a cycle: a busy first hour says little.
pub const PROJECTION_GRACE: i64 = DAY;

/// The rules and the sustained-upload tracker.
#[derive(Debug, Default)]
pub struct Rules {
    /// The previous tick: (time, cycle key, cycle upload bytes).
    last: Option<(i64, String, u64)>,
    /// Since when the upload rate has been above the threshold.
    above_since: Option<i64>,
    /// The latest measured upload rate, bytes/s.
    pub last_rate: Option<u64>,
}

impl Rules {
    /// The alerts that fire at this report and are not in `fired` ((rule, period) pairs).
    pub fn evaluate(
        &mut self,
        config: &BillingConfig,
        report: &Report,
        fired: &HashSet<(String, String)>,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        let cycle_key = report.cycle.key();
        let day_key = report.today.format("%Y-%m-%d").to_string();
        let f = &report.figures;
        let mut push = |kind, rule: String, period: &str, threshold, value, duration_s| {
            if !fired.contains(&(rule.clone(), period.to_owned())) {
                out.push(Alert {
                    kind,
                    rule,
                    period: period.to_owned(),
                    threshold,
                    value,
                    duration_s,
                });
            }
        };
        if let (Some(quota), Some(percent)) = (f.quota, f.percent) {
            // Only the highest threshold crossed fires when several are crossed at once (a
            // first start late in the cycle): one message, not three. The lower ones are
            // marked too, by the caller, so they never fire later in this cycle.
            if let Some(p) = config
                .thresholds
                .iter()
                .rev()
                .find(|p| percent >= f64::from(**p))
            {
                push(
                    AlertKind::Quota,
                    format!("quota:{p}"),
                    &cycle_key,
                    u64::from(*p),
                    f.used,
                    0,
                );
            }
            if f.projection_exceeds == Some(true)
                && f.seconds_elapsed >= PROJECTION_GRACE
                && f.used < quota
            {
                push(
                    AlertKind::Projection,
                    "projection".into(),
                    &cycle_key,
                    quota,
                    f.projection,
                    0,
                );
            }
        }
        let up_today = report.today_traffic.up.ip_bytes;
        if let Some(limit) = config.upload_daily_limit
            && up_today >= limit
        {
            push(
                AlertKind::UploadDaily,
                "upload_daily".into(),
                &day_key,
                limit,
                up_today,
                0,
            );
        }
        let up_cycle = report.traffic.up.ip_bytes;
        let rate = match &self.last {
            Some((t, key, up)) if *key == cycle_key && report.now > *t && up_cycle >= *up => {
                Some((
                    (up_cycle - up) / u64::try_from(report.now - t).unwrap_or(1),
                    *t,
                ))
            }
            _ => None,
        };
        self.last = Some((report.now, cycle_key.clone(), up_cycle));
        self.last_rate = rate.map(|(r, _)| r);
        if let Some(rule) = config.upload_rate {
            match rate {
                Some((r, since)) if r >= rule.bytes_per_sec => {
                    let start = *self.above_since.get_or_insert(since);
                    let held = report.now - start;
                    if held >= i64::try_from(rule.duration.as_secs()).unwrap_or(i64::MAX) {
                        push(
                            AlertKind::UploadRate,
                            "upload_rate".into(),
                            &day_key,
                            rule.bytes_per_sec,
                            r,
                            held.unsigned_abs(),
                        );
                    }
                }
                _ => self.above_since = None,
            }
        }
        out
    }

    /// Whether the sustained-upload condition holds now (for MQTT and metrics).
    pub fn upload_rate_high(&self) -> bool {
        self.above_since.is_some()
    }
}

/// The quota thresholds at or below `alert`'s, all marked when it fires (see `evaluate`).
pub fn implied_rules(config: &BillingConfig, alert: &Alert) -> Vec<String> {
    match alert.kind {
        AlertKind::Quota => config
            .thresholds
            .iter()
            .filter(|p| u64::from(**p) <= alert.threshold)
            .map(|p| format!("quota:{p}"))
            .collect(),
        _ => vec![alert.rule.clone()],
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::NaiveDate;

    use super::*;
    use crate::{
        billing::{
            cycle::{Cycle, figures},
            units::RateRule,
        },
        store::Traffic,
        timebucket::Zone,
    };

    fn report(now: i64, cycle_up: u64, used: u64, quota: u64) -> Report {
        let zone = Zone::UTC;
        let today = zone.local_date(now);
        let cycle = Cycle::at(zone, 1, now);
        let mut traffic = Traffic::default();
        traffic.up.ip_bytes = cycle_up;
        Report {
            now,
            today,
            cycle,
            traffic,
            figures: figures(&cycle, today, now, used, Some(quota)),
            today_traffic: Traffic::default(),
            previous: Vec::new(),
        }
    }

    fn config() -> BillingConfig {
        BillingConfig {
            quota: Some(1000),
            upload_rate: Some(RateRule {
                bytes_per_sec: 100,
                duration: Duration::from_secs(60),
            }),
            ..BillingConfig::default()
        }
    }

    fn rules_fired(rules: &mut Rules, r: &Report) -> Vec<String> {
        rules
            .evaluate(&config(), r, &HashSet::new())
            .into_iter()
            .map(|a| a.rule)
            .collect()
    }

    #[test]
    fn the_sustained_rule_restarts_when_the_rate_drops() {
        let mut t = NaiveDate::from_ymd_opt(2026, 6, 10)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .map_or(0, |t| t.and_utc().timestamp());
        let mut rules = Rules::default();
        let mut up = 0;
        // 40 s fast, 10 s slow, 40 s fast: never 60 s in a row.
        for (dt, bytes) in [
            (0, 0),
            (20, 4000),
            (20, 4000),
            (10, 10),
            (20, 4000),
            (20, 4000),
        ] {
            t += dt;
            up += bytes;
            let fired = rules_fired(&mut rules, &report(t, up, 0, 1000));
            assert!(
                !fired.contains(&"upload_rate".to_owned()),
                "at +{dt}: {fired:?}"
            );
        }
        // 20 s more at speed makes 60 s.
        let fired = rules_fired(&mut rules, &report(t + 20, up + 4000, 0, 1000));
        assert_eq!(fired, ["upload_rate"]);
        assert!(rules.upload_rate_high());
        assert_eq!(rules.last_rate, Some(200));
    }

    #[test]
    fn the_projection_waits_a_day_into_the_cycle() {
        let start = Cycle::at(Zone::UTC, 1, 1_780_000_000).start_unix;
        let mut rules = Rules::default();
        // Half the quota in the first hour projects far over it, but it is too early to say.
        let early = rules_fired(&mut rules, &report(start + 3600, 0, 500, 1000));
        assert!(early.is_empty(), "{early:?}");
        let later = rules_fired(&mut rules, &report(start + DAY, 0, 500, 1000));
        assert_eq!(later, ["projection"]);
        // Over the quota already: the threshold alert says it, not the projection.
        let over = rules_fired(&mut rules, &report(start + 2 * DAY, 0, 1500, 1000));
        assert_eq!(over, ["quota:100"]);
    }
}
