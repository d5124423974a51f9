//! The AF_PACKET fallback backend: a TPACKET_V3 mmap ring read on its own thread, every frame
//! counted by the same shared rules as the eBPF program (`sentinel_common::account::account`).
//!
//! - `ring`: the socket and the ring (the only `unsafe` here), blocks as RAII guards.
//! - `walk`: the block walker, safe code over a byte slice.
//! - `tally`: the per-frame function and the monotonic counters.
//! - `reader`: the reader thread, with its retries when the interface goes down or is
//!   re-created.
//!
//! What differs from the eBPF backend, by construction of AF_PACKET:
//! - Only the first [`SNAPLEN`] bytes of a frame are copied (a one-instruction socket filter,
//!   `ret #128`): enough for Ethernet + a tag + IPv4 with options or IPv6 + the TCP data offset.
//!   The frame's full length (`tp_len`) is what the length rules see.
//! - Frames of other hosts that a promiscuous interface delivers (PACKET_OTHERHOST) are skipped
//!   and counted in [`FrameStats::foreign`] (the seed counted them, defect D9), unless they are
//!   for one of the NAS's own MACs (macvlan children: `sentinel_common::owner`), as in the kernel.
//! - Raw-IP interfaces (ppp, tun, WireGuard) deliver frames that start at the IP header; the
//!   ring reads the link type at every open and parses accordingly.
//! - GSO/GRO super-packets (TSO egress, GRO ingress: 64 KB frames on the tap): the socket asks
//!   for virtio-net headers (PACKET_VNET_HDR, which `tpacket_rcv` also fills in TPACKET_V3
//!   rings; measured on 6.18), and segments are `ceil(transport payload / gso_size)`, as the
//!   kernel computes `gso_segs`; then `account` adds the repeated headers. In the lab a 16 MiB
//!   TCP transfer then matches TCP_INFO segment for segment; without the headers it would count
//!   1 packet per super-packet and 3.4 % too few bytes. `virtio_net_hdr_from_skb` only describes
//!   TCPv4, TCPv6 and UDP L4 GSO: for any other GSO type the kernel drops the frame from the ring
//!   and PACKET_STATISTICS counts it, so it shows as a drop, never silently. Without the option
//!   (older kernels) super-packets count as one packet ([`AfPacketStatus::gso_metadata`] says so).
//! - The ring is `block_size * block_count` bytes of memory mapped from the kernel (8 MiB by
//!   default, see [`AfPacketOptions::default`]); when it is full the kernel drops frames and
//!   PACKET_STATISTICS counts them: they appear in [`Snapshot::drops`].
//!
//! This module must not know the drain, the store or the API: it offers [`Backend`] and a status.

mod reader;
mod ring;
mod tally;
mod walk;

use sentinel_common::abi::ListenKey;
use std::{
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

pub use ring::RingConfig;
pub use tally::FrameStats;
pub use walk::CorruptBlock;

use super::{Backend, BackendError, Snapshot};
use crate::classify::AddressPlan;

/// Bytes of each frame copied into the ring: the largest header stack the rules read is
/// 18 (Ethernet + tag) + 60 (IPv4 with options) + 13 (TCP up to its data offset) = 91 bytes.
pub const SNAPLEN: u32 = 128;

/// Why the AF_PACKET backend could not start, or why its reader is retrying.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// The interface does not exist (in the namespace of the thread that opened the socket).
    #[error("interface {iface:?} does not exist")]
    NoSuchInterface { iface: String },
    /// The interface exists but is down.
    #[error("interface {iface:?} is down")]
    InterfaceDown { iface: String },
    /// The interface is neither Ethernet nor raw IP: the shared parser cannot read its frames.
    #[error(
        "interface {iface:?} has link type {hatype} (neither Ethernet nor raw IP); not supported"
    )]
    UnsupportedLink { iface: String, hatype: u16 },
    /// The interface was re-created (or renamed) under the same name.
    #[error("interface {iface:?} changed from index {old} to {new:?}")]
    InterfaceReplaced {
        iface: String,
        old: u32,
        new: Option<u32>,
    },
    /// A socket operation failed.
    #[error("{op} on {iface:?} failed")]
    Socket {
        op: &'static str,
        iface: String,
        #[source]
        source: std::io::Error,
    },
    /// The reader thread could not be started.
    #[error("starting the reader thread failed")]
    Thread(#[source] std::io::Error),
    /// The reader thread did not report its first open in time.
    #[error("the reader thread did not open the ring within {0:?}")]
    StartTimeout(Duration),
}

/// Tunables of the backend; [`Default`] is what the daemon uses.
#[derive(Clone, Debug)]
pub struct AfPacketOptions {
    /// The ring's shape and snap length.
    pub ring: RingConfig,
    /// Capacity of the per-remote map between two snapshots (one eBPF per-remote map's size by
    /// default); beyond it, bytes go to the overflow ("other").
    pub remotes_max: usize,
    /// First delay before reopening after a failure; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest delay between two reopen attempts.
    pub retry_max: Duration,
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        Self {
            ring: RingConfig {
                // 8 MiB mapped: 16 blocks of 512 KiB. With 128-byte snaps a frame takes 224 bytes
                // of ring (header, address, virtio-net header, snap, alignment), so the ring holds
                // about 37,000 frames: 90 ms at 400 kpps. A block that is not full is handed over
                // after `retire_ms`, so below about 45 kpps each block holds 50 ms and the ring
                // 800 ms: long enough to ride out a busy NAS not scheduling the reader for a while.
                // Counts lag by at most `retire_ms`, far below the drain's one-second period.
                block_size: 512 * 1024,
                block_count: 16,
                retire_ms: 50,
                snaplen: SNAPLEN,
                vnet_hdr: true,
            },
            remotes_max: sentinel_common::abi::REMOTES_MAX_ENTRIES as usize,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// What the reader is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureState {
    /// Reading the ring of the interface with this index.
    Running { ifindex: u32 },
    /// The socket failed or could not be opened; the reader retries with backoff.
    Retrying {
        /// Failed attempts since the last successful open.
        attempt: u32,
        /// The last error, with its causes.
        last_error: String,
    },
    /// The reader ended: the backend was dropped, or the thread panicked (a bug).
    Stopped { reason: String },
}

/// The backend's state and counters for the daemon's status, health and metrics.
#[derive(Clone, Debug)]
pub struct AfPacketStatus {
    /// The interface name the reader follows.
    pub iface: String,
    /// Running, retrying or stopped.
    pub state: CaptureState,
    /// When `state` began.
    pub since: SystemTime,
    /// Successful opens of the ring (1 when it never had to reopen).
    pub opens: u64,
    /// Whether the current ring delivers GSO metadata (virtio-net headers).
    pub gso_metadata: bool,
    /// Bytes of ring memory mapped while running.
    pub ring_bytes: usize,
    /// Frames the kernel passed to the socket (PACKET_STATISTICS `tp_packets`, drops included).
    pub kernel_packets: u64,
    /// Frames the kernel dropped because the ring was full (`tp_drops`).
    pub kernel_drops: u64,
    /// Times the ring was full (`tp_freeze_q_cnt`).
    pub ring_freezes: u64,
    /// Frames seen, skipped, super-packets, corrupt blocks, per-remote overflow.
    pub frames: FrameStats,
}

/// The AF_PACKET backend: a reader thread and the counters it shares with [`Backend::snapshot`].
///
/// Dropping it stops the thread (within about 100 ms) and unmaps the ring.
pub struct AfPacketBackend {
    shared: Arc<reader::Shared>,
    thread: Option<JoinHandle<()>>,
}

impl AfPacketBackend {
    /// Opens the ring on `iface` with the default options. See [`Self::open_with`].
    pub fn open(iface: &str, plan: &AddressPlan) -> Result<Self, AfPacketError> {
        Self::open_with(iface, plan, AfPacketOptions::default())
    }

    /// Starts the reader thread and waits until it has opened the ring on `iface`.
    ///
    /// The socket belongs to the network namespace of the calling thread: the reader thread is
    /// spawned from it and inherits it, and reopens there (call this from a thread that has
    /// entered the namespace to capture in another one). Fails when the first open fails (no
    /// such interface, interface down, no CAP_NET_RAW...); later failures are retried and shown
    /// by [`Self::status`].
    pub fn open_with(
        iface: &str,
        plan: &AddressPlan,
        options: AfPacketOptions,
    ) -> Result<Self, AfPacketError> {
        let shared = Arc::new(reader::Shared::new(iface, plan.table(), &options));
        let thread = reader::spawn(iface.to_owned(), options, shared.clone())?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The reader's state and counters.
    pub fn status(&self) -> AfPacketStatus {
        let mut status = self.shared.status();
        let finished = self.thread.as_ref().is_none_or(|t| t.is_finished());
        if finished && !matches!(status.state, CaptureState::Stopped { .. }) {
            status.state = CaptureState::Stopped {
                reason: "the reader thread ended unexpectedly".to_owned(),
            };
        }
        status
    }

    fn error(context: &str, why: String) -> BackendError {
        BackendError {
            backend: "afpacket",
            context: context.to_owned(),
            source: why.into(),
        }
    }
}

impl Backend for AfPacketBackend {
    fn name(&self) -> &'static str {
        "afpacket"
    }

    fn set_addresses(&mut self, plan: &AddressPlan) -> Result<(), BackendError> {
        self.shared.set_table(plan.table());
        Ok(())
    }

    fn set_listening(&mut self, ports: &[ListenKey]) -> Result<(), BackendError> {
        self.shared.set_listening(ports);
        Ok(())
    }

    /// The counters. Fails only when the reader thread is gone for good (a panic): while it
    /// retries, the counters stay valid and [`AfPacketBackend::status`] says why it retries.
    fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
        if let CaptureState::Stopped { reason } = self.status().state {
            return Err(Self::error("reading counters", reason));
        }
        Ok(self.shared.snapshot())
    }
}

impl Drop for AfPacketBackend {
    fn drop(&mut self) {
        self.shared.stop();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the AF_PACKET reader thread panicked");
        }
    }
}
