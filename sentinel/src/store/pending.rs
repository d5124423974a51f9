//! The in-memory accumulator of traffic not yet committed to the database: per local hour slot,
//! per (local day, remote address), an overflow "other" per day, and the latest capture checkpoint.
//!
//! The meter records into it every second ([`Pending::record`]); the writer thread copies it
//! (`Pending::snapshot`), commits the copy, and only then subtracts it (`Pending::release`), so a
//! failed write loses nothing and data recorded during the write stays. Queries read it to merge
//! unflushed traffic. It knows nothing of SQLite; time comes in as Unix seconds.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Mutex, MutexGuard, PoisonError},
};

use sentinel_common::abi::{Counters, RemoteCounters, ServiceKey};

use crate::timebucket::{HourSlot, Zone, day_of_local_seconds};

/// Up and down counters of one period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Sent by the NAS to the internet.
    pub up: Counters,
    /// Received by the NAS from the internet.
    pub down: Counters,
}

impl Traffic {
    /// Adds `other` (saturating).
    pub fn add(&mut self, other: &Traffic) {
        add_counters(&mut self.up, &other.up);
        add_counters(&mut self.down, &other.down);
    }

    /// Subtracts `other` (saturating at zero).
    pub fn sub(&mut self, other: &Traffic) {
        sub_counters(&mut self.up, &other.up);
        sub_counters(&mut self.down, &other.down);
    }

    /// Up plus down IP bytes.
    pub fn total_bytes(&self) -> u64 {
        self.up.ip_bytes.saturating_add(self.down.ip_bytes)
    }

    /// True when every counter is zero.
    pub fn is_zero(&self) -> bool {
        *self == Traffic::default()
    }
}

fn add_counters(a: &mut Counters, b: &Counters) {
    a.packets = a.packets.saturating_add(b.packets);
    a.ip_bytes = a.ip_bytes.saturating_add(b.ip_bytes);
    a.wire_bytes = a.wire_bytes.saturating_add(b.wire_bytes);
}

fn sub_counters(a: &mut Counters, b: &Counters) {
    a.packets = a.packets.saturating_sub(b.packets);
    a.ip_bytes = a.ip_bytes.saturating_sub(b.ip_bytes);
    a.wire_bytes = a.wire_bytes.saturating_sub(b.wire_bytes);
}

/// Adds remote counters (saturating).
pub(crate) fn add_remote(a: &mut RemoteCounters, b: &RemoteCounters) {
    a.up_packets = a.up_packets.saturating_add(b.up_packets);
    a.up_bytes = a.up_bytes.saturating_add(b.up_bytes);
    a.down_packets = a.down_packets.saturating_add(b.down_packets);
    a.down_bytes = a.down_bytes.saturating_add(b.down_bytes);
}

fn sub_remote(a: &mut RemoteCounters, b: &RemoteCounters) {
    a.up_packets = a.up_packets.saturating_sub(b.up_packets);
    a.up_bytes = a.up_bytes.saturating_sub(b.up_bytes);
    a.down_packets = a.down_packets.saturating_sub(b.down_packets);
    a.down_bytes = a.down_bytes.saturating_sub(b.down_bytes);
}

/// What one drain of the capture counters adds, and where the capture stood afterwards.
#[derive(Clone, Debug, Default)]
pub struct Sample<'a> {
    /// When the counters were read (Unix seconds); decides the hour slot and the day.
    pub at: i64,
    /// Public traffic sent since the previous sample.
    pub up: Counters,
    /// Public traffic received since the previous sample.
    pub down: Counters,
    /// Per-remote traffic since the previous sample.
    pub remotes: &'a [(IpAddr, RemoteCounters)],
    /// Public traffic since the previous sample that capture could not keep per remote; added to
    /// the day's "other" total.
    pub other_remotes: RemoteCounters,
    /// Per-service traffic since the previous sample (`sentinel_common::service`).
    pub services: &'a [(ServiceKey, RemoteCounters)],
    /// Public traffic since the previous sample that capture could not keep per service.
    pub other_services: RemoteCounters,
    /// The capture layer's opaque checkpoint after this sample ("what the kernel counters read"),
    /// stored in the same transaction as the traffic it accounts for. `None` keeps the previous one.
    pub checkpoint: Option<Vec<u8>>,
}

/// One pending hour: its offset (the label is `floor_hour(start + offset)`) and its traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PendingHour {
    pub offset: i32,
    pub traffic: Traffic,
}

/// A copy of everything pending, as the writer commits it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Keyed by the slot's UTC start.
    pub hours: BTreeMap<i64, PendingHour>,
    /// Keyed by (local day number, remote address).
    pub remotes: HashMap<(i64, IpAddr), RemoteCounters>,
    /// Per local day: remotes that did not fit in memory, folded into the day's "other" total.
    pub others: BTreeMap<i64, RemoteCounters>,
    /// Keyed by (local day number, service); bounded like `remotes` (beyond it: `service_others`).
    pub services: HashMap<(i64, ServiceKey), RemoteCounters>,
    /// Per local day: what was not kept per service.
    pub service_others: BTreeMap<i64, RemoteCounters>,
    /// The latest checkpoint, if any was ever recorded.
    pub checkpoint: Option<Vec<u8>>,
}

impl Batch {
    /// True when there is no traffic in it.
    pub fn has_no_traffic(&self) -> bool {
        self.hours.is_empty()
            && self.remotes.is_empty()
            && self.others.is_empty()
            && self.services.is_empty()
            && self.service_others.is_empty()
    }
}

#[derive(Debug, Default)]
struct Inner {
    data: Batch,
    /// The checkpoint changed since the last commit.
    checkpoint_dirty: bool,
    /// Remote entries folded into "other" because `max_remotes` was reached.
    folded: u64,
}

/// Counts of what is pending, for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingCounts {
    /// Hour slots with unflushed traffic.
    pub hours: usize,
    /// (day, remote) entries with unflushed traffic.
    pub remotes: usize,
    /// Remote entries folded into the day's "other" total since start because memory was full.
    pub folded_remotes: u64,
}

/// The accumulator. Shared by the meter (writes), the writer thread and readers.
#[derive(Debug)]
pub struct Pending {
    zone: Zone,
    max_remotes: usize,
    inner: Mutex<Inner>,
}

impl Pending {
    /// An empty accumulator bucketing in `zone`, holding at most `max_remotes` (day, remote) entries
    /// (beyond that, new remotes are added to the day's "other" total: totals stay exact).
    pub(crate) fn new(zone: Zone, max_remotes: usize) -> Pending {
        Pending {
            zone,
            max_remotes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the data consistent (no panics inside), so a poisoned lock
        // still guards valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one sample, atomically with its checkpoint.
    pub fn record(&self, sample: &Sample<'_>) {
        let slot = self.zone.slot(sample.at);
        let day = day_of_local_seconds(slot.start + i64::from(slot.offset));
        let traffic = Traffic {
            up: sample.up,
            down: sample.down,
        };
        let mut inner = self.lock();
        let max_remotes = self.max_remotes;
        let Inner {
            data,
            checkpoint_dirty,
            folded,
        } = &mut *inner;
        if !traffic.is_zero() {
            let hour = data.hours.entry(slot.start).or_insert(PendingHour {
                offset: slot.offset,
                traffic: Traffic::default(),
            });
            hour.traffic.add(&traffic);
        }
        for (addr, counters) in sample.remotes {
            if *counters == RemoteCounters::default() {
                continue;
            }
            let len = data.remotes.len();
            match data.remotes.get_mut(&(day, *addr)) {
                Some(entry) => add_remote(entry, counters),
                None if len < max_remotes => {
                    data.remotes.insert((day, *addr), *counters);
                }
                None => {
                    add_remote(data.others.entry(day).or_default(), counters);
                    *folded += 1;
                }
            }
        }
        if sample.other_remotes != RemoteCounters::default() {
            add_remote(data.others.entry(day).or_default(), &sample.other_remotes);
        }
        for (key, counters) in sample.services {
            if *counters == RemoteCounters::default() {
                continue;
            }
            let len = data.services.len();
            match data.services.get_mut(&(day, *key)) {
                Some(entry) => add_remote(entry, counters),
                None if len < max_remotes => {
                    data.services.insert((day, *key), *counters);
                }
                None => add_remote(data.service_others.entry(day).or_default(), counters),
            }
        }
        if sample.other_services != RemoteCounters::default() {
            add_remote(
                data.service_others.entry(day).or_default(),
                &sample.other_services,
            );
        }
        if let Some(checkpoint) = &sample.checkpoint {
            data.checkpoint = Some(checkpoint.clone());
            *checkpoint_dirty = true;
        }
    }

    /// A copy of everything pending, or `None` when there is nothing to write.
    pub(crate) fn snapshot(&self) -> Option<Batch> {
        let inner = self.lock();
        (!inner.data.has_no_traffic() || inner.checkpoint_dirty).then(|| inner.data.clone())
    }

    /// Subtracts a committed batch; what was recorded after the snapshot stays.
    pub(crate) fn release(&self, batch: &Batch) {
        let mut inner = self.lock();
        let data = &mut inner.data;
        for (start, hour) in &batch.hours {
            if let Some(mine) = data.hours.get_mut(start) {
                mine.traffic.sub(&hour.traffic);
                if mine.traffic.is_zero() {
                    data.hours.remove(start);
                }
            }
        }
        for (key, counters) in &batch.remotes {
            if let Some(mine) = data.remotes.get_mut(key) {
                sub_remote(mine, counters);
                if *mine == RemoteCounters::default() {
                    data.remotes.remove(key);
                }
            }
        }
        for (day, counters) in &batch.others {
            if let Some(mine) = data.others.get_mut(day) {
                sub_remote(mine, counters);
                if *mine == RemoteCounters::default() {
                    data.others.remove(day);
                }
            }
        }
        for (key, counters) in &batch.services {
            if let Some(mine) = data.services.get_mut(key) {
                sub_remote(mine, counters);
                if *mine == RemoteCounters::default() {
                    data.services.remove(key);
                }
            }
        }
        for (day, counters) in &batch.service_others {
            if let Some(mine) = data.service_others.get_mut(day) {
                sub_remote(mine, counters);
                if *mine == RemoteCounters::default() {
                    data.service_others.remove(day);
                }
            }
        }
        if data.checkpoint == batch.checkpoint {
            inner.checkpoint_dirty = false;
        }
    }

    /// Pending hours whose label lies in `[label_from, label_to)` (local seconds).
    pub(crate) fn hours_in(&self, label_from: i64, label_to: i64) -> Vec<(HourSlot, Traffic)> {
        let inner = self.lock();
        inner
            .data
            .hours
            .iter()
            .map(|(start, h)| {
                let slot = HourSlot {
                    start: *start,
                    offset: h.offset,
                };
                (slot, h.traffic)
            })
            .filter(|(slot, _)| (label_from..label_to).contains(&slot.label()))
            .collect()
    }

    /// Pending remotes and "other" totals of the local days `[day_from, day_to]`.
    pub(crate) fn remotes_in(
        &self,
        day_from: i64,
        day_to: i64,
    ) -> (Vec<(IpAddr, RemoteCounters)>, RemoteCounters) {
        let inner = self.lock();
        let days = day_from..=day_to;
        let remotes = inner
            .data
            .remotes
            .iter()
            .filter(|((day, _), _)| days.contains(day))
            .map(|((_, addr), c)| (*addr, *c))
            .collect();
        let mut other = RemoteCounters::default();
        for (_, c) in inner.data.others.range(days) {
            add_remote(&mut other, c);
        }
        (remotes, other)
    }

    /// Pending services and "other" totals of the local days `[day_from, day_to]`.
    pub(crate) fn services_in(
        &self,
        day_from: i64,
        day_to: i64,
    ) -> (Vec<(ServiceKey, RemoteCounters)>, RemoteCounters) {
        let inner = self.lock();
        let days = day_from..=day_to;
        let services = inner
            .data
            .services
            .iter()
            .filter(|((day, _), _)| days.contains(day))
            .map(|((_, key), c)| (*key, *c))
            .collect();
        let mut other = RemoteCounters::default();
        for (_, c) in inner.data.service_others.range(days) {
            add_remote(&mut other, c);
        }
        (services, other)
    }

    /// The earliest and latest pending hour slots.
    pub(crate) fn first_and_last(&self) -> Option<(HourSlot, HourSlot)> {
        let inner = self.lock();
        let slot = |(start, h): (&i64, &PendingHour)| HourSlot {
            start: *start,
            offset: h.offset,
        };
        let first = inner.data.hours.iter().next().map(slot)?;
        let last = inner.data.hours.iter().next_back().map(slot)?;
        Some((first, last))
    }

    /// What is pending.
    pub fn counts(&self) -> PendingCounts {
        let inner = self.lock();
        PendingCounts {
            hours: inner.data.hours.len(),
            remotes: inner.data.remotes.len(),
            folded_remotes: inner.folded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(ip: u64) -> Counters {
        Counters {
            packets: 1,
            ip_bytes: ip,
            wire_bytes: ip + 14,
        }
    }

    fn remote(up: u64, down: u64) -> RemoteCounters {
        RemoteCounters {
            up_packets: 1,
            up_bytes: up,
            down_packets: 1,
            down_bytes: down,
        }
    }

    const T0: i64 = 1_742_020_641; // 2025-03-15 06:37:21 UTC

    #[test]
    fn release_keeps_what_arrived_during_the_write() {
        let pending = Pending::new(Zone::UTC, 10);
        let a: IpAddr = "203.0.113.1".parse().expect("ip");
        pending.record(&Sample {
            at: T0,
            up: bytes(100),
            down: bytes(200),
            remotes: &[(a, remote(100, 200))],
            checkpoint: Some(vec![1]),
            ..Sample::default()
        });
        let batch = pending.snapshot().expect("something to write");
        pending.record(&Sample {
            at: T0 + 1,
            up: bytes(5),
            remotes: &[(a, remote(5, 0))],
            checkpoint: Some(vec![2]),
            ..Sample::default()
        });
        pending.release(&batch);
        let left = pending.snapshot().expect("newer data stays");
        let hour = left.hours.values().next().expect("hour");
        assert_eq!(hour.traffic.up.ip_bytes, 5);
        assert_eq!(hour.traffic.down, Counters::default());
        assert_eq!(left.remotes.values().next(), Some(&remote(5, 0)));
        assert_eq!(left.checkpoint, Some(vec![2]));
        pending.release(&left);
        assert_eq!(pending.snapshot(), None);
        assert_eq!(pending.counts().hours, 0);
    }

    #[test]
    fn remotes_beyond_the_cap_fold_into_other_without_losing_bytes() {
        let pending = Pending::new(Zone::UTC, 2);
        let ips: Vec<(IpAddr, RemoteCounters)> = (1..=5u8)
            .map(|i| (IpAddr::from([198, 51, 100, i]), remote(u64::from(i), 0)))
            .collect();
        pending.record(&Sample {
            at: T0,
            remotes: &ips,
            ..Sample::default()
        });
        let day = T0.div_euclid(86_400);
        let (kept, other) = pending.remotes_in(day, day);
        assert_eq!(kept.len(), 2);
        let kept_bytes: u64 = kept.iter().map(|(_, c)| c.up_bytes).sum();
        assert_eq!(kept_bytes + other.up_bytes, 15);
        assert_eq!(pending.counts().folded_remotes, 3);
        // What capture itself could not keep per remote joins the same "other".
        pending.record(&Sample {
            at: T0,
            other_remotes: remote(0, 7),
            ..Sample::default()
        });
        let (_, other) = pending.remotes_in(day, day);
        assert_eq!((other.up_bytes, other.down_bytes), (15 - kept_bytes, 7));
    }

    #[test]
    fn samples_are_bucketed_by_local_hour() {
        let zone = Zone::parse("Asia/Kolkata").expect("zone");
        let pending = Pending::new(zone, 10);
        for at in [T0, T0 + 60] {
            pending.record(&Sample {
                at,
                up: bytes(1),
                ..Sample::default()
            });
        }
        let hours = pending.hours_in(i64::MIN, i64::MAX);
        assert_eq!(hours.len(), 1);
        assert_eq!(hours[0].0.start.rem_euclid(3600), 1800);
        assert_eq!(hours[0].1.up.ip_bytes, 2);
        // An empty sample with only a checkpoint still needs a write.
        pending.release(&pending.snapshot().expect("batch"));
        pending.record(&Sample {
            at: T0,
            checkpoint: Some(vec![9]),
            ..Sample::default()
        });
        assert!(pending.snapshot().is_some());
    }
}
