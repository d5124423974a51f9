//! Draining the per-remote maps: read only what moved, each byte exactly once.
//!
//! The program adds every public packet to one of two per-CPU hash maps, the side named by the
//! config slot `CONFIG_SIDE`, or to that side's overflow slot when the map is full (see
//! `sentinel_common::abi`'s per-remote block and `sentinel_common::record`). A drain:
//! 1. looks whether the written side moved (one `get_next_key` and one overflow read); if not,
//!    it is done: an idle drain costs a few syscalls whatever the number of remotes ever seen;
//! 2. otherwise flips the slot, then waits for an RCU grace period (`membarrier`'s
//!    `MEMBARRIER_CMD_GLOBAL` runs `synchronize_rcu`): every TC program run, and every
//!    BPF_PROG_TEST_RUN repetition, runs inside an RCU read-side section, so once it returns no run
//!    that could have read the old side is still adding to it;
//! 3. reads the idle side whole (its map and its overflow slot), then deletes what it read and
//!    zeroes the overflow slot. Nothing writes the idle side, so the read is a consistent
//!    snapshot, iteration never restarts under deletions, and an element is never reused while a
//!    program holds a pointer to it.
//!
//! What was read is the remotes' growth since the previous drain: userspace keeps no per-remote
//! baseline. Entries left in either side by an earlier daemon (it stopped between two drains, or
//! counting went on while it was away) are read by the next drains, so they are reported, not
//! lost. A crash between reading and deleting would report those entries again; a crash after
//! deleting and before the store's flush loses them, like any unflushed delta.
//!
//! The per-service maps (`SNT_SVC_A`/`SNT_SVC_B` and `SNT_SVC_OVF`) ride on the same side slot:
//! the program adds a packet's service on the side it read for its remote, so one flip and one
//! grace period serve both, and the drain reads and deletes the idle side of both alike.
//!
//! This module must not know the drain's deltas, the store or the API.

use std::time::Duration;

use aya::{
    Ebpf, Pod,
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
};
use sentinel_common::abi::{
    CONFIG_SIDE, MAP_CONFIG, MAP_OVERFLOW, MAP_REMOTES_A, MAP_REMOTES_B, MAP_SERVICES_A,
    MAP_SERVICES_B, MAP_SVC_OVERFLOW, RemoteCounters, RemoteKey, ServiceKey,
};

use super::{EbpfError, map_err};

/// Growth of the per-remote counters since the previous drain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteRead {
    /// Each remote that moved, with what it added.
    pub remotes: Vec<(RemoteKey, RemoteCounters)>,
    /// What the maps had no room for (more distinct remotes than a map holds between two drains).
    pub other: RemoteCounters,
    /// Each service that moved, with what it added.
    pub services: Vec<(ServiceKey, RemoteCounters)>,
    /// What the service maps had no room for.
    pub other_services: RemoteCounters,
}

/// One two-sided counter family: its maps and its overflow array.
struct Family {
    maps: [&'static str; 2],
    overflow: &'static str,
}

const REMOTES: Family = Family {
    maps: [MAP_REMOTES_A, MAP_REMOTES_B],
    overflow: MAP_OVERFLOW,
};

const SERVICES: Family = Family {
    maps: [MAP_SERVICES_A, MAP_SERVICES_B],
    overflow: MAP_SVC_OVERFLOW,
};

/// When `membarrier` is unavailable (a `nohz_full` kernel refuses `MEMBARRIER_CMD_GLOBAL`): a TC
/// program run takes microseconds with preemption disabled, so this is thousands of times longer.
const GRACE_FALLBACK: Duration = Duration::from_millis(50);

/// `MEMBARRIER_CMD_GLOBAL` (linux/membarrier.h): waits for an RCU grace period.
const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;

/// Waits until no program run that started before the call is still running.
fn rcu_grace() {
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc != 0 {
        std::thread::sleep(GRACE_FALLBACK);
    }
}

fn map_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::maps::Map, EbpfError> {
    ebpf.map_mut(name)
        .ok_or(EbpfError::Missing { what: "map", name })
}

fn side_map<'a, K: Pod>(
    ebpf: &'a mut Ebpf,
    family: &Family,
    side: u32,
) -> Result<PerCpuHashMap<&'a mut MapData, K, RemoteCounters>, EbpfError> {
    let name = family.maps[(side & 1) as usize];
    PerCpuHashMap::try_from(map_mut(ebpf, name)?).map_err(map_err(name, "open"))
}

fn overflow_map<'a>(
    ebpf: &'a mut Ebpf,
    family: &Family,
) -> Result<PerCpuArray<&'a mut MapData, RemoteCounters>, EbpfError> {
    let name = family.overflow;
    PerCpuArray::try_from(map_mut(ebpf, name)?).map_err(map_err(name, "open"))
}

fn sum(values: &PerCpuValues<RemoteCounters>) -> RemoteCounters {
    let mut total = RemoteCounters::default();
    for v in values.iter() {
        total.add(v);
    }
    total
}

/// The side the program writes, as recorded in the config map.
pub(super) fn written_side(ebpf: &mut Ebpf) -> Result<u32, EbpfError> {
    let config: Array<_, u64> =
        Array::try_from(map_mut(ebpf, MAP_CONFIG)?).map_err(map_err(MAP_CONFIG, "open"))?;
    let side = config
        .get(&CONFIG_SIDE, 0)
        .map_err(map_err(MAP_CONFIG, "read"))?;
    Ok(u32::from(side & 1 == 1))
}

fn family_moved<K: Pod>(ebpf: &mut Ebpf, family: &Family, side: u32) -> Result<bool, EbpfError> {
    if side_map::<K>(ebpf, family, side)?.keys().next().is_some() {
        return Ok(true);
    }
    let overflow = overflow_map(ebpf, family)?;
    let values = overflow
        .get(&side, 0)
        .map_err(map_err(family.overflow, "read"))?;
    Ok(sum(&values) != RemoteCounters::default())
}

fn side_moved(ebpf: &mut Ebpf, side: u32) -> Result<bool, EbpfError> {
    // Every public packet moves both families, but a service map may still hold what an
    // earlier daemon left in it: look at both.
    Ok(family_moved::<RemoteKey>(ebpf, &REMOTES, side)?
        || family_moved::<ServiceKey>(ebpf, &SERVICES, side)?)
}

/// One drain of the per-remote maps (see the module documentation). `side` is the side the
/// program writes; it is updated when the drain flips it.
pub(super) fn drain(ebpf: &mut Ebpf, side: &mut u32) -> Result<RemoteRead, EbpfError> {
    if side_moved(ebpf, *side)? {
        let flipped = 1 - *side;
        let mut config: Array<_, u64> =
            Array::try_from(map_mut(ebpf, MAP_CONFIG)?).map_err(map_err(MAP_CONFIG, "open"))?;
        config
            .set(CONFIG_SIDE, u64::from(flipped), 0)
            .map_err(map_err(MAP_CONFIG, "write"))?;
        *side = flipped;
        rcu_grace();
    }
    let (remotes, other) = read_and_clear::<RemoteKey>(ebpf, &REMOTES, 1 - *side)?;
    let (services, other_services) = read_and_clear::<ServiceKey>(ebpf, &SERVICES, 1 - *side)?;
    Ok(RemoteRead {
        remotes,
        other,
        services,
        other_services,
    })
}

/// What [`read_and_clear`] read: the entries that moved and the overflow.
type Read<K> = (Vec<(K, RemoteCounters)>, RemoteCounters);

/// Reads the idle side whole, then deletes what it read and zeroes its overflow slot.
///
/// Exact also when something fails: a failed read deletes nothing (the next drain reads it all),
/// and an entry (or the overflow) that cannot be deleted (or zeroed) is left out of this read and
/// stays in the map for the next drain, so nothing is lost and nothing is reported twice.
fn read_and_clear<K: Pod>(
    ebpf: &mut Ebpf,
    family: &Family,
    idle: u32,
) -> Result<Read<K>, EbpfError> {
    let name = family.maps[(idle & 1) as usize];
    let mut read = Vec::new();
    let mut map = side_map::<K>(ebpf, family, idle)?;
    for entry in map.iter() {
        let (key, values) = entry.map_err(map_err(name, "iterate"))?;
        read.push((key, sum(&values)));
    }
    let mut out: Read<K> = (Vec::new(), RemoteCounters::default());
    let mut kept = 0usize;
    for (key, counters) in read {
        match map.remove(&key) {
            Ok(()) if counters != RemoteCounters::default() => out.0.push((key, counters)),
            Ok(()) => {}
            Err(e) => {
                kept += 1;
                tracing::debug!(map = name, error = %e, "deleting a drained remote failed; it is read again next time");
            }
        }
    }
    if kept > 0 {
        tracing::warn!(
            map = name,
            kept,
            "some drained remotes could not be deleted; they are reported by a later drain"
        );
    }
    let mut overflow = overflow_map(ebpf, family)?;
    let values = overflow
        .get(&idle, 0)
        .map_err(map_err(family.overflow, "read"))?;
    let other = sum(&values);
    if other != RemoteCounters::default() {
        let zeros = vec![RemoteCounters::default(); values.iter().count()];
        let zeroed = PerCpuValues::try_from(zeros)
            .map_err(aya::maps::MapError::IoError)
            .and_then(|zeros| overflow.set(idle, zeros, 0));
        match zeroed {
            Ok(()) => out.1 = other,
            Err(e) => tracing::warn!(
                map = family.overflow,
                error = %e,
                "zeroing the drained overflow failed; it is reported by a later drain"
            ),
        }
    }
    Ok(out)
}
