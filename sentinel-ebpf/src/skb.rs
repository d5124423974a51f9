//! [`Frame`] over an `__sk_buff`: the frame's first [`HEADER_BYTES`] bytes copied onto the stack
//! with one `bpf_skb_load_bytes`, so the parser reads a plain buffer (the same slice-reading code
//! as userspace) and bytes outside the skb's linear area (GRO'd or paged skbs) are still seen.
//! One helper call per packet is also cheaper to verify than many direct-access bounds checks.

use aya_ebpf::programs::TcContext;
use sentinel_common::{abi::ErrorKind, frame::Frame};

/// Enough for Ethernet + one tag (18), an IPv4 header with full options (60) and the TCP data
/// offset byte (13): 91 bytes. IPv6 needs 18 + 40 + 13.
const HEADER_BYTES: usize = 96;

pub struct SkbHeaders {
    buf: [u8; HEADER_BYTES],
    copied: u32,
    len: u32,
    gso_segs: u32,
}

impl SkbHeaders {
    #[inline(always)]
    pub fn load(ctx: &TcContext) -> Result<Self, ErrorKind> {
        let mut buf = [0u8; HEADER_BYTES];
        let len = ctx.len();
        if len < 14 {
            return Err(ErrorKind::TruncatedL2);
        }
        let copied = ctx
            .load_bytes(0, &mut buf)
            .map_err(|_| ErrorKind::TruncatedL2)?;
        // SAFETY: `skb` is the context pointer the kernel handed to the program; `gso_segs` is a
        // readable field of `struct __sk_buff` for TC programs (aya-ebpf has no accessor).
        let gso_segs = unsafe { (*ctx.skb.skb).gso_segs };
        Ok(Self {
            buf,
            copied: copied as u32,
            len,
            gso_segs,
        })
    }

    /// Segments of a GSO/GRO super-packet (0 or 1 for a plain one).
    #[inline(always)]
    pub fn gso_segs(&self) -> u32 {
        self.gso_segs
    }
}

impl Frame for SkbHeaders {
    #[inline(always)]
    fn len(&self) -> u32 {
        self.len
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: u32) -> Option<[u8; N]> {
        let start = offset as usize;
        if start + N > self.copied as usize || start + N > HEADER_BYTES {
            return None;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[start..start + N]);
        Some(out)
    }
}
