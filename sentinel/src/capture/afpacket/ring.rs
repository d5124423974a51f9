//! The AF_PACKET socket and its TPACKET_V3 receive ring: the only `unsafe` of the fallback.
//!
//! `socket(AF_PACKET, SOCK_RAW, 0)` (protocol 0: nothing is queued before the ring exists), then
//! PACKET_VERSION = TPACKET_V3, PACKET_VNET_HDR (GSO metadata per frame, when the kernel takes
//! it), a classic BPF filter that only sets the snap length, PACKET_RX_RING, `mmap`, and last
//! `bind` to the interface's index with ETH_P_ALL. Blocks are handed out as [`Block`] guards that
//! give the block back to the kernel when dropped. The socket lives in the network namespace of
//! the thread that opens it.
//!
//! This module knows sockets and the ring's memory; it must not know counters or rules.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use sentinel_common::frame::LinkKind;

use super::{AfPacketError, walk::BLOCK_STATUS_OFFSET};

/// Shape of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block: a power of two, at least one page.
    pub block_size: u32,
    /// Blocks in the ring; the mapping is `block_size * block_count` bytes.
    pub block_count: u32,
    /// Milliseconds after which the kernel hands over a block that is not full.
    pub retire_ms: u32,
    /// Bytes of each frame copied into the ring (its headers); the frame's length is kept whole.
    pub snaplen: u32,
    /// Ask for virtio-net headers (GSO segment sizes).
    pub vnet_hdr: bool,
}

/// What `poll` said.
pub(crate) enum Wakeup {
    /// A block may be ready (or the timeout passed).
    Ready,
    /// The socket reported an error (ENETDOWN when the interface goes down or away).
    Error(io::Error),
}

/// The kernel's PACKET_STATISTICS since the previous read (reading resets them).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KernelStats {
    /// Frames the kernel handled for this socket, drops included.
    pub packets: u64,
    /// Frames dropped because no block was free (or they could not be copied).
    pub drops: u64,
    /// Times the ring froze because userspace held every block.
    pub freezes: u64,
}

/// An open socket with its mapped ring.
pub(crate) struct Ring {
    fd: OwnedFd,
    map: NonNull<u8>,
    block_size: usize,
    block_count: usize,
    /// The block the kernel fills next, in ring order.
    current: usize,
    ifindex: u32,
    vnet: bool,
    link: LinkKind,
}

fn os_err<'a>(op: &'static str, iface: &'a str) -> impl FnOnce(io::Error) -> AfPacketError + 'a {
    move |source| AfPacketError::Socket {
        op,
        iface: iface.to_owned(),
        source,
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `setsockopt` with a plain value.
fn set_opt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: `value` points to a live, initialised `T` of `len` bytes for the whole call; the
    // kernel only reads it.
    check(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), len) })
}

/// `getsockopt` into a plain value, starting from `value`.
fn get_opt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, mut value: T) -> io::Result<T> {
    let mut len = libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: `value` is a live `T` of `len` bytes the kernel may write; `len` is updated to the
    // bytes written, at most `size_of::<T>()`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// The index `iface` has now in the calling thread's network namespace.
pub(crate) fn ifindex_of(iface: &str) -> Option<u32> {
    let name = CString::new(iface).ok()?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// `ifr_flags` and the link type of `iface`, through SIOCGIFFLAGS and SIOCGIFHWADDR.
fn link_info(fd: &OwnedFd, name: &CString) -> io::Result<(libc::c_short, u16)> {
    // SAFETY: `ifreq` is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid `ifreq` naming the interface; the kernel writes the union.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: SIOCGIFFLAGS filled `ifru_flags`.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    // SAFETY: as above; SIOCGIFHWADDR fills `ifru_hwaddr`, whose family is the ARPHRD type.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) })?;
    // SAFETY: SIOCGIFHWADDR filled `ifru_hwaddr`.
    let hatype = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    Ok((flags, hatype))
}

impl Ring {
    /// Opens a ring on `iface` in the calling thread's network namespace.
    pub(crate) fn open(iface: &str, cfg: &RingConfig) -> Result<Self, AfPacketError> {
        let name = CString::new(iface).map_err(|_| AfPacketError::NoSuchInterface {
            iface: iface.to_owned(),
        })?;
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os_err("socket(AF_PACKET)", iface)(
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let ifindex = ifindex_of(iface).ok_or_else(|| AfPacketError::NoSuchInterface {
            iface: iface.to_owned(),
        })?;
        let (flags, hatype) = link_info(&fd, &name).map_err(os_err("reading link flags", iface))?;
        // The shared parser reads Ethernet frames (loopback carries an Ethernet-shaped header) and
        // raw IP: on a device without a link header (ppp, tun, WireGuard) a packet socket's
        // frames start at the IP header in both directions.
        let link = LinkKind::from_arphrd(hatype).ok_or_else(|| AfPacketError::UnsupportedLink {
            iface: iface.to_owned(),
            hatype,
        })?;
        if flags & libc::IFF_UP as libc::c_short == 0 {
            return Err(AfPacketError::InterfaceDown {
                iface: iface.to_owned(),
            });
        }

        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        set_opt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(os_err("PACKET_VERSION=TPACKET_V3", iface))?;
        // Must precede the ring. Kernels without it for rings say EINVAL/ENOPROTOOPT: go on
        // without GSO metadata (super-packets then count as one packet each).
        let vnet = cfg.vnet_hdr
            && set_opt(
                &fd,
                libc::SOL_PACKET,
                libc::PACKET_VNET_HDR,
                &1 as &libc::c_int,
            )
            .is_ok();
        // `ret #snaplen`: accept every frame, copy only its first `snaplen` bytes into the ring.
        // tp_len still carries the whole length (`tpacket_rcv`: snaplen = min(skb->len, ret)).
        let mut filter = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: cfg.snaplen,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: filter.as_mut_ptr(),
        };
        set_opt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
            .map_err(os_err("SO_ATTACH_FILTER (snap length)", iface))?;

        // TPACKET_V3 frames are variable-sized; tp_frame_size only has to divide the block.
        let frame_size = 2048u32;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: frame_size,
            tp_frame_nr: cfg.block_size / frame_size * cfg.block_count,
            tp_retire_blk_tov: cfg.retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_opt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(os_err("PACKET_RX_RING", iface))?;
        let block_size = cfg.block_size as usize;
        let block_count = cfg.block_count as usize;
        let len = block_size * block_count;
        // SAFETY: maps the ring the kernel just allocated for this socket; the result is checked.
        // The mapping is unmapped in Drop, before the socket closes.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os_err("mmap of the ring", iface)(io::Error::last_os_error()));
        }
        let map = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| {
            os_err("mmap of the ring", iface)(io::Error::from_raw_os_error(libc::EFAULT))
        })?;
        let ring = Ring {
            fd,
            map,
            block_size,
            block_count,
            current: 0,
            ifindex,
            vnet,
            link,
        };

        // SAFETY: `sockaddr_ll` is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `addr` is a valid `sockaddr_ll` of the given length for the whole call.
        check(unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })
        .map_err(os_err("bind", iface))?;
        Ok(ring)
    }

    /// What the interface puts before the IP header.
    pub(crate) fn link(&self) -> LinkKind {
        self.link
    }

    /// The interface index the socket is bound to.
    pub(crate) fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Blocks in the ring.
    pub(crate) fn block_count(&self) -> usize {
        self.block_count
    }

    /// Whether frames carry virtio-net headers.
    pub(crate) fn vnet(&self) -> bool {
        self.vnet
    }

    /// `block_status` of block `index`.
    fn status(&self, index: usize) -> &AtomicU32 {
        debug_assert!(index < self.block_count);
        // SAFETY: the block lies inside the mapping (index < block_count), which lives as long as
        // `self`; `block_status` is at a 4-aligned offset of a page-aligned block. The kernel
        // writes it concurrently, hence atomic access only.
        unsafe {
            AtomicU32::from_ptr(
                self.map
                    .as_ptr()
                    .add(index * self.block_size + BLOCK_STATUS_OFFSET)
                    .cast::<u32>(),
            )
        }
    }

    /// The next block in ring order, when the kernel has handed it over.
    pub(crate) fn next_block(&mut self) -> Option<Block<'_>> {
        let index = self.current;
        // Acquire pairs with the kernel's smp_wmb before it sets TP_STATUS_USER
        // (`prb_close_block`): the block's contents are visible once the status is.
        if self.status(index).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        self.current = (index + 1) % self.block_count;
        Some(Block { ring: self, index })
    }

    /// Waits up to `timeout` for a block or an error.
    pub(crate) fn wait(&self, timeout: Duration) -> Wakeup {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Wakeup::Ready
            } else {
                Wakeup::Error(e)
            };
        }
        if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            // SO_ERROR reads and clears the socket's pending error.
            let code: libc::c_int =
                get_opt(&self.fd, libc::SOL_SOCKET, libc::SO_ERROR, 0).unwrap_or(libc::EIO);
            return Wakeup::Error(io::Error::from_raw_os_error(if code == 0 {
                libc::EIO
            } else {
                code
            }));
        }
        Wakeup::Ready
    }

    /// PACKET_STATISTICS since the previous call.
    pub(crate) fn take_stats(&self) -> io::Result<KernelStats> {
        let zero = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let s = get_opt(&self.fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, zero)?;
        Ok(KernelStats {
            packets: u64::from(s.tp_packets),
            drops: u64::from(s.tp_drops),
            freezes: u64::from(s.tp_freeze_q_cnt),
        })
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`; no `Block` borrows it any more
        // (they borrow `self`). The socket closes after this, when `fd` drops.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.block_size * self.block_count);
        }
    }
}

/// A block handed over by the kernel. Dropping it hands it back (TP_STATUS_KERNEL).
pub(crate) struct Block<'r> {
    ring: &'r Ring,
    index: usize,
}

impl Block<'_> {
    /// The whole block, descriptor included.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the block lies inside the mapping, which outlives `self.ring`. While its status
        // says TP_STATUS_USER the kernel does not write it (it waits for TP_STATUS_KERNEL, which
        // only our Drop stores), so a shared slice over it is not aliased by writes.
        unsafe {
            std::slice::from_raw_parts(
                self.ring
                    .map
                    .as_ptr()
                    .add(self.index * self.ring.block_size),
                self.ring.block_size,
            )
        }
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        // Release: our reads of the block happen before the kernel may refill it.
        self.ring
            .status(self.index)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}
