//! Capture backends: where the counters come from. Only this module knows aya and AF_PACKET.
//!
//! A backend exposes *monotonic* counters (never reset while it lives), direction totals per
//! verdict and family and error counters, and hands over the per-remote counters that grew since
//! its previous snapshot (read once, then forgotten by the backend), with what it had no room to
//! keep per remote. The drain turns successive [`Snapshot`]s into deltas; it must not know which
//! backend produced them.
//!
//! The daemon drives whichever backend runs through one trait, [`Capture`]: attach, detach,
//! check the attachment, push addresses, read counters. It never asks which backend it has.

pub mod active;
pub mod afpacket;
pub mod ebpf;

use sentinel_common::abi::{
    Counters, ERROR_SLOTS, ErrorKind, ListenKey, RemoteCounters, RemoteKey, ServiceKey,
    TOTALS_SLOTS, Verdict, totals_index,
};

use crate::classify::AddressPlan;

/// Which backend counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// The TC program with pinned maps.
    #[default]
    Ebpf,
    /// The AF_PACKET ring.
    AfPacket,
}

impl BackendKind {
    /// `ebpf` or `afpacket` (the API's strings).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Ebpf => "ebpf",
            BackendKind::AfPacket => "afpacket",
        }
    }
}

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// bpf_link through TCX (kernel >= 6.6): coexists with other programs, goes away with us.
    Tcx,
    /// A clsact filter through netlink (older kernels).
    Netlink,
}

impl AttachMode {
    /// `tcx` or `netlink-clsact` (the API's strings).
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Netlink => "netlink-clsact",
        }
    }
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a check of the attachment found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attached {
    /// Attached where it should be and counting.
    Yes,
    /// Not attached (never was, or was detached on purpose).
    No,
    /// The attachment vanished while the interface is still there: someone else detached it
    /// (`bpftool link detach`, `tc filter del`). Re-attaching repairs it.
    Lost(String),
    /// The interface is gone or was re-created with another index.
    InterfaceChanged(String),
    /// The backend is repairing itself (the ring reopening); nothing to do but wait.
    Recovering(String),
    /// The check itself failed (descriptors, memory): nothing is known to be wrong; retry later
    /// and never detach because of it.
    Unknown(String),
}

/// A running capture backend, as the supervisor drives it.
pub trait Capture: Send {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// Identity of the counters (a checkpoint of another identity does not apply to them).
    fn instance(&self) -> u64;
    /// Whether the counters continue an earlier run's (reused pinned maps).
    fn counters_reused(&self) -> bool;
    /// The pin directory, if the backend pins.
    fn pin_dir(&self) -> Option<std::path::PathBuf>;
    /// Whether the counters and attachments outlive this process, and why (docs/operations.md).
    fn durability(&self) -> ebpf::durability::Durability;
    /// The kernel program id, if there is one.
    fn program_id(&self) -> Option<u32>;
    /// Attaches to `iface` (replacing an earlier attachment); the attach mode, if the backend has
    /// one. A backend that follows its interface by itself returns `Ok(None)`.
    fn attach(&mut self, iface: &str) -> Result<Option<AttachMode>, BackendError>;
    /// Removes what this backend attached, and nothing else.
    fn detach(&mut self) -> Result<(), BackendError>;
    /// Whether the attachment is still in place.
    fn check(&mut self) -> Attached;
    /// Replaces the address plan the classification uses.
    fn set_addresses(&mut self, plan: &AddressPlan) -> Result<(), BackendError>;
    /// Replaces the NAS's listening ports the per-service rule uses (`sentinel_common::service`).
    fn set_listening(&mut self, ports: &[ListenKey]) -> Result<(), BackendError>;
    /// The current monotonic counters.
    fn snapshot(&mut self) -> Result<Snapshot, BackendError>;
}

/// What a capture backend offers the daemon.
pub trait Backend: Send {
    /// `"ebpf"` or `"afpacket"`.
    fn name(&self) -> &'static str;
    /// Replaces the address plan the classification uses.
    fn set_addresses(&mut self, plan: &AddressPlan) -> Result<(), BackendError>;
    /// Replaces the NAS's listening ports the per-service rule uses (`sentinel_common::service`).
    fn set_listening(&mut self, ports: &[ListenKey]) -> Result<(), BackendError>;
    /// The current monotonic counters, and the per-remote growth since the previous call (each
    /// byte is handed over once).
    fn snapshot(&mut self) -> Result<Snapshot, BackendError>;
}

/// A backend failure, with the backend's own error as the source.
#[derive(Debug, thiserror::Error)]
#[error("{backend} capture: {context}")]
pub struct BackendError {
    /// Which backend.
    pub backend: &'static str,
    /// What it was doing.
    pub context: String,
    /// Why it failed.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Monotonic counters at one instant, and the per-remote growth since the previous snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Direction totals and error counters.
    pub totals: KernelTotals,
    /// Each remote that moved since the previous snapshot, with what it added.
    pub remotes: Vec<(RemoteKey, RemoteCounters)>,
    /// Public traffic since the previous snapshot that the backend could not keep per remote
    /// (more distinct remotes than it holds between two snapshots); stored as "other". Over time,
    /// per-remote sums plus this equal the up and down totals.
    pub other_remotes: RemoteCounters,
    /// Each service (`sentinel_common::service`) that moved since the previous snapshot.
    pub services: Vec<(ServiceKey, RemoteCounters)>,
    /// Public traffic the backend could not keep per service; per-service sums plus this equal
    /// the up and down totals.
    pub other_services: RemoteCounters,
    /// Frames the backend saw but could not count (ring overruns, socket drops); monotonic.
    pub drops: u64,
}

/// A snapshot of the kernel's monotonic counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelTotals {
    /// Indexed by [`totals_index`].
    pub slots: [Counters; TOTALS_SLOTS as usize],
    /// Indexed by [`ErrorKind`].
    pub errors: [u64; ERROR_SLOTS as usize],
}

impl KernelTotals {
    /// The counters of one verdict and family.
    pub fn get(&self, verdict: Verdict, family: u8) -> Counters {
        self.slots[totals_index(verdict, family) as usize]
    }

    /// One verdict, both families added.
    pub fn verdict(&self, verdict: Verdict) -> Counters {
        let mut sum = self.get(verdict, 0);
        sum.add(&self.get(verdict, 1));
        sum
    }

    /// The count of one error kind.
    pub fn error(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize]
    }
}

/// The address of a remote key.
pub fn remote_ip(key: &RemoteKey) -> std::net::IpAddr {
    if key.family == sentinel_common::abi::FAMILY_V4 {
        std::net::IpAddr::from([key.addr[0], key.addr[1], key.addr[2], key.addr[3]])
    } else {
        std::net::IpAddr::from(key.addr)
    }
}
