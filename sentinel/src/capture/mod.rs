//! Capture backends: where the counters come from. Only this module knows aya (and, later,
//! AF_PACKET).

pub mod ebpf;

use sentinel_common::abi::{Counters, ERROR_SLOTS, ErrorKind, TOTALS_SLOTS, Verdict, totals_index};

/// A snapshot of the kernel's monotonic counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelTotals {
    /// Indexed by [`totals_index`].
    pub slots: [Counters; TOTALS_SLOTS as usize],
    /// Indexed by [`ErrorKind`].
    pub errors: [u64; ERROR_SLOTS as usize],
}

impl KernelTotals {
    /// The counters of one verdict and family.
    pub fn get(&self, verdict: Verdict, family: u8) -> Counters {
        self.slots[totals_index(verdict, family) as usize]
    }

    /// One verdict, both families added.
    pub fn verdict(&self, verdict: Verdict) -> Counters {
        let (a, b) = (self.get(verdict, 0), self.get(verdict, 1));
        Counters {
            packets: a.packets + b.packets,
            ip_bytes: a.ip_bytes + b.ip_bytes,
            wire_bytes: a.wire_bytes + b.wire_bytes,
        }
    }

    /// The count of one error kind.
    pub fn error(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize]
    }
}
