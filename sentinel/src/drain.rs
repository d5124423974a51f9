//! Turns the backend's counters into deltas, once a second.
//!
//! Direction totals and errors: the kernel counters are never reset, so the drain keeps the last
//! values it saw (its baseline) and reports what grew since. The baseline can start from a
//! persisted [`Checkpoint`] of the same map instance, so a restarted daemon neither loses what the
//! kernel counted while it was away nor counts twice what was already persisted.
//!
//! Per-remote counters: the backend hands over each remote's growth since its previous snapshot,
//! read once and then deleted (the eBPF backend's `capture::ebpf::remotes` swap protocol), plus
//! what it had no room to keep per remote ("other"). They are deltas already: the drain keeps no
//! per-remote baseline, and its cost follows the remotes that moved, not the remotes ever seen.
//! Per-service counters come the same way and are handled alike.

use sentinel_common::abi::{
    Counters, ERROR_SLOTS, RemoteCounters, RemoteKey, ServiceKey, TOTALS_SLOTS,
};

use crate::capture::{KernelTotals, Snapshot};

/// What the counters had reached when the last flush was persisted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identity of the map set the values belong to.
    pub instance: u64,
    /// Direction totals and errors at that moment.
    pub totals: KernelTotals,
}

/// Format version of [`Checkpoint::to_bytes`].
const CHECKPOINT_FORMAT: u64 = 1;

impl Checkpoint {
    /// A compact little-endian encoding for the store.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(8 * (2 + 3 * TOTALS_SLOTS as usize + ERROR_SLOTS as usize));
        let mut put = |v: u64| out.extend_from_slice(&v.to_le_bytes());
        put(CHECKPOINT_FORMAT);
        put(self.instance);
        for c in &self.totals.slots {
            put(c.packets);
            put(c.ip_bytes);
            put(c.wire_bytes);
        }
        for e in &self.totals.errors {
            put(*e);
        }
        out
    }

    /// Decodes [`Self::to_bytes`]; `None` for anything else (a foreign or older blob).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut words = bytes.chunks_exact(8).map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        });
        if !bytes.len().is_multiple_of(8) || words.next()? != CHECKPOINT_FORMAT {
            return None;
        }
        let instance = words.next()?;
        let mut totals = KernelTotals::default();
        for slot in totals.slots.iter_mut() {
            *slot = Counters {
                packets: words.next()?,
                ip_bytes: words.next()?,
                wire_bytes: words.next()?,
            };
        }
        for e in totals.errors.iter_mut() {
            *e = words.next()?;
        }
        words.next().is_none().then_some(Self { instance, totals })
    }
}

/// What grew between two drains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deltas {
    /// Per verdict and family, as [`KernelTotals::slots`].
    pub totals: KernelTotals,
    /// Per remote: (key, growth); no zero entries.
    pub remotes: Vec<(RemoteKey, RemoteCounters)>,
    /// Public traffic the backend could not keep per remote: the store's "other".
    pub other_remotes: RemoteCounters,
    /// Per service (`sentinel_common::service`): (key, growth); no zero entries.
    pub services: Vec<(ServiceKey, RemoteCounters)>,
    /// Public traffic the backend could not keep per service.
    pub other_services: RemoteCounters,
    /// Backend drops.
    pub drops: u64,
}

impl Deltas {
    /// Whether nothing grew.
    pub fn is_empty(&self) -> bool {
        self.totals == KernelTotals::default()
            && self.remotes.is_empty()
            && self.other_remotes == RemoteCounters::default()
            && self.services.is_empty()
            && self.other_services == RemoteCounters::default()
            && self.drops == 0
    }
}

/// The drain's memory of what it has already reported.
pub struct Drain {
    instance: u64,
    last: KernelTotals,
    last_drops: u64,
    set_aside_remotes: bool,
}

fn grow(now: u64, before: u64) -> u64 {
    // Counters only grow; a smaller value means the maps were re-created: all of it is new.
    if now >= before { now - before } else { now }
}

impl Drain {
    /// Starts from `checkpoint` when it belongs to `instance`, otherwise from zero (new maps).
    pub fn new(instance: u64, checkpoint: Option<&Checkpoint>) -> Self {
        let last = match checkpoint {
            Some(c) if c.instance == instance => c.totals,
            _ => KernelTotals::default(),
        };
        Self {
            instance,
            last,
            last_drops: 0,
            set_aside_remotes: false,
        }
    }

    /// Makes the next [`Self::advance`] drop the per-remote growth it reads (and report it as
    /// set aside) instead of reporting it: for maps whose totals baseline is set aside too (maps
    /// reused without a checkpoint), so per-remote counts never exceed the totals. The amount set
    /// aside is logged.
    pub fn set_aside_next_remotes(&mut self) {
        self.set_aside_remotes = true;
    }

    /// The checkpoint matching everything reported so far.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            instance: self.instance,
            totals: self.last,
        }
    }

    /// Reports what grew since the previous call.
    pub fn advance(&mut self, snap: &Snapshot) -> Deltas {
        let mut out = Deltas::default();
        for (i, (now, before)) in snap
            .totals
            .slots
            .iter()
            .zip(self.last.slots.iter())
            .enumerate()
        {
            out.totals.slots[i] = Counters {
                packets: grow(now.packets, before.packets),
                ip_bytes: grow(now.ip_bytes, before.ip_bytes),
                wire_bytes: grow(now.wire_bytes, before.wire_bytes),
            };
        }
        for (i, (now, before)) in snap
            .totals
            .errors
            .iter()
            .zip(self.last.errors.iter())
            .enumerate()
        {
            out.totals.errors[i] = grow(*now, *before);
        }
        if std::mem::take(&mut self.set_aside_remotes) {
            let mut set_aside = snap.other_remotes;
            for (_, c) in &snap.remotes {
                set_aside.add(c);
            }
            tracing::info!(
                remotes = snap.remotes.len(),
                bytes = set_aside.bytes(),
                "per-remote counts found in reused maps set aside with their totals"
            );
            // The per-service counts of those maps go with them (they are the same bytes).
            tracing::info!(
                services = snap.services.len(),
                "per-service counts found in reused maps set aside with their totals"
            );
        } else {
            out.remotes = snap
                .remotes
                .iter()
                .filter(|(_, c)| *c != RemoteCounters::default())
                .copied()
                .collect();
            out.other_remotes = snap.other_remotes;
            out.services = snap
                .services
                .iter()
                .filter(|(_, c)| *c != RemoteCounters::default())
                .copied()
                .collect();
            out.other_services = snap.other_services;
        }
        out.drops = grow(snap.drops, self.last_drops);
        self.last_drops = snap.drops;
        self.last = snap.totals;
        out
    }
}

#[cfg(test)]
mod tests {
    use sentinel_common::abi::{Verdict, totals_index};

    use super::*;

    fn snap(up_bytes: u64, remote_bytes: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.totals.slots[totals_index(Verdict::Up, 0) as usize] = Counters {
            packets: up_bytes / 100,
            ip_bytes: up_bytes,
            wire_bytes: up_bytes,
        };
        s.remotes.push((
            RemoteKey::v4([203, 0, 113, 9]),
            RemoteCounters {
                up_bytes: remote_bytes,
                ..Default::default()
            },
        ));
        s
    }

    #[test]
    fn deltas_follow_growth_and_survive_a_restart_through_the_checkpoint() {
        let mut d = Drain::new(7, None);
        let first = d.advance(&snap(1000, 1000));
        assert_eq!(first.totals.verdict(Verdict::Up).ip_bytes, 1000);
        assert_eq!(first.remotes[0].1.up_bytes, 1000);
        // Remotes arrive as growth already: reported as read, no baseline.
        let second = d.advance(&snap(1500, 500));
        assert_eq!(second.totals.verdict(Verdict::Up).ip_bytes, 500);
        assert_eq!(second.remotes[0].1.up_bytes, 500);
        // Persist, "crash", restart: the kernel kept counting to 2500 meanwhile.
        let cp = Checkpoint::from_bytes(&d.checkpoint().to_bytes()).expect("round trip");
        let mut again = Drain::new(7, Some(&cp));
        assert_eq!(
            again
                .advance(&snap(2500, 2500))
                .totals
                .verdict(Verdict::Up)
                .ip_bytes,
            1000
        );
        // A checkpoint of other maps does not apply: everything in the new maps is new.
        let mut fresh = Drain::new(8, Some(&cp));
        assert_eq!(
            fresh
                .advance(&snap(300, 300))
                .totals
                .verdict(Verdict::Up)
                .ip_bytes,
            300
        );
    }

    #[test]
    fn recreated_maps_count_from_zero() {
        let mut d = Drain::new(1, None);
        d.advance(&snap(5000, 5000));
        assert_eq!(
            d.advance(&snap(200, 200))
                .totals
                .verdict(Verdict::Up)
                .ip_bytes,
            200
        );
    }

    #[test]
    fn remote_growth_and_other_pass_through_once_and_zero_entries_are_dropped() {
        let mut d = Drain::new(1, None);
        let mut s = snap(100, 60);
        s.remotes
            .push((RemoteKey::v4([203, 0, 113, 10]), RemoteCounters::default()));
        s.other_remotes.up_bytes = 40;
        let out = d.advance(&s);
        assert_eq!(out.remotes.len(), 1, "zero entries are not reported");
        assert_eq!(out.other_remotes.up_bytes, 40);
        let per_remote: u64 = out.remotes.iter().map(|(_, c)| c.up_bytes).sum();
        assert_eq!(
            per_remote + out.other_remotes.up_bytes,
            out.totals.verdict(Verdict::Up).ip_bytes
        );
        // Nothing moved: nothing reported, whatever was seen before.
        let idle = Snapshot {
            totals: s.totals,
            ..Snapshot::default()
        };
        assert!(d.advance(&idle).is_empty());
    }

    #[test]
    fn remotes_set_aside_once_are_not_reported() {
        let mut d = Drain::new(1, None);
        d.set_aside_next_remotes();
        let mut s = snap(100, 100);
        s.other_remotes.down_bytes = 5;
        let https = ServiceKey {
            port: 443,
            proto: 6,
            role: sentinel_common::abi::ROLE_CLIENT,
        };
        let up = |b| RemoteCounters {
            up_bytes: b,
            ..RemoteCounters::default()
        };
        s.services = vec![
            (https, up(100)),
            (ServiceKey::default(), RemoteCounters::default()),
        ];
        let out = d.advance(&s);
        assert!(out.remotes.is_empty());
        assert_eq!(out.other_remotes, RemoteCounters::default());
        assert!(out.services.is_empty(), "set aside with the remotes");
        let mut next = snap(200, 100);
        next.services = s.services.clone();
        next.other_services = up(7);
        let out = d.advance(&next);
        assert_eq!(out.remotes[0].1.up_bytes, 100);
        assert_eq!(
            out.services,
            vec![(https, up(100))],
            "zero entries are not reported"
        );
        assert_eq!(out.other_services, up(7));
    }

    #[test]
    fn checkpoint_decoding_rejects_foreign_bytes() {
        assert!(Checkpoint::from_bytes(b"").is_none());
        assert!(Checkpoint::from_bytes(&[0u8; 7]).is_none());
        let mut bytes = Checkpoint::default().to_bytes();
        bytes.push(0);
        assert!(Checkpoint::from_bytes(&bytes).is_none());
        bytes.pop();
        bytes[0] = 9;
        assert!(Checkpoint::from_bytes(&bytes).is_none());
    }
}
