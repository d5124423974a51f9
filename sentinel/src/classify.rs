//! The userspace side of classification: which addresses are local, LAN or user-declared, as one
//! flattened prefix table.
//!
//! [`AddressPlan`] is what the daemon knows (the NAS's addresses, the LAN prefixes, the user's
//! inside/public prefixes, and the link: its header kind and the MACs of its macvlan children). [`PrefixTable`] flattens it so that every prefix carries the flags of
//! all prefixes containing it: the longest match then answers alone, which is exactly how the
//! kernel's LPM tries are read. The same table serves the AF_PACKET fallback (through
//! [`sentinel_common::addr::AddrFlags`]) and fills the tries, so both worlds see the same flags.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sentinel_common::{
    abi::{SKIP_V4_NONPUBLIC, SKIP_V4_PUBLIC, SKIP_V6_NONPUBLIC, SKIP_V6_PUBLIC},
    addr::{
        ADDR_INSIDE, ADDR_LAN_PREFIX, ADDR_LOCAL, ADDR_PUBLIC, AddrFlags, BUILTIN_NONPUBLIC_V4,
        BUILTIN_NONPUBLIC_V6,
    },
    frame::LinkKind,
    owner::MacSet,
};

/// Everything the classifier needs to know about the home network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPlan {
    /// The NAS's own addresses (and the broadcast addresses of its IPv4 subnets).
    pub locals: Vec<IpAddr>,
    /// IPv6 LAN prefixes: derived from global addresses, or `EXCLUDE_IPV6_PREFIX`.
    pub lan_prefixes: Vec<Ipv6Net>,
    /// Prefixes the user declared inside (not public).
    pub inside: Vec<IpNet>,
    /// Prefixes the user declared public (overriding the built-in non-public sets).
    pub public: Vec<IpNet>,
    /// What the monitored link puts before the IP header.
    pub link: LinkKind,
    /// MACs that are the NAS's own besides the interface's: its macvlan/macvtap children (in any
    /// namespace) and its master bridge. Received frames to them count (see
    /// [`sentinel_common::owner`]). Sorted, no duplicates.
    pub own_macs: Vec<[u8; 6]>,
}

/// One flattened entry: a prefix and the union of the flags of every plan prefix containing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixEntry {
    /// The prefix (host bits zero).
    pub net: IpNet,
    /// `ADDR_*` flags.
    pub flags: u32,
}

/// The flattened table; implements [`AddrFlags`] by longest-prefix match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixTable {
    /// Sorted longest prefix first, so the first match is the longest.
    v4: Vec<(Ipv4Net, u32)>,
    v6: Vec<(Ipv6Net, u32)>,
    /// The plan's [`AddressPlan::own_macs`].
    macs: Vec<[u8; 6]>,
}

impl AddressPlan {
    /// The plan's prefixes with their own flags, before flattening.
    fn raw_entries(&self) -> Vec<PrefixEntry> {
        let host = |a: &IpAddr| match a {
            IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(*v4)),
            IpAddr::V6(v6) => IpNet::V6(Ipv6Net::from(*v6)),
        };
        let locals = self.locals.iter().map(|a| (host(a), ADDR_LOCAL));
        let lan = self
            .lan_prefixes
            .iter()
            .map(|n| (IpNet::V6(n.trunc()), ADDR_LAN_PREFIX));
        let inside = self.inside.iter().map(|n| (n.trunc(), ADDR_INSIDE));
        let public = self.public.iter().map(|n| (n.trunc(), ADDR_PUBLIC));
        locals
            .chain(lan)
            .chain(inside)
            .chain(public)
            .map(|(net, flags)| PrefixEntry { net, flags })
            .collect()
    }

    /// Every distinct prefix of the plan, each carrying the flags of all prefixes that contain it.
    pub fn flattened(&self) -> Vec<PrefixEntry> {
        let raw = self.raw_entries();
        let mut out: Vec<PrefixEntry> = Vec::with_capacity(raw.len());
        for entry in &raw {
            if out.iter().any(|e| e.net == entry.net) {
                continue;
            }
            let flags = raw
                .iter()
                .filter(|outer| outer.net.contains(&entry.net))
                .fold(0, |acc, outer| acc | outer.flags);
            out.push(PrefixEntry {
                net: entry.net,
                flags,
            });
        }
        out.sort_by_key(|e| (std::cmp::Reverse(e.net.prefix_len()), e.net));
        out
    }

    /// The `SKIP_*` bits for this plan: which kernel lookups cannot change any verdict.
    ///
    /// For a built-in non-public address only a public override can matter (every other flag
    /// agrees that it is inside). For a public address only an inside flag can matter, and only
    /// when its prefix reaches outside the built-in ranges.
    pub fn skip_bits(&self) -> u32 {
        let entries = self.raw_entries();
        let mut bits = SKIP_V4_NONPUBLIC | SKIP_V4_PUBLIC | SKIP_V6_NONPUBLIC | SKIP_V6_PUBLIC;
        for PrefixEntry { net, flags } in entries {
            let (nonpublic, public) = match net {
                IpNet::V4(_) => (SKIP_V4_NONPUBLIC, SKIP_V4_PUBLIC),
                IpNet::V6(_) => (SKIP_V6_NONPUBLIC, SKIP_V6_PUBLIC),
            };
            if flags & ADDR_PUBLIC != 0 {
                bits &= !nonpublic;
            }
            if flags & (ADDR_LOCAL | ADDR_LAN_PREFIX | ADDR_INSIDE) != 0 && !within_builtin(&net) {
                bits &= !public;
            }
        }
        bits
    }

    /// The lookup table of this plan.
    pub fn table(&self) -> PrefixTable {
        let mut table = PrefixTable {
            macs: self.own_macs.clone(),
            ..PrefixTable::default()
        };
        for PrefixEntry { net, flags } in self.flattened() {
            match net {
                IpNet::V4(n) => table.v4.push((n, flags)),
                IpNet::V6(n) => table.v6.push((n, flags)),
            }
        }
        table
    }
}

/// Whether a prefix lies wholly inside one built-in non-public range.
fn within_builtin(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => BUILTIN_NONPUBLIC_V4
            .iter()
            .any(|(a, len)| Ipv4Net::new(Ipv4Addr::from(*a), *len).is_ok_and(|b| b.contains(n))),
        IpNet::V6(n) => BUILTIN_NONPUBLIC_V6
            .iter()
            .any(|(a, len)| Ipv6Net::new(Ipv6Addr::from(*a), *len).is_ok_and(|b| b.contains(n))),
    }
}

impl AddrFlags for PrefixTable {
    fn flags_v4(&self, addr: [u8; 4], _builtin: bool) -> u32 {
        let addr = Ipv4Addr::from(addr);
        self.v4
            .iter()
            .find(|(n, _)| n.contains(&addr))
            .map_or(0, |(_, f)| *f)
    }

    fn flags_v6(&self, addr: &[u8; 16], _builtin: bool) -> u32 {
        let addr = Ipv6Addr::from(*addr);
        self.v6
            .iter()
            .find(|(n, _)| n.contains(&addr))
            .map_or(0, |(_, f)| *f)
    }
}

impl MacSet for PrefixTable {
    fn contains(&self, mac: &[u8; 6]) -> bool {
        self.macs.contains(mac)
    }
}

#[cfg(test)]
mod tests {
    use sentinel_common::addr::{v4_builtin_nonpublic, v6_builtin_nonpublic};

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    /// The shared vector table, through the userspace classifier (the eBPF object runs the same
    /// table in `tests/privileged_ebpf.rs`).
    #[test]
    fn every_vector_gives_its_expected_result() {
        use sentinel_common::{
            account::account,
            vectors::{Expect, VECTORS},
        };
        let mut failures = Vec::new();
        for v in VECTORS {
            let frame = crate::testkit::frame(v);
            let table = crate::testkit::plan(v).table();
            let got = account(&frame[..], v.link, v.gso_segs, &table);
            let ok = match (v.expect, got) {
                (Expect::Skip(kind), Err(got)) => kind == got,
                (
                    Expect::Count {
                        verdict,
                        family,
                        remote,
                        packets,
                        ip_bytes,
                        wire_bytes,
                        note,
                    },
                    Ok(acc),
                ) => {
                    acc.verdict == verdict
                        && acc.family == family
                        && acc.packets == packets
                        && acc.ip_bytes == ip_bytes
                        && acc.wire_bytes == wire_bytes
                        && acc.note == note
                        && (remote.is_empty() || acc.remote == crate::testkit::remote_key(remote))
                }
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{} ({}): expected {:?}, got {:?}",
                    v.id, v.case, v.expect, got
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} vectors failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(VECTORS.iter().filter(|v| v.id.starts_with("seed-")).count() == 55);
    }

    #[test]
    fn longer_prefixes_inherit_the_flags_of_their_containers() {
        let plan = AddressPlan {
            locals: vec!["240e:33e:2f08:d601::1".parse().expect("addr")],
            lan_prefixes: vec!["240e:33e:2f08:d600::/56".parse().expect("net")],
            inside: vec![],
            public: vec![net("240e:33e:2f08:d601::/64")],
            ..AddressPlan::default()
        };
        let flat = plan.flattened();
        assert_eq!(
            flat,
            vec![
                PrefixEntry {
                    net: net("240e:33e:2f08:d601::1/128"),
                    flags: ADDR_LOCAL | ADDR_LAN_PREFIX | ADDR_PUBLIC
                },
                PrefixEntry {
                    net: net("240e:33e:2f08:d601::/64"),
                    flags: ADDR_LAN_PREFIX | ADDR_PUBLIC
                },
                PrefixEntry {
                    net: net("240e:33e:2f08:d600::/56"),
                    flags: ADDR_LAN_PREFIX
                },
            ]
        );
        let table = plan.table();
        let other: Ipv6Addr = "240e:33e:2f08:d6ff::1".parse().expect("addr");
        assert_eq!(table.flags_v6(&other.octets(), false), ADDR_LAN_PREFIX);
        let outside: Ipv6Addr = "2001:db8::1".parse().expect("addr");
        assert_eq!(table.flags_v6(&outside.octets(), false), 0);
    }

    #[test]
    fn builtin_tables_agree_with_the_fast_predicates() {
        // Every range's first and last address and their outside neighbours.
        for (a, len) in BUILTIN_NONPUBLIC_V4 {
            let n = Ipv4Net::new(Ipv4Addr::from(*a), *len).expect("table prefix");
            let (first, last) = (u32::from(n.network()), u32::from(n.broadcast()));
            for probe in [first.wrapping_sub(1), first, last, last.wrapping_add(1)] {
                let addr = Ipv4Addr::from(probe);
                let in_table = BUILTIN_NONPUBLIC_V4.iter().any(|(b, l)| {
                    Ipv4Net::new(Ipv4Addr::from(*b), *l).is_ok_and(|t| t.contains(&addr))
                });
                assert_eq!(v4_builtin_nonpublic(addr.octets()), in_table, "{addr}");
            }
        }
        for (a, len) in BUILTIN_NONPUBLIC_V6 {
            let n = Ipv6Net::new(Ipv6Addr::from(*a), *len).expect("table prefix");
            let (first, last) = (u128::from(n.network()), u128::from(n.broadcast()));
            for probe in [first.wrapping_sub(1), first, last, last.wrapping_add(1)] {
                let addr = Ipv6Addr::from(probe);
                let in_table = BUILTIN_NONPUBLIC_V6.iter().any(|(b, l)| {
                    Ipv6Net::new(Ipv6Addr::from(*b), *l).is_ok_and(|t| t.contains(&addr))
                });
                assert_eq!(v6_builtin_nonpublic(&addr.octets()), in_table, "{addr}");
            }
        }
    }

    #[test]
    fn skip_bits_only_allow_lookups_that_cannot_matter() {
        let all = SKIP_V4_NONPUBLIC | SKIP_V4_PUBLIC | SKIP_V6_NONPUBLIC | SKIP_V6_PUBLIC;
        // A NAS behind NAT: private and link-local addresses only; nothing needs a lookup.
        let private = AddressPlan {
            locals: vec![
                "192.168.1.100".parse().expect("a"),
                "192.168.1.255".parse().expect("a"),
                "fe80::1".parse().expect("a"),
            ],
            ..AddressPlan::default()
        };
        assert_eq!(private.skip_bits(), all);
        // A public IPv4 address and a GUA: public addresses must be looked up in both families.
        let public = AddressPlan {
            locals: vec![
                "203.0.113.10".parse().expect("a"),
                "240e:33e:2f08:d601::1".parse().expect("a"),
            ],
            ..AddressPlan::default()
        };
        assert_eq!(public.skip_bits(), SKIP_V4_NONPUBLIC | SKIP_V6_NONPUBLIC);
        // A public override: built-in addresses must be looked up.
        let overridden = AddressPlan {
            public: vec![net("100.64.0.0/10")],
            ..AddressPlan::default()
        };
        assert_eq!(overridden.skip_bits(), all & !SKIP_V4_NONPUBLIC);
        // An inside prefix straddling built-in and public space (0.0.0.0/1) needs public lookups.
        let wide = AddressPlan {
            inside: vec![net("0.0.0.0/1")],
            ..AddressPlan::default()
        };
        assert_eq!(wide.skip_bits(), all & !SKIP_V4_PUBLIC);
    }

    #[test]
    fn duplicate_prefixes_merge_into_one_entry() {
        let plan = AddressPlan {
            locals: vec!["192.168.1.100".parse().expect("addr")],
            lan_prefixes: vec![],
            inside: vec![net("192.168.1.100/32"), net("192.168.0.0/16")],
            ..AddressPlan::default()
        };
        let flat = plan.flattened();
        assert_eq!(flat.len(), 2);
        assert_eq!(flat[0].flags, ADDR_LOCAL | ADDR_INSIDE);
        assert_eq!(plan.table().flags_v4([192, 168, 9, 9], true), ADDR_INSIDE);
    }
}
