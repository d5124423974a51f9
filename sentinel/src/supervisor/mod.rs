//! The supervisor: the daemon's main loop over [`OsInputs`]. It drains the capture backend every
//! second, follows the interface, checks every few drains that the attachment is still in place
//! and repairs it with backoff ([`repair`]), resumes from or commits the checkpoint before
//! counting ([`resume`]), and at shutdown drains, flushes and detaches, in that order.
//!
//! It drives the backend only through [`Capture`], the interface through [`InterfaceSource`] and
//! the store through [`Ledger`]: it knows neither aya, AF_PACKET, SQLite nor HTTP, and unit tests
//! ([`tests`]) run it with fakes on tokio's paused clock.
//!
//! Failure rules (docs/operations.md):
//! - Capture down (attach failed, links detached by someone else, interface gone): state `down`
//!   with the reason, re-attach attempts with exponential backoff, each logged.
//! - Environment errors (a failed map read, a failed check or interface read: EMFILE, ENOMEM)
//!   never detach what works: they are counted, shown in the status, and the next tick retries.
//! - Shutdown: a last drain (its failure is logged and does not skip the flush), the flush, then
//!   the detach.

#[cfg(test)]
mod fakes;
pub mod inputs;
mod repair;
mod resume;
#[cfg(test)]
mod tests;

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use sentinel_common::abi::{REMOTES_MAX_ENTRIES, RemoteCounters, Verdict};
use tokio::{sync::mpsc, time::Instant};

pub use self::inputs::{
    CaptureFactory, InterfaceSource, Ledger, LedgerError, ListeningSource, OsInputs, OsListening,
    Shutdown, signals,
};
use crate::{
    addrwatch::IfaceState,
    capture::{Capture, KernelTotals, remote_ip},
    drain::{Checkpoint, Deltas, Drain},
    meter::{SpeedRing, SpeedSample},
    run::RunError,
    status::{self, CaptureState, CaptureStatus, SharedStatus},
    store::{Clock, Sample},
};

/// How the supervisor paces itself.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The monitored interface's name.
    pub iface: String,
    /// `auto` or `manual` (for the status).
    pub lan_mode: &'static str,
    /// Time between drains.
    pub drain_period: Duration,
    /// Drains between two checks of the attachment (an external detach is noticed within
    /// `drain_period * check_every`).
    pub check_every: u64,
    /// Time between full re-reads of the interface (a safety net under netlink events).
    pub address_refresh: Duration,
    /// Time between two reads of the NAS's listening ports (the per-service server/client rule).
    pub listen_refresh: Duration,
    /// How often to print a live totals line (`None`: never).
    pub print_interval: Option<Duration>,
    /// First re-attach delay; doubled per failed attempt up to `retry_max`.
    pub retry_min: Duration,
    /// Longest re-attach delay.
    pub retry_max: Duration,
    /// Attempts at reading the checkpoint (and the baseline, and committing it) before giving up.
    pub startup_attempts: u32,
    /// Pause between those attempts.
    pub startup_retry_delay: Duration,
}

impl Settings {
    /// The daemon's pacing for `iface`.
    pub fn new(iface: &str) -> Self {
        Self {
            iface: iface.to_owned(),
            lan_mode: "auto",
            drain_period: Duration::from_secs(1),
            check_every: 2,
            address_refresh: Duration::from_secs(60),
            listen_refresh: Duration::from_secs(5),
            print_interval: None,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            startup_attempts: 3,
            startup_retry_delay: Duration::from_secs(1),
        }
    }
}

/// Where the supervisor publishes: the shared status and the live speed.
#[derive(Clone)]
pub struct Outputs {
    /// Capture status for the API.
    pub status: SharedStatus,
    /// The per-second speed ring.
    pub speed: Arc<Mutex<SpeedRing>>,
}

/// What a finished supervisor reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Finished {
    /// Everything counted since start.
    pub counted: KernelTotals,
}

/// The running supervisor (see the module docs).
pub struct Supervisor {
    settings: Settings,
    iface: Box<dyn InterfaceSource>,
    capture: Box<dyn Capture>,
    events: mpsc::Receiver<()>,
    listening: Box<dyn ListeningSource>,
    /// The listening set last pushed to the capture (`None`: none yet, or the push failed).
    listening_pushed: Option<Vec<sentinel_common::abi::ListenKey>>,
    clock: Arc<dyn Clock>,
    ledger: Arc<dyn Ledger>,
    out: Outputs,
    drain: Drain,
    counted: KernelTotals,
    current: IfaceState,
    repair: repair::Repair,
    last_sample: Instant,
}

impl Supervisor {
    /// Reads the interface, starts the backend, settles the checkpoint (committed before anything
    /// is counted) and makes the first attach attempt. Blocking (the checkpoint commit waits for
    /// the database); returns the supervisor and the shutdown future to pass to [`Self::run`].
    pub fn start(
        settings: Settings,
        inputs: OsInputs,
        ledger: Arc<dyn Ledger>,
        out: Outputs,
    ) -> Result<(Self, Shutdown), RunError> {
        let OsInputs {
            mut iface,
            mut factory,
            events,
            listening,
            clock,
            shutdown,
        } = inputs;
        let current = iface.read()?;
        let capture = factory.start(&settings.iface, &current.plan)?;
        let durability = capture.durability();
        status::update(&out.status, |s| {
            *s = CaptureStatus {
                backend: capture.kind().as_str(),
                iface: settings.iface.clone(),
                ifindex: current.ifindex,
                pin_dir: capture.pin_dir(),
                maps_reused: capture.counters_reused(),
                counters_survive_restart: durability.survives_restart,
                durability_reason: durability.reason,
                remotes_capacity: REMOTES_MAX_ENTRIES,
                lan_mode: settings.lan_mode,
                ..CaptureStatus::default()
            }
        });
        let mut me = Self {
            settings,
            iface,
            capture,
            events,
            listening,
            listening_pushed: None,
            clock,
            ledger,
            out,
            drain: Drain::new(0, None),
            counted: KernelTotals::default(),
            current,
            repair: repair::Repair::default(),
            last_sample: Instant::now(),
        };
        me.drain = resume::settle(&mut *me.capture, &*me.ledger, &*me.clock, &me.settings)?;
        me.publish_addresses();
        me.follow_listening();
        crate::links::log_link(&me.settings.iface, me.current.ifindex, &me.current.plan);
        me.try_attach(Instant::now());
        Ok((me, shutdown))
    }

    /// The current status (for logs).
    pub fn status(&self) -> CaptureStatus {
        status::read(&self.out.status)
    }

    /// The capture's counter identity.
    pub fn instance(&self) -> u64 {
        self.capture.instance()
    }

    /// Runs until `shutdown` resolves. Call [`Self::finish`] afterwards.
    pub async fn run(&mut self, mut shutdown: Shutdown) {
        let start = Instant::now();
        let mut drain_tick = tokio::time::interval_at(
            start + self.settings.drain_period,
            self.settings.drain_period,
        );
        let mut refresh_tick = tokio::time::interval_at(
            start + self.settings.address_refresh,
            self.settings.address_refresh,
        );
        let print_period = self
            .settings
            .print_interval
            .unwrap_or(Duration::from_secs(3600));
        let mut listen_tick = tokio::time::interval_at(
            start + self.settings.listen_refresh,
            self.settings.listen_refresh,
        );
        let mut print_tick = tokio::time::interval_at(start + print_period, print_period);
        let mut printed = (Instant::now(), self.counted);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = drain_tick.tick() => {
                    ticks += 1;
                    self.drain_once();
                    if self.repair.verify || ticks.is_multiple_of(self.settings.check_every.max(1)) {
                        self.check_attachment(Instant::now());
                    }
                    self.retry_if_due(Instant::now());
                }
                Some(()) = self.events.recv() => self.follow_interface(Instant::now()),
                _ = refresh_tick.tick() => self.follow_interface(Instant::now()),
                _ = listen_tick.tick() => self.follow_listening(),
                _ = print_tick.tick(), if self.settings.print_interval.is_some() => {
                    let now = (Instant::now(), self.counted);
                    println!("{}", crate::run::live_line(&printed.1, &now.1, now.0 - printed.0));
                    printed = now;
                }
                _ = &mut shutdown => break,
            }
        }
    }

    /// The orderly end: a last drain, the flush, the detach. A failed drain is logged and the
    /// flush still happens; a failed flush is returned after the detach.
    pub fn finish(mut self) -> Result<Finished, RunError> {
        if !self.drain_once() {
            tracing::error!(
                "the last drain failed; flushing what was drained before (the rest stays in the pinned maps for the next start)"
            );
        }
        let flushed = self.ledger.flush();
        if let Err(e) = self.capture.detach() {
            tracing::warn!(error = %crate::error_chain(&e), "detaching failed");
        }
        flushed.map_err(|source| RunError::FinalFlush { source })?;
        Ok(Finished {
            counted: self.counted,
        })
    }

    /// Reads the counters once and accounts what grew. `false` when the read failed (an
    /// environment error: counted, reported, retried at the next tick, nothing detached).
    fn drain_once(&mut self) -> bool {
        let snap = match self.capture.snapshot() {
            Ok(snap) => snap,
            Err(e) => {
                self.environment_error(&format!(
                    "reading the counters failed: {}",
                    crate::error_chain(&e)
                ));
                return false;
            }
        };
        let deltas = self.drain.advance(&snap);
        self.record(&deltas, &self.drain.checkpoint());
        for (total, delta) in self
            .counted
            .slots
            .iter_mut()
            .zip(deltas.totals.slots.iter())
        {
            total.packets += delta.packets;
            total.ip_bytes += delta.ip_bytes;
            total.wire_bytes += delta.wire_bytes;
        }
        for (total, delta) in self
            .counted
            .errors
            .iter_mut()
            .zip(deltas.totals.errors.iter())
        {
            *total += delta;
        }
        let at = self.clock.now();
        status::update(&self.out.status, |s| {
            s.counters = snap.totals;
            s.drops = snap.drops;
            s.remotes_in_map = snap.remotes.len();
            s.last_drain = Some(unix_to_system(at));
        });
        true
    }

    fn record(&mut self, deltas: &Deltas, checkpoint: &Checkpoint) {
        let now = Instant::now();
        let secs = now.duration_since(self.last_sample).as_secs_f64();
        self.last_sample = now;
        let (up, down) = (
            deltas.totals.verdict(Verdict::Up),
            deltas.totals.verdict(Verdict::Down),
        );
        let remotes: Vec<(IpAddr, RemoteCounters)> = deltas
            .remotes
            .iter()
            .map(|(key, counters)| (remote_ip(key), *counters))
            .collect();
        let at = self.clock.now();
        self.ledger.record(&Sample {
            at,
            up,
            down,
            remotes: &remotes,
            other_remotes: deltas.other_remotes,
            services: &deltas.services,
            other_services: deltas.other_services,
            checkpoint: Some(checkpoint.to_bytes()),
        });
        let sample = SpeedSample {
            ts_ms: at * 1000,
            up: up.ip_bytes,
            down: down.ip_bytes,
            secs,
        };
        self.out
            .speed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sample);
    }

    /// Re-reads the listening ports and pushes them to the capture when they changed. A failed
    /// read or push keeps the previous set in force (logged; retried at the next tick).
    fn follow_listening(&mut self) {
        let ports = match self.listening.read() {
            Ok(ports) => ports,
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "reading the listening ports failed; the previous set stays in force");
                return;
            }
        };
        if self.listening_pushed.as_ref() == Some(&ports) {
            return;
        }
        match self.capture.set_listening(&ports) {
            Ok(()) => {
                tracing::debug!(ports = ports.len(), "listening ports changed");
                self.listening_pushed = Some(ports);
                let listeners = self.listening.owners();
                status::update(&self.out.status, |s| s.listeners = listeners);
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "pushing the listening ports failed; retried at the next refresh");
                self.listening_pushed = None;
            }
        }
    }

    /// An error of the environment: logged, counted, shown; nothing is detached.
    fn environment_error(&mut self, message: &str) {
        tracing::warn!(
            error = message,
            "environment error; retrying at the next tick, nothing detached"
        );
        status::update(&self.out.status, |s| {
            s.environment_errors += 1;
            s.last_environment_error = Some(message.to_owned());
        });
    }

    fn publish_addresses(&self) {
        let current = &self.current;
        status::update(&self.out.status, |s| {
            s.locals = current.plan.locals.clone();
            s.lan_prefixes = current.plan.lan_prefixes.clone();
            s.grace_prefixes = current.grace_prefixes.clone();
        });
    }

    fn set_state(&self, state: CaptureState) {
        status::update(&self.out.status, |s| s.state = state);
    }
}

fn unix_to_system(at: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0))
}
