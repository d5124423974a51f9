//! Other link kinds for the lab: a macvlan "container" on the NAS's eth0, and a raw-IP tun pair.
//!
//! - [`Container`]: a macvlan child of the NAS's eth0 (bridge mode, its own MAC), moved into its
//!   own namespace, as Docker's macvlan driver does for a container on a Synology or QNAP. Its
//!   frames cross the NAS's eth0 in both directions; received ones are PACKET_OTHERHOST there.
//! - [`TunPair`]: two namespaces, each with a `tun0` (ARPHRD_NONE: frames start at the IP
//!   header, like ppp0 or wg0), joined by a forwarder thread that copies every packet from one
//!   tun file descriptor to the other. The NAS side has a public IPv4 address and a global IPv6
//!   address, as on a PPPoE dial-up.
//!
//! - [`Vm`]: the NAS as a VM host: its eth0 enslaved to a bridge `br0` that carries its MAC and
//!   addresses, with a VM's namespace on a second port.
//!
//! All are guards: dropping one stops its threads and removes its namespaces.

use std::{
    fs::{File, OpenOptions},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::{Lab, MAC_RTR_LAN, addr, ip, lan_default_routes, neigh, netns_exec};

/// The container's MAC, IPv4 and IPv6 addresses (its IPv6 address lies in the NAS's /56).
pub const CTR_MAC: &str = "02:53:4e:00:00:30";
/// The container's LAN address.
pub const CTR_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 168, 50, 30);
/// The container's global address, in the NAS's delegated /56.
pub const CTR_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xaa00, 1, 0, 0, 0, 0x30);

/// A macvlan child of the lab NAS's eth0 in its own namespace. Dropping it removes the namespace.
pub struct Container {
    /// The container's namespace (`<lab prefix>-ctr`).
    pub ns: String,
}

impl Lab {
    /// Adds a macvlan container on the NAS's `parent` (eth0, or br0 after [`Lab::bridge_nas`]),
    /// reachable from the router like a LAN host.
    pub fn add_macvlan_container(&self, parent: &str) -> anyhow::Result<Container> {
        let prefix = self.nas.trim_end_matches("-nas");
        let c = Container {
            ns: format!("{prefix}-ctr"),
        };
        ip(&["netns", "add", &c.ns])?;
        self.wire_container(&c, parent)
            .context("building the macvlan container")?;
        Ok(c)
    }

    fn wire_container(&self, c: &Container, parent: &str) -> anyhow::Result<()> {
        let ns = c.ns.as_str();
        quiet_ipv6(ns)?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", &self.nas, "link", "add", "mv0", "link", parent, "address", CTR_MAC, "type",
            "macvlan", "mode", "bridge",
        ])?;
        ip(&["-n", &self.nas, "link", "set", "mv0", "netns", ns])?;
        addr(ns, "mv0", "192.168.50.30/24")?;
        addr(ns, "mv0", "2001:db8:aa00:1::30/64")?;
        ip(&["-n", ns, "link", "set", "mv0", "up"])?;
        lan_default_routes(ns)?;
        for a in ["192.168.50.1", "2001:db8:aa00:1::1"] {
            neigh(ns, "mv0", a, MAC_RTR_LAN)?;
        }
        // The router knows the container statically, and its bridge knows the port: no flooding.
        for a in ["192.168.50.30", "2001:db8:aa00:1::30"] {
            neigh(&self.rtr, "br0", a, CTR_MAC)?;
        }
        static_fdb(&self.rtr, CTR_MAC, "nas0")
    }

    /// Turns the NAS into a VM host: its eth0 becomes a port of a new bridge `br0` that carries
    /// the NAS's MAC and addresses (as on Unraid, Proxmox or a Synology with Virtual Machine
    /// Manager), and a "VM" namespace hangs on a second port `vm0` (the host side of a VM's tap).
    pub fn bridge_nas(&self) -> anyhow::Result<Vm> {
        let prefix = self.nas.trim_end_matches("-nas");
        let vm = Vm {
            ns: format!("{prefix}-vm"),
        };
        ip(&["netns", "add", &vm.ns])?;
        self.wire_bridge(&vm).context("bridging the NAS")?;
        Ok(vm)
    }

    fn wire_bridge(&self, vm: &Vm) -> anyhow::Result<()> {
        let (nas, rtr, vns) = (self.nas.as_str(), self.rtr.as_str(), vm.ns.as_str());
        ip(&[
            "-n",
            nas,
            "link",
            "add",
            "br0",
            "address",
            super::MAC_NAS,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&["-n", nas, "addr", "flush", "dev", "eth0"])?;
        ip(&["-n", nas, "link", "set", "eth0", "master", "br0"])?;
        addr(nas, "br0", "192.168.50.10/24")?;
        addr(nas, "br0", "2001:db8:aa00:1::10/64")?;
        ip(&["-n", nas, "link", "set", "br0", "up"])?;
        // `replace`: what `addr flush` left of eth0's routes moves to br0.
        ip(&[
            "-n",
            nas,
            "route",
            "replace",
            "default",
            "via",
            "192.168.50.1",
            "dev",
            "br0",
        ])?;
        ip(&[
            "-n",
            nas,
            "-6",
            "route",
            "replace",
            "default",
            "via",
            "2001:db8:aa00:1::1",
            "dev",
            "br0",
        ])?;
        for a in ["192.168.50.1", "2001:db8:aa00:1::1"] {
            neigh(nas, "br0", a, MAC_RTR_LAN)?;
        }
        // The VM: its own MAC and addresses on the LAN, behind the NAS's bridge.
        quiet_ipv6(vns)?;
        ip(&["-n", vns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", vns, "link", "add", "eth0", "address", VM_MAC, "type", "veth", "peer", "name",
            "vm0", "netns", nas,
        ])?;
        ip(&["-n", nas, "link", "set", "vm0", "master", "br0"])?;
        ip(&["-n", nas, "link", "set", "vm0", "up"])?;
        addr(vns, "eth0", "192.168.50.40/24")?;
        addr(vns, "eth0", "2001:db8:aa00:1::40/64")?;
        ip(&["-n", vns, "link", "set", "eth0", "up"])?;
        ip(&["-n", vns, "route", "add", "default", "via", "192.168.50.1"])?;
        for a in ["192.168.50.1", "2001:db8:aa00:1::1"] {
            neigh(vns, "eth0", a, MAC_RTR_LAN)?;
        }
        for a in ["192.168.50.40", "2001:db8:aa00:1::40"] {
            neigh(rtr, "br0", a, VM_MAC)?;
        }
        static_fdb(rtr, VM_MAC, "nas0")?;
        static_fdb(nas, VM_MAC, "vm0")?;
        static_fdb(nas, MAC_RTR_LAN, "eth0")?;
        wait_forwarding(nas, &["eth0", "vm0"])
    }
}

/// The VM's MAC and LAN address.
pub const VM_MAC: &str = "02:53:4e:00:00:40";
/// The VM's LAN address.
pub const VM_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 168, 50, 40);

/// A VM behind the NAS's bridge. Dropping it removes its namespace.
pub struct Vm {
    /// The VM's namespace (`<lab prefix>-vm`).
    pub ns: String,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.ns]) {
            eprintln!("lab: removing namespace {} failed: {e}", self.ns);
        }
    }
}

/// A static bridge FDB entry in `ns`: `mac` is behind `port` (no learning, no flooding).
fn static_fdb(ns: &str, mac: &str, port: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("bridge")
        .args([
            "-n", ns, "fdb", "replace", mac, "dev", port, "master", "static",
        ])
        .output()
        .context("running bridge (iproute2)")?;
    if !out.status.success() {
        bail!(
            "bridge fdb replace {mac} dev {port}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Waits (at most 10 s) until `ports` of the bridge in `ns` forward.
fn wait_forwarding(ns: &str, ports: &[&str]) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::process::Command::new("bridge")
            .args(["-n", ns, "link", "show"])
            .output()
            .context("running bridge (iproute2)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if ports.iter().all(|p| {
            text.lines()
                .any(|l| l.contains(&format!(" {p}")) && l.contains("state forwarding"))
        }) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("bridge ports {ports:?} in {ns} did not forward:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.ns]) {
            eprintln!("lab: removing namespace {} failed: {e}", self.ns);
        }
    }
}

/// No router advertisements, solicitations or DAD in `ns`: an idle lab sends nothing.
fn quiet_ipv6(ns: &str) -> anyhow::Result<()> {
    for key in [
        "accept_ra=0",
        "router_solicitations=0",
        "accept_dad=0",
        "dad_transmits=0",
    ] {
        for scope in ["all", "default"] {
            netns_exec(
                ns,
                &["sysctl", "-qw", &format!("net.ipv6.conf.{scope}.{key}")],
            )?;
        }
    }
    Ok(())
}

/// The NAS end of the tun pair: its public IPv4 address.
pub const TUN_NAS_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 10);
/// The NAS end: a global IPv6 address (its /56 is 2001:db8:aa00::/56).
pub const TUN_NAS_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xaa00, 0, 0, 0, 0, 0x10);
/// The internet end.
pub const TUN_WAN_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 1);
/// The internet end.
pub const TUN_WAN_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 0, 0, 0, 0, 0x100);

/// Two namespaces joined by tun devices and a forwarder thread. Dropping it stops the thread and
/// removes both namespaces.
pub struct TunPair {
    /// The NAS's namespace (its `tun0` is what the monitor watches).
    pub nas: String,
    /// The internet host's namespace.
    pub wan: String,
    stop: Arc<AtomicBool>,
    forwarded: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// Creates `tun0` in namespace `ns` (from a thread that entered it) and returns its descriptor.
fn open_tun(ns: &str) -> anyhow::Result<OwnedFd> {
    Lab::in_ns(ns, || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .context("opening /dev/net/tun")?;
        // `struct ifreq`: the name, then the flags (a short) at offset 16.
        let mut req = [0u8; 40];
        req[..4].copy_from_slice(b"tun0");
        req[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is large enough for;
        // the descriptor is open for the whole call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, req.as_mut_ptr()) };
        if rc < 0 {
            bail!("TUNSETIFF: {}", std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from(file))
    })
}

impl TunPair {
    /// Creates the pair with namespace names `snt<pid>-<n>-tnas` and `-twan`.
    pub fn create() -> anyhow::Result<Self> {
        let prefix = format!(
            "snt{}-{}",
            std::process::id(),
            super::SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let mut pair = TunPair {
            nas: format!("{prefix}-tnas"),
            wan: format!("{prefix}-twan"),
            stop: Arc::new(AtomicBool::new(false)),
            forwarded: Arc::new(AtomicU64::new(0)),
            thread: None,
        };
        for ns in [&pair.nas, &pair.wan] {
            ip(&["netns", "add", ns])?;
            quiet_ipv6(ns)?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let a = open_tun(&pair.nas)?;
        let b = open_tun(&pair.wan)?;
        let (stop, forwarded) = (pair.stop.clone(), pair.forwarded.clone());
        pair.thread = Some(
            std::thread::Builder::new()
                .name("lab-tun-forwarder".into())
                .spawn(move || forward(a, b, &stop, &forwarded))
                .context("starting the tun forwarder")?,
        );
        pair.wire().context("configuring the tun pair")?;
        Ok(pair)
    }

    fn wire(&self) -> anyhow::Result<()> {
        let (nas, wan) = (self.nas.as_str(), self.wan.as_str());
        ip(&[
            "-n",
            nas,
            "addr",
            "add",
            "203.0.113.10/32",
            "peer",
            "198.51.100.1/32",
            "dev",
            "tun0",
        ])?;
        ip(&[
            "-n",
            wan,
            "addr",
            "add",
            "198.51.100.1/32",
            "peer",
            "203.0.113.10/32",
            "dev",
            "tun0",
        ])?;
        addr(nas, "tun0", "2001:db8:aa00::10/64")?;
        addr(wan, "tun0", "2001:db8:ff00::100/64")?;
        for ns in [nas, wan] {
            // Room for a test's whole burst: the forwarder copies one packet at a time, and a
            // full tun queue drops what the sender's kernel already accepted.
            ip(&["-n", ns, "link", "set", "tun0", "txqueuelen", "20000"])?;
            ip(&["-n", ns, "link", "set", "tun0", "up"])?;
        }
        ip(&["-n", nas, "route", "add", "default", "dev", "tun0"])?;
        ip(&["-n", nas, "-6", "route", "add", "default", "dev", "tun0"])?;
        ip(&[
            "-n",
            wan,
            "-6",
            "route",
            "add",
            "2001:db8:aa00::/56",
            "dev",
            "tun0",
        ])?;
        Ok(())
    }

    /// Packets the forwarder copied so far (both directions).
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

/// Copies packets between the two tun descriptors until `stop`; each wait is bounded (50 ms).
fn forward(a: OwnedFd, b: OwnedFd, stop: &AtomicBool, forwarded: &AtomicU64) {
    let (a, b) = (File::from(a), File::from(b));
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [
            libc::pollfd {
                fd: a.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: b.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 50) };
        if n <= 0 {
            continue;
        }
        for (i, (from, to)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
            if fds[i].revents & libc::POLLIN == 0 {
                continue;
            }
            use std::io::{Read, Write};
            let mut from = from;
            let mut to = to;
            if let Ok(len) = from.read(&mut buf)
                && len > 0
                && to.write_all(&buf[..len]).is_ok()
            {
                forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for TunPair {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            eprintln!("lab: the tun forwarder panicked");
        }
        for ns in [&self.nas, &self.wan] {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("lab: removing namespace {ns} failed: {e}");
            }
        }
    }
}

/// How long to let a tun pair settle (link-local addresses, MLD reports) before counting.
pub const TUN_SETTLE: Duration = Duration::from_millis(500);
