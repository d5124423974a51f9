//! Billing cycles, quotas, the upload guard and alerts.
//!
//! - [`cycle`]: the pure cycle arithmetic (billing day clamped to the month's end, DST,
//!   projection, safe daily budget); [`units`]: sizes and rates as users write them.
//! - [`settings`]: the settings block of the command line, validated into [`BillingConfig`].
//! - [`report`]: the figures at an instant, from the store's history (unflushed counts merged).
//! - [`engine`]: the alert rules; [`Engine`] evaluates them on its own thread every
//!   `ALERT_INTERVAL`, records each alert in the store before sending it (so nothing repeats
//!   across restarts), logs it and hands it to [`notify`], whose per-channel threads deliver with
//!   retries. [`mqtt`] publishes the figures to Home Assistant.
//!
//! Nothing here runs on the async runtime or touches the capture path: a slow database, channel
//! or broker delays only this module's threads. Knows the store's interface, not SQLite; knows
//! nothing of axum.

pub mod cycle;
pub mod engine;
pub mod message;
pub mod mqtt;
pub mod notify;
pub mod report;
pub mod settings;
pub mod units;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError, RwLock, mpsc},
    thread::JoinHandle,
    time::Duration,
};

pub use self::settings::{BillingArgs, BillingConfig, BillingConfigError};
use self::{
    engine::{Alert, AlertKind, Rules},
    notify::{Notifier, RetryPolicy},
    report::Report,
};
use crate::{
    meter::SpeedRing,
    store::{Clock, Store},
};

/// Alert conditions in force, for MQTT and the logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertStates {
    /// The highest quota threshold crossed in this cycle (percent).
    pub quota_threshold: Option<u32>,
    /// The projection is over the quota.
    pub projection_over: bool,
    /// Today's upload is at or over the daily limit.
    pub upload_daily_over: bool,
    /// Upload is above the sustained-rate threshold.
    pub upload_rate_high: bool,
}

/// What the engine learned at its last tick.
#[derive(Clone, Debug, Default)]
pub struct EngineStatus {
    /// The last report.
    pub report: Option<Report>,
    /// Conditions in force.
    pub states: AlertStates,
    /// Alerts fired since start.
    pub fired: u64,
}

/// Everything one evaluation needs; owned by the engine thread.
pub struct Engine {
    store: Arc<Store>,
    config: BillingConfig,
    clock: Arc<dyn Clock>,
    rules: Rules,
    notifier: Notifier,
    mqtt: Option<mqtt::Publisher>,
    speed: Arc<Mutex<SpeedRing>>,
    status: Arc<RwLock<EngineStatus>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("notifier", &self.notifier)
            .finish_non_exhaustive()
    }
}

/// The running engine; stops its thread when dropped.
#[derive(Debug)]
pub struct EngineHandle {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The engine's last findings.
    pub status: Arc<RwLock<EngineStatus>>,
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the billing engine thread panicked");
        }
    }
}

impl Engine {
    /// An engine over `store` (its zone is the cycles' zone); channels and the MQTT client start
    /// here.
    pub fn new(
        store: Arc<Store>,
        config: BillingConfig,
        clock: Arc<dyn Clock>,
        speed: Arc<Mutex<SpeedRing>>,
        policy: RetryPolicy,
    ) -> Engine {
        let notifier = Notifier::start(&config.channels, policy);
        let mqtt = config
            .mqtt
            .as_ref()
            .map(|url| mqtt::Publisher::start(url, store.zone()));
        Engine {
            store,
            config,
            clock,
            rules: Rules::default(),
            notifier,
            mqtt,
            speed,
            status: Arc::new(RwLock::new(EngineStatus::default())),
        }
    }

    /// The engine's findings, shared.
    pub fn status(&self) -> Arc<RwLock<EngineStatus>> {
        self.status.clone()
    }

    /// The notifier (delivery counters).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// One evaluation at the clock's now: returns the alerts that fired (already recorded,
    /// logged and queued for delivery). Blocking.
    pub fn tick(&mut self) -> Result<Vec<Alert>, crate::store::QueryError> {
        let now = self.clock.now();
        let report = report::build(&self.store, &self.config, now)?;
        let fired: HashSet<(String, String)> = self
            .store
            .alerts_fired()?
            .into_iter()
            .map(|(rule, period, _)| (rule, period))
            .collect();
        let candidates = self.rules.evaluate(&self.config, &report, &fired);
        let mut out = Vec::new();
        for alert in candidates {
            let mut new = false;
            for rule in engine::implied_rules(&self.config, &alert) {
                match self.store.mark_alert(&rule, &alert.period, now) {
                    Ok(inserted) => new |= inserted && rule == alert.rule,
                    Err(e) => {
                        // Not recorded: not sent either, so it cannot repeat; the next tick
                        // tries again.
                        tracing::warn!(rule, error = %crate::error_chain(&e), "recording an alert failed; will retry");
                    }
                }
            }
            if !new {
                continue;
            }
            let notice = message::notice(&alert, &report, &self.config, self.store.zone());
            tracing::warn!(
                kind = alert.kind.name(),
                rule = alert.rule,
                period = alert.period,
                value = alert.value,
                threshold = alert.threshold,
                message = notice.body,
                "alert"
            );
            self.notifier.send(&notice);
            out.push(alert);
        }
        let states = self.states(&report);
        let speed = self.current_speed(now);
        if let Some(m) = &self.mqtt {
            m.publish(&report, &states, speed);
        }
        let mut status = self.status.write().unwrap_or_else(PoisonError::into_inner);
        status.fired += out.len() as u64;
        status.states = states;
        status.report = Some(report);
        Ok(out)
    }

    fn states(&self, report: &Report) -> AlertStates {
        let f = &report.figures;
        let crossed = self
            .config
            .thresholds
            .iter()
            .rev()
            .find(|p| f.percent.is_some_and(|v| v >= f64::from(**p)))
            .copied();
        AlertStates {
            quota_threshold: crossed,
            projection_over: f.projection_exceeds == Some(true),
            upload_daily_over: self
                .config
                .upload_daily_limit
                .is_some_and(|l| report.today_traffic.up.ip_bytes >= l),
            upload_rate_high: self.rules.upload_rate_high(),
        }
    }

    /// Mean up and down bytes/s over the last 10 s.
    fn current_speed(&self, now: i64) -> (f64, f64) {
        let ring = self.speed.lock().unwrap_or_else(PoisonError::into_inner);
        let recent = ring.recent(now * 1000, 10_000, 10);
        let secs: f64 = recent.iter().map(|s| s.secs).sum::<f64>().max(1e-3);
        let up: u64 = recent.iter().map(|s| s.up).sum();
        let down: u64 = recent.iter().map(|s| s.down).sum();
        (up as f64 / secs, down as f64 / secs)
    }

    /// Runs [`Engine::tick`] every `ALERT_INTERVAL` on a thread of its own.
    pub fn spawn(mut self) -> EngineHandle {
        let (stop, stopped) = mpsc::channel::<()>();
        let status = self.status.clone();
        let interval = self.config.interval;
        let thread = std::thread::Builder::new()
            .name("billing".into())
            .spawn(move || {
                // A first look soon after start, then on the interval.
                let mut wait = Duration::from_secs(3).min(interval);
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                    if let Err(e) = self.tick() {
                        tracing::warn!(error = %crate::error_chain(&e), "evaluating the billing alerts failed; retrying at the next tick");
                    }
                    wait = interval;
                }
                if let Some(m) = &self.mqtt {
                    m.stop();
                }
            });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the billing engine; alerts are off");
                None
            }
        };
        EngineHandle {
            stop: Some(stop),
            thread,
            status,
        }
    }
}

/// Sends one test message to every channel of `config` at once and waits (each bounded by
/// `timeout`) for the outcome; returns (channel, result) pairs. For `sentinel notify-test`: it
/// needs no database, so it can run beside the daemon.
pub fn notify_test(
    config: &BillingConfig,
    zone: crate::timebucket::Zone,
    now: i64,
    timeout: Duration,
) -> Vec<(String, Result<(), String>)> {
    let report = report::empty(config, zone, now);
    let alert = Alert {
        kind: AlertKind::Test,
        rule: "test".into(),
        period: report.cycle.key(),
        threshold: report.figures.quota.unwrap_or(0),
        value: 0,
        duration_s: 0,
    };
    let notice = message::notice(&alert, &report, config, zone);
    std::thread::scope(|s| {
        let handles: Vec<_> = config
            .channels
            .iter()
            .map(|c| {
                let notice = &notice;
                (
                    c.name(),
                    s.spawn(move || notify::deliver(c, notice, timeout)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                (
                    name,
                    h.join()
                        .unwrap_or_else(|_| Err("the sender panicked".into())),
                )
            })
            .collect()
    })
}

/// RFC 3339 local time of `unix` in `zone`.
pub fn local_rfc3339(zone: crate::timebucket::Zone, unix: i64) -> String {
    let offset = zone.offset_at(unix);
    let sign = if offset < 0 { '-' } else { '+' };
    let o = offset.unsigned_abs();
    match chrono::DateTime::from_timestamp(unix + i64::from(offset), 0) {
        Some(t) => format!(
            "{}{sign}{:02}:{:02}",
            t.naive_utc().format("%Y-%m-%dT%H:%M:%S"),
            o / 3600,
            (o % 3600) / 60
        ),
        None => String::new(),
    }
}
