//! Traffic of known size for the lab, and its ground truth: UDP senders and sinks, a TCP bulk
//! transfer with both ends' `TCP_INFO`, and a paced `sendmmsg` generator. Every loop is bounded
//! in count or time, and every socket lives in a namespace the lab created.

use std::{fs::File, net::IpAddr, os::fd::AsFd, sync::atomic::Ordering};

use anyhow::{Context as _, bail};

use super::Lab;

/// Sends `count` UDP datagrams of `payload` bytes from a thread in `ns` to `dst:port` and
/// returns how many the kernel accepted. Bounded in count; never blocks for long.
pub fn send_udp(
    ns: &str,
    dst: IpAddr,
    port: u16,
    payload: usize,
    count: usize,
) -> anyhow::Result<usize> {
    Lab::in_ns(ns, move || {
        let bind: std::net::SocketAddr = if dst.is_ipv6() {
            "[::]:0".parse()?
        } else {
            "0.0.0.0:0".parse()?
        };
        let socket = std::net::UdpSocket::bind(bind)?;
        socket.connect((dst, port))?;
        let buf = vec![0x5au8; payload];
        let mut sent = 0;
        for _ in 0..count {
            if socket.send(&buf).is_ok() {
                sent += 1;
            }
        }
        Ok(sent)
    })
}

/// A UDP socket bound in a namespace that swallows whatever arrives, so senders get no ICMP
/// "port unreachable" (which would be extra, uncounted-for traffic). Closed on drop.
pub struct UdpSink {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpSink {
    /// Binds `port` on every address of namespace `ns`, both families.
    pub fn bind(ns: &str, port: u16) -> anyhow::Result<Self> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let path = format!("/var/run/netns/{ns}");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let setup = (|| -> anyhow::Result<std::net::UdpSocket> {
                let file = File::open(&path)?;
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
                // An IPv6 socket without IPV6_V6ONLY also receives IPv4.
                let socket = std::net::UdpSocket::bind(("::", port))?;
                socket.set_read_timeout(Some(std::time::Duration::from_millis(50)))?;
                Ok(socket)
            })();
            let socket = match setup {
                Ok(s) => {
                    let _ = tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                let _ = socket.recv(&mut buf);
            }
        });
        rx.recv().context("sink thread died")??;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Counters of one TCP endpoint, from `TCP_INFO`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpSide {
    /// Segments sent (a TSO super-packet counts its segments).
    pub segs_out: u64,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Retransmitted segments.
    pub total_retrans: u64,
    /// The accepting end: its SYN-ACK went out from the listener's request socket, so its own
    /// `segs_out` does not include it.
    pub accepted: bool,
}

impl TcpSide {
    /// IP-layer bytes this side put on the wire: every segment carries an IP header and a TCP
    /// header with timestamps (32 bytes), the SYN or SYN-ACK 8 more (MSS, SACK-permitted, window
    /// scale).
    pub fn ip_bytes(&self, v6: bool) -> u64 {
        let ip_header = if v6 { 40 } else { 20 };
        self.bytes_sent + self.segments() * (ip_header + 32) + 8
    }

    /// Segments on the wire, the SYN-ACK of an accepting end included.
    pub fn segments(&self) -> u64 {
        self.segs_out + u64::from(self.accepted)
    }
}

/// Reads `TCP_INFO` (layout of linux/tcp.h; libc's struct stops before `tcpi_bytes_sent`).
fn tcp_info(fd: std::os::fd::RawFd) -> anyhow::Result<TcpSide> {
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes; the kernel writes at most `len` and updates it.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        bail!("TCP_INFO: {}", std::io::Error::last_os_error());
    }
    if (len as usize) < 216 {
        bail!("TCP_INFO too short ({len} bytes): kernel too old for tcpi_bytes_sent");
    }
    let u32_at = |o: usize| {
        u64::from(u32::from_ne_bytes([
            buf[o],
            buf[o + 1],
            buf[o + 2],
            buf[o + 3],
        ]))
    };
    let u64_at = |o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[o..o + 8]);
        u64::from_ne_bytes(w)
    };
    Ok(TcpSide {
        total_retrans: u32_at(100),
        segs_out: u32_at(136),
        bytes_sent: u64_at(200),
        accepted: false,
    })
}

/// Pins the calling thread to CPU 0: with both ends on one CPU veth never reorders segments
/// (reordering causes SACK options and retransmissions that make exact accounting impossible).
fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it; 0 means this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Sends `bytes` over one TCP connection from namespace `from` to a listener in `to` at `dst`,
/// closes it cleanly (FIN both ways) and returns both ends' counters: (sender, receiver).
pub fn tcp_transfer(
    from: &str,
    to: &str,
    dst: IpAddr,
    port: u16,
    bytes: usize,
) -> anyhow::Result<(TcpSide, TcpSide)> {
    use std::{
        io::{Read, Write},
        os::fd::AsRawFd,
        time::Duration,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let to_path = format!("/var/run/netns/{to}");
    let receiver = std::thread::spawn(move || -> anyhow::Result<TcpSide> {
        let setup = (|| -> anyhow::Result<std::net::TcpListener> {
            let file = File::open(&to_path)?;
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            pin_to_cpu0();
            Ok(std::net::TcpListener::bind((dst, port))?)
        })();
        let listener = match setup {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(anyhow::anyhow!("{e:#}")));
                return Err(e);
            }
        };
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut buf = vec![0u8; 256 * 1024];
        while conn.read(&mut buf)? > 0 {}
        conn.shutdown(std::net::Shutdown::Write)?;
        // Let the sender's last ACK arrive before reading the counters.
        std::thread::sleep(Duration::from_millis(300));
        Ok(TcpSide {
            accepted: true,
            ..tcp_info(conn.as_raw_fd())?
        })
    });
    ready_rx.recv().context("receiver thread died")??;
    let sender = Lab::in_ns(from, move || {
        pin_to_cpu0();
        let mut conn =
            std::net::TcpStream::connect_timeout(&(dst, port).into(), Duration::from_secs(5))?;
        conn.set_read_timeout(Some(Duration::from_secs(60)))?;
        let chunk = vec![0x42u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            conn.write_all(&chunk[..n])?;
            left -= n;
        }
        conn.shutdown(std::net::Shutdown::Write)?;
        let mut buf = [0u8; 16];
        while conn.read(&mut buf)? > 0 {}
        std::thread::sleep(Duration::from_millis(300));
        tcp_info(conn.as_raw_fd())
    })?;
    let receiver = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    Ok((sender, receiver))
}

/// Sends 64-byte IP packets (UDP) from a thread in `ns` to `dst:port` at about `rate` packets per
/// second (0: as fast as possible) for `duration`, with `sendmmsg` batches; returns how many the
/// kernel accepted. Bounded by `duration`.
pub fn blast_udp(
    ns: &str,
    dst: IpAddr,
    port: u16,
    rate: u64,
    duration: std::time::Duration,
) -> anyhow::Result<u64> {
    use std::{os::fd::AsRawFd, time::Instant};
    Lab::in_ns(ns, move || {
        let bind: std::net::SocketAddr = if dst.is_ipv6() {
            "[::]:0".parse()?
        } else {
            "0.0.0.0:0".parse()?
        };
        let socket = std::net::UdpSocket::bind(bind)?;
        socket.connect((dst, port))?;
        // 64-byte IP packets: IPv4 20 + UDP 8 + 36, IPv6 40 + 8 + 16.
        let payload = vec![0u8; if dst.is_ipv6() { 16 } else { 36 }];
        const BATCH: usize = 64;
        let mut iov: Vec<libc::iovec> = (0..BATCH)
            .map(|_| libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: payload.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr is valid (null name, no control); each points at one iovec.
        let mut msgs: Vec<libc::mmsghdr> =
            (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < duration {
            if rate > 0 {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                if sent >= due {
                    std::thread::yield_now();
                    continue;
                }
            }
            // SAFETY: `msgs` holds BATCH valid headers pointing at live buffers.
            let n =
                unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
            if n > 0 {
                sent += n as u64;
            }
        }
        Ok(sent)
    })
}

/// The prefix [`spray_remotes`] sends to: routed by the lab's router to the internet host, which
/// drops it silently through a blackhole route (no ICMP error comes back). So every address in it
/// is a distinct public remote whose packets cross nas:eth0 and die inside the lab.
pub const SPRAY_PREFIX_V6: &str = "2001:db8:ff01::/64";

/// Sends one 64-byte IPv6 UDP packet from the NAS to each of `count` distinct addresses of
/// [`SPRAY_PREFIX_V6`] (`2001:db8:ff01::1`, `::2`, ...); returns how many the kernel accepted.
/// Populates the monitor's per-remote map. Bounded in count.
pub fn spray_remotes(lab: &Lab, count: u32, port: u16) -> anyhow::Result<u64> {
    super::ip(&[
        "-n",
        &lab.rtr,
        "-6",
        "route",
        "replace",
        SPRAY_PREFIX_V6,
        "via",
        "2001:db8:ff00::100",
    ])?;
    super::ip(&[
        "-n",
        &lab.wan,
        "-6",
        "route",
        "replace",
        "blackhole",
        SPRAY_PREFIX_V6,
    ])?;
    Lab::in_ns(&lab.nas, move || {
        let socket = std::net::UdpSocket::bind("[::]:0")?;
        let payload = [0u8; 16];
        let mut sent = 0u64;
        for i in 1..=count {
            let dst =
                std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xff01, 0, 0, 0, (i >> 16) as u16, i as u16);
            if socket.send_to(&payload, (dst, port)).is_ok() {
                sent += 1;
            }
        }
        Ok(sent)
    })
}
