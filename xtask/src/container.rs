//! The `container` tier: the image from `cargo xtask image`, run by the project's own
//! compose.yaml with Debian's docker-compose on a Docker engine inside a lab NAS (so the
//! container's host network is the lab), checked end to end: exact counts for known traffic,
//! `docker-compose restart` keeps the totals exact, the container turns healthy, pins survive a
//! SIGKILL on a host without bpffs (compose.yaml's `rshared` bind), and `docker stop` within
//! the grace period writes the final flush to ./data. Engine, images,
//! containers, namespaces and files are removed when it ends, also when it fails.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use xtask::lab::{LAN_V4, LAN_V6, Lab, NAS_V6, UdpSink, WAN_V4, send_udp};

use crate::{
    apiclient::{http_get, wait_api, wait_totals},
    engine::{self, Engine},
    setup::{self, run, workspace_root},
};

/// What the tier installs: the engine and Compose v1 (Debian's), mmdebstrap for the base
/// image, sqlite3 to read the database the container wrote.
const PACKAGES: &[&str] = &["docker.io", "docker-compose", "mmdebstrap", "sqlite3"];
const PORT: u16 = 9999;
const CONTAINER: &str = "nettraffic-sentinel";
/// compose.yaml's `stop_grace_period`.
const GRACE: Duration = Duration::from_secs(30);

/// Runs the tier.
pub fn container_tier() -> anyhow::Result<()> {
    setup::apt_install(PACKAGES)?;
    let start = Instant::now();
    let work = PathBuf::from(format!("/tmp/snt{}-ct", std::process::id()));
    let _files = RemoveDir(work.clone());
    let lab = Lab::create()?;
    let engine = Engine::start(&lab.nas, &work.join("engine"))?;
    println!(
        "container: engine up after {:.1?}; building the image",
        start.elapsed()
    );
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    run(Command::new(xtask)
        .arg("image")
        .env("DOCKER_HOST", &engine.host)
        .env("DOCKER", engine::DOCKER)
        .current_dir(workspace_root()))?;
    let project = work.join("project");
    std::fs::create_dir_all(project.join("data"))?;
    let compose = Compose {
        engine: &engine,
        project: project.clone(),
    };
    compose.run(&["up", "-d", "--no-build"])?;
    let result = checks(&lab, &engine, &compose, &project);
    if result.is_err() {
        let _ = engine
            .docker()
            .args(["logs", "--tail", "60", CONTAINER])
            .status();
    }
    drop(compose);
    println!("container: tier took {:.1?}", start.elapsed());
    result
}

fn checks(lab: &Lab, engine: &Engine, compose: &Compose, project: &Path) -> anyhow::Result<()> {
    let _sinks = [
        UdpSink::bind(&lab.wan, PORT)?,
        UdpSink::bind(&lab.nas, PORT)?,
        UdpSink::bind(&lab.lan, PORT)?,
    ];
    wait_api(&lab.nas)?;
    let mut expected = (0u64, 0u64);
    round(lab, &mut expected, 1)?;
    wait_totals(&lab.nas, expected, "after round 1")?;

    let healthy = Instant::now();
    wait_healthy(engine)?;
    println!(
        "container: healthy ({:.1?} after the first exact totals)",
        healthy.elapsed()
    );

    compose.run(&["restart"])?;
    wait_api(&lab.nas)?;
    // Nothing new was sent: the totals must come back exactly, neither lost nor doubled.
    std::thread::sleep(Duration::from_secs(3));
    wait_totals(&lab.nas, expected, "after docker-compose restart")?;
    let stored = db_totals(project)?;
    if stored != expected {
        bail!("after the restart the database holds {stored:?}, expected {expected:?}");
    }
    println!("container: restart kept the totals exact and flushed {stored:?} on the way");

    round(lab, &mut expected, 2)?;
    wait_totals(&lab.nas, expected, "after round 2")?;

    // SIGKILL: no final flush; round 2 lives only in the pinned maps, on the bpffs the daemon
    // mounted itself (the engine's host has none) and that compose.yaml's `rshared` bind
    // propagated out of the container. A start must take it over: exact, nothing doubled.
    run(engine
        .docker()
        .args(["kill", CONTAINER])
        .stdout(Stdio::null()))?;
    run(engine
        .docker()
        .args(["start", CONTAINER])
        .stdout(Stdio::null()))?;
    wait_api(&lab.nas)?;
    wait_totals(&lab.nas, expected, "after docker kill + start (pins kept)")?;
    let logs = container_logs(engine)?;
    for line in [
        "bpffs not mounted; mounting it",
        "took over the pinned link",
    ] {
        if !logs.contains(line) {
            bail!("the container's log lacks {line:?}");
        }
    }
    let (_, status) = http_get(&lab.nas, "/api/status")?;
    if !status.contains("\"backend\":\"ebpf\"") {
        bail!("the container does not capture with eBPF: {status}");
    }
    // The daemon's own bpffs mount propagated to the host: it must know its pins are durable.
    if !status.contains("\"counters_survive_restart\":true") {
        bail!("the container does not report durable pins: {status}");
    }
    println!("container: SIGKILL + start kept the totals exact (pins on the propagated bpffs)");
    let stop = Instant::now();
    run(engine
        .docker()
        .args(["stop", "-t", &GRACE.as_secs().to_string(), CONTAINER])
        .stdout(Stdio::null()))?;
    let took = stop.elapsed();
    let code = inspect(engine, "{{.State.ExitCode}}")?;
    println!("container: docker stop took {took:.1?} (grace {GRACE:?}), exit code {code}");
    if code != "0" || took >= GRACE {
        bail!("docker stop: exit code {code} after {took:.1?}: not a clean stop within the grace");
    }
    let stored = db_totals(project)?;
    if stored != expected {
        bail!("after docker stop the database holds {stored:?}, expected {expected:?}");
    }
    println!("container: docker stop flushed everything: {stored:?} (up, down bytes)");
    Ok(())
}

/// One round of known traffic: IPv4 upload and IPv6 download that count, LAN and intra-/56
/// IPv6 that must not. Adds what counts to `expected` (IP bytes: payload + UDP + IP header).
fn round(lab: &Lab, expected: &mut (u64, u64), n: u32) -> anyhow::Result<()> {
    let up = send_udp(&lab.nas, WAN_V4.into(), PORT, 1000, 2000)? as u64;
    let down = send_udp(&lab.wan, NAS_V6.into(), PORT, 1200, 500)? as u64;
    let lan = send_udp(&lab.nas, LAN_V4.into(), PORT, 1400, 1000)?;
    let lan6 = send_udp(&lab.nas, IpAddr::V6(LAN_V6), PORT, 1400, 300)?;
    expected.0 += up * 1028;
    expected.1 += down * 1248;
    println!(
        "container: round {n}: up {up} x 1028 B, down {down} x 1248 B, LAN {lan} + intra-/56 \
         {lan6} (not counted); expected totals {expected:?}"
    );
    Ok(())
}

/// `docker-compose` on the project's compose.yaml, with the lab's settings in the environment.
struct Compose<'a> {
    engine: &'a Engine,
    project: PathBuf,
}

impl Compose<'_> {
    fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        run(Command::new("/usr/bin/docker-compose")
            .arg("-f")
            .arg(workspace_root().join("compose.yaml"))
            .arg("--project-directory")
            .arg(&self.project)
            .args(["-p", "sntct"])
            .args(args)
            .env("DOCKER_HOST", &self.engine.host)
            // MONITOR_IFACE unset, as a user leaves it: the daemon picks the default route's
            // interface (the lab NAS's eth0).
            .env_remove("MONITOR_IFACE")
            .env("TZ", "UTC")
            // Rows reach the database only at shutdown: what `docker stop` must flush.
            .env("SAVE_INTERVAL", "3600")
            .env("WEB_PORT", crate::apiclient::WEB_PORT.to_string()))
    }
}

impl Drop for Compose<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.run(&["down", "--timeout", "5"]) {
            eprintln!("container: docker-compose down failed: {e:#}");
        }
    }
}

/// (up, down) bytes in the database the container wrote to ./data.
fn db_totals(project: &Path) -> anyhow::Result<(u64, u64)> {
    let out = Command::new("sqlite3")
        .arg(project.join("data/traffic.db"))
        .arg("SELECT COALESCE(SUM(up_bytes),0) || ' ' || COALESCE(SUM(down_bytes),0) FROM traffic_hourly")
        .output()
        .context("running sqlite3")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    match (it.next(), it.next()) {
        (Some(Ok(up)), Some(Ok(down))) if out.status.success() => Ok((up, down)),
        _ => bail!(
            "reading the database: {} {}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Waits (bounded by the healthcheck's interval and start period) for "healthy".
fn wait_healthy(engine: &Engine) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut status = String::new();
    while start.elapsed() < Duration::from_secs(90) {
        status = inspect(engine, "{{.State.Health.Status}}")?;
        if status == "healthy" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!("the container is {status:?} after 90 s, not healthy")
}

fn container_logs(engine: &Engine) -> anyhow::Result<String> {
    let out = engine
        .docker()
        .args(["logs", CONTAINER])
        .output()
        .context("docker logs")?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn inspect(engine: &Engine, format: &str) -> anyhow::Result<String> {
    let out = engine
        .docker()
        .args(["inspect", "-f", format, CONTAINER])
        .output()
        .context("docker inspect")?;
    if !out.status.success() {
        bail!(
            "docker inspect {CONTAINER}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Removes a directory on drop.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
