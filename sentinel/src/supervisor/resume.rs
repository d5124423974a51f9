//! Where counting starts: never with traffic that did not happen (docs/operations.md, "The
//! checkpoint and a fresh database").
//!
//! - The database holds a checkpoint of these very maps: resume from it (what the kernel counted
//!   while the daemon was away is new; what was persisted is not counted again).
//! - The maps are new: everything in them is new; the checkpoint (instance, zero base) is committed
//!   before anything is counted, so a crash right after start cannot make a later start take the
//!   maps' counts for unbooked traffic.
//! - The maps are reused but the database has no checkpoint for them (a fresh or moved `DB_PATH`,
//!   a migrated seed `traffic.db`): their current values become the baseline, logged with how much
//!   was set aside and why, and committed at once.
//!
//! Reading the checkpoint (or the baseline, or committing it) is retried; if it keeps failing the
//! daemon stops: "count from zero" would book the maps' whole history into the current hour.

use std::time::Duration;

use sentinel_common::abi::Verdict;

use super::{Ledger, Settings};
use crate::{
    capture::{Capture, KernelTotals},
    drain::{Checkpoint, Drain},
    run::RunError,
    store::{Clock, Sample},
};

/// Tries `f` up to `attempts` times, `delay` apart.
fn retried<T, E: std::fmt::Display>(
    what: &'static str,
    attempts: u32,
    delay: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, RunError> {
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => {
                last = e.to_string();
                tracing::warn!(what, attempt, error = last, "failed; retrying");
                if attempt < attempts {
                    std::thread::sleep(delay);
                }
            }
        }
    }
    Err(RunError::Checkpoint {
        what,
        attempts,
        reason: last,
    })
}

/// Decides the drain's starting point and commits it.
pub(super) fn settle(
    capture: &mut dyn Capture,
    ledger: &dyn Ledger,
    clock: &dyn Clock,
    settings: &Settings,
) -> Result<Drain, RunError> {
    let (n, pause) = (settings.startup_attempts, settings.startup_retry_delay);
    let instance = capture.instance();
    let stored = retried("reading the capture checkpoint", n, pause, || {
        ledger.checkpoint()
    })?;
    let stored = stored
        .as_deref()
        .map(|b| (Checkpoint::from_bytes(b), b.len()));
    let mut set_aside = false;
    let base = match stored {
        Some((Some(cp), _)) if cp.instance == instance => {
            tracing::info!("resuming from the persisted checkpoint of these maps");
            return Ok(Drain::new(instance, Some(&cp)));
        }
        _ if capture.counters_reused() => {
            let why = match &stored {
                None => {
                    "the database has no checkpoint (a new or moved DB_PATH, or a migrated seed database)"
                }
                Some((Some(_), _)) => "the database's checkpoint belongs to other maps",
                Some((None, _)) => "the database's checkpoint is unreadable",
            };
            let snap = retried("reading the maps for a baseline", n, pause, || {
                capture.snapshot()
            })?;
            log_set_aside(&snap.totals, why);
            set_aside = true;
            snap.totals
        }
        _ => {
            if stored.is_some() {
                tracing::info!(
                    "the persisted checkpoint belongs to other maps; these maps are new, everything in them is new"
                );
            }
            KernelTotals::default()
        }
    };
    let checkpoint = Checkpoint {
        instance,
        totals: base,
    };
    let bytes = checkpoint.to_bytes();
    retried("committing the capture checkpoint", n, pause, || {
        ledger.record(&Sample {
            at: clock.now(),
            up: Default::default(),
            down: Default::default(),
            remotes: &[],
            other_remotes: Default::default(),
            services: &[],
            other_services: Default::default(),
            checkpoint: Some(bytes.clone()),
        });
        ledger.flush()
    })?;
    let mut drain = Drain::new(instance, Some(&checkpoint));
    if set_aside {
        // Per-remote counts an earlier daemon left in the maps belong to the set-aside totals
        // too: booking them would make the remotes add up to more than the totals.
        drain.set_aside_next_remotes();
    }
    Ok(drain)
}

fn log_set_aside(totals: &KernelTotals, why: &str) {
    let (up, down) = (totals.verdict(Verdict::Up), totals.verdict(Verdict::Down));
    tracing::warn!(
        reason = why,
        up_bytes = up.ip_bytes,
        down_bytes = down.ip_bytes,
        up_packets = up.packets,
        down_packets = down.packets,
        "the reused maps' counts become the baseline (set aside, not booked): they were counted for another database or before it existed"
    );
}
