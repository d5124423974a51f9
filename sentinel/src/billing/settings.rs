//! The billing, alert and notification settings: one clap block flattened into the daemon's
//! [`crate::config::Cli`], validated once into [`BillingConfig`] with errors that name the
//! setting. Knows nothing of the store, HTTP or the channels' wire formats.

use std::time::Duration;

use super::{
    cycle::Basis,
    notify::{ChannelUrl, Lang},
    units::{self, RateRule, Units},
};

/// Billing cycle, quota, upload guard and notification settings (each also an environment
/// variable).
#[derive(Debug, Default, clap::Args)]
pub struct BillingArgs {
    /// Day of the month a billing cycle starts (1-31); a month without that day starts it on its
    /// last day. Cycles follow TZ, DST included.
    #[arg(long, env = "BILLING_DAY", default_value_t = 1)]
    pub billing_day: u8,

    /// Data allowance per cycle, e.g. `1TB`, `500GiB`, `1.5TB` (KB..PB decimal, KiB..PiB binary).
    /// Unset: no quota (the dashboard hides the billing card).
    #[arg(long, env = "QUOTA")]
    pub quota: Option<String>,

    /// What counts against the quota: `total` (up + down), `down`, `up`, or `max` of the two.
    #[arg(long, env = "QUOTA_BASIS", default_value = "total")]
    pub quota_basis: String,

    /// Percentages of the quota that raise an alert, comma-separated (1-1000).
    #[arg(long, env = "QUOTA_ALERTS", default_value = "80,95,100")]
    pub quota_alerts: String,

    /// Bytes added to the current cycle's usage (negative to subtract), to match the ISP's panel,
    /// e.g. `12.5GB` or `-3GiB`.
    #[arg(long, env = "QUOTA_ADJUST", allow_hyphen_values = true)]
    pub quota_adjust: Option<String>,

    /// Upload per local day that raises an alert, e.g. `300GB` (ISPs flag PCDN-like upload).
    #[arg(long, env = "UPLOAD_DAILY_LIMIT")]
    pub upload_daily_limit: Option<String>,

    /// Sustained upload that raises an alert, e.g. `50Mbit/s for 30m`.
    #[arg(long, env = "UPLOAD_RATE_ALERT")]
    pub upload_rate_alert: Option<String>,

    /// Units of every `*_fmt` string and of the dashboard: `si` (1000, kB/MB/GB) or `iec` (1024,
    /// KiB/MiB/GiB). Unset: the seed's format (1024 with KB/MB/GB labels).
    #[arg(long, env = "UNITS")]
    pub units: Option<String>,

    /// A URL that receives each alert as a JSON POST (schema in docs/alerts.md).
    #[arg(long, env = "ALERT_WEBHOOK")]
    pub alert_webhook: Option<String>,

    /// Notification channels, comma-separated URLs: `tgram://TOKEN/CHAT`, `barks://host/KEY`,
    /// `schan://SENDKEY`, `pushplus://TOKEN`, `wecom://KEY`, `dingtalk://TOKEN[/SECRET]`,
    /// `feishu://HOOK_ID[/SECRET]`, `ntfy://host/topic`, `mailto://user:pass@host:port/to@x`
    /// (docs/alerts.md).
    #[arg(long, env = "NOTIFY", value_delimiter = ',', hide_env_values = true)]
    pub notify: Vec<String>,

    /// Language of alert messages: `zh-CN` or `en` (default `en`, the dashboard's fallback).
    #[arg(long, env = "NOTIFY_LANG", default_value = "en")]
    pub notify_lang: String,

    /// MQTT broker for Home Assistant, e.g. `mqtt://user:pass@192.168.1.2:1883` (discovery
    /// prefix `homeassistant`).
    #[arg(long, env = "MQTT_URL", hide_env_values = true)]
    pub mqtt_url: Option<String>,

    /// Seconds between alert evaluations and MQTT updates (5-3600).
    #[arg(long, env = "ALERT_INTERVAL", default_value_t = 30)]
    pub alert_interval: u64,
}

/// A billing setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BillingConfigError {
    /// A size, rate or unit that cannot be read.
    #[error("{setting}: {problem}")]
    Unit {
        /// The setting.
        setting: &'static str,
        /// What was wrong (shown in the message, not chained, so it is said once).
        problem: units::UnitError,
    },
    /// A value outside its range.
    #[error("{setting}: {value:?} {expected}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// The value.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A notification URL that cannot be used.
    #[error("NOTIFY: {0}")]
    Channel(#[from] super::notify::UrlError),
}

/// The validated billing settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillingConfig {
    /// Billing day, 1-31.
    pub billing_day: u8,
    /// Quota in bytes.
    pub quota: Option<u64>,
    /// What counts against it.
    pub basis: Basis,
    /// Alert thresholds in percent, ascending, no duplicates.
    pub thresholds: Vec<u32>,
    /// Bytes added to the current cycle.
    pub adjust: i64,
    /// Daily upload limit in bytes.
    pub upload_daily_limit: Option<u64>,
    /// Sustained upload rule.
    pub upload_rate: Option<RateRule>,
    /// Units of `*_fmt` and the page.
    pub units: Units,
    /// Message language.
    pub lang: Lang,
    /// Every channel (`ALERT_WEBHOOK` first, then `NOTIFY`).
    pub channels: Vec<ChannelUrl>,
    /// MQTT broker.
    pub mqtt: Option<super::mqtt::MqttUrl>,
    /// Evaluation period.
    pub interval: Duration,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            billing_day: 1,
            quota: None,
            basis: Basis::Total,
            thresholds: vec![80, 95, 100],
            adjust: 0,
            upload_daily_limit: None,
            upload_rate: None,
            units: Units::Seed,
            lang: Lang::En,
            channels: Vec::new(),
            mqtt: None,
            interval: Duration::from_secs(30),
        }
    }
}

fn unit<T>(setting: &'static str, r: Result<T, units::UnitError>) -> Result<T, BillingConfigError> {
    r.map_err(|problem| BillingConfigError::Unit { setting, problem })
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `NOTIFY` split at commas, with the pieces that are not URLs put back: a comma inside a URL
/// (`mailto://…/a@x.cn,b@y.cn`) separates that URL's recipients, not channels.
fn join_notify(parts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        match out.last_mut() {
            Some(last) if !part.contains("://") => {
                last.push(',');
                last.push_str(part);
            }
            _ => out.push(part.to_owned()),
        }
    }
    out
}

impl BillingArgs {
    /// Validates every billing setting.
    pub fn validate(&self) -> Result<BillingConfig, BillingConfigError> {
        let invalid = |setting, value: &dyn ToString, expected| BillingConfigError::Invalid {
            setting,
            value: value.to_string(),
            expected,
        };
        if !(1..=31).contains(&self.billing_day) {
            return Err(invalid(
                "BILLING_DAY",
                &self.billing_day,
                "is not a day 1-31",
            ));
        }
        let quota = present(&self.quota)
            .map(|q| unit("QUOTA", units::parse_size(q)))
            .transpose()?;
        if quota == Some(0) {
            return Err(invalid(
                "QUOTA",
                &"0",
                "must be more than 0 (unset it for no quota)",
            ));
        }
        let basis = match self.quota_basis.trim().to_ascii_lowercase().as_str() {
            "total" => Basis::Total,
            "down" => Basis::Down,
            "up" => Basis::Up,
            "max" => Basis::Max,
            other => {
                return Err(invalid(
                    "QUOTA_BASIS",
                    &other,
                    "is not `total`, `down`, `up` or `max`",
                ));
            }
        };
        let mut thresholds = Vec::new();
        for part in self
            .quota_alerts
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let n: u32 = part
                .trim_end_matches('%')
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| invalid("QUOTA_ALERTS", &part, "is not a percentage 1-1000"))?;
            thresholds.push(n);
        }
        thresholds.sort_unstable();
        thresholds.dedup();
        let adjust = present(&self.quota_adjust)
            .map(|a| unit("QUOTA_ADJUST", units::parse_signed_size(a)))
            .transpose()?
            .unwrap_or(0);
        let upload_daily_limit = present(&self.upload_daily_limit)
            .map(|a| unit("UPLOAD_DAILY_LIMIT", units::parse_size(a)))
            .transpose()?;
        if upload_daily_limit == Some(0) {
            return Err(invalid("UPLOAD_DAILY_LIMIT", &"0", "must be more than 0"));
        }
        let upload_rate = present(&self.upload_rate_alert)
            .map(|a| unit("UPLOAD_RATE_ALERT", units::parse_rate_rule(a)))
            .transpose()?;
        let units = unit("UNITS", Units::parse(self.units.as_deref().unwrap_or("")))?;
        let lang = Lang::parse(&self.notify_lang)
            .ok_or_else(|| invalid("NOTIFY_LANG", &self.notify_lang, "is not `zh-CN` or `en`"))?;
        let mut channels = Vec::new();
        if let Some(hook) = present(&self.alert_webhook) {
            channels.push(
                ChannelUrl::webhook(hook).map_err(|e| BillingConfigError::Invalid {
                    setting: "ALERT_WEBHOOK",
                    value: e.to_string(),
                    expected: "must be an http:// or https:// URL",
                })?,
            );
        }
        for entry in join_notify(&self.notify) {
            channels.push(ChannelUrl::parse(&entry)?);
        }
        let mqtt = present(&self.mqtt_url)
            .map(super::mqtt::MqttUrl::parse)
            .transpose()
            .map_err(|e| BillingConfigError::Invalid {
                setting: "MQTT_URL",
                value: e,
                expected: "must be mqtt://[user:pass@]host[:port]",
            })?;
        if !(5..=3600).contains(&self.alert_interval) {
            return Err(invalid(
                "ALERT_INTERVAL",
                &self.alert_interval,
                "is outside 5..=3600",
            ));
        }
        Ok(BillingConfig {
            billing_day: self.billing_day,
            quota,
            basis,
            thresholds,
            adjust,
            upload_daily_limit,
            upload_rate,
            units,
            lang,
            channels,
            mqtt,
            interval: Duration::from_secs(self.alert_interval),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        billing: BillingArgs,
    }

    fn parse(args: &[&str]) -> Result<BillingConfig, BillingConfigError> {
        let mut argv = vec!["sentinel"];
        argv.extend_from_slice(args);
        Wrap::try_parse_from(argv)
            .expect("clap accepts")
            .billing
            .validate()
    }

    #[test]
    fn defaults_and_values() {
        let c = parse(&[]).expect("defaults");
        assert_eq!(c, BillingConfig::default());
        let c = parse(&[
            "--billing-day",
            "31",
            "--quota",
            "1.5TB",
            "--quota-basis",
            "MAX",
            "--quota-alerts",
            "100, 50%,50",
            "--quota-adjust",
            "-2GB",
            "--upload-daily-limit",
            "300GB",
            "--upload-rate-alert",
            "50Mbit/s for 30m",
            "--units",
            "iec",
            "--notify-lang",
            "zh-CN",
        ])
        .expect("valid");
        assert_eq!(c.billing_day, 31);
        assert_eq!(c.quota, Some(1_500_000_000_000));
        assert_eq!(c.basis, Basis::Max);
        assert_eq!(c.thresholds, vec![50, 100]);
        assert_eq!(c.adjust, -2_000_000_000);
        assert_eq!(c.upload_daily_limit, Some(300_000_000_000));
        assert_eq!(c.upload_rate.map(|r| r.bytes_per_sec), Some(6_250_000));
        assert_eq!((c.units, c.lang), (Units::Iec, Lang::Zh));
        let c = parse(&[
            "--notify",
            "mailtos://u:p@smtp.example.com/a@x.cn,b@y.cn,ntfy://nas,schan://K",
        ])
        .expect("valid");
        let names: Vec<String> = c.channels.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["email", "ntfy", "serverchan"]);
        match &c.channels[0] {
            ChannelUrl::Smtp(t) => assert_eq!(t.to, ["a@x.cn", "b@y.cn"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (args, setting) in [
            (&["--billing-day", "0"][..], "BILLING_DAY"),
            (&["--billing-day", "32"], "BILLING_DAY"),
            (&["--quota", "lots"], "QUOTA"),
            (&["--quota", "0GB"], "QUOTA"),
            (&["--quota-basis", "sum"], "QUOTA_BASIS"),
            (&["--quota-alerts", "80,abc"], "QUOTA_ALERTS"),
            (&["--quota-alerts", "0"], "QUOTA_ALERTS"),
            (&["--quota-adjust", "1.2.3GB"], "QUOTA_ADJUST"),
            (
                &["--upload-daily-limit", "300 parsecs"],
                "UPLOAD_DAILY_LIMIT",
            ),
            (&["--upload-rate-alert", "fast"], "UPLOAD_RATE_ALERT"),
            (&["--units", "metric"], "UNITS"),
            (&["--notify-lang", "fr"], "NOTIFY_LANG"),
            (&["--alert-webhook", "ftp://x"], "ALERT_WEBHOOK"),
            (&["--notify", "tgram://onlytoken"], "NOTIFY"),
            (&["--notify", "unknown://x"], "NOTIFY"),
            (&["--mqtt-url", "http://broker"], "MQTT_URL"),
            (&["--alert-interval", "1"], "ALERT_INTERVAL"),
        ] {
            let err = parse(args).expect_err("rejected");
            assert!(err.to_string().contains(setting), "{args:?}: {err}");
        }
    }
}
