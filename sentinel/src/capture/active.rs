//! The backend the daemon runs: eBPF (TC program, pinned maps) when the kernel allows it, the
//! AF_PACKET ring otherwise (`BACKEND=auto`), or the one the user chose. [`start`] returns it as
//! a [`Capture`], so the rest of the daemon does not know which one it is.

use sentinel_common::abi::ListenKey;
use std::path::PathBuf;

use super::ebpf::durability::Durability;
use super::{
    AttachMode, Attached, Backend, BackendError, BackendKind, Capture, Snapshot,
    afpacket::{self, AfPacketBackend},
    ebpf::{AttachPreference, KernelClassifier, MapsOrigin},
};
use crate::classify::AddressPlan;
pub use crate::config::BackendChoice;

/// What starting a backend needs.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    /// Which backend.
    pub choice: BackendChoice,
    /// eBPF: where to pin.
    pub pin_dir: PathBuf,
    /// eBPF: how to attach.
    pub attach: AttachPreference,
}

/// Neither backend could start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// eBPF failed (and no fallback was allowed or it failed too).
    #[error("the eBPF backend could not start")]
    Ebpf(#[source] super::ebpf::EbpfError),
    /// AF_PACKET failed.
    #[error("the AF_PACKET backend could not start")]
    AfPacket(#[source] afpacket::AfPacketError),
}

/// Starts the chosen backend for `iface` with `plan` (not attached yet).
pub fn start(
    options: &CaptureOptions,
    iface: &str,
    plan: &AddressPlan,
) -> Result<Box<dyn Capture>, StartError> {
    let ebpf = || -> Result<Box<dyn Capture>, StartError> {
        let mut k = KernelClassifier::load_pinned(&options.pin_dir).map_err(StartError::Ebpf)?;
        k.set_addresses(plan).map_err(StartError::Ebpf)?;
        Ok(Box::new(EbpfCapture {
            k,
            preference: options.attach,
        }))
    };
    let afpacket = || -> Result<Box<dyn Capture>, StartError> {
        let b = AfPacketBackend::open(iface, plan).map_err(StartError::AfPacket)?;
        Ok(Box::new(AfPacketCapture {
            b,
            instance: super::ebpf::pins::new_instance_id(),
        }))
    };
    match options.choice {
        BackendChoice::Ebpf => ebpf(),
        BackendChoice::AfPacket => afpacket(),
        BackendChoice::Auto => ebpf().or_else(|e| {
            tracing::warn!(error = %crate::error_chain(&e), "eBPF unavailable; falling back to the AF_PACKET ring");
            afpacket()
        }),
    }
}

fn ebpf_error(context: &str) -> impl FnOnce(super::ebpf::EbpfError) -> BackendError + '_ {
    move |e| BackendError {
        backend: "ebpf",
        context: context.to_owned(),
        source: Box::new(e),
    }
}

/// The TC program and how to attach it.
struct EbpfCapture {
    k: KernelClassifier,
    preference: AttachPreference,
}

impl Capture for EbpfCapture {
    fn kind(&self) -> BackendKind {
        BackendKind::Ebpf
    }

    fn instance(&self) -> u64 {
        self.k.instance()
    }

    fn counters_reused(&self) -> bool {
        self.k.origin() == MapsOrigin::Reused
    }

    fn pin_dir(&self) -> Option<PathBuf> {
        self.k.pin_dir().map(Into::into)
    }

    fn durability(&self) -> Durability {
        self.k.durability().clone()
    }

    fn program_id(&self) -> Option<u32> {
        self.k.program_id()
    }

    fn attach(&mut self, iface: &str) -> Result<Option<AttachMode>, BackendError> {
        self.k
            .attach(iface, self.preference)
            .map(Some)
            .map_err(ebpf_error(&format!("attaching to {iface}")))
    }

    fn detach(&mut self) -> Result<(), BackendError> {
        self.k.detach().map_err(ebpf_error("detaching"))
    }

    fn check(&mut self) -> Attached {
        let id = self.k.program_id();
        match self.k.attachment() {
            Some(a) => a.check(id),
            None => Attached::No,
        }
    }

    fn set_addresses(&mut self, plan: &AddressPlan) -> Result<(), BackendError> {
        Backend::set_addresses(&mut self.k, plan)
    }

    fn set_listening(&mut self, ports: &[ListenKey]) -> Result<(), BackendError> {
        Backend::set_listening(&mut self.k, ports)
    }

    fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
        Backend::snapshot(&mut self.k)
    }
}

/// The AF_PACKET ring (it reopens by itself when its interface comes and goes), with an id for
/// this process's counters.
struct AfPacketCapture {
    b: AfPacketBackend,
    instance: u64,
}

impl Capture for AfPacketCapture {
    fn kind(&self) -> BackendKind {
        BackendKind::AfPacket
    }

    fn instance(&self) -> u64 {
        self.instance
    }

    fn counters_reused(&self) -> bool {
        false
    }

    fn pin_dir(&self) -> Option<PathBuf> {
        None
    }

    fn durability(&self) -> Durability {
        Durability {
            survives_restart: false,
            reason: "the AF_PACKET ring counts in the daemon's memory: traffic while it is \
                     stopped is not seen"
                .into(),
        }
    }

    fn program_id(&self) -> Option<u32> {
        None
    }

    fn attach(&mut self, _iface: &str) -> Result<Option<AttachMode>, BackendError> {
        Ok(None)
    }

    fn detach(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    fn check(&mut self) -> Attached {
        match self.b.status().state {
            afpacket::CaptureState::Running { .. } => Attached::Yes,
            afpacket::CaptureState::Retrying {
                attempt,
                last_error,
            } => Attached::Recovering(format!(
                "AF_PACKET ring reopening (attempt {attempt}): {last_error}"
            )),
            afpacket::CaptureState::Stopped { reason } => {
                Attached::Recovering(format!("AF_PACKET reader stopped: {reason}"))
            }
        }
    }

    fn set_addresses(&mut self, plan: &AddressPlan) -> Result<(), BackendError> {
        self.b.set_addresses(plan)
    }

    fn set_listening(&mut self, ports: &[ListenKey]) -> Result<(), BackendError> {
        self.b.set_listening(ports)
    }

    fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
        self.b.snapshot()
    }
}
