//! `cargo xtask vm-guest` (hidden): the checks the `vm` tier runs inside a QEMU guest, with the
//! guest's kernel and the host's file system (read-only, over 9p). The release daemon on a lab
//! NAS: exact UDP IPv4/IPv6 both ways with LAN and intra-/56 traffic counting zero, bulk TCP
//! with GSO/GRO exact against `TCP_INFO`, the
//! expected attach mode, SIGKILL and restart exact, BTF hidden, and BPF refused (auto falls
//! back to AF_PACKET, visible in /api/status). Prints `VM-RESULT` lines the host collects.

use std::{
    net::IpAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use xtask::lab::{
    LAN_V4, LAN_V6, Lab, NAS_V4, NAS_V6, UdpSink, WAN_V4, WAN_V6, send_udp, tcp_transfer,
};

use crate::apiclient::{http_get, totals, wait_api, wait_totals};

const PORT: u16 = 9999;
const WORK: &str = "/tmp/vm-guest";
const BTF: &str = "/sys/kernel/btf/vmlinux";

/// Runs every check; `attach` is the attach mode the kernel must get (`netlink-clsact`, `tcx`).
pub fn guest(attach: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(WORK)?;
    let lab = Lab::create()?;
    let _sinks = [
        UdpSink::bind(&lab.wan, PORT)?,
        UdpSink::bind(&lab.nas, PORT)?,
        UdpSink::bind(&lab.lan, PORT)?,
    ];
    let mut expected = (0u64, 0u64);

    let d = Daemon::start(&lab, 1, &[])?;
    check_status(&lab, "ebpf", Some(attach))?;
    round(&lab, &mut expected)?;
    wait_totals(&lab.nas, expected, "UDP v4/v6 both ways")?;
    result("udp-exact", attach);
    let attempt = tcp(&lab, &mut expected)?;
    wait_totals(&lab.nas, expected, "TCP with GSO/GRO")?;
    result("tcp-gso-exact", &format!("{attach}, attempt {attempt}"));

    d.kill()?;
    let d = Daemon::start(&lab, 2, &[])?;
    wait_totals(&lab.nas, expected, "after SIGKILL and restart")?;
    round(&lab, &mut expected)?;
    wait_totals(&lab.nas, expected, "traffic after the restart")?;
    result("sigkill-restart-exact", attach);
    d.stop()?;

    let btf = std::path::Path::new(BTF).exists();
    if btf {
        // An empty file over vmlinux: the kernel's BTF is gone for the daemon (Unraid, some
        // fnOS builds).
        run("mount", &["--bind", "/dev/null", BTF])?;
    }
    let d = Daemon::start(&lab, 3, &[]);
    let hidden = (|| -> anyhow::Result<()> {
        let d = d?;
        check_status(&lab, "ebpf", Some(attach))?;
        round(&lab, &mut expected)?;
        wait_totals(&lab.nas, expected, "with BTF hidden")?;
        d.stop()
    })();
    if btf {
        let _ = run("umount", &[BTF]);
    }
    hidden?;
    result(
        "btf-hidden-exact",
        if btf { attach } else { "kernel has no BTF" },
    );

    // No CAP_BPF/CAP_SYS_ADMIN/CAP_PERFMON: loading eBPF is refused, auto must fall back.
    let d = Daemon::start(
        &lab,
        4,
        &["--drop=cap_sys_admin,cap_bpf,cap_perfmon", "--shell="],
    )?;
    check_status(&lab, "afpacket", None)?;
    round(&lab, &mut expected)?;
    wait_totals(&lab.nas, expected, "AF_PACKET fallback")?;
    d.stop()?;
    result("bpf-refused-afpacket-exact", "afpacket");
    println!("VM-RESULT totals {expected:?}");
    Ok(())
}

fn result(what: &str, detail: &str) {
    println!("VM-RESULT ok {what} ({detail})");
}

/// Known traffic: IPv4 and IPv6 up and down that count, LAN and intra-/56 that must not.
fn round(lab: &Lab, expected: &mut (u64, u64)) -> anyhow::Result<()> {
    let up4 = send_udp(&lab.nas, WAN_V4.into(), PORT, 1000, 300)? as u64;
    let up6 = send_udp(&lab.nas, WAN_V6.into(), PORT, 700, 200)? as u64;
    let down4 = send_udp(&lab.wan, NAS_V4.into(), PORT, 900, 200)? as u64;
    let down6 = send_udp(&lab.wan, NAS_V6.into(), PORT, 1200, 300)? as u64;
    send_udp(&lab.nas, LAN_V4.into(), PORT, 1400, 200)?;
    send_udp(&lab.nas, IpAddr::V6(LAN_V6), PORT, 1400, 200)?;
    expected.0 += up4 * 1028 + up6 * 748;
    expected.1 += down4 * 928 + down6 * 1248;
    Ok(())
}

/// Bulk TCP both ways (TSO/GSO super-packets out, GRO in), ground truth from both ends'
/// `TCP_INFO`. A retransmission (SACK options) makes that ground truth inexact: such an attempt
/// is not judged, the totals are re-based on what the daemon settled on, and the transfer is
/// tried again (at most 3 attempts; TCG guests are slow enough for an occasional RTO).
/// Returns the attempt that was judged.
fn tcp(lab: &Lab, expected: &mut (u64, u64)) -> anyhow::Result<u32> {
    // A 1500-byte wire towards the NAS: segments in (GRO merges them), super-packets out.
    lab.emulate_wire()?;
    for attempt in 1..=3 {
        let (up, up_ack) = tcp_transfer(&lab.nas, &lab.wan, WAN_V4.into(), 5201, 8 << 20)?;
        let (down, down_ack) = tcp_transfer(&lab.wan, &lab.nas, NAS_V6.into(), 5202, 8 << 20)?;
        if [&up, &up_ack, &down, &down_ack]
            .iter()
            .all(|s| s.total_retrans == 0)
        {
            expected.0 += up.ip_bytes(false) + down_ack.ip_bytes(true);
            expected.1 += up_ack.ip_bytes(false) + down.ip_bytes(true);
            return Ok(attempt);
        }
        println!(
            "vm-guest: TCP attempt {attempt} had retransmissions ({up:?} {down:?}); not judged"
        );
        *expected = settled(&lab.nas)?;
    }
    bail!("every TCP attempt had retransmissions: no exact ground truth")
}

/// The daemon's totals once they stop moving (bounded).
fn settled(ns: &str) -> anyhow::Result<(u64, u64)> {
    let mut last = totals(ns)?;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(1500));
        let now = totals(ns)?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    bail!("the totals never settled: {last:?}")
}

/// The backend (and attach mode) /api/status must show.
fn check_status(lab: &Lab, backend: &str, attach: Option<&str>) -> anyhow::Result<()> {
    let (_, status) = http_get(&lab.nas, "/api/status")?;
    if !status.contains(&format!("\"backend\":\"{backend}\"")) {
        bail!("expected backend {backend}: {status}");
    }
    if let Some(mode) = attach
        && !status.contains(&format!("\"attach_mode\":\"{mode}\""))
    {
        bail!("expected attach mode {mode}: {status}");
    }
    Ok(())
}

/// The release daemon on the lab NAS, optionally under `capsh` with the given options.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(lab: &Lab, n: u32, capsh: &[&str]) -> anyhow::Result<Self> {
        let binary = crate::image::target_dir().join("release/sentinel");
        let log = PathBuf::from(format!("{WORK}/daemon-{n}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", lab.nas))
            .arg("--");
        if capsh.is_empty() {
            cmd.arg(&binary);
        } else {
            // capsh execs the daemon (`--shell=`) with the bounding set reduced.
            cmd.arg("capsh");
            for opt in capsh {
                if *opt == "--shell=" {
                    cmd.arg(format!("--shell={}", binary.display()));
                } else {
                    cmd.arg(opt);
                }
            }
            cmd.arg("--");
        }
        let child = cmd
            .env("BPF_PIN_DIR", "/sys/fs/bpf/sentinel-vm")
            .env("DB_PATH", format!("{WORK}/traffic.db"))
            .env("WEB_BIND", "127.0.0.1")
            .env("MONITOR_IFACE", "eth0")
            .env("TZ", "UTC")
            .env("SAVE_INTERVAL", "3600")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting the daemon")?;
        let d = Daemon {
            child: Some(child),
            log,
        };
        if let Err(e) = wait_api(&lab.nas) {
            bail!("{e:#}; the daemon's log:\n{}", d.log());
        }
        Ok(d)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&mut self, sig: &str) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("the daemon is not running");
        };
        run("kill", &[sig, &child.id().to_string()])?;
        // Bounded: a daemon that does not stop within 30 s is killed.
        for _ in 0..300 {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("the daemon did not exit within 30 s of {sig}")
    }

    fn kill(mut self) -> anyhow::Result<()> {
        self.signal("-KILL").map(|_| ())
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let status = self.signal("-TERM")?;
        if !status.success() {
            bail!("the daemon exited with {status}:\n{}", self.log());
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("vm-guest: the daemon's log:\n{}", self.log());
        }
    }
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {args:?}: {status}");
    }
    Ok(())
}
