//! What the supervisor gets from the operating system, in one struct ([`OsInputs`], in the style
//! of bandwhich's `OsInputOutput`), and where its counts go ([`Ledger`]). The daemon passes the
//! real ones ([`OsInputs::real`]); unit tests pass fakes and drive the whole supervisor without a
//! kernel, a network or a database.
//!
//! This module knows the traits and their real implementations; it knows nothing of HTTP.

use std::{future::Future, pin::Pin, sync::Arc, time::Instant};

use sentinel_common::abi::ListenKey;
use tokio::sync::mpsc;

use crate::{
    addrwatch::{self, IfaceState, PlanBuilder},
    capture::{
        Capture,
        active::{self, CaptureOptions, StartError},
    },
    classify::AddressPlan,
    iface::IfaceError,
    listening::ListeningError,
    store::{Clock, Sample, Store},
};

/// Reads the monitored interface: its index (if it exists) and the address plan.
pub trait InterfaceSource: Send {
    /// Reads it now. An error is an environment problem (descriptors, netlink), not "gone".
    fn read(&mut self) -> Result<IfaceState, IfaceError>;
}

/// Starts the capture backend.
pub trait CaptureFactory: Send {
    /// Starts a backend for `iface` with `plan` (not attached yet).
    fn start(&mut self, iface: &str, plan: &AddressPlan) -> Result<Box<dyn Capture>, StartError>;
}

/// Why a ledger operation failed (the store's error, kept opaque here).
pub type LedgerError = Box<dyn std::error::Error + Send + Sync>;

/// Where drained counts go: the store's pending data, flushed to the database.
pub trait Ledger: Send + Sync {
    /// Adds one drain's deltas (with the checkpoint after them).
    fn record(&self, sample: &Sample<'_>);
    /// Commits everything pending now (blocking).
    fn flush(&self) -> Result<(), LedgerError>;
    /// The capture checkpoint of the last commit.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, LedgerError>;
}

/// Reads the NAS's listening ports (`crate::listening`).
pub trait ListeningSource: Send {
    /// The current set.
    fn read(&mut self) -> Result<Vec<ListenKey>, ListeningError>;
    /// The processes and containers behind the listening ports (best effort).
    fn owners(&mut self) -> Vec<crate::listeners::Listener>;
}

/// The real listening set: `/proc/self/net` of the daemon's network namespace.
pub struct OsListening;

impl ListeningSource for OsListening {
    fn read(&mut self) -> Result<Vec<ListenKey>, ListeningError> {
        crate::listening::read(std::path::Path::new("/proc/self/net"))
    }

    fn owners(&mut self) -> Vec<crate::listeners::Listener> {
        crate::listeners::read(
            std::path::Path::new("/proc/self/net"),
            std::path::Path::new("/proc"),
        )
    }
}

/// A future that resolves once, at SIGTERM or SIGINT.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Everything the supervisor reads from the OS.
pub struct OsInputs {
    /// The monitored interface.
    pub iface: Box<dyn InterfaceSource>,
    /// The capture backend's constructor.
    pub factory: Box<dyn CaptureFactory>,
    /// A message whenever the interface's links or addresses changed (netlink).
    pub events: mpsc::Receiver<()>,
    /// The NAS's listening ports, re-read every `Settings::listen_refresh`.
    pub listening: Box<dyn ListeningSource>,
    /// Unix time, for samples and "last drained".
    pub clock: Arc<dyn Clock>,
    /// SIGTERM/SIGINT.
    pub shutdown: Shutdown,
}

/// The real interface: netlink and `getifaddrs` through [`PlanBuilder`].
pub struct OsInterface(pub PlanBuilder);

impl InterfaceSource for OsInterface {
    fn read(&mut self) -> Result<IfaceState, IfaceError> {
        self.0.read(Instant::now())
    }
}

/// The real backends: eBPF, AF_PACKET or `auto` (see [`active::start`]).
pub struct OsCapture(pub CaptureOptions);

impl CaptureFactory for OsCapture {
    fn start(&mut self, iface: &str, plan: &AddressPlan) -> Result<Box<dyn Capture>, StartError> {
        active::start(&self.0, iface, plan)
    }
}

impl Ledger for Store {
    fn record(&self, sample: &Sample<'_>) {
        Store::record(self, sample);
    }

    fn flush(&self) -> Result<(), LedgerError> {
        self.flush_now().map(|_| ()).map_err(Into::into)
    }

    fn checkpoint(&self) -> Result<Option<Vec<u8>>, LedgerError> {
        Store::checkpoint(self).map_err(Into::into)
    }
}

/// SIGTERM and SIGINT, each one signal stream created once (a stream re-created per loop turn
/// can miss a signal delivered in between).
pub fn signals() -> std::io::Result<Shutdown> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }))
}

impl OsInputs {
    /// The real inputs for `iface`: netlink watch, backends per `options`, system clock, signals.
    pub fn real(builder: PlanBuilder, options: CaptureOptions) -> std::io::Result<Self> {
        let (events_tx, events) = mpsc::channel(1);
        addrwatch::spawn_netlink_watch(events_tx)?;
        Ok(Self {
            iface: Box::new(OsInterface(builder)),
            factory: Box::new(OsCapture(options)),
            events,
            listening: Box::new(OsListening),
            clock: Arc::new(crate::store::SystemClock),
            shutdown: signals()?,
        })
    }
}
