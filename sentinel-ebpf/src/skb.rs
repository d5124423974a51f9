//! [`Frame`] over an `__sk_buff`. Every read goes through `bpf_skb_load_bytes`: the kernel bounds
//! the copy itself, so reads at variable offsets (after a VLAN tag, after IPv4 options) need no
//! verifier-visible bounds proofs, and bytes outside the skb's linear area (GRO'd or paged skbs)
//! are still seen. The parser reads whole headers at once, so a packet costs 2-3 helper calls.

use aya_ebpf::programs::TcContext;
use sentinel_common::frame::Frame;

pub struct SkbFrame<'a> {
    ctx: &'a TcContext,
}

impl<'a> SkbFrame<'a> {
    #[inline(always)]
    pub fn new(ctx: &'a TcContext) -> Self {
        Self { ctx }
    }

    /// Segments of a GSO/GRO super-packet (0 or 1 for a plain one).
    #[inline(always)]
    pub fn gso_segs(&self) -> u32 {
        // SAFETY: `skb` is the context pointer the kernel handed to the program; `gso_segs` is a
        // readable field of `struct __sk_buff` for TC programs (aya-ebpf has no accessor).
        unsafe { (*self.ctx.skb.skb).gso_segs }
    }
}

impl Frame for SkbFrame<'_> {
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.ctx.len()
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: u32) -> Option<[u8; N]> {
        self.ctx.load::<[u8; N]>(offset as usize).ok()
    }
}
