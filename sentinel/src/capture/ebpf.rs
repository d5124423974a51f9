//! The eBPF backend: loads the embedded TC object, fills its address tries, attaches it to an
//! interface (TCX, or clsact through netlink on kernels without TCX) and reads its maps.

use std::{collections::HashMap, time::Duration};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, MapData, PerCpuArray, PerCpuHashMap,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, TestRun, TestRunOptions,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
    },
    util::KernelVersion,
};
use ipnet::IpNet;
use sentinel_common::abi::{
    BASELINE_PROGRAM_NAME, Counters, ERROR_SLOTS, MAP_ADDRS_V4, MAP_ADDRS_V6, MAP_CONFIG,
    MAP_ERRORS, MAP_REMOTES, MAP_TOTALS, PROGRAM_NAME, RemoteCounters, RemoteKey, TOTALS_SLOTS,
};

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
    /// A map operation failed.
    #[error("map {map}: {action} failed")]
    Map {
        map: &'static str,
        action: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// bpf_link through TCX (kernel >= 6.6): coexists with other programs, goes away with us.
    Tcx,
    /// A clsact filter through netlink (older kernels).
    Netlink,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Netlink => "netlink-clsact",
        })
    }
}

/// The loaded TC classifier and its maps.
pub struct KernelClassifier {
    ebpf: Ebpf,
    links: Vec<SchedClassifierLinkId>,
    /// Address entries currently in the tries, to remove what a new plan no longer has.
    installed: HashMap<IpNet, u32>,
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

fn prog_err(action: impl Into<String>) -> impl FnOnce(ProgramError) -> EbpfError {
    let action = action.into();
    move |source| EbpfError::Program { action, source }
}

impl KernelClassifier {
    /// Loads the object and the program into the kernel (not attached yet).
    pub fn load() -> Result<Self, EbpfError> {
        let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(EbpfError::Load)?;
        program_mut(&mut ebpf)?
            .load()
            .map_err(prog_err("loading the TC program"))?;
        Ok(Self {
            ebpf,
            links: Vec::new(),
            installed: HashMap::new(),
        })
    }

    /// Makes the tries hold exactly the flattened `plan`.
    pub fn set_addresses(&mut self, plan: &AddressPlan) -> Result<(), EbpfError> {
        let wanted: HashMap<IpNet, u32> = plan
            .flattened()
            .into_iter()
            .map(|e| (e.net, e.flags))
            .collect();
        // Insert and update first, remove last: a lookup in between never sees a prefix missing.
        for (net, flags) in &wanted {
            if self.installed.get(net) != Some(flags) {
                self.trie_insert(net, *flags)?;
            }
        }
        let stale: Vec<IpNet> = self
            .installed
            .keys()
            .filter(|n| !wanted.contains_key(n))
            .copied()
            .collect();
        for net in stale {
            self.trie_remove(&net)?;
        }
        self.installed = wanted;
        let skip = plan.skip_bits();
        let map = self.ebpf.map_mut(MAP_CONFIG).ok_or(EbpfError::Missing {
            what: "map",
            name: MAP_CONFIG,
        })?;
        let mut config: Array<_, u32> =
            Array::try_from(map).map_err(map_err(MAP_CONFIG, "open"))?;
        config
            .set(0, skip, 0)
            .map_err(map_err(MAP_CONFIG, "write"))?;
        Ok(())
    }

    fn trie_insert(&mut self, net: &IpNet, flags: u32) -> Result<(), EbpfError> {
        let len = u32::from(net.prefix_len());
        match net {
            IpNet::V4(n) => self
                .trie_v4()?
                .insert(&Key::new(len, n.network().octets()), flags, 0)
                .map_err(map_err(MAP_ADDRS_V4, "insert")),
            IpNet::V6(n) => self
                .trie_v6()?
                .insert(&Key::new(len, n.network().octets()), flags, 0)
                .map_err(map_err(MAP_ADDRS_V6, "insert")),
        }
    }

    fn trie_remove(&mut self, net: &IpNet) -> Result<(), EbpfError> {
        let len = u32::from(net.prefix_len());
        match net {
            IpNet::V4(n) => self
                .trie_v4()?
                .remove(&Key::new(len, n.network().octets()))
                .map_err(map_err(MAP_ADDRS_V4, "remove")),
            IpNet::V6(n) => self
                .trie_v6()?
                .remove(&Key::new(len, n.network().octets()))
                .map_err(map_err(MAP_ADDRS_V6, "remove")),
        }
    }

    fn trie_v4(&mut self) -> Result<LpmTrie<&mut MapData, [u8; 4], u32>, EbpfError> {
        let map = self.ebpf.map_mut(MAP_ADDRS_V4).ok_or(EbpfError::Missing {
            what: "map",
            name: MAP_ADDRS_V4,
        })?;
        LpmTrie::try_from(map).map_err(map_err(MAP_ADDRS_V4, "open"))
    }

    fn trie_v6(&mut self) -> Result<LpmTrie<&mut MapData, [u8; 16], u32>, EbpfError> {
        let map = self.ebpf.map_mut(MAP_ADDRS_V6).ok_or(EbpfError::Missing {
            what: "map",
            name: MAP_ADDRS_V6,
        })?;
        LpmTrie::try_from(map).map_err(map_err(MAP_ADDRS_V6, "open"))
    }

    /// Attaches to `iface` on ingress and egress, with TCX where the kernel has it.
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, EbpfError> {
        // TCX arrived in 6.6; KernelVersion orders by (major, minor, patch).
        let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        let mode = if tcx {
            AttachMode::Tcx
        } else {
            AttachMode::Netlink
        };
        if mode == AttachMode::Netlink {
            // EEXIST just means a clsact qdisc is there already (ours or someone else's): reuse it.
            if let Err(e) = tc::qdisc_add_clsact(iface) {
                tracing::debug!(iface, error = %e, "clsact qdisc not added (probably present)");
            }
        }
        let prog = program_mut(&mut self.ebpf)?;
        for direction in [TcAttachType::Ingress, TcAttachType::Egress] {
            let options = match mode {
                AttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
                AttachMode::Netlink => TcAttachOptions::Netlink(NlOptions::default()),
            };
            let link = prog
                .attach_with_options(iface, direction, options)
                .map_err(prog_err(format!(
                    "attaching to {iface} ({direction:?}, {mode})"
                )))?;
            self.links.push(link);
        }
        Ok(mode)
    }

    /// Detaches every attachment this classifier made (and nothing else).
    pub fn detach(&mut self) -> Result<(), EbpfError> {
        let links = std::mem::take(&mut self.links);
        let prog = program_mut(&mut self.ebpf)?;
        for link in links {
            prog.detach(link).map_err(prog_err("detaching"))?;
        }
        Ok(())
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
                slot.packets += c.packets;
                slot.ip_bytes += c.ip_bytes;
                slot.wire_bytes += c.wire_bytes;
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
            out.errors[index as usize] = per_cpu.iter().sum();
        }
        Ok(out)
    }

    /// Every remote in the LRU map with its counters summed over CPUs.
    pub fn remotes(&self) -> Result<Vec<(RemoteKey, RemoteCounters)>, EbpfError> {
        let map = self.ebpf.map(MAP_REMOTES).ok_or(EbpfError::Missing {
            what: "map",
            name: MAP_REMOTES,
        })?;
        let remotes: PerCpuHashMap<_, RemoteKey, RemoteCounters> =
            PerCpuHashMap::try_from(map).map_err(map_err(MAP_REMOTES, "open"))?;
        let mut out = Vec::new();
        for entry in remotes.iter() {
            let (key, per_cpu) = entry.map_err(map_err(MAP_REMOTES, "iterate"))?;
            let mut sum = RemoteCounters::default();
            for c in per_cpu.iter() {
                sum.up_packets += c.up_packets;
                sum.up_bytes += c.up_bytes;
                sum.down_packets += c.down_packets;
                sum.down_bytes += c.down_bytes;
            }
            out.push((key, sum));
        }
        Ok(out)
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
