//! The maps, and the per-packet storage [`sentinel_common::record::record`] adds to. Userspace
//! pins, fills and drains them.
//!
//! Per-remote counters live in two maps; the config slot `CONFIG_SIDE` says which one this run
//! adds to (see `sentinel_common::abi`'s per-remote block); the per-service maps follow the same
//! side. Nothing here ever deletes: the drain
//! deletes from the side no program writes any more, after an RCU grace period.
//!
//! Every map is a BTF map (`.maps` section): the kernel gets the key and value types with it, so
//! `bpftool map dump` prints field names (`packets`, `ip_bytes`, ...) instead of raw hex.

use aya_ebpf::{
    btf_maps::{
        Array, HashMap, PerCpuArray, PerCpuHashMap,
        lpm_trie::{Key, LpmTrie},
    },
    macros::btf_map,
};
use sentinel_common::{
    abi::{
        ADDRS_MAX_ENTRIES, CONFIG_SIDE, CONFIG_SKIP, CONFIG_SLOTS, Counters, ERROR_SLOTS,
        ErrorKind, OVERFLOW_SLOTS, REMOTES_MAX_ENTRIES, RemoteCounters, RemoteKey,
        SKIP_V4_NONPUBLIC, SKIP_V4_PUBLIC, SKIP_V6_NONPUBLIC, SKIP_V6_PUBLIC, TOTALS_SLOTS,
    },
    addr::AddrFlags,
    record::CounterStore,
};
use sentinel_common::{
    abi::{CONFIG_LINK, MACS_MAX_ENTRIES, MacKey},
    frame::LinkKind,
    owner::MacSet,
};
use sentinel_common::{
    abi::{
        CONFIG_SERVICES, LISTEN_MAX_ENTRIES, ListenKey, SERVICES_MAX_ENTRIES, SERVICES_ON,
        ServiceKey,
    },
    service::ListenSet,
};

#[btf_map(name = "SNT_TOTALS")]
static TOTALS: PerCpuArray<Counters, { TOTALS_SLOTS as usize }> = PerCpuArray::new();

#[btf_map(name = "SNT_REMOTES_A")]
static REMOTES_A: RemoteMap = PerCpuHashMap::new();

#[btf_map(name = "SNT_REMOTES_B")]
static REMOTES_B: RemoteMap = PerCpuHashMap::new();

/// The type of both per-remote maps.
type RemoteMap = PerCpuHashMap<RemoteKey, RemoteCounters, { REMOTES_MAX_ENTRIES as usize }>;

#[btf_map(name = "SNT_OVERFLOW")]
static OVERFLOW: PerCpuArray<RemoteCounters, { OVERFLOW_SLOTS as usize }> = PerCpuArray::new();

#[btf_map(name = "SNT_SVC_A")]
static SERVICES_A: ServiceMap = PerCpuHashMap::new();

#[btf_map(name = "SNT_SVC_B")]
static SERVICES_B: ServiceMap = PerCpuHashMap::new();

/// The type of both per-service maps.
type ServiceMap = PerCpuHashMap<ServiceKey, RemoteCounters, { SERVICES_MAX_ENTRIES as usize }>;

#[btf_map(name = "SNT_SVC_OVF")]
static SVC_OVERFLOW: PerCpuArray<RemoteCounters, { OVERFLOW_SLOTS as usize }> = PerCpuArray::new();

#[btf_map(name = "SNT_LISTEN")]
static LISTEN: HashMap<ListenKey, u32, { LISTEN_MAX_ENTRIES as usize }> = HashMap::new();

#[btf_map(name = "SNT_ERRORS")]
static ERRORS: PerCpuArray<u64, { ERROR_SLOTS as usize }> = PerCpuArray::new();

#[btf_map(name = "SNT_CONFIG")]
static CONFIG: Array<u64, { CONFIG_SLOTS as usize }> = Array::new();

#[btf_map(name = "SNT_ADDRS_V4")]
static ADDRS_V4: LpmTrie<[u8; 4], u32, { ADDRS_MAX_ENTRIES as usize }> = LpmTrie::new();

#[btf_map(name = "SNT_ADDRS_V6")]
static ADDRS_V6: LpmTrie<[u8; 16], u32, { ADDRS_MAX_ENTRIES as usize }> = LpmTrie::new();

/// `BPF_NOEXIST`: create only.
const BPF_NOEXIST: u64 = 1;

#[btf_map(name = "SNT_MACS")]
static MACS: HashMap<MacKey, u32, { MACS_MAX_ENTRIES as usize }> = HashMap::new();

/// The monitored link's header kind, as userspace set it.
#[inline(always)]
pub fn link_kind() -> LinkKind {
    LinkKind::from_config(CONFIG.get(CONFIG_LINK).copied().unwrap_or(0))
}

/// The NAS's own MACs besides the interface's (macvlan children, master bridge).
pub struct OwnMacs;

impl MacSet for OwnMacs {
    #[inline(always)]
    fn contains(&self, mac: &[u8; 6]) -> bool {
        MACS.get_ptr(MacKey::new(*mac)).is_some()
    }
}

/// Whether userspace left per-service counting on (the benchmark turns it off).
#[inline(always)]
pub fn services_on() -> bool {
    CONFIG.get(CONFIG_SERVICES).copied().unwrap_or(SERVICES_ON) == SERVICES_ON
}

/// The NAS's listening ports, as userspace pushed them.
pub struct Listening;

impl ListenSet for Listening {
    #[inline(always)]
    fn listens(&self, key: &ListenKey) -> bool {
        LISTEN.get_ptr(*key).is_some()
    }
}

/// The address tries as the rules' flag source.
pub struct AddrTries;

/// Whether a lookup can be left out, per the `SKIP_*` bits userspace keeps in the config map.
#[inline(always)]
fn skip(builtin: bool, skip_nonpublic: u32, skip_public: u32) -> bool {
    let bits = CONFIG.get(CONFIG_SKIP).copied().unwrap_or(0) as u32;
    bits & if builtin { skip_nonpublic } else { skip_public } != 0
}

impl AddrFlags for AddrTries {
    #[inline(always)]
    fn flags_v4(&self, addr: [u8; 4], builtin: bool) -> u32 {
        if skip(builtin, SKIP_V4_NONPUBLIC, SKIP_V4_PUBLIC) {
            return 0;
        }
        ADDRS_V4.get(&Key::new(32, addr)).copied().unwrap_or(0)
    }

    #[inline(always)]
    fn flags_v6(&self, addr: &[u8; 16], builtin: bool) -> u32 {
        if skip(builtin, SKIP_V6_NONPUBLIC, SKIP_V6_PUBLIC) {
            return 0;
        }
        ADDRS_V6.get(&Key::new(128, *addr)).copied().unwrap_or(0)
    }
}

/// This CPU's counters, as [`CounterStore`]: the side of the per-remote maps is read once per
/// packet, so one packet's remote bytes land in one side.
pub struct KernelCounters {
    side: u64,
}

impl KernelCounters {
    /// The counters of this run, on the side the drain currently lets the program write.
    #[inline(always)]
    pub fn current() -> Self {
        Self {
            side: CONFIG.get(CONFIG_SIDE).copied().unwrap_or(0) & 1,
        }
    }
}

/// This CPU's value of `key` in `map`, created at zero when missing; `None` when the map is full
/// (as [`remote_in`]).
#[inline(always)]
fn service_in(map: &ServiceMap, key: &ServiceKey) -> Option<*mut RemoteCounters> {
    match map.get_ptr_mut(key) {
        Some(ptr) => Some(ptr),
        None => {
            let _ = map.insert(key, RemoteCounters::default(), BPF_NOEXIST);
            map.get_ptr_mut(key)
        }
    }
}

/// This CPU's value of `key` in `map`, created at zero when missing; `None` when the map is full.
#[inline(always)]
fn remote_in(map: &RemoteMap, key: &RemoteKey) -> Option<*mut RemoteCounters> {
    match map.get_ptr_mut(key) {
        Some(ptr) => Some(ptr),
        None => {
            // BPF_NOEXIST: when another CPU created the entry in between, this CPU's value in it
            // is still zero and the insert fails harmlessly; a full map fails it too (E2BIG).
            let _ = map.insert(key, RemoteCounters::default(), BPF_NOEXIST);
            map.get_ptr_mut(key)
        }
    }
}

impl CounterStore for KernelCounters {
    #[inline(always)]
    fn totals(&mut self, index: u32) -> Option<&mut Counters> {
        // SAFETY: this CPU's slot of a per-CPU array, only touched by this CPU while we run.
        TOTALS.get_ptr_mut(index).map(|p| unsafe { &mut *p })
    }

    #[inline(always)]
    fn error(&mut self, kind: ErrorKind) -> Option<&mut u64> {
        // SAFETY: as for `totals`.
        ERRORS.get_ptr_mut(kind as u32).map(|p| unsafe { &mut *p })
    }

    #[inline(always)]
    fn remote(&mut self, remote: &RemoteKey) -> Option<&mut RemoteCounters> {
        let ptr = if self.side == 0 {
            remote_in(&REMOTES_A, remote)
        } else {
            remote_in(&REMOTES_B, remote)
        }?;
        // SAFETY: this CPU's value of a per-CPU entry; nothing else writes it while the program
        // runs (TC programs run with preemption disabled), and userspace deletes entries only
        // from the side no program writes, after an RCU grace period, so the element is not
        // reused under us.
        Some(unsafe { &mut *ptr })
    }

    #[inline(always)]
    fn overflow(&mut self) -> Option<&mut RemoteCounters> {
        // SAFETY: as for `totals`; the drain zeroes a side's slot only after a grace period.
        OVERFLOW
            .get_ptr_mut(self.side as u32)
            .map(|p| unsafe { &mut *p })
    }

    #[inline(always)]
    fn service(&mut self, key: &ServiceKey) -> Option<&mut RemoteCounters> {
        let ptr = if self.side == 0 {
            service_in(&SERVICES_A, key)
        } else {
            service_in(&SERVICES_B, key)
        }?;
        // SAFETY: as for `remote`: the drain deletes service entries only from the idle side,
        // after the same grace period.
        Some(unsafe { &mut *ptr })
    }

    #[inline(always)]
    fn service_overflow(&mut self) -> Option<&mut RemoteCounters> {
        // SAFETY: as for `overflow`.
        SVC_OVERFLOW
            .get_ptr_mut(self.side as u32)
            .map(|p| unsafe { &mut *p })
    }
}

/// Counts an error event (the program's error paths).
#[inline(always)]
pub fn count_error(kind: ErrorKind) {
    sentinel_common::record::count_error(&mut KernelCounters { side: 0 }, kind);
}
