//! The backend the daemon runs: eBPF (TC program, pinned maps) when the kernel allows it, the
//! AF_PACKET ring otherwise (`BACKEND=auto`), or the one the user chose. The rest of the daemon
//! talks to [`ActiveCapture`] and does not know which one it is.

use std::path::PathBuf;

use super::{
    Backend, BackendError, Snapshot,
    afpacket::{self, AfPacketBackend},
    ebpf::{AttachPreference, KernelClassifier, MapsOrigin},
};
use crate::classify::AddressPlan;

/// Which backend to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// eBPF, falling back to AF_PACKET when the program cannot be loaded.
    #[default]
    Auto,
    /// eBPF only.
    Ebpf,
    /// AF_PACKET only.
    AfPacket,
}

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

/// The running backend.
pub enum ActiveCapture {
    /// The TC program.
    Ebpf(Box<KernelClassifier>),
    /// The AF_PACKET ring, with an id for this process's counters.
    AfPacket(AfPacketBackend, u64),
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

impl ActiveCapture {
    /// Starts the chosen backend for `iface` with `plan`.
    pub fn start(
        options: &CaptureOptions,
        iface: &str,
        plan: &AddressPlan,
    ) -> Result<Self, StartError> {
        let ebpf = || -> Result<Self, StartError> {
            let mut k =
                KernelClassifier::load_pinned(&options.pin_dir).map_err(StartError::Ebpf)?;
            k.set_addresses(plan).map_err(StartError::Ebpf)?;
            Ok(ActiveCapture::Ebpf(Box::new(k)))
        };
        let afpacket = || -> Result<Self, StartError> {
            let b = AfPacketBackend::open(iface, plan).map_err(StartError::AfPacket)?;
            Ok(ActiveCapture::AfPacket(
                b,
                super::ebpf::pins::new_instance_id(),
            ))
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

    /// `ebpf` or `afpacket`.
    pub fn name(&self) -> &'static str {
        match self {
            ActiveCapture::Ebpf(k) => k.name(),
            ActiveCapture::AfPacket(b, _) => b.name(),
        }
    }

    /// Identity of the counters (a checkpoint of another identity does not apply to them).
    pub fn instance(&self) -> u64 {
        match self {
            ActiveCapture::Ebpf(k) => k.instance(),
            ActiveCapture::AfPacket(_, id) => *id,
        }
    }

    /// Whether the counters continue an earlier run's (eBPF pinned maps).
    pub fn counters_reused(&self) -> bool {
        matches!(self, ActiveCapture::Ebpf(k) if k.origin() == MapsOrigin::Reused)
    }

    /// Whether the counters (and attachments) outlive this process, and why: pinned eBPF maps on a
    /// durable bpffs do; the ring's counters live in the process and never do.
    pub fn durability(&self) -> super::ebpf::durability::Durability {
        match self {
            ActiveCapture::Ebpf(k) => k.durability().clone(),
            ActiveCapture::AfPacket(..) => super::ebpf::durability::Durability {
                survives_restart: false,
                reason: "the AF_PACKET ring counts in the daemon's memory: traffic while it is \
                         stopped is not seen"
                    .into(),
            },
        }
    }

    /// Attaches to `iface` (eBPF); the ring follows its interface by itself. Returns the attach
    /// mode, if there is one.
    pub fn attach(
        &mut self,
        iface: &str,
        preference: AttachPreference,
    ) -> Result<Option<String>, String> {
        match self {
            ActiveCapture::Ebpf(k) => k
                .attach(iface, preference)
                .map(|mode| Some(mode.to_string()))
                .map_err(|e| crate::error_chain(&e)),
            ActiveCapture::AfPacket(..) => Ok(None),
        }
    }

    /// Detaches what was attached (eBPF).
    pub fn detach(&mut self) -> Result<(), String> {
        match self {
            ActiveCapture::Ebpf(k) => k.detach().map_err(|e| crate::error_chain(&e)),
            ActiveCapture::AfPacket(..) => Ok(()),
        }
    }

    /// Whether the backend follows interface re-creation by itself (the ring does).
    pub fn follows_interface(&self) -> bool {
        matches!(self, ActiveCapture::AfPacket(..))
    }

    /// The kernel program id (eBPF).
    pub fn program_id(&self) -> Option<u32> {
        match self {
            ActiveCapture::Ebpf(k) => k.program_id(),
            ActiveCapture::AfPacket(..) => None,
        }
    }

    /// The pin directory (eBPF).
    pub fn pin_dir(&self) -> Option<PathBuf> {
        match self {
            ActiveCapture::Ebpf(k) => k.pin_dir().map(Into::into),
            ActiveCapture::AfPacket(..) => None,
        }
    }

    /// Why the backend is not counting right now, if it is not (the ring retrying).
    pub fn trouble(&self) -> Option<String> {
        match self {
            ActiveCapture::Ebpf(_) => None,
            ActiveCapture::AfPacket(b, _) => match b.status().state {
                afpacket::CaptureState::Running { .. } => None,
                afpacket::CaptureState::Retrying {
                    attempt,
                    last_error,
                } => Some(format!(
                    "AF_PACKET ring reopening (attempt {attempt}): {last_error}"
                )),
                afpacket::CaptureState::Stopped { reason } => {
                    Some(format!("AF_PACKET reader stopped: {reason}"))
                }
            },
        }
    }

    /// Replaces the address plan.
    pub fn set_addresses(&mut self, plan: &AddressPlan) -> Result<(), BackendError> {
        match self {
            ActiveCapture::Ebpf(k) => Backend::set_addresses(k.as_mut(), plan),
            ActiveCapture::AfPacket(b, _) => b.set_addresses(plan),
        }
    }

    /// The monotonic counters.
    pub fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
        match self {
            ActiveCapture::Ebpf(k) => k.snapshot(),
            ActiveCapture::AfPacket(b, _) => b.snapshot(),
        }
    }
}
