//! Which service a public packet belongs to, and what it adds to the per-service counters: the
//! one rule both capture paths run after [`crate::record::record`].
//!
//! The key is the IP protocol and one port (see `docs/services.md`):
//! - the NAS-side port (the source port of an upload, the destination port of a download) when
//!   the NAS listens on it ([`ListenSet`]): the NAS is the server, [`ROLE_SERVER`];
//! - otherwise the remote's port, [`ROLE_CLIENT`]: the NAS's side is an ephemeral port of a
//!   connection it opened (a download, a cloud backup), so thousands of ephemeral ports collapse
//!   into the few services the NAS talks to ("HTTPS, client");
//! - a packet without ports (ICMP, IPv4 fragments after the first, IPv6 packets whose first
//!   header after the fixed one is an extension header, other protocols, a header cut short) is
//!   keyed by its protocol alone, port 0, [`ROLE_NONE`].
//!
//! Limits: a NAS that listens on a port and also uses it as the source of outgoing connections
//! (rare; SO_REUSEPORT tricks, some P2P clients) counts those under the server key; a port that
//! starts listening between two refreshes of the listening set counts as client traffic until
//! the next refresh.
//!
//! It must not know maps, rings, `/proc` or time.

use crate::{
    abi::{ListenKey, ROLE_CLIENT, ROLE_NONE, ROLE_SERVER, ServiceKey, Verdict},
    account::Accounting,
    frame::{Frame, ports_at},
    record::{CounterStore, remote_delta},
};

/// The set of (protocol, port) pairs the NAS listens on.
pub trait ListenSet {
    /// Whether the NAS listens on `key`.
    fn listens(&self, key: &ListenKey) -> bool;
}

/// The service key of an accounted frame (meaningful for up and down verdicts).
#[inline(always)]
pub fn service_key<F: Frame + ?Sized, L: ListenSet + ?Sized>(
    frame: &F,
    acc: &Accounting,
    listen: &L,
) -> ServiceKey {
    let ports = if acc.ports_at == 0 {
        None
    } else {
        ports_at(frame, acc.ports_at)
    };
    let Some((src, dst)) = ports else {
        return ServiceKey {
            port: 0,
            proto: acc.protocol,
            role: ROLE_NONE,
        };
    };
    let (nas, remote) = if matches!(acc.verdict, Verdict::Down) {
        (dst, src)
    } else {
        (src, dst)
    };
    if listen.listens(&ListenKey::new(acc.protocol, nas)) {
        ServiceKey {
            port: nas,
            proto: acc.protocol,
            role: ROLE_SERVER,
        }
    } else {
        ServiceKey {
            port: remote,
            proto: acc.protocol,
            role: ROLE_CLIENT,
        }
    }
}

/// Adds a public frame to the counters of `key`, or to the service overflow when the store has
/// no room for a new service; LAN and transit frames add nothing.
#[inline(always)]
pub fn add_service<S: CounterStore + ?Sized>(store: &mut S, key: &ServiceKey, acc: &Accounting) {
    let Some(delta) = remote_delta(acc) else {
        return;
    };
    if let Some(slot) = store.service(key) {
        slot.add(&delta);
        return;
    }
    if let Some(slot) = store.service_overflow() {
        slot.add(&delta);
    }
}

/// [`service_key`] then [`add_service`], for public frames only (a LAN frame reads no ports).
#[inline(always)]
pub fn record_service<S, F, L>(store: &mut S, frame: &F, acc: &Accounting, listen: &L)
where
    S: CounterStore + ?Sized,
    F: Frame + ?Sized,
    L: ListenSet + ?Sized,
{
    if !matches!(acc.verdict, Verdict::Up | Verdict::Down) {
        return;
    }
    let key = service_key(frame, acc, listen);
    add_service(store, &key, acc);
}
