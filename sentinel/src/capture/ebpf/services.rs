//! The per-service block's userspace side: the listening-port map the program's server/client
//! rule reads (kept equal to the set the daemon read from `/proc/net`, added first and stale
//! entries removed last), and the switch that turns per-service counting off (the benchmark's
//! "without" run). Draining the per-service maps is in [`super::remotes`], with the remotes.
//!
//! This module must not know where the listening set comes from.

use std::collections::HashSet;

use aya::maps::{HashMap as BpfHashMap, MapData};
use sentinel_common::abi::{CONFIG_SERVICES, ListenKey, MAP_LISTEN, SERVICES_OFF, SERVICES_ON};

use super::{EbpfError, KernelClassifier, map_err};

impl KernelClassifier {
    /// Makes the listening map hold exactly `ports`. Fails when `ports` has more entries than
    /// the map holds (`LISTEN_MAX_ENTRIES`); what fitted stays.
    pub fn set_listening(&mut self, ports: &[ListenKey]) -> Result<(), EbpfError> {
        let mut map = self.listen_map()?;
        let present: HashSet<ListenKey> = map
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_LISTEN, "iterate"))?;
        let wanted: HashSet<ListenKey> = ports.iter().copied().collect();
        for key in wanted.difference(&present) {
            map.insert(key, 1, 0)
                .map_err(map_err(MAP_LISTEN, "insert"))?;
        }
        for key in present.difference(&wanted) {
            map.remove(key).map_err(map_err(MAP_LISTEN, "remove"))?;
        }
        Ok(())
    }

    /// What the listening map holds now.
    pub fn listening(&mut self) -> Result<Vec<ListenKey>, EbpfError> {
        let map = self.listen_map()?;
        let mut keys: Vec<ListenKey> = map
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_LISTEN, "iterate"))?;
        keys.sort();
        Ok(keys)
    }

    /// Turns per-service counting on (the default) or off.
    pub fn set_services_enabled(&mut self, on: bool) -> Result<(), EbpfError> {
        self.config_set(CONFIG_SERVICES, if on { SERVICES_ON } else { SERVICES_OFF })
    }

    fn listen_map(&mut self) -> Result<BpfHashMap<&mut MapData, ListenKey, u32>, EbpfError> {
        let map = self.ebpf.map_mut(MAP_LISTEN).ok_or(EbpfError::Missing {
            what: "map",
            name: MAP_LISTEN,
        })?;
        BpfHashMap::try_from(map).map_err(map_err(MAP_LISTEN, "open"))
    }
}
