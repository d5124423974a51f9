//! The reader thread and the state it shares with the backend handle.
//!
//! The thread opens the ring, then loops: take every block the kernel handed over, count its
//! frames under the tally lock (held for one block at a time), give the block back, read
//! PACKET_STATISTICS now and then, and `poll` when no block is ready. On a socket error
//! (ENETDOWN when the interface goes down or is deleted) or when the interface name comes to
//! point at another index (re-created), it counts what is left in the ring, closes it and reopens
//! by name with backoff, for as long as the backend lives: capture never ends silently
//! (the original's D8, docs/compatibility.md). The address table is swapped under a mutex and picked up
//! per block.
//!
//! This module must not know the ring's memory layout or the counting rules.

use sentinel_common::abi::ListenKey;
use std::{
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use super::{
    AfPacketError, AfPacketOptions, AfPacketStatus, CaptureState,
    ring::{KernelStats, Ring, Wakeup, ifindex_of},
    tally::Tally,
    walk::walk,
};
use crate::{capture::Snapshot, classify::PrefixTable};

/// Longest wait in `poll` before the stop flag is looked at again.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often PACKET_STATISTICS is read into the drops.
const STATS_INTERVAL: Duration = Duration::from_millis(200);
/// How often the interface name is resolved again, to notice a re-created interface.
const IFACE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A ring that ran this long before failing resets the backoff.
const STABLE_RUN: Duration = Duration::from_secs(10);
/// How long the first open may take before the constructor gives up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A poisoned lock only means a reader panicked mid-update; the counters are still monotonic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Everything the handle and the reader thread share.
pub(crate) struct Shared {
    tally: Mutex<Tally>,
    table: Mutex<Arc<PrefixTable>>,
    table_generation: AtomicU64,
    status: Mutex<AfPacketStatus>,
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    stop_signal: Condvar,
}

impl Shared {
    pub(crate) fn new(iface: &str, table: PrefixTable, options: &AfPacketOptions) -> Self {
        Self {
            tally: Mutex::new(Tally::with_capacity(options.remotes_max)),
            table: Mutex::new(Arc::new(table)),
            table_generation: AtomicU64::new(0),
            status: Mutex::new(AfPacketStatus {
                iface: iface.to_owned(),
                state: CaptureState::Retrying {
                    attempt: 0,
                    last_error: "starting".to_owned(),
                },
                since: SystemTime::now(),
                opens: 0,
                gso_metadata: false,
                ring_bytes: 0,
                kernel_packets: 0,
                kernel_drops: 0,
                ring_freezes: 0,
                frames: Default::default(),
            }),
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_signal: Condvar::new(),
        }
    }

    pub(crate) fn set_table(&self, table: PrefixTable) {
        *lock(&self.table) = Arc::new(table);
        self.table_generation.fetch_add(1, Ordering::Release);
    }

    /// Replaces `table` when a newer one was set since `generation`.
    fn refresh_table(&self, generation: &mut u64, table: &mut Arc<PrefixTable>) {
        let now = self.table_generation.load(Ordering::Acquire);
        if now != *generation {
            *table = lock(&self.table).clone();
            *generation = now;
        }
    }

    pub(crate) fn set_listening(&self, ports: &[ListenKey]) {
        lock(&self.tally).set_listening(ports);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut tally = lock(&self.tally);
        let (remotes, other_remotes) = tally.take_remotes();
        let (services, other_services) = tally.take_services();
        Snapshot {
            totals: tally.totals,
            remotes,
            other_remotes,
            services,
            other_services,
            drops: tally.drops,
        }
    }

    pub(crate) fn status(&self) -> AfPacketStatus {
        let frames = lock(&self.tally).stats;
        let mut status = lock(&self.status).clone();
        status.frames = frames;
        status
    }

    fn set_state(&self, state: CaptureState) {
        let mut status = lock(&self.status);
        if status.state != state {
            status.state = state;
            status.since = SystemTime::now();
        }
    }

    fn opened(&self, ring: &Ring, bytes: usize) {
        {
            let mut status = lock(&self.status);
            status.opens += 1;
            status.gso_metadata = ring.vnet();
            status.ring_bytes = bytes;
        }
        self.set_state(CaptureState::Running {
            ifindex: ring.ifindex(),
        });
    }

    fn add_kernel_stats(&self, s: KernelStats) {
        lock(&self.tally).drops += s.drops;
        let mut status = lock(&self.status);
        status.kernel_packets += s.packets;
        status.kernel_drops += s.drops;
        status.ring_freezes += s.freezes;
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _guard = lock(&self.stop_lock);
        self.stop_signal.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Sleeps for `d` unless stopped first; true when stopping.
    fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let guard = lock(&self.stop_lock);
        let _unused = self
            .stop_signal
            .wait_timeout_while(guard, d, |_| !self.stopping())
            .unwrap_or_else(PoisonError::into_inner);
        self.stopping()
    }
}

/// Starts the reader thread; returns once it has opened the ring (or failed to).
pub(crate) fn spawn(
    iface: String,
    options: AfPacketOptions,
    shared: Arc<Shared>,
) -> Result<JoinHandle<()>, AfPacketError> {
    let (tx, rx) = mpsc::sync_channel::<Result<(), AfPacketError>>(1);
    let thread_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name(format!("afpacket-{iface}"))
        .spawn(move || {
            let shared = thread_shared;
            let first = match Ring::open(&iface, &options.ring) {
                Ok(ring) => ring,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let bytes = ring_bytes(&options);
            shared.opened(&first, bytes);
            let _ = tx.send(Ok(()));
            let body = std::panic::AssertUnwindSafe(|| run(first, &iface, &options, &shared));
            if let Err(panic) = std::panic::catch_unwind(body) {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                shared.set_state(CaptureState::Stopped {
                    reason: format!("the reader thread panicked: {what}"),
                });
                tracing::error!(iface, panic = what, "AF_PACKET reader thread panicked");
            }
        })
        .map_err(AfPacketError::Thread)?;
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            shared.stop();
            Err(AfPacketError::StartTimeout(START_TIMEOUT))
        }
    }
}

fn ring_bytes(options: &AfPacketOptions) -> usize {
    options.ring.block_size as usize * options.ring.block_count as usize
}

/// The reader's life: read, and on failure reopen with backoff, until stopped.
///
/// The backoff doubles from `retry_min` to `retry_max` across failed opens and short-lived
/// rings alike, and starts over only after a ring ran for [`STABLE_RUN`]: an interface that
/// opens but fails at once cannot make the reader spin. A failure is logged when its text
/// changes (or after a stable run), not on every attempt.
fn run(first: Ring, iface: &str, options: &AfPacketOptions, shared: &Shared) {
    let retire = Duration::from_millis(u64::from(options.ring.retire_ms));
    let mut ring = Some(first);
    let mut backoff = options.retry_min;
    let mut attempt = 0u32;
    let mut last_logged = String::new();
    while !shared.stopping() {
        let failure = match ring.take() {
            Some(current) => {
                let started = Instant::now();
                match pump(current, iface, retire, shared) {
                    Ok(()) => break,
                    Err(e) => {
                        if started.elapsed() >= STABLE_RUN {
                            backoff = options.retry_min;
                            last_logged.clear();
                        }
                        e
                    }
                }
            }
            None => match Ring::open(iface, &options.ring) {
                Ok(r) => {
                    shared.opened(&r, ring_bytes(options));
                    tracing::info!(
                        iface,
                        ifindex = r.ifindex(),
                        attempt,
                        "AF_PACKET ring reopened"
                    );
                    attempt = 0;
                    ring = Some(r);
                    continue;
                }
                Err(e) => e,
            },
        };
        attempt += 1;
        let why = chain(&failure);
        if why != last_logged {
            tracing::warn!(
                iface,
                attempt,
                error = why,
                "AF_PACKET capture failed; retrying"
            );
            last_logged.clone_from(&why);
        }
        shared.set_state(CaptureState::Retrying {
            attempt,
            last_error: why,
        });
        if shared.sleep_unless_stopped(backoff) {
            break;
        }
        backoff = (backoff * 2).min(options.retry_max);
    }
    shared.set_state(CaptureState::Stopped {
        reason: "the backend was dropped".to_owned(),
    });
}

/// Counts every block the kernel has handed over (at most one ring's worth); returns how many.
fn drain(
    ring: &mut Ring,
    shared: &Shared,
    generation: &mut u64,
    table: &mut Arc<PrefixTable>,
) -> usize {
    let vnet = ring.vnet();
    let link = ring.link();
    let mut handled = 0;
    // Bounded: at most every block once, then the caller looks at its flags again.
    for _ in 0..ring.block_count() {
        let Some(block) = ring.next_block() else {
            break;
        };
        shared.refresh_table(generation, table);
        let mut tally = lock(&shared.tally);
        match walk(block.bytes(), vnet) {
            Ok(frames) => {
                let announced = frames.announced();
                let mut read = 0u32;
                for frame in frames {
                    match frame {
                        Ok(f) => {
                            tally.count(&f, link, &**table);
                            read += 1;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "skipping the rest of a corrupt ring block");
                            tally.corrupt(announced.saturating_sub(read));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping a corrupt ring block");
                tally.corrupt(e.frames);
            }
        }
        drop(tally);
        // `block` drops here: the kernel gets it back.
        handled += 1;
    }
    handled
}

/// Reads `ring` until stopped (`Ok`) or until it fails (`Err`); counts what is left either way.
fn pump(
    mut ring: Ring,
    iface: &str,
    retire: Duration,
    shared: &Shared,
) -> Result<(), AfPacketError> {
    let mut generation = u64::MAX;
    let mut table = lock(&shared.table).clone();
    let (mut last_stats, mut last_check) = (Instant::now(), Instant::now());
    let result = loop {
        if shared.stopping() {
            break Ok(());
        }
        let handled = drain(&mut ring, shared, &mut generation, &mut table);
        let now = Instant::now();
        if now - last_stats >= STATS_INTERVAL {
            if let Ok(s) = ring.take_stats() {
                shared.add_kernel_stats(s);
            }
            last_stats = now;
        }
        if now - last_check >= IFACE_CHECK_INTERVAL {
            last_check = now;
            let new = ifindex_of(iface);
            if new != Some(ring.ifindex()) {
                break Err(AfPacketError::InterfaceReplaced {
                    iface: iface.to_owned(),
                    old: ring.ifindex(),
                    new,
                });
            }
        }
        if handled == 0
            && let Wakeup::Error(source) = ring.wait(POLL_TIMEOUT)
        {
            break Err(AfPacketError::Socket {
                op: "poll",
                iface: iface.to_owned(),
                source,
            });
        }
    };
    if result.is_err() {
        // Frames that arrived before the failure sit in the block being filled: the kernel
        // retires it after `retire`. Count them before the ring goes.
        let deadline = Instant::now() + retire * 2 + Duration::from_millis(20);
        while Instant::now() < deadline && !shared.stopping() {
            if drain(&mut ring, shared, &mut generation, &mut table) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    if let Ok(s) = ring.take_stats() {
        shared.add_kernel_stats(s);
    }
    result
}
