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
//! This module must not know the drain's deltas, the store or the API.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
};
use sentinel_common::abi::{
    CONFIG_SIDE, MAP_CONFIG, MAP_OVERFLOW, MAP_REMOTES_A, MAP_REMOTES_B, RemoteCounters, RemoteKey,
};

use super::{EbpfError, map_err};

/// Growth of the per-remote counters since the previous drain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteRead {
    /// Each remote that moved, with what it added.
    pub remotes: Vec<(RemoteKey, RemoteCounters)>,
    /// What the maps had no room for (more distinct remotes than a map holds between two drains).
    pub other: RemoteCounters,
}

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

fn map_name(side: u32) -> &'static str {
    if side == 0 {
        MAP_REMOTES_A
    } else {
        MAP_REMOTES_B
    }
}

fn map_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::maps::Map, EbpfError> {
    ebpf.map_mut(name)
        .ok_or(EbpfError::Missing { what: "map", name })
}

fn remotes_map(
    ebpf: &mut Ebpf,
    side: u32,
) -> Result<PerCpuHashMap<&mut MapData, RemoteKey, RemoteCounters>, EbpfError> {
    let name = map_name(side);
    PerCpuHashMap::try_from(map_mut(ebpf, name)?).map_err(map_err(name, "open"))
}

fn overflow_map(ebpf: &mut Ebpf) -> Result<PerCpuArray<&mut MapData, RemoteCounters>, EbpfError> {
    PerCpuArray::try_from(map_mut(ebpf, MAP_OVERFLOW)?).map_err(map_err(MAP_OVERFLOW, "open"))
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

fn side_moved(ebpf: &mut Ebpf, side: u32) -> Result<bool, EbpfError> {
    if remotes_map(ebpf, side)?.keys().next().is_some() {
        return Ok(true);
    }
    let overflow = overflow_map(ebpf)?;
    let values = overflow
        .get(&side, 0)
        .map_err(map_err(MAP_OVERFLOW, "read"))?;
    Ok(sum(&values) != RemoteCounters::default())
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
    read_and_clear(ebpf, 1 - *side)
}

/// Reads the idle side whole, then deletes what it read and zeroes its overflow slot.
fn read_and_clear(ebpf: &mut Ebpf, idle: u32) -> Result<RemoteRead, EbpfError> {
    let name = map_name(idle);
    let mut out = RemoteRead::default();
    let mut map = remotes_map(ebpf, idle)?;
    for entry in map.iter() {
        let (key, values) = entry.map_err(map_err(name, "iterate"))?;
        out.remotes.push((key, sum(&values)));
    }
    for (key, _) in &out.remotes {
        map.remove(key).map_err(map_err(name, "delete"))?;
    }
    let mut overflow = overflow_map(ebpf)?;
    let values = overflow
        .get(&idle, 0)
        .map_err(map_err(MAP_OVERFLOW, "read"))?;
    out.other = sum(&values);
    if out.other != RemoteCounters::default() {
        let zeros = vec![RemoteCounters::default(); values.iter().count()];
        let zeros = PerCpuValues::try_from(zeros).map_err(|e| EbpfError::Map {
            map: MAP_OVERFLOW,
            action: "zero",
            source: aya::maps::MapError::IoError(e),
        })?;
        overflow
            .set(idle, zeros, 0)
            .map_err(map_err(MAP_OVERFLOW, "zero"))?;
    }
    out.remotes.retain(|(_, c)| *c != RemoteCounters::default());
    Ok(out)
}
