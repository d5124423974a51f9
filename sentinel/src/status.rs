//! The capture status: what a user needs to check that counting works (backend, attach mode,
//! program, pins, map fill, errors, last drain, addresses and prefixes). Logged at start-up and
//! kept, shared, for the API.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::SystemTime,
};

use ipnet::Ipv6Net;

use crate::capture::{AttachMode, KernelTotals};

/// Whether capture is counting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CaptureState {
    /// Starting up.
    #[default]
    Starting,
    /// Attached and counting.
    Running,
    /// Not counting, with the reason (interface missing, attach failed...).
    Down(String),
}

/// Everything about capture that the logs, the API and health report.
#[derive(Clone, Debug, Default)]
pub struct CaptureStatus {
    /// Who listens on the NAS's ports (process, container), as of the last change of the set.
    pub listeners: Vec<crate::listeners::Listener>,
    /// `ebpf` or `afpacket`.
    pub backend: &'static str,
    /// Interface name.
    pub iface: String,
    /// Interface index (changes when the interface is re-created).
    pub ifindex: Option<u32>,
    /// How the program is attached, when it is (the eBPF backend).
    pub attach_mode: Option<AttachMode>,
    /// Counting or not.
    pub state: CaptureState,
    /// Kernel program id (`bpftool prog show id N`).
    pub program_id: Option<u32>,
    /// Where maps are pinned.
    pub pin_dir: Option<PathBuf>,
    /// Whether the maps were reused from an earlier run.
    pub maps_reused: bool,
    /// Whether the counters and attachments survive a restart of the daemon (durable pins).
    pub counters_survive_restart: bool,
    /// Why they do or do not.
    pub durability_reason: String,
    /// Remotes the last drain read (those that moved since the drain before it): how full the
    /// per-remote map got between two drains.
    pub remotes_in_map: usize,
    /// Capacity of the per-remote map between two drains (beyond it, bytes go to "other").
    pub remotes_capacity: u32,
    /// Monotonic counters as last read from the backend.
    pub counters: KernelTotals,
    /// Frames the backend could not count.
    pub drops: u64,
    /// When the maps were last drained.
    pub last_drain: Option<SystemTime>,
    /// The NAS's addresses.
    pub locals: Vec<IpAddr>,
    /// IPv6 LAN prefixes in force (grace prefixes included).
    pub lan_prefixes: Vec<Ipv6Net>,
    /// Prefixes kept only by their grace period.
    pub grace_prefixes: Vec<Ipv6Net>,
    /// `manual` or `auto`.
    pub lan_mode: &'static str,
    /// Times capture was (re)attached after starting.
    pub reattachments: u64,
    /// Failed attach attempts since capture went down (0 while running).
    pub attach_attempts: u32,
    /// Times someone else detached our program and the supervisor re-attached it.
    pub external_detaches: u64,
    /// Errors of the environment (a failed map read, descriptors or memory exhausted) that were
    /// retried without detaching anything.
    pub environment_errors: u64,
    /// The last of those, with its causes.
    pub last_environment_error: Option<String>,
}

/// The shared status handle.
pub type SharedStatus = Arc<RwLock<CaptureStatus>>;

/// Applies `f` to the shared status (a poisoned lock is recovered: status is plain data).
pub fn update(status: &SharedStatus, f: impl FnOnce(&mut CaptureStatus)) {
    let mut guard = status
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut guard);
}

/// A copy of the shared status.
pub fn read(status: &SharedStatus) -> CaptureStatus {
    status
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}
