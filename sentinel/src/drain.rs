//! Turns the backend's monotonic counters into deltas, once a second.
//!
//! The kernel counters are never reset: the drain keeps the last values it saw (its baseline) and
//! reports what grew since. The baseline can start from a persisted [`Checkpoint`] of the same map
//! instance, so a restarted daemon neither loses what the kernel counted while it was away nor
//! counts twice what was already persisted. Per-remote counters vanish when the kernel's LRU
//! evicts an entry; a re-created entry starts again from zero (direction totals are unaffected).

use std::collections::HashMap;

use sentinel_common::abi::{Counters, ERROR_SLOTS, RemoteCounters, RemoteKey, TOTALS_SLOTS};

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
    /// Per remote: (key, growth).
    pub remotes: Vec<(RemoteKey, RemoteCounters)>,
    /// Backend drops.
    pub drops: u64,
}

impl Deltas {
    /// Whether nothing grew.
    pub fn is_empty(&self) -> bool {
        self.totals == KernelTotals::default() && self.remotes.is_empty() && self.drops == 0
    }
}

/// The drain's memory of what it has already reported.
pub struct Drain {
    instance: u64,
    last: KernelTotals,
    last_remotes: HashMap<RemoteKey, RemoteCounters>,
    last_drops: u64,
    primed_remotes: bool,
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
            last_remotes: HashMap::new(),
            last_drops: 0,
            primed_remotes: false,
        }
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
        // Remote values of before a restart are unknown (not checkpointed): the first snapshot
        // only primes them, so a restart never re-reports a remote's old bytes.
        let mut seen = HashMap::with_capacity(snap.remotes.len());
        for (key, now) in &snap.remotes {
            if self.primed_remotes {
                let before = self.last_remotes.get(key).copied().unwrap_or_default();
                let d = RemoteCounters {
                    up_packets: grow(now.up_packets, before.up_packets),
                    up_bytes: grow(now.up_bytes, before.up_bytes),
                    down_packets: grow(now.down_packets, before.down_packets),
                    down_bytes: grow(now.down_bytes, before.down_bytes),
                };
                if d != RemoteCounters::default() {
                    out.remotes.push((*key, d));
                }
            }
            seen.insert(*key, *now);
        }
        self.primed_remotes = true;
        self.last_remotes = seen;
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
        assert!(
            first.remotes.is_empty(),
            "the first snapshot primes remotes"
        );
        let second = d.advance(&snap(1500, 1500));
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
