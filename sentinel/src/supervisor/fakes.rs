//! Fakes for the supervisor's unit tests: a fake "kernel" (interface present, its index, our
//! link in place, counters), a fake interface source and a fake ledger, all over one shared
//! world that the tests change and inspect. No root, no network, no database.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use sentinel_common::abi::{Counters, ListenKey, Verdict, totals_index};
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::{
    addrwatch::IfaceState,
    capture::{AttachMode, Attached, BackendError, BackendKind, Capture, Snapshot},
    classify::AddressPlan,
    iface::IfaceError,
    store::Sample,
};

pub(super) const INSTANCE: u64 = 0x5e57;

/// The fake machine.
#[derive(Debug)]
pub(super) struct World {
    pub(super) iface_present: bool,
    pub(super) ifindex: u32,
    /// Our program is in the interface's chain (someone else may remove it).
    pub(super) link_present: bool,
    /// The index we attached to, while attached.
    pub(super) attached_to: Option<u32>,
    pub(super) attach_failures: u32,
    pub(super) attaches: u32,
    pub(super) snapshot_failures: u32,
    pub(super) iface_read_failures: u32,
    pub(super) up_bytes: u64,
    pub(super) reused: bool,
    /// Ledger: the committed checkpoint, what was recorded, failures to inject.
    pub(super) committed: Option<Vec<u8>>,
    pub(super) pending_checkpoint: Option<Vec<u8>>,
    pub(super) booked_up: u64,
    pub(super) checkpoint_read_failures: u32,
    /// Drain, flush, detach... in the order they happened.
    pub(super) order: Vec<&'static str>,
    /// The machine's listening ports, and what the capture was last given.
    pub(super) listen_now: Vec<ListenKey>,
    pub(super) listening: Vec<ListenKey>,
}

impl Default for World {
    fn default() -> Self {
        Self {
            iface_present: true,
            ifindex: 2,
            link_present: false,
            attached_to: None,
            attach_failures: 0,
            attaches: 0,
            snapshot_failures: 0,
            iface_read_failures: 0,
            up_bytes: 0,
            reused: false,
            listen_now: Vec::new(),
            listening: Vec::new(),
            committed: None,
            pending_checkpoint: None,
            booked_up: 0,
            checkpoint_read_failures: 0,
            order: Vec::new(),
        }
    }
}

#[derive(Clone, Default)]
pub(super) struct Shared(pub(super) Arc<Mutex<World>>);

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn err(context: &str) -> BackendError {
    BackendError {
        backend: "fake",
        context: context.to_owned(),
        source: Box::new(std::io::Error::from_raw_os_error(libc::EMFILE)),
    }
}

struct FakeCapture(Shared);

impl Capture for FakeCapture {
    fn kind(&self) -> BackendKind {
        BackendKind::Ebpf
    }
    fn instance(&self) -> u64 {
        INSTANCE
    }
    fn counters_reused(&self) -> bool {
        self.0.lock().reused
    }
    fn pin_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
    fn durability(&self) -> crate::capture::ebpf::durability::Durability {
        crate::capture::ebpf::durability::Durability {
            survives_restart: true,
            reason: "a fake".into(),
        }
    }
    fn program_id(&self) -> Option<u32> {
        Some(7)
    }
    fn attach(&mut self, _iface: &str) -> Result<Option<AttachMode>, BackendError> {
        let mut w = self.0.lock();
        w.order.push("attach");
        if w.attach_failures > 0 {
            w.attach_failures -= 1;
            return Err(err("attaching"));
        }
        if !w.iface_present {
            return Err(err("no such interface"));
        }
        w.attaches += 1;
        w.attached_to = Some(w.ifindex);
        w.link_present = true;
        Ok(Some(AttachMode::Tcx))
    }
    fn detach(&mut self) -> Result<(), BackendError> {
        let mut w = self.0.lock();
        w.order.push("detach");
        w.attached_to = None;
        w.link_present = false;
        Ok(())
    }
    fn check(&mut self) -> Attached {
        let w = self.0.lock();
        match w.attached_to {
            None => Attached::No,
            Some(_) if !w.iface_present => Attached::InterfaceChanged("gone".into()),
            Some(i) if i != w.ifindex => Attached::InterfaceChanged("re-created".into()),
            Some(_) if !w.link_present => Attached::Lost("detached by someone else".into()),
            Some(_) => Attached::Yes,
        }
    }
    fn set_addresses(&mut self, _plan: &AddressPlan) -> Result<(), BackendError> {
        Ok(())
    }
    fn set_listening(&mut self, ports: &[ListenKey]) -> Result<(), BackendError> {
        self.0.lock().listening = ports.to_vec();
        Ok(())
    }
    fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
        let mut w = self.0.lock();
        w.order.push("drain");
        if w.snapshot_failures > 0 {
            w.snapshot_failures -= 1;
            return Err(err("reading the maps"));
        }
        let mut snap = Snapshot::default();
        // The fake kernel counts only while our program is attached.
        snap.totals.slots[totals_index(Verdict::Up, 0) as usize] = Counters {
            packets: w.up_bytes / 100,
            ip_bytes: w.up_bytes,
            wire_bytes: w.up_bytes,
        };
        Ok(snap)
    }
}

struct FakeIface(Shared);

impl InterfaceSource for FakeIface {
    fn read(&mut self) -> Result<IfaceState, IfaceError> {
        let mut w = self.0.lock();
        if w.iface_read_failures > 0 {
            w.iface_read_failures -= 1;
            return Err(IfaceError::Index {
                iface: "eth0".into(),
                source: nix::errno::Errno::EMFILE,
            });
        }
        Ok(IfaceState {
            ifindex: w.iface_present.then_some(w.ifindex),
            plan: AddressPlan::default(),
            grace_prefixes: Vec::new(),
        })
    }
}

struct FakeListening(Shared);

impl ListeningSource for FakeListening {
    fn read(&mut self) -> Result<Vec<ListenKey>, crate::listening::ListeningError> {
        Ok(self.0.lock().listen_now.clone())
    }
    fn owners(&mut self) -> Vec<crate::listeners::Listener> {
        self.0
            .lock()
            .listen_now
            .iter()
            .map(|key| crate::listeners::Listener {
                key: *key,
                process: Some("fake".into()),
                container: None,
            })
            .collect()
    }
}

struct FakeFactory(Shared);

impl CaptureFactory for FakeFactory {
    fn start(
        &mut self,
        _iface: &str,
        _plan: &AddressPlan,
    ) -> Result<Box<dyn Capture>, crate::capture::active::StartError> {
        Ok(Box::new(FakeCapture(self.0.clone())))
    }
}

struct FakeLedger(Shared);

impl Ledger for FakeLedger {
    fn record(&self, sample: &Sample<'_>) {
        let mut w = self.0.lock();
        w.booked_up += sample.up.ip_bytes;
        w.pending_checkpoint = sample.checkpoint.clone();
    }
    fn flush(&self) -> Result<(), LedgerError> {
        let mut w = self.0.lock();
        w.order.push("flush");
        if let Some(cp) = w.pending_checkpoint.take() {
            w.committed = Some(cp);
        }
        Ok(())
    }
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, LedgerError> {
        let mut w = self.0.lock();
        if w.checkpoint_read_failures > 0 {
            w.checkpoint_read_failures -= 1;
            return Err("database is locked".into());
        }
        Ok(w.committed.clone())
    }
}

#[derive(Debug)]
struct FixedClock;

impl crate::store::Clock for FixedClock {
    fn now(&self) -> i64 {
        1_700_000_000
    }
}

pub(super) struct Harness {
    pub(super) world: Shared,
    pub(super) status: SharedStatus,
    pub(super) events: mpsc::Sender<()>,
    pub(super) stop: oneshot::Sender<()>,
    pub(super) task: tokio::task::JoinHandle<Supervisor>,
}

fn settings() -> Settings {
    let mut s = Settings::new("eth0");
    s.startup_retry_delay = Duration::ZERO;
    s
}

pub(super) fn start_with(world: Shared) -> Result<Harness, RunError> {
    let (events_tx, events) = mpsc::channel(4);
    let (stop, stopped) = oneshot::channel::<()>();
    let inputs = OsInputs {
        iface: Box::new(FakeIface(world.clone())),
        factory: Box::new(FakeFactory(world.clone())),
        events,
        listening: Box::new(FakeListening(world.clone())),
        clock: Arc::new(FixedClock),
        shutdown: Box::pin(async {
            let _ = stopped.await;
        }),
    };
    let out = Outputs {
        status: SharedStatus::default(),
        speed: Arc::default(),
    };
    let status = out.status.clone();
    let ledger: Arc<dyn Ledger> = Arc::new(FakeLedger(world.clone()));
    let (mut sup, shutdown) = Supervisor::start(settings(), inputs, ledger, out)?;
    let task = tokio::spawn(async move {
        sup.run(shutdown).await;
        sup
    });
    Ok(Harness {
        world,
        status,
        events: events_tx,
        stop,
        task,
    })
}

pub(super) fn start(world: World) -> Harness {
    match start_with(Shared(Arc::new(Mutex::new(world)))) {
        Ok(h) => h,
        Err(e) => panic!("start failed: {e}"),
    }
}

impl Harness {
    pub(super) fn status(&self) -> CaptureStatus {
        status::read(&self.status)
    }

    pub(super) async fn stop(self) -> (Result<Finished, RunError>, Shared) {
        let _ = self.stop.send(());
        let sup = self.task.await.expect("supervisor task");
        (sup.finish(), self.world)
    }
}
