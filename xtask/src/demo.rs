//! `cargo xtask lab demo`: the daemon on the lab NAS's eth0, real traffic of known size, live
//! totals on the terminal. Everything stays inside namespaces this command creates and removes.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use xtask::lab::{LAN_V4, Lab, UdpSink, WAN_V4, WAN_V6, send_udp};

use crate::setup::{self, workspace_root};

const PORT: u16 = 9999;

pub fn demo() -> anyhow::Result<()> {
    setup::setup()?;
    setup::cargo(&["build", "--release", "-p", "sentinel"])?;
    let lab = Lab::create()?;
    println!(
        "lab: namespaces {} {} {} {}",
        lab.nas, lab.lan, lab.rtr, lab.wan
    );
    let daemon = workspace_root().join("target/release/sentinel");
    // nsenter --net (not `ip netns exec`): only the network namespace changes, so the daemon's
    // pins land on the machine's bpffs, where `bpftool map dump pinned ...` finds them.
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", lab.nas))
        .arg("--")
        .arg(&daemon)
        .env(
            "BPF_PIN_DIR",
            format!("/sys/fs/bpf/sentinel-demo-{}", std::process::id()),
        )
        .env(
            "DB_PATH",
            format!("/tmp/sentinel-demo-{}/traffic.db", std::process::id()),
        )
        .env("WEB_BIND", "127.0.0.1")
        .env("MONITOR_IFACE", "eth0")
        .env("PRINT_INTERVAL", "2")
        .stdin(Stdio::null())
        .spawn()
        .context("starting the daemon in the lab")?;
    std::thread::sleep(Duration::from_secs(2));
    let result = (|| -> anyhow::Result<()> {
        let _sinks = [
            UdpSink::bind(&lab.wan, PORT)?,
            UdpSink::bind(&lab.nas, PORT)?,
            UdpSink::bind(&lab.lan, PORT)?,
        ];
        for round in 1..=3 {
            let up = send_udp(&lab.nas, WAN_V4.into(), PORT, 1000, 1000)?;
            let down = send_udp(&lab.wan, xtask::lab::NAS_V6.into(), PORT, 1000, 500)?;
            let lan = send_udp(&lab.nas, LAN_V4.into(), PORT, 1400, 2000)?;
            let v6up = send_udp(&lab.nas, WAN_V6.into(), PORT, 200, 100)?;
            println!(
                "demo round {round}: sent up {up} x 1028 B (IPv4) + {v6up} x 248 B (IPv6), down {down} x 1048 B (IPv6), LAN {lan} x 1428 B (not counted)"
            );
            std::thread::sleep(Duration::from_secs(3));
        }
        println!(
            "expected totals now: up {} B, down {} B",
            3 * (1000 * 1028 + 100 * 248),
            3 * 500 * 1048
        );
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    })();
    // SIGINT, as Ctrl-C would: the daemon detaches and exits.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait()?;
    println!("daemon exited: {status}");
    drop(lab);
    let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/sentinel-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(format!("/tmp/sentinel-demo-{}", std::process::id()));
    result
}
