//! Keeping capture attached: the first attach, checks of the attachment every few drains,
//! re-attaching with exponential backoff while capture is down, and following the interface
//! (addresses pushed to the backend, a vanished or re-created interface).

use tokio::time::{Duration, Instant};

use super::Supervisor;
use crate::{
    capture::Attached,
    status::{self, CaptureState},
};

/// Whether capture is attached, and when to try again when it is not.
#[derive(Debug, Default)]
pub(super) struct Repair {
    /// We believe the backend is attached (a check may prove otherwise).
    attached: bool,
    /// Attached at least once (later attaches count as re-attachments).
    ever: bool,
    /// Failed attempts since capture went down.
    attempts: u32,
    /// When the next attempt is due, while down.
    next: Option<Instant>,
    /// A re-attach happened: check at the next tick, and say "down" until that check passes.
    pub(super) verify: bool,
}

impl Repair {
    fn backoff(&self, min: Duration, max: Duration) -> Duration {
        let shift = self.attempts.saturating_sub(1).min(16);
        min.saturating_mul(1 << shift).min(max)
    }
}

impl Supervisor {
    /// Attaches now; on failure records why and when the next attempt is due.
    pub(super) fn try_attach(&mut self, now: Instant) {
        let iface = self.settings.iface.clone();
        match self.capture.attach(&iface) {
            Ok(mode) => {
                if self.repair.ever {
                    tracing::warn!(
                        iface,
                        attempts = self.repair.attempts + 1,
                        "re-attached; counting again (traffic in between was not seen)"
                    );
                }
                let reattached = self.repair.ever;
                self.repair = Repair {
                    attached: true,
                    ever: true,
                    attempts: 0,
                    next: None,
                    verify: reattached,
                };
                // Counting resumes at once, but after a loss health stays 503 until the next
                // check confirms the new attachment holds (whoever detached us may do it again).
                let state = match self.capture.check() {
                    Attached::Recovering(reason) => CaptureState::Down(reason),
                    _ if reattached => CaptureState::Down(
                        "re-attached; checking at the next drain that the attachment holds".into(),
                    ),
                    _ => CaptureState::Running,
                };
                let (program_id, ifindex) = (self.capture.program_id(), self.current.ifindex);
                status::update(&self.out.status, |s| {
                    s.attach_mode = mode;
                    s.state = state;
                    s.program_id = program_id;
                    s.ifindex = ifindex;
                    s.attach_attempts = 0;
                    if reattached {
                        s.reattachments += 1;
                    }
                });
            }
            Err(e) => {
                self.repair.attached = false;
                self.repair.attempts += 1;
                let delay = self
                    .repair
                    .backoff(self.settings.retry_min, self.settings.retry_max);
                self.repair.next = Some(now + delay);
                let reason = match self.current.ifindex {
                    None => format!("interface {iface} does not exist; waiting for it"),
                    Some(_) => crate::error_chain(&e),
                };
                tracing::error!(
                    iface,
                    attempt = self.repair.attempts,
                    retry_in_s = delay.as_secs_f64(),
                    reason,
                    "capture is down; attaching failed"
                );
                let attempts = self.repair.attempts;
                status::update(&self.out.status, |s| {
                    s.attach_mode = None;
                    s.state = CaptureState::Down(reason);
                    s.attach_attempts = attempts;
                    s.ifindex = self.current.ifindex;
                });
            }
        }
    }

    /// Attempts a re-attach when one is due.
    pub(super) fn retry_if_due(&mut self, now: Instant) {
        if let Some(due) = self.repair.next
            && now >= due
        {
            self.try_attach(now);
        }
    }

    /// Checks that the attachment is still in place and repairs what someone else broke.
    pub(super) fn check_attachment(&mut self, now: Instant) {
        if !self.repair.attached {
            return;
        }
        self.repair.verify = false;
        match self.capture.check() {
            Attached::Yes => {
                if !matches!(status::read(&self.out.status).state, CaptureState::Running) {
                    tracing::info!("capture is counting again");
                    self.set_state(CaptureState::Running);
                }
            }
            Attached::Recovering(reason) => self.set_state(CaptureState::Down(reason)),
            Attached::Unknown(reason) => {
                self.environment_error(&format!("checking the attachment failed: {reason}"))
            }
            Attached::No => self.went_down("capture is not attached".into(), now),
            Attached::Lost(reason) => {
                tracing::warn!(reason, "capture was detached by someone else; re-attaching");
                status::update(&self.out.status, |s| s.external_detaches += 1);
                self.went_down(reason, now);
            }
            Attached::InterfaceChanged(reason) => {
                tracing::warn!(
                    reason,
                    "the interface changed; re-attaching (traffic in between was not seen)"
                );
                if let Err(e) = self.capture.detach() {
                    tracing::warn!(error = %crate::error_chain(&e), "cleaning up the old attachment failed");
                }
                self.went_down(reason, now);
            }
        }
    }

    /// Capture stopped counting: say why and try to re-attach at once.
    fn went_down(&mut self, reason: String, now: Instant) {
        tracing::error!(reason, "capture is down");
        self.repair.attached = false;
        self.repair.next = Some(now);
        status::update(&self.out.status, |s| {
            s.state = CaptureState::Down(reason);
            s.attach_mode = None;
        });
        self.retry_if_due(now);
    }

    /// Re-reads the interface: pushes a changed plan to the backend, and re-checks the attachment
    /// when the interface index changed. A failed read is an environment error: the previous
    /// addresses stay in force.
    pub(super) fn follow_interface(&mut self, now: Instant) {
        let next = match self.iface.read() {
            Ok(next) => next,
            Err(e) => {
                self.environment_error(&format!(
                    "reading the interface failed: {}",
                    crate::error_chain(&e)
                ));
                return;
            }
        };
        if next.plan != self.current.plan {
            // A failed update (say, more prefixes than the tries hold) keeps the previous plan in
            // force; it is logged and retried at the next event or refresh.
            if let Err(e) = self.capture.set_addresses(&next.plan) {
                tracing::error!(error = %crate::error_chain(&e), "updating the address plan failed; the previous one stays in force");
                return;
            }
            tracing::info!(locals = ?next.plan.locals, lan_prefixes = ?next.plan.lan_prefixes, grace_prefixes = ?next.grace_prefixes, "addresses changed");
        }
        let changed = next.ifindex != self.current.ifindex;
        self.current = next;
        self.publish_addresses();
        if !changed {
            return;
        }
        let ifindex = self.current.ifindex;
        status::update(&self.out.status, |s| s.ifindex = ifindex);
        match ifindex {
            Some(index) => {
                tracing::info!(
                    iface = self.settings.iface,
                    ifindex = index,
                    "interface appeared or was re-created"
                );
                if self.repair.attached {
                    self.check_attachment(now);
                } else {
                    self.try_attach(now);
                }
            }
            None => {
                if self.repair.attached {
                    self.check_attachment(now);
                }
            }
        }
    }
}
