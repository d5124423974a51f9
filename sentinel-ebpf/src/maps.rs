//! The maps and the per-packet updates on them. Userspace pins, fills and drains them.

use aya_ebpf::{
    macros::map,
    maps::{
        Array, HashMap, LruPerCpuHashMap, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
};
use sentinel_common::{
    abi::{
        ADDRS_MAX_ENTRIES, CONFIG_SKIP, CONFIG_SLOTS, Counters, ERROR_SLOTS, ErrorKind,
        REMOTES_MAX_ENTRIES, RemoteCounters, RemoteKey, SKIP_V4_NONPUBLIC, SKIP_V4_PUBLIC,
        SKIP_V6_NONPUBLIC, SKIP_V6_PUBLIC, TOTALS_SLOTS,
    },
    account::Accounting,
    addr::AddrFlags,
};
use sentinel_common::{
    abi::{CONFIG_LINK, MACS_MAX_ENTRIES, MacKey},
    frame::LinkKind,
    owner::MacSet,
};

#[map(name = "SNT_TOTALS")]
static TOTALS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(TOTALS_SLOTS, 0);

#[map(name = "SNT_REMOTES")]
static REMOTES: LruPerCpuHashMap<RemoteKey, RemoteCounters> =
    LruPerCpuHashMap::with_max_entries(REMOTES_MAX_ENTRIES, 0);

#[map(name = "SNT_ERRORS")]
static ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ERROR_SLOTS, 0);

#[map(name = "SNT_CONFIG")]
static CONFIG: Array<u64> = Array::with_max_entries(CONFIG_SLOTS, 0);

#[map(name = "SNT_ADDRS_V4")]
static ADDRS_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(ADDRS_MAX_ENTRIES, 0);

#[map(name = "SNT_ADDRS_V6")]
static ADDRS_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(ADDRS_MAX_ENTRIES, 0);

#[map(name = "SNT_MACS")]
static MACS: HashMap<MacKey, u32> = HashMap::with_max_entries(MACS_MAX_ENTRIES, 0);

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
        ADDRS_V4.get(Key::new(32, addr)).copied().unwrap_or(0)
    }

    #[inline(always)]
    fn flags_v6(&self, addr: &[u8; 16], builtin: bool) -> u32 {
        if skip(builtin, SKIP_V6_NONPUBLIC, SKIP_V6_PUBLIC) {
            return 0;
        }
        ADDRS_V6.get(Key::new(128, *addr)).copied().unwrap_or(0)
    }
}

#[inline(always)]
pub fn count_error(kind: ErrorKind) {
    if let Some(slot) = ERRORS.get_ptr_mut(kind as u32) {
        // SAFETY: a per-CPU slot, only ever touched by this CPU while the program runs.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn add_totals(index: u32, acc: &Accounting) {
    if let Some(slot) = TOTALS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, only ever touched by this CPU while the program runs.
        let c = unsafe { &mut *slot };
        c.packets += acc.packets;
        c.ip_bytes += acc.ip_bytes;
        c.wire_bytes += acc.wire_bytes;
    }
}

#[inline(always)]
fn bump(r: &mut RemoteCounters, acc: &Accounting, up: bool) {
    if up {
        r.up_packets += acc.packets;
        r.up_bytes += acc.ip_bytes;
    } else {
        r.down_packets += acc.packets;
        r.down_bytes += acc.ip_bytes;
    }
}

#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "the helpers take pointers: borrowing avoids another stack copy of key and value"
)]
pub fn add_remote(acc: &Accounting, up: bool) {
    if let Some(slot) = REMOTES.get_ptr_mut(&acc.remote) {
        // SAFETY: this CPU's value of a per-CPU entry; nothing else writes it while we run.
        bump(unsafe { &mut *slot }, acc, up);
        return;
    }
    let mut fresh = RemoteCounters::default();
    bump(&mut fresh, acc, up);
    // BPF_NOEXIST: when another CPU created the entry in between, our per-CPU value in it is still
    // zero, so add in place instead.
    if REMOTES.insert(&acc.remote, &fresh, 1).is_err() {
        match REMOTES.get_ptr_mut(&acc.remote) {
            // SAFETY: as above.
            Some(slot) => bump(unsafe { &mut *slot }, acc, up),
            None => count_error(ErrorKind::RemoteUpdate),
        }
    }
}
