//! What one accounted frame adds, and to which counters: the single recording rule both capture
//! paths run after [`crate::account::account`].
//!
//! [`record`] picks the direction-totals slot, counts a correction note, and adds the packet to
//! its remote's up or down counters, or to the overflow counters when the per-remote storage has
//! no room for a new remote (so per-remote sums plus overflow always equal the up and down
//! totals). The storage is behind [`CounterStore`]: per-CPU map values in the kernel, plain
//! structs in the AF_PACKET ring's tally.
//!
//! One overflow rule everywhere: every counter adds with `wrapping_add` (the eBPF program has no
//! overflow checks, and a debug-built daemon must not panic where the kernel wraps). A 64-bit byte
//! counter wraps after 16 EiB, so in practice never; if it did, both worlds would agree.
//!
//! It must not know maps, rings, locks or time.

use crate::{
    abi::{Counters, ErrorKind, RemoteCounters, RemoteKey, ServiceKey, Verdict, totals_index},
    account::Accounting,
};

impl Counters {
    /// Adds `other`, wrapping (see the module's overflow rule).
    #[inline(always)]
    pub fn add(&mut self, other: &Counters) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.ip_bytes = self.ip_bytes.wrapping_add(other.ip_bytes);
        self.wire_bytes = self.wire_bytes.wrapping_add(other.wire_bytes);
    }
}

impl RemoteCounters {
    /// Adds `other`, wrapping (see the module's overflow rule).
    #[inline(always)]
    pub fn add(&mut self, other: &RemoteCounters) {
        self.up_packets = self.up_packets.wrapping_add(other.up_packets);
        self.up_bytes = self.up_bytes.wrapping_add(other.up_bytes);
        self.down_packets = self.down_packets.wrapping_add(other.down_packets);
        self.down_bytes = self.down_bytes.wrapping_add(other.down_bytes);
    }

    /// Up plus down IP bytes, wrapping.
    #[inline(always)]
    pub fn bytes(&self) -> u64 {
        self.up_bytes.wrapping_add(self.down_bytes)
    }
}

/// Adds one to an event counter, wrapping (see the module's overflow rule).
#[inline(always)]
pub fn bump(counter: &mut u64) {
    *counter = counter.wrapping_add(1);
}

/// Where [`record`] adds. Every method returns the slot to add to, or `None` when there is none
/// (an index the kernel's bounds check refuses, a map that is full); [`record`] decides what
/// happens then.
pub trait CounterStore {
    /// The direction-totals slot `index` ([`totals_index`]).
    fn totals(&mut self, index: u32) -> Option<&mut Counters>;
    /// The event counter of `kind`.
    fn error(&mut self, kind: ErrorKind) -> Option<&mut u64>;
    /// The counters of `remote`, created at zero when it has none yet; `None` when there is no
    /// room for a new remote.
    fn remote(&mut self, remote: &RemoteKey) -> Option<&mut RemoteCounters>;
    /// The counters taking what [`Self::remote`] had no room for.
    fn overflow(&mut self) -> Option<&mut RemoteCounters>;
    /// The counters of a service ([`crate::service`]), created at zero when it has none yet;
    /// `None` when there is no room for a new service.
    fn service(&mut self, key: &ServiceKey) -> Option<&mut RemoteCounters>;
    /// The counters taking what [`Self::service`] had no room for.
    fn service_overflow(&mut self) -> Option<&mut RemoteCounters>;
}

/// Counts an event of `kind` (an error path, or a note).
#[inline(always)]
pub fn count_error<S: CounterStore + ?Sized>(store: &mut S, kind: ErrorKind) {
    if let Some(slot) = store.error(kind) {
        bump(slot);
    }
}

/// What a public packet adds to its remote's counters.
#[inline(always)]
pub fn remote_delta(acc: &Accounting) -> Option<RemoteCounters> {
    match acc.verdict {
        Verdict::Up => Some(RemoteCounters {
            up_packets: acc.packets,
            up_bytes: acc.ip_bytes,
            ..RemoteCounters::default()
        }),
        Verdict::Down => Some(RemoteCounters {
            down_packets: acc.packets,
            down_bytes: acc.ip_bytes,
            ..RemoteCounters::default()
        }),
        Verdict::Lan | Verdict::Transit => None,
    }
}

/// Adds one accounted frame to `store`: its direction totals, its note, and for public traffic its
/// remote (or the overflow counters, with a [`ErrorKind::RemoteUpdate`] event, when the remote
/// storage is full).
#[inline(always)]
pub fn record<S: CounterStore + ?Sized>(store: &mut S, acc: &Accounting) {
    if let Some(slot) = store.totals(totals_index(acc.verdict, acc.family)) {
        slot.add(&Counters {
            packets: acc.packets,
            ip_bytes: acc.ip_bytes,
            wire_bytes: acc.wire_bytes,
        });
    }
    if let Some(kind) = acc.note {
        count_error(store, kind);
    }
    let Some(delta) = remote_delta(acc) else {
        return;
    };
    if let Some(slot) = store.remote(&acc.remote) {
        slot.add(&delta);
        return;
    }
    if let Some(slot) = store.overflow() {
        slot.add(&delta);
    }
    count_error(store, ErrorKind::RemoteUpdate);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{ERROR_SLOTS, FAMILY_V4, FAMILY_V6, TOTALS_SLOTS};

    /// A store with room for `cap` remotes (linear search: a test needs no hashing).
    struct Plain {
        totals: [Counters; TOTALS_SLOTS as usize],
        errors: [u64; ERROR_SLOTS as usize],
        remotes: [(RemoteKey, RemoteCounters); 2],
        used: usize,
        cap: usize,
        overflow: RemoteCounters,
    }

    impl Plain {
        fn new(cap: usize) -> Self {
            Self {
                totals: [Counters::default(); TOTALS_SLOTS as usize],
                errors: [0; ERROR_SLOTS as usize],
                remotes: [(RemoteKey::v4([0; 4]), RemoteCounters::default()); 2],
                used: 0,
                cap,
                overflow: RemoteCounters::default(),
            }
        }
    }

    impl CounterStore for Plain {
        fn totals(&mut self, index: u32) -> Option<&mut Counters> {
            self.totals.get_mut(index as usize)
        }
        fn error(&mut self, kind: ErrorKind) -> Option<&mut u64> {
            self.errors.get_mut(kind as usize)
        }
        fn remote(&mut self, remote: &RemoteKey) -> Option<&mut RemoteCounters> {
            let found = self.remotes[..self.used]
                .iter()
                .position(|(k, _)| k == remote);
            let i = match found {
                Some(i) => i,
                None if self.used < self.cap => {
                    self.remotes[self.used] = (*remote, RemoteCounters::default());
                    self.used += 1;
                    self.used - 1
                }
                None => return None,
            };
            Some(&mut self.remotes[i].1)
        }
        fn overflow(&mut self) -> Option<&mut RemoteCounters> {
            Some(&mut self.overflow)
        }
        fn service(&mut self, _key: &ServiceKey) -> Option<&mut RemoteCounters> {
            None
        }
        fn service_overflow(&mut self) -> Option<&mut RemoteCounters> {
            None
        }
    }

    fn acc(verdict: Verdict, family: u8, remote: u8, ip_bytes: u64) -> Accounting {
        Accounting {
            verdict,
            family,
            remote: RemoteKey::v4([203, 0, 113, remote]),
            packets: 2,
            ip_bytes,
            wire_bytes: ip_bytes + 28,
            note: None,
            protocol: 17,
            ports_at: 0,
        }
    }

    #[test]
    fn up_and_down_go_to_their_slot_and_remote_side_lan_and_transit_to_no_remote() {
        let mut s = Plain::new(2);
        record(&mut s, &acc(Verdict::Up, FAMILY_V6, 1, 100));
        record(&mut s, &acc(Verdict::Down, FAMILY_V6, 1, 40));
        record(&mut s, &acc(Verdict::Lan, FAMILY_V4, 9, 7));
        record(&mut s, &acc(Verdict::Transit, FAMILY_V4, 9, 5));
        let up = s.totals[totals_index(Verdict::Up, FAMILY_V6) as usize];
        assert_eq!((up.packets, up.ip_bytes, up.wire_bytes), (2, 100, 128));
        assert_eq!(
            s.totals[totals_index(Verdict::Lan, FAMILY_V4) as usize].ip_bytes,
            7
        );
        assert_eq!(
            s.totals[totals_index(Verdict::Transit, FAMILY_V4) as usize].ip_bytes,
            5
        );
        assert_eq!(s.used, 1);
        let r = s.remotes[0].1;
        assert_eq!(
            (r.up_packets, r.up_bytes, r.down_packets, r.down_bytes),
            (2, 100, 2, 40)
        );
        assert_eq!(s.errors, [0; ERROR_SLOTS as usize]);
    }

    #[test]
    fn a_full_remote_store_sends_bytes_to_overflow_and_sums_stay_exact() {
        let mut s = Plain::new(1);
        let mut n = acc(Verdict::Up, FAMILY_V4, 1, 10);
        n.note = Some(ErrorKind::LengthBeyondFrame);
        record(&mut s, &n);
        record(&mut s, &acc(Verdict::Up, FAMILY_V4, 2, 20));
        record(&mut s, &acc(Verdict::Down, FAMILY_V4, 3, 30));
        record(&mut s, &acc(Verdict::Up, FAMILY_V4, 1, 1));
        assert_eq!(s.remotes[0].1.up_bytes, 11);
        assert_eq!((s.overflow.up_bytes, s.overflow.down_bytes), (20, 30));
        assert_eq!(s.errors[ErrorKind::RemoteUpdate as usize], 2);
        assert_eq!(s.errors[ErrorKind::LengthBeyondFrame as usize], 1);
        let up = s.totals[totals_index(Verdict::Up, FAMILY_V4) as usize].ip_bytes;
        let down = s.totals[totals_index(Verdict::Down, FAMILY_V4) as usize].ip_bytes;
        assert_eq!(up + down, s.remotes[0].1.bytes() + s.overflow.bytes());
    }

    #[test]
    fn counters_wrap_instead_of_overflowing() {
        let mut c = Counters {
            packets: u64::MAX,
            ip_bytes: u64::MAX - 1,
            wire_bytes: 0,
        };
        c.add(&Counters {
            packets: 2,
            ip_bytes: 2,
            wire_bytes: 3,
        });
        assert_eq!((c.packets, c.ip_bytes, c.wire_bytes), (1, 0, 3));
        let mut r = RemoteCounters {
            down_bytes: u64::MAX,
            ..RemoteCounters::default()
        };
        r.add(&RemoteCounters {
            down_bytes: 1,
            ..RemoteCounters::default()
        });
        assert_eq!(r.down_bytes, 0);
        let mut e = u64::MAX;
        bump(&mut e);
        assert_eq!(e, 0);
    }
}
