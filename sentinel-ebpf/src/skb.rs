//! [`Frame`] over an `__sk_buff`: direct packet access, falling back to `bpf_skb_load_bytes` for
//! bytes outside the linear area (possible on GRO'd or fragmented skbs).

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

    /// Segments of a GSO/GRO super-packet (0 or 1 for a plain one). aya-ebpf has no accessor.
    #[inline(always)]
    pub fn gso_segs(&self) -> u32 {
        // SAFETY: `skb` is the context pointer the kernel handed to the program; `gso_segs` is a
        // readable field of `struct __sk_buff` for TC programs.
        unsafe { (*self.ctx.skb.skb).gso_segs }
    }
}

impl Frame for SkbFrame<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        self.ctx.len()
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: u32) -> Option<[u8; N]> {
        // Bounding the offset lets the verifier prove the direct access below.
        if offset > 1024 {
            return None;
        }
        let start = self.ctx.data() + offset as usize;
        if start + N <= self.ctx.data_end() {
            // SAFETY: `[start, start + N)` lies inside the packet's linear data, checked just above.
            Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) })
        } else {
            self.ctx.load::<[u8; N]>(offset as usize).ok()
        }
    }
}
