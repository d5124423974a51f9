//! Pinned maps under bpffs: mounting bpffs when missing, checking that maps pinned by an earlier
//! run have the layout this build expects, and telling new maps from reused ones.
//!
//! Layout check: aya reuses whatever is pinned at a path without looking at it, so before loading
//! we compare each pinned map's type, key size, value size and capacity, and the ABI version the
//! maps were created with, against this build. Pins of another layout (an upgrade or downgrade)
//! are removed rather than misread; their counts since the last flush cannot be recovered and are
//! reported in the log.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::maps::{MapInfo, MapType};

use super::durability::{self, Durability};
use sentinel_common::abi::{
    ABI_VERSION, ADDRS_MAX_ENTRIES, CONFIG_SLOTS, ERROR_SLOTS, MAP_ADDRS_V4, MAP_ADDRS_V6,
    MAP_CONFIG, MAP_ERRORS, MAP_OVERFLOW, MAP_REMOTES_A, MAP_REMOTES_B, MAP_TOTALS, OVERFLOW_SLOTS,
    REMOTES_MAX_ENTRIES, TOTALS_SLOTS,
};
use sentinel_common::abi::{
    LISTEN_MAX_ENTRIES, MACS_MAX_ENTRIES, MAP_LISTEN, MAP_MACS, MAP_SERVICES_A, MAP_SERVICES_B,
    MAP_SVC_OVERFLOW, SERVICES_MAX_ENTRIES,
};

/// Where bpffs is mounted on every system we know.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/sentinel";

/// What one map must look like.
struct MapSpec {
    name: &'static str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

/// Map pins of earlier layouts that this build no longer has: removed with the others, so a stale
/// pin of a replaced map never lingers (layout 2's per-remote LRU map).
const RETIRED: [&str; 1] = ["SNT_REMOTES"];

/// The maps this build pins, with their expected layout.
const SPECS: [MapSpec; 13] = [
    MapSpec {
        name: MAP_TOTALS,
        map_type: MapType::PerCpuArray,
        key_size: 4,
        value_size: 24,
        max_entries: TOTALS_SLOTS,
    },
    MapSpec {
        name: MAP_REMOTES_A,
        map_type: MapType::PerCpuHash,
        key_size: 20,
        value_size: 32,
        max_entries: REMOTES_MAX_ENTRIES,
    },
    MapSpec {
        name: MAP_REMOTES_B,
        map_type: MapType::PerCpuHash,
        key_size: 20,
        value_size: 32,
        max_entries: REMOTES_MAX_ENTRIES,
    },
    MapSpec {
        name: MAP_OVERFLOW,
        map_type: MapType::PerCpuArray,
        key_size: 4,
        value_size: 32,
        max_entries: OVERFLOW_SLOTS,
    },
    MapSpec {
        name: MAP_ERRORS,
        map_type: MapType::PerCpuArray,
        key_size: 4,
        value_size: 8,
        max_entries: ERROR_SLOTS,
    },
    MapSpec {
        name: MAP_ADDRS_V4,
        map_type: MapType::LpmTrie,
        key_size: 8,
        value_size: 4,
        max_entries: ADDRS_MAX_ENTRIES,
    },
    MapSpec {
        name: MAP_ADDRS_V6,
        map_type: MapType::LpmTrie,
        key_size: 20,
        value_size: 4,
        max_entries: ADDRS_MAX_ENTRIES,
    },
    MapSpec {
        name: MAP_CONFIG,
        map_type: MapType::Array,
        key_size: 4,
        value_size: 8,
        max_entries: CONFIG_SLOTS,
    },
    // The link-layer block: the NAS's own MACs (sentinel_common::owner).
    MapSpec {
        name: MAP_MACS,
        map_type: MapType::Hash,
        key_size: 8,
        value_size: 4,
        max_entries: MACS_MAX_ENTRIES,
    },
    // The per-service block (sentinel_common::service).
    MapSpec {
        name: MAP_SERVICES_A,
        map_type: MapType::PerCpuHash,
        key_size: 4,
        value_size: 32,
        max_entries: SERVICES_MAX_ENTRIES,
    },
    MapSpec {
        name: MAP_SERVICES_B,
        map_type: MapType::PerCpuHash,
        key_size: 4,
        value_size: 32,
        max_entries: SERVICES_MAX_ENTRIES,
    },
    MapSpec {
        name: MAP_SVC_OVERFLOW,
        map_type: MapType::PerCpuArray,
        key_size: 4,
        value_size: 32,
        max_entries: OVERFLOW_SLOTS,
    },
    MapSpec {
        name: MAP_LISTEN,
        map_type: MapType::Hash,
        key_size: 4,
        value_size: 4,
        max_entries: LISTEN_MAX_ENTRIES,
    },
];

/// The names of every pinned map.
pub fn map_names() -> impl Iterator<Item = &'static str> {
    SPECS.iter().map(|s| s.name)
}

/// Pinning failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// bpffs could not be mounted.
    #[error("mounting bpffs at {BPFFS} failed (mount -t bpf bpf {BPFFS})")]
    Mount(#[source] nix::Error),
    /// A pin directory or file could not be created, read or removed.
    #[error("{action} {path} failed")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Set once this process has mounted bpffs at [`BPFFS`] itself.
static MOUNTED_BY_THIS_PROCESS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Mounts bpffs at [`BPFFS`] when nothing is mounted there, creates `dir`, and says whether pins
/// in it will outlive this process ([`durability`]).
pub fn prepare(dir: &Path) -> Result<Durability, PinError> {
    if !bpffs_mounted()? {
        tracing::info!(path = BPFFS, "bpffs not mounted; mounting it");
        nix::mount::mount(
            Some("bpf"),
            BPFFS,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(PinError::Mount)?;
        MOUNTED_BY_THIS_PROCESS.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // Whoever called first (the instance lock or the backend), the mount is this process's own.
    let mounted_by_us = MOUNTED_BY_THIS_PROCESS.load(std::sync::atomic::Ordering::Relaxed);
    std::fs::create_dir_all(dir).map_err(|source| PinError::Io {
        action: "creating",
        path: dir.to_owned(),
        source,
    })?;
    let mount = durability::bpffs_mount(dir).map_err(|source| PinError::Io {
        action: "reading",
        path: PathBuf::from("/proc/self/mountinfo"),
        source,
    })?;
    Ok(match mount {
        // A pin directory below our own mount counts as ours; one on another bpffs was there.
        Some(m) => durability::decide(&durability::surroundings(
            &m,
            mounted_by_us && m.mount_point == Path::new(BPFFS),
        )),
        None => Durability {
            survives_restart: false,
            reason: format!(
                "{} is not on bpffs: nothing can be pinned there",
                dir.display()
            ),
        },
    })
}

fn bpffs_mounted() -> Result<bool, PinError> {
    let path = PathBuf::from("/proc/self/mounts");
    let mounts = std::fs::read_to_string(&path).map_err(|source| PinError::Io {
        action: "reading",
        path,
        source,
    })?;
    Ok(mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        matches!(
            (f.next(), f.next(), f.next()),
            (Some(_), Some(BPFFS), Some("bpf"))
        )
    }))
}

/// Why pinned maps cannot be reused.
#[derive(Debug, PartialEq, Eq)]
pub struct Incompatible(pub String);

/// Checks the maps pinned in `dir` against this build. `Ok(())` when there are none, or all
/// match (the ABI version in the config map is checked after loading, see `check_abi`). A pin of
/// a retired map means an older layout.
pub fn check_layout(dir: &Path) -> Result<(), Incompatible> {
    if let Some(name) = RETIRED.iter().find(|n| dir.join(n).exists()) {
        return Err(Incompatible(format!(
            "{name}: a map of an earlier layout, not used by this build"
        )));
    }
    for spec in &SPECS {
        let path = dir.join(spec.name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path)
            .map_err(|e| Incompatible(format!("{}: unreadable pin ({e})", spec.name)))?;
        let map_type = info
            .map_type()
            .map_err(|e| Incompatible(format!("{}: {e}", spec.name)))?;
        let got = (
            map_type,
            info.key_size(),
            info.value_size(),
            info.max_entries(),
        );
        let want = (
            spec.map_type,
            spec.key_size,
            spec.value_size,
            spec.max_entries,
        );
        if got != want {
            return Err(Incompatible(format!(
                "{}: pinned {got:?}, this build expects {want:?}",
                spec.name
            )));
        }
    }
    Ok(())
}

/// Checks the ABI version recorded in a reused config map (0: maps created just now).
pub fn check_abi(recorded: u64) -> Result<(), Incompatible> {
    if recorded == 0 || recorded == u64::from(ABI_VERSION) {
        Ok(())
    } else {
        Err(Incompatible(format!(
            "maps were created by layout version {recorded}, this build is {ABI_VERSION}"
        )))
    }
}

/// Removes every map pin of this build's names, and of retired maps, from `dir` (not the
/// directory, not link pins).
pub fn remove_maps(dir: &Path) -> Result<(), PinError> {
    for name in map_names().chain(RETIRED) {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PinError::Io {
                    action: "removing",
                    path,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// A random non-zero id for a new set of maps.
pub fn new_instance_id() -> u64 {
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes));
    let id = match random {
        Ok(()) => u64::from_ne_bytes(bytes),
        // Not cryptographic, only distinct: time and pid are enough.
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    };
    id.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_versions_other_than_ours_are_incompatible() {
        assert!(check_abi(0).is_ok());
        assert!(check_abi(u64::from(ABI_VERSION)).is_ok());
        assert!(check_abi(u64::from(ABI_VERSION) + 1).is_err());
    }

    #[test]
    fn instance_ids_are_nonzero_and_distinct() {
        let (a, b) = (new_instance_id(), new_instance_id());
        assert!(a != 0 && b != 0 && a != b);
    }
}
