//! Walking one TPACKET_V3 block: safe code over a byte slice, so that it can be tested on
//! synthetic blocks and cannot read outside the block whatever the offsets in it say.
//!
//! Layouts (`include/uapi/linux/if_packet.h`, checked against the `libc` definitions below):
//! a block starts with `struct tpacket_block_desc` (48 bytes: `block_status` at 8, `num_pkts` at
//! 12, `offset_to_first_pkt` at 16, `blk_len` at 20). Each frame starts with `struct tpacket3_hdr`
//! (48 bytes: `tp_next_offset` at 0, `tp_snaplen` at 12, `tp_len` at 16, `tp_mac` at 24),
//! followed by `struct sockaddr_ll` (20 bytes; `sll_pkttype` at 10). With PACKET_VNET_HDR the
//! kernel writes a 10-byte `struct virtio_net_hdr` just before the link-layer header at `tp_mac`
//! (`net/packet/af_packet.c`, `tpacket_rcv`). The ring is in host byte order.
//!
//! This module knows the ring's memory layout; it must not know sockets, counters or rules.

use std::mem::{offset_of, size_of};

/// `struct tpacket_block_desc`.
pub(crate) const BLOCK_DESC_LEN: usize = 48;
/// `block_status` inside the block descriptor.
pub(crate) const BLOCK_STATUS_OFFSET: usize = 8;
const NUM_PKTS_OFFSET: usize = 12;
const FIRST_PKT_OFFSET: usize = 16;
const BLK_LEN_OFFSET: usize = 20;

/// `struct tpacket3_hdr`, then `struct sockaddr_ll`.
const TP3_HDR_LEN: usize = 48;
const SLL_LEN: usize = 20;
/// `TPACKET3_HDRLEN`: the frame header and the link-layer address.
pub(crate) const TP3_FRAME_HDR_LEN: usize = TP3_HDR_LEN + SLL_LEN;
const NEXT_OFFSET: usize = 0;
const SNAPLEN_OFFSET: usize = 12;
const LEN_OFFSET: usize = 16;
const MAC_OFFSET: usize = 24;
const PKTTYPE_OFFSET: usize = TP3_HDR_LEN + 10;

/// `struct virtio_net_hdr`: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.
pub(crate) const VNET_HDR_LEN: usize = 10;
const VNET_GSO_TYPE_OFFSET: usize = 1;
const VNET_GSO_SIZE_OFFSET: usize = 4;

// The offsets above, proved against the C layouts the libc crate mirrors.
const _: () = {
    assert!(size_of::<libc::tpacket_block_desc>() == BLOCK_DESC_LEN);
    assert!(offset_of!(libc::tpacket_block_desc, hdr) == BLOCK_STATUS_OFFSET);
    assert!(offset_of!(libc::tpacket_hdr_v1, num_pkts) + 8 == NUM_PKTS_OFFSET);
    assert!(offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt) + 8 == FIRST_PKT_OFFSET);
    assert!(offset_of!(libc::tpacket_hdr_v1, blk_len) + 8 == BLK_LEN_OFFSET);
    assert!(size_of::<libc::tpacket3_hdr>() == TP3_HDR_LEN);
    assert!(libc::TPACKET3_HDRLEN == TP3_FRAME_HDR_LEN);
    assert!(offset_of!(libc::tpacket3_hdr, tp_next_offset) == NEXT_OFFSET);
    assert!(offset_of!(libc::tpacket3_hdr, tp_snaplen) == SNAPLEN_OFFSET);
    assert!(offset_of!(libc::tpacket3_hdr, tp_len) == LEN_OFFSET);
    assert!(offset_of!(libc::tpacket3_hdr, tp_mac) == MAC_OFFSET);
    assert!(size_of::<libc::sockaddr_ll>() == SLL_LEN);
    assert!(offset_of!(libc::sockaddr_ll, sll_pkttype) + TP3_HDR_LEN == PKTTYPE_OFFSET);
};

/// One captured frame as the ring describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RingFrame<'a> {
    /// `tp_len`: the frame's length on the interface (link-layer header included).
    pub len: u32,
    /// The captured bytes (`tp_snaplen` of them) from the link-layer header on.
    pub data: &'a [u8],
    /// `sll_pkttype`: PACKET_HOST, PACKET_OUTGOING, PACKET_OTHERHOST...
    pub pkttype: u8,
    /// The GSO metadata, when the socket asked for virtio-net headers.
    pub vnet: Option<VnetHdr>,
}

/// What the ring's virtio-net header says about a GSO/GRO super-packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VnetHdr {
    /// `VIRTIO_NET_HDR_GSO_*`; 0 (`GSO_NONE`) for a plain packet.
    pub gso_type: u8,
    /// Payload bytes per segment.
    pub gso_size: u16,
}

/// A block whose descriptor or frame headers point outside it (or make no progress).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corrupt TPACKET_V3 block: frame {frame} of {frames}: {reason}")]
pub struct CorruptBlock {
    /// Index of the frame that could not be read (0 for the block descriptor itself).
    pub frame: u32,
    /// Frames the descriptor announced.
    pub frames: u32,
    /// What was wrong.
    pub reason: &'static str,
}

/// The frames of one block, in ring order. Yields at most `num_pkts` items; after an error it
/// yields nothing more.
pub(crate) struct BlockWalk<'a> {
    block: &'a [u8],
    vnet: bool,
    /// Offset of the next frame, or the reason it cannot be read.
    next: Result<usize, &'static str>,
    index: u32,
    frames: u32,
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    let b = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_ne_bytes([b[0], b[1]]))
}

/// Starts walking `block` (one whole ring block, descriptor included). `vnet`: the socket has
/// PACKET_VNET_HDR, so every frame carries a virtio-net header before its link-layer header.
pub(crate) fn walk(block: &[u8], vnet: bool) -> Result<BlockWalk<'_>, CorruptBlock> {
    let corrupt = |frames, reason| CorruptBlock {
        frame: 0,
        frames,
        reason,
    };
    let (Some(frames), Some(first), Some(blk_len)) = (
        u32_at(block, NUM_PKTS_OFFSET),
        u32_at(block, FIRST_PKT_OFFSET),
        u32_at(block, BLK_LEN_OFFSET),
    ) else {
        return Err(corrupt(0, "block shorter than its descriptor"));
    };
    // blk_len is the used part of the block, descriptor included (`prb_close_block`).
    let used = usize::try_from(blk_len).unwrap_or(usize::MAX);
    if used > block.len() || used < BLOCK_DESC_LEN {
        return Err(corrupt(frames, "blk_len outside the block"));
    }
    let first = usize::try_from(first).unwrap_or(usize::MAX);
    if frames > 0 && (first < BLOCK_DESC_LEN || first >= used) {
        return Err(corrupt(frames, "offset_to_first_pkt outside the block"));
    }
    Ok(BlockWalk {
        block: &block[..used],
        vnet,
        next: Ok(first),
        index: 0,
        frames,
    })
}

impl<'a> BlockWalk<'a> {
    /// Frames the descriptor announced.
    pub(crate) fn announced(&self) -> u32 {
        self.frames
    }

    /// Reads the frame at `at`; returns it and the offset of the one after it.
    fn frame_at(&self, at: usize) -> Result<(RingFrame<'a>, usize), &'static str> {
        let block = self.block;
        let hdr = at
            .checked_add(TP3_FRAME_HDR_LEN)
            .and_then(|end| block.get(at..end))
            .ok_or("frame header beyond the block")?;
        let field = |off| u32_at(hdr, off).map_or(0, |v| v as usize);
        let (next, snaplen, len) = (field(NEXT_OFFSET), field(SNAPLEN_OFFSET), field(LEN_OFFSET));
        let mac = u16_at(hdr, MAC_OFFSET).map_or(0, usize::from);
        let pkttype = hdr[PKTTYPE_OFFSET];
        let min_mac = TP3_FRAME_HDR_LEN + if self.vnet { VNET_HDR_LEN } else { 0 };
        if mac < min_mac {
            return Err("tp_mac inside the frame header");
        }
        if snaplen > len {
            return Err("tp_snaplen larger than tp_len");
        }
        let data_start = at.checked_add(mac).ok_or("tp_mac overflows")?;
        let data = data_start
            .checked_add(snaplen)
            .and_then(|end| block.get(data_start..end))
            .ok_or("frame data beyond the block")?;
        let vnet = if self.vnet {
            let v = block
                .get(data_start - VNET_HDR_LEN..data_start)
                .ok_or("virtio-net header beyond the block")?;
            Some(VnetHdr {
                gso_type: v[VNET_GSO_TYPE_OFFSET],
                gso_size: u16_at(v, VNET_GSO_SIZE_OFFSET).unwrap_or(0),
            })
        } else {
            None
        };
        let frame = RingFrame {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            data,
            pkttype,
            vnet,
        };
        // The kernel places the next frame after this one's data (`tp_next_offset` is
        // TPACKET_ALIGN(tp_mac + tp_snaplen)): anything shorter would re-read or overlap.
        let after = if mac.checked_add(snaplen).is_none_or(|end| next < end) {
            Err("tp_next_offset overlaps the frame")
        } else {
            at.checked_add(next).ok_or("tp_next_offset overflows")
        };
        Ok((frame, after.unwrap_or(usize::MAX)))
    }
}

impl<'a> Iterator for BlockWalk<'a> {
    type Item = Result<RingFrame<'a>, CorruptBlock>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.frames {
            return None;
        }
        let result = self.next.and_then(|at| self.frame_at(at));
        match result {
            Ok((frame, after)) => {
                self.index += 1;
                self.next = if after == usize::MAX {
                    Err("tp_next_offset does not lead to a next frame")
                } else {
                    Ok(after)
                };
                Some(Ok(frame))
            }
            Err(reason) => {
                let err = CorruptBlock {
                    frame: self.index,
                    frames: self.frames,
                    reason,
                };
                // Nothing after a bad frame can be trusted.
                self.index = self.frames;
                Some(Err(err))
            }
        }
    }
}

/// Builds TPACKET_V3 blocks in memory the way the kernel lays them out, for tests.
#[cfg(test)]
pub(crate) mod synth {
    use super::*;

    /// One frame to put in a synthetic block.
    pub(crate) struct SynthFrame<'a> {
        /// The whole frame; only `snaplen` bytes of it are stored.
        pub bytes: &'a [u8],
        pub pkttype: u8,
        pub vnet: Option<VnetHdr>,
    }

    /// A block of `block_size` bytes holding `frames`, each cut to `snaplen`.
    pub(crate) fn block(
        frames: &[SynthFrame<'_>],
        snaplen: usize,
        vnet: bool,
        block_size: usize,
    ) -> Vec<u8> {
        let mut b = vec![0u8; block_size];
        let put32 = |b: &mut Vec<u8>, at: usize, v: u32| {
            b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        };
        let align = |x: usize| (x + 15) & !15;
        let mut at = BLOCK_DESC_LEN;
        let mut offsets = Vec::new();
        for f in frames {
            let captured = f.bytes.len().min(snaplen);
            // As tpacket_rcv: the network header 16-aligned after the headers (Ethernet: 14).
            let vnet_len = if vnet { VNET_HDR_LEN } else { 0 };
            let netoff = align(TP3_FRAME_HDR_LEN + 16) + vnet_len;
            let mac = netoff - 14;
            put32(&mut b, at + SNAPLEN_OFFSET, captured as u32);
            put32(&mut b, at + LEN_OFFSET, f.bytes.len() as u32);
            b[at + MAC_OFFSET..at + MAC_OFFSET + 2].copy_from_slice(&(mac as u16).to_ne_bytes());
            b[at + PKTTYPE_OFFSET] = f.pkttype;
            if let Some(v) = f.vnet {
                let vh = at + mac - VNET_HDR_LEN;
                b[vh + VNET_GSO_TYPE_OFFSET] = v.gso_type;
                b[vh + VNET_GSO_SIZE_OFFSET..vh + VNET_GSO_SIZE_OFFSET + 2]
                    .copy_from_slice(&v.gso_size.to_ne_bytes());
            }
            b[at + mac..at + mac + captured].copy_from_slice(&f.bytes[..captured]);
            let next = align(mac + captured);
            offsets.push((at, next));
            at += next;
        }
        // The last frame's tp_next_offset is 0, as the kernel leaves it.
        for (i, (off, next)) in offsets.iter().enumerate() {
            let v = if i + 1 == offsets.len() { 0 } else { *next };
            put32(&mut b, off + NEXT_OFFSET, v as u32);
        }
        put32(&mut b, BLOCK_STATUS_OFFSET, 1);
        put32(&mut b, NUM_PKTS_OFFSET, frames.len() as u32);
        put32(&mut b, FIRST_PKT_OFFSET, BLOCK_DESC_LEN as u32);
        put32(&mut b, BLK_LEN_OFFSET, at as u32);
        b
    }

    /// Overwrites a `u32` of a synthetic block.
    pub(crate) fn poke32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    pub(crate) const NUM_PKTS: usize = NUM_PKTS_OFFSET;
    pub(crate) const FIRST_PKT: usize = FIRST_PKT_OFFSET;
    pub(crate) const BLK_LEN: usize = BLK_LEN_OFFSET;
    pub(crate) const SNAPLEN: usize = SNAPLEN_OFFSET;
    pub(crate) const LEN: usize = LEN_OFFSET;
    pub(crate) const NEXT: usize = NEXT_OFFSET;
    pub(crate) const MAC: usize = MAC_OFFSET;
}

#[cfg(test)]
mod tests {
    use super::{synth::*, *};

    const HOST: u8 = 0;
    const OUTGOING: u8 = 4;

    fn frames(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i as u8; 60 + 50 * i]).collect()
    }

    /// `(tp_len, captured bytes, packet type)` of a frame.
    type Seen = (u32, Vec<u8>, u8);

    fn collect(block: &[u8], vnet: bool) -> Vec<Result<Seen, CorruptBlock>> {
        match walk(block, vnet) {
            Ok(w) => w
                .map(|r| r.map(|f| (f.len, f.data.to_vec(), f.pkttype)))
                .collect(),
            Err(e) => vec![Err(e)],
        }
    }

    #[test]
    fn walks_every_frame_with_its_length_snap_and_type() {
        let fs = frames(3);
        let synth: Vec<SynthFrame> = fs
            .iter()
            .enumerate()
            .map(|(i, b)| SynthFrame {
                bytes: b,
                pkttype: if i == 1 { OUTGOING } else { HOST },
                vnet: None,
            })
            .collect();
        let block = block(&synth, 128, false, 4096);
        let got = collect(&block, false);
        assert_eq!(got.len(), 3);
        for (i, r) in got.into_iter().enumerate() {
            let (len, data, pkttype) = r.expect("frame");
            assert_eq!(len as usize, fs[i].len());
            assert_eq!(data, fs[i][..fs[i].len().min(128)].to_vec());
            assert_eq!(pkttype, if i == 1 { OUTGOING } else { HOST });
        }
    }

    #[test]
    fn reads_the_virtio_net_header_before_the_link_header() {
        let f = vec![7u8; 200];
        let v = VnetHdr {
            gso_type: 1,
            gso_size: 1448,
        };
        let block = block(
            &[SynthFrame {
                bytes: &f,
                pkttype: OUTGOING,
                vnet: Some(v),
            }],
            128,
            true,
            4096,
        );
        let got: Vec<_> = walk(&block, true).expect("walk").collect();
        let frame = got[0].expect("frame");
        assert_eq!(frame.vnet, Some(v));
        assert_eq!(frame.data, &f[..128]);
        assert_eq!(frame.len, 200);
    }

    #[test]
    fn an_empty_block_yields_nothing() {
        let block = block(&[], 128, false, 4096);
        assert_eq!(collect(&block, false).len(), 0);
    }

    /// Every header field of a corrupt block is checked: no panic, no read outside the block,
    /// frames before the damage still come out, nothing after it.
    #[test]
    fn corrupt_blocks_end_the_walk_without_reading_out_of_bounds() {
        let fs = frames(3);
        let synth: Vec<SynthFrame> = fs
            .iter()
            .map(|b| SynthFrame {
                bytes: b,
                pkttype: HOST,
                vnet: None,
            })
            .collect();
        let good = block(&synth, 128, false, 1024);
        let second = {
            let w = walk(&good, false).expect("walk");
            assert_eq!(w.announced(), 3);
            BLOCK_DESC_LEN + u32_at(&good, BLOCK_DESC_LEN).expect("next") as usize
        };
        let cases: Vec<(&str, usize, u32, usize)> = vec![
            // (what, offset, value, frames expected before the error)
            ("blk_len past the block", BLK_LEN, 1 << 20, 0),
            ("blk_len under the descriptor", BLK_LEN, 8, 0),
            ("first frame past the block", FIRST_PKT, 4000, 0),
            ("first frame inside the descriptor", FIRST_PKT, 4, 0),
            ("more frames than fit", NUM_PKTS, u32::MAX, 3),
            (
                "snaplen past the block",
                BLOCK_DESC_LEN + SNAPLEN,
                100_000,
                0,
            ),
            ("snaplen above tp_len", BLOCK_DESC_LEN + LEN, 10, 0),
            ("next offset zero", BLOCK_DESC_LEN + NEXT, 0, 1),
            (
                "next offset past the block",
                BLOCK_DESC_LEN + NEXT,
                1 << 30,
                1,
            ),
            ("next offset into the frame", BLOCK_DESC_LEN + NEXT, 40, 1),
            ("next offset wraps", BLOCK_DESC_LEN + NEXT, u32::MAX, 1),
            ("tp_mac past the block", second + MAC, 0xffff, 1),
            ("tp_mac inside the header", second + MAC, 2, 1),
        ];
        for (what, at, value, before) in cases {
            let mut bad = good.clone();
            if at == BLOCK_DESC_LEN + MAC || at == second + MAC {
                bad[at..at + 2].copy_from_slice(&(value as u16).to_ne_bytes());
            } else {
                poke32(&mut bad, at, value);
            }
            let got = collect(&bad, false);
            let ok = got.iter().take_while(|r| r.is_ok()).count();
            assert_eq!(ok, before, "{what}: frames before the error");
            assert!(
                got.last().is_some_and(|r| r.is_err()),
                "{what}: the walk must end with an error, got {} items",
                got.len()
            );
            assert!(got.len() <= 4, "{what}: walked past the damage");
        }
        // A block shorter than its descriptor, and a truncated copy of a good block.
        assert!(walk(&good[..20], false).is_err());
        let cut = collect(&good[..BLOCK_DESC_LEN + 100], false);
        assert!(cut.iter().any(|r| r.is_err()));
    }

    /// Random garbage in every byte of the descriptor and first header never panics.
    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let fs = frames(4);
        let synth: Vec<SynthFrame> = fs
            .iter()
            .map(|b| SynthFrame {
                bytes: b,
                pkttype: HOST,
                vnet: None,
            })
            .collect();
        let good = block(&synth, 128, true, 2048);
        for _ in 0..20_000 {
            let mut bad = good.clone();
            for _ in 0..1 + rand() % 4 {
                let at = (rand() % 400) as usize;
                bad[at] = rand() as u8;
            }
            let vnet = rand() % 2 == 0;
            if let Ok(w) = walk(&bad, vnet) {
                for f in w.take(10_000).flatten() {
                    assert!(f.data.len() <= f.len as usize);
                }
            }
        }
    }
}
