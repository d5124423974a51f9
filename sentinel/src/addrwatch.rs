//! Follows the monitored interface: address and link changes arrive as netlink events (within
//! milliseconds), each of which triggers a re-read of the interface; a periodic full re-read is the
//! safety net. Derived IPv6 LAN prefixes that vanish stay LAN prefixes for a grace period (a PPPoE
//! redial or prefix change must not turn the home's own traffic into "internet" for a while).
//!
//! The same events keep the link's own MAC set current (a macvlan child coming up changes the
//! parent's unicast list; on a parent without unicast filtering, a veth or a bridge, that flips
//! its promiscuity, which is a link event; otherwise the periodic re-read finds it).
//!
//! It produces [`AddressPlan`]s; it does not know how the classifier uses them.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use ipnet::Ipv6Net;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use sentinel_common::frame::LinkKind;

use crate::{
    classify::AddressPlan,
    config::Config,
    iface::{self, IfaceError},
    links,
};

/// rtnetlink multicast groups (linux/rtnetlink.h): RTMGRP_LINK, RTMGRP_IPV4_IFADDR,
/// RTMGRP_IPV6_IFADDR.
const GROUPS: u32 = 0x1 | 0x10 | 0x100;

/// How long after an event the watch keeps signalling once a second. A macvlan child is created
/// in the host's namespace, moved into its container and only then brought up, which is when it
/// joins the parent's unicast list: on a NIC with unicast filtering that last step is no event
/// here, so a few re-reads after the creation find it without waiting for the periodic one.
const FOLLOW_UP: Duration = Duration::from_secs(5);

/// Starts a thread that signals `tx` on every link or address event in this network namespace,
/// and once a second for [`FOLLOW_UP`] after one. Events are coalesced: a burst gives one
/// wake-up.
pub fn spawn_netlink_watch(tx: tokio::sync::mpsc::Sender<()>) -> std::io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind(&SocketAddr::new(0, GROUPS))?;
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: SO_RCVTIMEO reads a `timeval` of the given size, valid for the whole call.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    std::thread::Builder::new().name("netlink-watch".into()).spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut follow_until: Option<Instant> = None;
        loop {
            match socket.recv(&mut &mut buf[..], 0) {
                Ok(_) => follow_until = Some(Instant::now() + FOLLOW_UP),
                // ENOBUFS: we missed events; a re-read covers them all anyway.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    follow_until = Some(Instant::now() + FOLLOW_UP);
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if follow_until.is_none_or(|until| Instant::now() > until) {
                        follow_until = None;
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "netlink watch stopped; relying on periodic refresh");
                    return;
                }
            }
            if tx.try_send(()).is_err() && tx.is_closed() {
                return;
            }
        }
    })?;
    Ok(())
}

/// The interface's state as the daemon tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceState {
    /// Interface index (`None`: the interface does not exist right now).
    pub ifindex: Option<u32>,
    /// The address plan to classify with.
    pub plan: AddressPlan,
    /// Derived prefixes that vanished and are kept until their grace ends.
    pub grace_prefixes: Vec<Ipv6Net>,
}

/// Builds plans from the interface's addresses, remembering vanished prefixes.
pub struct PlanBuilder {
    iface: String,
    manual: Vec<Ipv6Net>,
    prefix_len: u8,
    grace: Duration,
    inside: Vec<ipnet::IpNet>,
    public: Vec<ipnet::IpNet>,
    /// Derived prefixes seen, with the last time they were present.
    seen: HashMap<Ipv6Net, Instant>,
}

impl PlanBuilder {
    /// For `iface` under `config`.
    pub fn new(config: &Config, iface: &str) -> Self {
        Self {
            iface: iface.to_owned(),
            manual: config.manual_lan_prefixes.clone(),
            prefix_len: config.ipv6_lan_prefix_len,
            grace: config.lan_prefix_grace,
            inside: config.inside.clone(),
            public: config.public.clone(),
            seen: HashMap::new(),
        }
    }

    /// Reads the interface now: its addresses, its link type and its children's MACs.
    pub fn read(&mut self, now: Instant) -> Result<IfaceState, IfaceError> {
        // Only "no such device" means the interface is gone; any other failure (EMFILE, ENOMEM)
        // is an error of the environment and must not read as "vanished".
        let ifindex = match nix::net::if_::if_nametoindex(self.iface.as_str()) {
            Ok(index) => Some(index),
            Err(nix::errno::Errno::ENODEV | nix::errno::Errno::ENXIO) => None,
            Err(source) => {
                return Err(IfaceError::Index {
                    iface: self.iface.clone(),
                    source,
                });
            }
        };
        let (locals, link, macs) = match ifindex {
            Some(index) => (
                iface::local_addresses(&self.iface)?,
                links::kind(&self.iface, index)?,
                links::own_macs(index)?,
            ),
            None => (Vec::new(), LinkKind::default(), Vec::new()),
        };
        let mut state = self.plan_from(ifindex, locals, now);
        state.plan.link = link;
        state.plan.own_macs = macs;
        Ok(state)
    }

    /// The plan for a given set of local addresses (separate from `read` for tests).
    pub fn plan_from(
        &mut self,
        ifindex: Option<u32>,
        locals: Vec<std::net::IpAddr>,
        now: Instant,
    ) -> IfaceState {
        let (lan_prefixes, grace_prefixes) = if self.manual.is_empty() {
            let current = iface::derived_lan_prefixes(&locals, self.prefix_len);
            for p in &current {
                self.seen.insert(*p, now);
            }
            let grace = self.grace;
            self.seen
                .retain(|_, last| now.duration_since(*last) <= grace);
            let mut kept: Vec<Ipv6Net> = self
                .seen
                .keys()
                .filter(|p| !current.contains(p))
                .copied()
                .collect();
            kept.sort();
            let mut all = current;
            all.extend(kept.iter().copied());
            all.sort();
            (all, kept)
        } else {
            (self.manual.clone(), Vec::new())
        };
        IfaceState {
            ifindex,
            plan: AddressPlan {
                locals,
                lan_prefixes,
                inside: self.inside.clone(),
                public: self.public.clone(),
                link: LinkKind::default(),
                own_macs: Vec::new(),
            },
            grace_prefixes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(grace_s: u64) -> PlanBuilder {
        PlanBuilder {
            iface: "eth0".into(),
            manual: vec![],
            prefix_len: 56,
            grace: Duration::from_secs(grace_s),
            inside: vec![],
            public: vec![],
            seen: HashMap::new(),
        }
    }

    #[test]
    fn a_vanished_prefix_stays_for_the_grace_period_then_goes() {
        let mut b = builder(60);
        let t0 = Instant::now();
        let old: std::net::IpAddr = "2001:db8:aa00:1::10".parse().expect("addr");
        let new: std::net::IpAddr = "2001:db8:bb00:1::10".parse().expect("addr");
        let s = b.plan_from(Some(2), vec![old], t0);
        assert_eq!(s.plan.lan_prefixes.len(), 1);
        // Redial: the old address is gone, a new prefix appears.
        let s = b.plan_from(Some(2), vec![new], t0 + Duration::from_secs(30));
        assert_eq!(s.plan.lan_prefixes.len(), 2, "old prefix kept in grace");
        assert_eq!(
            s.grace_prefixes,
            vec!["2001:db8:aa00::/56".parse::<Ipv6Net>().expect("net")]
        );
        let s = b.plan_from(Some(2), vec![new], t0 + Duration::from_secs(61));
        assert_eq!(
            s.plan.lan_prefixes,
            vec!["2001:db8:bb00::/56".parse::<Ipv6Net>().expect("net")]
        );
        assert!(s.grace_prefixes.is_empty());
    }

    #[test]
    fn manual_prefixes_replace_derived_ones() {
        let mut b = builder(60);
        b.manual = vec!["240e:33e:2f08:d600::/56".parse().expect("net")];
        let s = b.plan_from(
            Some(2),
            vec!["2001:db8:aa00:1::10".parse().expect("addr")],
            Instant::now(),
        );
        assert_eq!(s.plan.lan_prefixes, b.manual);
    }
}
