//! Whose frame is it: the one rule both capture paths apply before parsing, so that a received
//! frame addressed to another host's MAC is left out unless that MAC is the NAS's own.
//!
//! The kernel marks a received frame PACKET_OTHERHOST when its destination MAC is not the
//! interface's. On a promiscuous interface (a bridge port, a NIC with a capture tool on it) those
//! are other LAN hosts' frames, which never count (the seed counted them, defect D9). But a
//! macvlan or macvtap child of the monitored interface (a container with its own MAC: Synology,
//! Unraid "Custom: br0", QNAP) receives its frames exactly so, before the macvlan driver takes
//! them: those are the NAS's own traffic. Userspace keeps the children's MACs in a set
//! ([`crate::abi::MAP_MACS`] in the kernel); a PACKET_OTHERHOST frame to one of them counts.
//! Sent frames are always the NAS's (a macvlan child's frames leave through the parent with the
//! child's source MAC); raw-IP links have no MAC and no other hosts.
//!
//! It must not know where the set comes from (netlink, in the daemon).

use crate::{abi::ErrorKind, frame::Frame, frame::LinkKind};

/// MAC addresses that are the NAS's own besides the monitored interface's.
pub trait MacSet {
    /// Whether `mac` is in the set.
    fn contains(&self, mac: &[u8; 6]) -> bool;
}

/// An empty set: only the interface's own MAC is the NAS's.
impl MacSet for () {
    fn contains(&self, _mac: &[u8; 6]) -> bool {
        false
    }
}

impl MacSet for [[u8; 6]] {
    fn contains(&self, mac: &[u8; 6]) -> bool {
        self.iter().any(|m| m == mac)
    }
}

/// `Ok` when the frame is the NAS's own traffic, `Err(OtherHost)` when it is another host's.
///
/// `received_for_other_host` is "received (not sent) and PACKET_OTHERHOST". Only then is the
/// destination MAC read and looked up, so the common path costs nothing.
#[inline(always)]
pub fn check<F: Frame + ?Sized, M: MacSet + ?Sized>(
    frame: &F,
    link: LinkKind,
    received_for_other_host: bool,
    macs: &M,
) -> Result<(), ErrorKind> {
    if !received_for_other_host || link == LinkKind::RawIp {
        return Ok(());
    }
    match frame.read::<6>(0) {
        Some(dst) if macs.contains(&dst) => Ok(()),
        _ => Err(ErrorKind::OtherHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_other_hosts_frames_to_unknown_macs_are_refused() {
        let child = [0x02, 0, 0, 0, 0, 0x42];
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&child);
        let set: &[[u8; 6]] = &[child];
        assert_eq!(check(&frame[..], LinkKind::Ethernet, true, set), Ok(()));
        assert_eq!(
            check(&frame[..], LinkKind::Ethernet, true, &()),
            Err(ErrorKind::OtherHost)
        );
        frame[5] = 0x43;
        assert_eq!(
            check(&frame[..], LinkKind::Ethernet, true, set),
            Err(ErrorKind::OtherHost)
        );
        // Frames for the interface itself, sent frames, and raw-IP links never look.
        assert_eq!(check(&frame[..], LinkKind::Ethernet, false, &()), Ok(()));
        assert_eq!(check(&frame[..], LinkKind::RawIp, true, &()), Ok(()));
        // A runt for another host is still another host's.
        assert_eq!(
            check(&frame[..3], LinkKind::Ethernet, true, set),
            Err(ErrorKind::OtherHost)
        );
    }
}
