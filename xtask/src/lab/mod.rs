//! The network-namespace lab: a NAS, a LAN host, a router and an internet host, all in namespaces
//! this process creates (and removes on drop, also when a test fails), joined by veth pairs.
//!
//! ```text
//!   [lan] lanh0 --- lan0 [rtr: br0] nas0 --- eth0 [nas]          addresses (documentation ranges):
//!                        [rtr] wan0 ------- eth0 [wan]           LAN 192.168.50.0/24, 2001:db8:aa00:1::/64
//! ```                                                            WAN 203.0.113.0/24, 2001:db8:ff00::/64
//! Every nas<->wan and nas<->lan packet crosses nas:eth0, where the monitor attaches. The lab is
//! silent when idle (static neighbours, no RA/RS/DAD), so counters move only with test traffic.
//! No lab interface is ever connected to this machine's own namespace. Traffic generators and
//! ground truth live in [`traffic`]; a macvlan container on the NAS and a raw-IP tun pair in
//! [`links`].

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};

mod links;
mod traffic;

pub use self::{
    links::{
        CTR_MAC, CTR_V4, CTR_V6, Container, TUN_NAS_V4, TUN_NAS_V6, TUN_SETTLE, TUN_WAN_V4,
        TUN_WAN_V6, TunPair, VM_MAC, VM_V4, Vm,
    },
    traffic::{
        SPRAY_PREFIX_V6, TcpSide, UdpSink, blast_udp, send_udp, spray_remotes, tcp_transfer,
    },
};

/// The NAS's LAN address.
pub const NAS_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);
/// A LAN host.
pub const LAN_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 20);
/// The router's LAN address.
pub const RTR_LAN_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
/// The router's WAN address.
pub const RTR_WAN_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// An internet host.
pub const WAN_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
/// The NAS's global IPv6 address (its /56 is 2001:db8:aa00::/56).
pub const NAS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xaa00, 1, 0, 0, 0, 0x10);
/// A LAN host inside the same /56.
pub const LAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xaa00, 1, 0, 0, 0, 0x20);
/// The router's LAN address.
pub const RTR_LAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xaa00, 1, 0, 0, 0, 1);
/// The router's WAN address.
pub const RTR_WAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 0, 0, 0, 0, 1);
/// An internet host.
pub const WAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 0, 0, 0, 0, 0x100);

/// Fixed MAC addresses, so static neighbour entries can be written before links come up.
const MAC_NAS: &str = "02:53:4e:00:00:10";
const MAC_LAN: &str = "02:53:4e:00:00:20";
const MAC_RTR_LAN: &str = "02:53:4e:00:00:01";
const MAC_RTR_WAN: &str = "02:53:4e:00:01:01";
const MAC_WAN: &str = "02:53:4e:00:01:64";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A host on the lab's LAN: its MAC, the router's bridge port it hangs on, its addresses.
#[derive(Clone, Copy)]
struct LanHost {
    mac: &'static str,
    port: &'static str,
    v4: &'static str,
    v6: &'static str,
    prefix_v4: &'static str,
    prefix_v6: &'static str,
}

impl LanHost {
    const NAS: LanHost = LanHost {
        mac: MAC_NAS,
        port: "nas0",
        v4: "192.168.50.10",
        v6: "2001:db8:aa00:1::10",
        prefix_v4: "192.168.50.10/24",
        prefix_v6: "2001:db8:aa00:1::10/64",
    };
    const LAN: LanHost = LanHost {
        mac: MAC_LAN,
        port: "lan0",
        v4: "192.168.50.20",
        v6: "2001:db8:aa00:1::20",
        prefix_v4: "192.168.50.20/24",
        prefix_v6: "2001:db8:aa00:1::20/64",
    };
}

/// Adds an address (IPv6 with nodad: usable at once, and no DAD traffic).
fn addr(ns: &str, dev: &str, a: &str) -> anyhow::Result<()> {
    let mut args = vec!["-n", ns, "addr", "add", a, "dev", dev];
    if a.contains(':') {
        args.push("nodad");
    }
    ip(&args)
}

/// Default routes (IPv4 and IPv6) of a LAN-side host through the lab router.
fn lan_default_routes(ns: &str) -> anyhow::Result<()> {
    ip(&["-n", ns, "route", "add", "default", "via", "192.168.50.1"])?;
    ip(&[
        "-n",
        ns,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:aa00:1::1",
    ])
}

/// A permanent neighbour entry.
fn neigh(ns: &str, dev: &str, a: &str, mac: &str) -> anyhow::Result<()> {
    ip(&[
        "-n",
        ns,
        "neigh",
        "replace",
        a,
        "lladdr",
        mac,
        "dev",
        dev,
        "nud",
        "permanent",
    ])
}

/// The four namespaces of one lab instance. Dropping it removes them.
pub struct Lab {
    /// Namespace names: `<prefix>-nas`, `-lan`, `-rtr`, `-wan`.
    pub nas: String,
    pub lan: String,
    pub rtr: String,
    pub wan: String,
}

/// Runs `ip` with arguments, failing with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a command inside a namespace.
pub fn netns_exec(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    ip(&full)
}

impl Lab {
    /// Creates a lab whose namespace names start with `snt<pid>-<n>`. Needs root and iproute2.
    pub fn create() -> anyhow::Result<Self> {
        let prefix = format!(
            "snt{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            nas: format!("{prefix}-nas"),
            lan: format!("{prefix}-lan"),
            rtr: format!("{prefix}-rtr"),
            wan: format!("{prefix}-wan"),
        };
        // From here on, Drop cleans up whatever was made.
        for ns in [&lab.nas, &lab.lan, &lab.rtr, &lab.wan] {
            ip(&["netns", "add", ns])?;
        }
        lab.wire().context("building the namespace lab")?;
        lab.wait_ready()?;
        Ok(lab)
    }

    fn wire(&self) -> anyhow::Result<()> {
        let (nas, lan, rtr, wan) = (&self.nas, &self.lan, &self.rtr, &self.wan);
        // Quiet IPv6 in every namespace: no router advertisements, solicitations or DAD.
        for ns in [nas, lan, rtr, wan] {
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
            netns_exec(ns, &["sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0"])?;
            netns_exec(
                ns,
                &["sysctl", "-qw", "net.ipv4.conf.default.send_redirects=0"],
            )?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        netns_exec(rtr, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        netns_exec(rtr, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;

        // The router: a bridge for the LAN side, a routed WAN port.
        ip(&[
            "-n",
            rtr,
            "link",
            "add",
            "br0",
            "address",
            MAC_RTR_LAN,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&[
            "-n", wan, "link", "add", "eth0", "address", MAC_WAN, "type", "veth", "peer", "name",
            "wan0", "netns", rtr,
        ])?;
        ip(&["-n", rtr, "link", "set", "wan0", "address", MAC_RTR_WAN])?;
        addr(rtr, "br0", "192.168.50.1/24")?;
        addr(rtr, "br0", "2001:db8:aa00:1::1/64")?;
        addr(rtr, "wan0", "203.0.113.1/24")?;
        addr(rtr, "wan0", "2001:db8:ff00::1/64")?;
        addr(wan, "eth0", "203.0.113.100/24")?;
        addr(wan, "eth0", "2001:db8:ff00::100/64")?;
        for (ns, dev) in [(wan, "eth0"), (rtr, "wan0"), (rtr, "br0")] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        // The internet host reaches the home through the router.
        ip(&[
            "-n",
            wan,
            "route",
            "add",
            "192.168.50.0/24",
            "via",
            "203.0.113.1",
        ])?;
        ip(&[
            "-n",
            wan,
            "-6",
            "route",
            "add",
            "2001:db8:aa00::/56",
            "via",
            "2001:db8:ff00::1",
        ])?;

        // The two LAN hosts, each knowing the other statically.
        self.attach_lan_host(nas, LanHost::NAS, LanHost::LAN)?;
        self.attach_lan_host(lan, LanHost::LAN, LanHost::NAS)?;

        // Static neighbours of the router: no ARP or neighbour discovery while tests count.
        for host in [LanHost::NAS, LanHost::LAN] {
            for a in [host.v4, host.v6] {
                neigh(rtr, "br0", a, host.mac)?;
            }
        }
        for (a, mac) in [("203.0.113.100", MAC_WAN), ("2001:db8:ff00::100", MAC_WAN)] {
            neigh(rtr, "wan0", a, mac)?;
        }
        for (a, mac) in [
            ("203.0.113.1", MAC_RTR_WAN),
            ("2001:db8:ff00::1", MAC_RTR_WAN),
        ] {
            neigh(wan, "eth0", a, mac)?;
        }
        Ok(())
    }

    /// Waits until the router's links are up and its bridge ports forward: the kernel can take
    /// up to about a second after `ip link set up`, and traffic sent before is dropped.
    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let output = |args: &[&str]| {
                Command::new(args[0])
                    .args(&args[1..])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            };
            let links = output(&["ip", "-n", &self.rtr, "-br", "link", "show"])?;
            let up = ["nas0", "lan0", "wan0"].iter().all(|dev| {
                links.lines().any(|l| {
                    l.starts_with(&format!("{dev}@")) && l.split_whitespace().nth(1) == Some("UP")
                })
            });
            let ports = output(&["bridge", "-n", &self.rtr, "link", "show"])?;
            let forwarding = ["nas0", "lan0"].iter().all(|dev| {
                ports
                    .lines()
                    .any(|l| l.contains(&format!(" {dev}")) && l.contains("state forwarding"))
            });
            if up && forwarding {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("the lab's links did not come up:\n{links}\n{ports}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Runs `f` on a thread that has entered namespace `ns` (a network namespace is per thread).
    pub fn in_ns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || -> anyhow::Result<T> {
            let file = File::open(&path).with_context(|| format!("opening {path}"))?;
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering {path}"))?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in namespace {ns} panicked"))?
    }

    /// Adds an address to the NAS's eth0 (e.g. a new global IPv6 address mid-test).
    pub fn add_nas_address(&self, cidr: &str) -> anyhow::Result<()> {
        let mut args = vec!["-n", self.nas.as_str(), "addr", "add", cidr, "dev", "eth0"];
        if cidr.contains(':') {
            args.push("nodad");
        }
        ip(&args)
    }

    /// The peer address a host sends to, by family.
    pub fn wan_addr(v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(WAN_V6)
        } else {
            IpAddr::V4(WAN_V4)
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace removes its veths, and with them their peers.
        for ns in [&self.nas, &self.lan, &self.rtr, &self.wan] {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("lab: removing namespace {ns} failed: {e}");
            }
        }
    }
}

impl Lab {
    /// Makes nas:eth0 see what a real 1500-byte wire delivers: the router side sends plain
    /// segments (no TSO/GSO) and the NAS merges them with GRO, while the NAS itself still sends
    /// TSO/GSO super-packets. Both kinds then reach the monitor as super-packets with gso_segs.
    pub fn emulate_wire(&self) -> anyhow::Result<()> {
        netns_exec(
            &self.rtr,
            &["ethtool", "-K", "nas0", "tso", "off", "gso", "off"],
        )?;
        netns_exec(&self.nas, &["ethtool", "-K", "eth0", "gro", "on"])?;
        Ok(())
    }
}

impl Lab {
    /// Deletes the NAS's eth0 and creates it again (same name and addresses, a new ifindex), as a
    /// driver reload or a container runtime re-creating an interface would.
    pub fn recreate_nas_link(&self) -> anyhow::Result<()> {
        ip(&["-n", &self.nas, "link", "del", "eth0"])?;
        self.attach_lan_host(&self.nas, LanHost::NAS, LanHost::LAN)
    }

    /// Gives `ns` an `eth0` on the router's bridge: its addresses, default routes through the
    /// router, and static neighbour entries for the router and the other LAN host.
    fn attach_lan_host(&self, ns: &str, host: LanHost, other: LanHost) -> anyhow::Result<()> {
        let rtr = self.rtr.as_str();
        ip(&[
            "-n", ns, "link", "add", "eth0", "address", host.mac, "type", "veth", "peer", "name",
            host.port, "netns", rtr,
        ])?;
        ip(&["-n", rtr, "link", "set", host.port, "master", "br0"])?;
        addr(ns, "eth0", host.prefix_v4)?;
        addr(ns, "eth0", host.prefix_v6)?;
        ip(&["-n", rtr, "link", "set", host.port, "up"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        lan_default_routes(ns)?;
        for (a, mac) in [
            ("192.168.50.1", MAC_RTR_LAN),
            ("2001:db8:aa00:1::1", MAC_RTR_LAN),
            (other.v4, other.mac),
            (other.v6, other.mac),
        ] {
            neigh(ns, "eth0", a, mac)?;
        }
        Ok(())
    }
}
