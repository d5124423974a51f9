//! The eBPF backend: loads the embedded TC object, fills its address tries, attaches it to an
//! interface ([`attach`]), pins its maps ([`pins`]) and reads them (the per-remote maps through
//! the swap protocol of [`remotes`]).

pub mod attach;
pub mod durability;
mod filters;
pub mod pins;
pub mod remotes;
mod services;
mod tries;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, links::LinkError},
};
use ipnet::IpNet;
use sentinel_common::abi::{
    ABI_VERSION, BASELINE_PROGRAM_NAME, CONFIG_ABI, CONFIG_INSTANCE, Counters, ERROR_SLOTS,
    ListenKey, MAP_CONFIG, MAP_ERRORS, MAP_TOTALS, PROGRAM_NAME, TOTALS_SLOTS,
};

pub use self::attach::{AttachPreference, Attachment};
pub use self::remotes::RemoteRead;
use super::KernelTotals;
use crate::classify::AddressPlan;

/// The compiled TC object, built by `build.rs` through aya-build.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sentinel"));

/// Size of `struct __sk_buff` and the offsets BPF_PROG_TEST_RUN accepts for GSO metadata.
const SKB_CTX_SIZE: usize = 192;
const SKB_GSO_SEGS_OFFSET: usize = 164;
const SKB_GSO_SIZE_OFFSET: usize = 176;

/// What can go wrong with the eBPF backend.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The object did not load (verifier, permissions, kernel support).
    #[error("loading the eBPF object failed")]
    Load(#[source] aya::EbpfError),
    /// The object lacks something this daemon expects: a build mismatch.
    #[error("the eBPF object has no {what} named {name}")]
    Missing {
        what: &'static str,
        name: &'static str,
    },
    /// A program operation failed.
    #[error("{action} failed")]
    Program {
        action: String,
        #[source]
        source: ProgramError,
    },
    /// The interface is missing.
    #[error("interface {iface:?} not found")]
    Interface {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    /// A link pin could not be used.
    #[error("link pin {path}")]
    Link {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    /// A link could not be pinned.
    #[error("pinning link {path} failed")]
    PinLink {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    /// A link pin could not be removed.
    #[error("removing link pin {path} failed")]
    Unpin {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Pinning maps failed.
    #[error(transparent)]
    Pin(#[from] pins::PinError),
    /// Reading the pinned maps' identity failed.
    #[error("pinned maps in {dir}: {reason}")]
    Incompatible { dir: PathBuf, reason: String },
    /// A map operation failed.
    #[error("map {map}: {action} failed")]
    Map {
        map: &'static str,
        action: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

pub use super::AttachMode;

/// A loader that keeps no kernel BTF: the program uses no CO-RE relocations. (aya 0.14's
/// `EbpfLoader::new` still parses vmlinux's BTF once, about 15 MB for a moment at start-up;
/// dropping it at once keeps it out of the daemon's steady memory.)
fn loader() -> EbpfLoader<'static> {
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    loader
}

/// Whether the maps were made by this load or found pinned by an earlier run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapsOrigin {
    /// Fresh maps: every count in them is new.
    Created,
    /// Pinned maps of an earlier run: their counts continue; a checkpoint of the same instance
    /// says how much of them was already persisted.
    Reused,
}

/// The loaded TC classifier and its maps.
pub struct KernelClassifier {
    ebpf: Ebpf,
    attachment: Option<Attachment>,
    /// Address entries currently in the tries, to remove what a new plan no longer has.
    installed: HashMap<IpNet, u32>,
    pin_dir: Option<PathBuf>,
    instance: u64,
    origin: MapsOrigin,
    /// Whether the pins outlive this process (unpinned maps never do).
    durability: durability::Durability,
    /// The per-remote side the program writes, 0 or 1 (see [`remotes`]); a `u32` fits in the
    /// padding after `origin`.
    side: u32,
}

fn map_err(
    map: &'static str,
    action: &'static str,
) -> impl FnOnce(aya::maps::MapError) -> EbpfError {
    move |source| EbpfError::Map {
        map,
        action,
        source,
    }
}

pub(crate) fn prog_err(action: impl Into<String>) -> impl FnOnce(ProgramError) -> EbpfError {
    let action = action.into();
    move |source| EbpfError::Program { action, source }
}

impl KernelClassifier {
    /// Loads the object and the program into the kernel with private, unpinned maps (tests and
    /// benchmarks).
    pub fn load() -> Result<Self, EbpfError> {
        let ebpf = loader().load(OBJECT).map_err(EbpfError::Load)?;
        Self::finish_load(ebpf, None)
    }

    /// Loads with maps pinned in `dir` (reused when an earlier run left compatible ones; pins of
    /// another layout are removed and reported).
    pub fn load_pinned(dir: &Path) -> Result<Self, EbpfError> {
        let durability = pins::prepare(dir)?;
        if !durability.survives_restart {
            tracing::warn!(dir = %dir.display(), reason = durability.reason, "pinned counters will NOT survive a restart of the daemon: what is counted between the last flush and a restart is lost");
        }
        Self::load_pinned_in(dir, durability)
    }

    fn load_pinned_in(dir: &Path, durability: durability::Durability) -> Result<Self, EbpfError> {
        if let Err(pins::Incompatible(reason)) = pins::check_layout(dir) {
            tracing::warn!(dir = %dir.display(), reason, "pinned maps have another layout; removing them (their unflushed counts are lost)");
            pins::remove_maps(dir)?;
        }
        let paths: Vec<(&'static str, PathBuf)> =
            pins::map_names().map(|n| (n, dir.join(n))).collect();
        let mut loader = loader();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader.load(OBJECT).map_err(EbpfError::Load)?;
        let mut me = Self::finish_load(ebpf, Some(dir.to_owned()))?;
        if let Err(pins::Incompatible(reason)) = pins::check_abi(me.config_get(CONFIG_ABI)?) {
            // Same shapes, different meaning: drop these maps and start over with fresh ones.
            tracing::warn!(dir = %dir.display(), reason, "pinned maps are of another layout version; recreating them");
            drop(me);
            pins::remove_maps(dir)?;
            return Self::load_pinned_in(dir, durability);
        }
        me.durability = durability;
        Ok(me)
    }

    fn finish_load(mut ebpf: Ebpf, pin_dir: Option<PathBuf>) -> Result<Self, EbpfError> {
        program_mut(&mut ebpf)?
            .load()
            .map_err(prog_err("loading the TC program"))?;
        let mut me = Self {
            ebpf,
            attachment: None,
            installed: HashMap::new(),
            pin_dir,
            instance: 0,
            origin: MapsOrigin::Created,
            durability: durability::Durability {
                survives_restart: false,
                reason: "the maps are not pinned".into(),
            },
            side: 0,
        };
        me.side = remotes::written_side(&mut me.ebpf)?;
        me.installed = me.trie_contents()?;
        let instance = me.config_get(CONFIG_INSTANCE)?;
        if instance == 0 {
            me.instance = pins::new_instance_id();
            me.config_set(CONFIG_INSTANCE, me.instance)?;
            me.config_set(CONFIG_ABI, u64::from(ABI_VERSION))?;
        } else {
            me.instance = instance;
            me.origin = MapsOrigin::Reused;
        }
        Ok(me)
    }

    /// The random id of this set of maps (kept across restarts while the pins live).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Whether the maps are new or an earlier run's.
    pub fn origin(&self) -> MapsOrigin {
        self.origin
    }

    /// Whether the counters and links survive a restart of the daemon, and why.
    pub fn durability(&self) -> &durability::Durability {
        &self.durability
    }

    /// Where the maps are pinned, if they are.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    fn config(&mut self) -> Result<Array<&mut MapData, u64>, EbpfError> {
        let map = self.ebpf.map_mut(MAP_CONFIG).ok_or(EbpfError::Missing {
            what: "map",
            name: MAP_CONFIG,
        })?;
        Array::try_from(map).map_err(map_err(MAP_CONFIG, "open"))
    }

    fn config_get(&mut self, slot: u32) -> Result<u64, EbpfError> {
        self.config()?
            .get(&slot, 0)
            .map_err(map_err(MAP_CONFIG, "read"))
    }

    fn config_set(&mut self, slot: u32, value: u64) -> Result<(), EbpfError> {
        self.config()?
            .set(slot, value, 0)
            .map_err(map_err(MAP_CONFIG, "write"))
    }

    /// Attaches to `iface` on ingress and egress (detaching any earlier attachment first).
    pub fn attach(
        &mut self,
        iface: &str,
        preference: AttachPreference,
    ) -> Result<AttachMode, EbpfError> {
        self.detach()?;
        let pin_dir = self.pin_dir.clone();
        let prog = program_mut(&mut self.ebpf)?;
        let attachment = attach::attach(prog, iface, preference, pin_dir.as_deref())?;
        let mode = attachment.mode;
        self.attachment = Some(attachment);
        Ok(mode)
    }

    /// The current attachment, if any.
    pub fn attachment(&self) -> Option<&Attachment> {
        self.attachment.as_ref()
    }

    /// Detaches what this classifier attached (and nothing else).
    pub fn detach(&mut self) -> Result<(), EbpfError> {
        match self.attachment.take() {
            Some(a) => a.detach(),
            None => Ok(()),
        }
    }

    /// Leaves the attachments in place, as a killed daemon would (for restart tests).
    pub fn abandon(mut self) {
        if let Some(a) = self.attachment.take() {
            a.abandon();
        }
    }

    /// The kernel's program id, for `bpftool prog show id N`.
    pub fn program_id(&self) -> Option<u32> {
        let prog: &SchedClassifier = self.ebpf.program(PROGRAM_NAME)?.try_into().ok()?;
        prog.info().ok().map(|i| i.id())
    }

    /// Direction totals and error counters, summed over CPUs.
    pub fn totals(&self) -> Result<KernelTotals, EbpfError> {
        let mut out = KernelTotals::default();
        let map = self.ebpf.map(MAP_TOTALS).ok_or(EbpfError::Missing {
            what: "map",
            name: MAP_TOTALS,
        })?;
        let totals: PerCpuArray<_, Counters> =
            PerCpuArray::try_from(map).map_err(map_err(MAP_TOTALS, "open"))?;
        for index in 0..TOTALS_SLOTS {
            let per_cpu = totals.get(&index, 0).map_err(map_err(MAP_TOTALS, "read"))?;
            let slot = &mut out.slots[index as usize];
            for c in per_cpu.iter() {
                // The recording rule's wrapping arithmetic (sentinel_common::record).
                slot.add(c);
            }
        }
        let map = self.ebpf.map(MAP_ERRORS).ok_or(EbpfError::Missing {
            what: "map",
            name: MAP_ERRORS,
        })?;
        let errors: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(map_err(MAP_ERRORS, "open"))?;
        for index in 0..ERROR_SLOTS {
            let per_cpu = errors.get(&index, 0).map_err(map_err(MAP_ERRORS, "read"))?;
            out.errors[index as usize] = per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b));
        }
        Ok(out)
    }

    /// What every remote and every service added since the previous call (summed over CPUs), and
    /// what the maps had no room for; what is returned is deleted from the kernel (see
    /// [`remotes`]).
    pub fn drain_remotes(&mut self) -> Result<RemoteRead, EbpfError> {
        remotes::drain(&mut self.ebpf, &mut self.side)
    }

    /// Runs the program once per `repeat` on `frame` through BPF_PROG_TEST_RUN, with the GSO
    /// metadata of a super-packet, and returns its return code and the kernel's average time per
    /// run.
    pub fn test_run(
        &self,
        frame: &[u8],
        gso_segs: u32,
        gso_size: u32,
        repeat: u32,
    ) -> Result<(i32, Duration), EbpfError> {
        self.test_run_program(PROGRAM_NAME, frame, gso_segs, gso_size, repeat)
    }

    /// Like [`Self::test_run`], for the empty baseline program (loaded on first use).
    pub fn test_run_baseline(&mut self, frame: &[u8], repeat: u32) -> Result<Duration, EbpfError> {
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(BASELINE_PROGRAM_NAME)
            .ok_or(EbpfError::Missing {
                what: "program",
                name: BASELINE_PROGRAM_NAME,
            })?
            .try_into()
            .map_err(prog_err("opening the baseline program"))?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(prog_err("loading the baseline program"))?;
        }
        let (_, took) = self.test_run_program(BASELINE_PROGRAM_NAME, frame, 0, 0, repeat)?;
        Ok(took)
    }

    fn test_run_program(
        &self,
        name: &'static str,
        frame: &[u8],
        gso_segs: u32,
        gso_size: u32,
        repeat: u32,
    ) -> Result<(i32, Duration), EbpfError> {
        let mut ctx = [0u8; SKB_CTX_SIZE];
        ctx[SKB_GSO_SEGS_OFFSET..SKB_GSO_SEGS_OFFSET + 4].copy_from_slice(&gso_segs.to_ne_bytes());
        ctx[SKB_GSO_SIZE_OFFSET..SKB_GSO_SIZE_OFFSET + 4].copy_from_slice(&gso_size.to_ne_bytes());
        let prog: &SchedClassifier = self
            .ebpf
            .program(name)
            .ok_or(EbpfError::Missing {
                what: "program",
                name,
            })?
            .try_into()
            .map_err(prog_err("opening the program"))?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.ctx_in = Some(&ctx);
        opts.repeat = repeat.max(1);
        let result = prog.test_run(opts).map_err(prog_err("BPF_PROG_TEST_RUN"))?;
        Ok((result.return_value as i32, result.duration))
    }
}

impl Drop for KernelClassifier {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            tracing::warn!(error = %e, "detaching the TC program failed");
        }
    }
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, EbpfError> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or(EbpfError::Missing {
            what: "program",
            name: PROGRAM_NAME,
        })?
        .try_into()
        .map_err(prog_err("opening the program"))
}

impl super::Backend for KernelClassifier {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn set_addresses(&mut self, plan: &AddressPlan) -> Result<(), super::BackendError> {
        KernelClassifier::set_addresses(self, plan).map_err(|e| super::BackendError {
            backend: "ebpf",
            context: "updating the address tries".into(),
            source: Box::new(e),
        })
    }

    fn set_listening(&mut self, ports: &[ListenKey]) -> Result<(), super::BackendError> {
        KernelClassifier::set_listening(self, ports).map_err(|e| super::BackendError {
            backend: "ebpf",
            context: "updating the listening ports".into(),
            source: Box::new(e),
        })
    }

    fn snapshot(&mut self) -> Result<super::Snapshot, super::BackendError> {
        let wrap = |e: EbpfError| super::BackendError {
            backend: "ebpf",
            context: "reading the maps".into(),
            source: Box::new(e),
        };
        let totals = self.totals().map_err(wrap)?;
        let read = self.drain_remotes().map_err(wrap)?;
        Ok(super::Snapshot {
            totals,
            remotes: read.remotes,
            other_remotes: read.other,
            services: read.services,
            other_services: read.other_services,
            drops: 0,
        })
    }
}
