//! The address tries: userspace keeps them equal to the flattened address plan, changing only
//! what differs (insert and update first, remove last, so a lookup in between never misses a
//! prefix), and sets the lookup-skipping bits that go with the plan. The plan's link part goes
//! along: the link header kind (a config slot) and the NAS's own MACs (a hash map, kept equal
//! the same way).

use std::collections::HashMap;

use aya::maps::{
    HashMap as BpfHashMap, MapData,
    lpm_trie::{Key, LpmTrie},
};
use ipnet::IpNet;
use sentinel_common::abi::{
    CONFIG_LINK, CONFIG_SKIP, MAP_ADDRS_V4, MAP_ADDRS_V6, MAP_MACS, MacKey,
};

use super::{EbpfError, KernelClassifier, map_err};
use crate::classify::AddressPlan;

impl KernelClassifier {
    /// What the tries hold now (an earlier run's entries when the maps are reused).
    pub(super) fn trie_contents(&mut self) -> Result<HashMap<IpNet, u32>, EbpfError> {
        let mut out = HashMap::new();
        let v4 = self.trie_v4()?;
        for key in v4.keys() {
            let key = key.map_err(map_err(MAP_ADDRS_V4, "iterate"))?;
            let flags = v4.get(&key, 0).map_err(map_err(MAP_ADDRS_V4, "read"))?;
            if let Ok(net) = ipnet::Ipv4Net::new(key.data().into(), key.prefix_len() as u8) {
                out.insert(IpNet::V4(net), flags);
            }
        }
        let v6 = self.trie_v6()?;
        for key in v6.keys() {
            let key = key.map_err(map_err(MAP_ADDRS_V6, "iterate"))?;
            let flags = v6.get(&key, 0).map_err(map_err(MAP_ADDRS_V6, "read"))?;
            if let Ok(net) = ipnet::Ipv6Net::new(key.data().into(), key.prefix_len() as u8) {
                out.insert(IpNet::V6(net), flags);
            }
        }
        Ok(out)
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
        self.config_set(CONFIG_SKIP, u64::from(plan.skip_bits()))?;
        self.config_set(CONFIG_LINK, plan.link.config())?;
        self.set_macs(&plan.own_macs)
    }

    /// Makes the MAC map hold exactly `macs` (added first, stale ones removed last).
    fn set_macs(&mut self, macs: &[[u8; 6]]) -> Result<(), EbpfError> {
        let mut map = self.macs()?;
        let present: Vec<MacKey> = map
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_MACS, "iterate"))?;
        for mac in macs {
            let key = MacKey::new(*mac);
            if !present.contains(&key) {
                map.insert(key, 1, 0).map_err(map_err(MAP_MACS, "insert"))?;
            }
        }
        for key in present {
            if !macs.contains(&key.addr) {
                map.remove(&key).map_err(map_err(MAP_MACS, "remove"))?;
            }
        }
        Ok(())
    }

    fn macs(&mut self) -> Result<BpfHashMap<&mut MapData, MacKey, u32>, EbpfError> {
        let map = self.ebpf.map_mut(MAP_MACS).ok_or(EbpfError::Missing {
            what: "map",
            name: MAP_MACS,
        })?;
        BpfHashMap::try_from(map).map_err(map_err(MAP_MACS, "open"))
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
}
