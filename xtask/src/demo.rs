//! `cargo xtask demo` (also `cargo xtask lab demo`): builds, makes the namespace lab, runs the
//! daemon on the lab NAS's eth0 and sends a realistic, bounded mix for a few minutes: bulk TCP
//! download and upload with the internet host (IPv4 and IPv6), LAN copies and intra-/56 IPv6
//! that must not count, an IPv6 stream down. The dashboard is forwarded from the lab NAS to
//! this machine's loopback and its URL printed; `--screenshot` saves it via headless Chromium.
//! Ctrl-C ends it early. Everything stays inside namespaces this command creates and removes,
//! or on loopback.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use xtask::lab::{LAN_V4, LAN_V6, Lab, NAS_V4, NAS_V6, UdpSink, WAN_V6, send_udp, tcp_transfer};

use crate::{
    apiclient::{WEB_PORT, totals, wait_api},
    setup::{self, workspace_root},
};

const PORT: u16 = 9999;

/// Set by SIGINT/SIGTERM: the demo stops at the next check and cleans up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// What the demo does.
pub struct Options {
    /// How long the traffic runs (bounded to 1..=30 minutes).
    pub minutes: u64,
    /// The port on this machine's loopback that forwards to the dashboard.
    pub port: u16,
    /// Where to save a screenshot of the dashboard (after the first minute, or at the end).
    pub screenshot: Option<PathBuf>,
}

/// Runs the demo.
pub fn demo(opts: &Options) -> anyhow::Result<()> {
    let minutes = opts.minutes.clamp(1, 30);
    setup::setup()?;
    setup::cargo(&["build", "--release", "-p", "sentinel"])?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let lab = Lab::create()?;
    println!(
        "demo: lab namespaces {} {} {} {}",
        lab.nas, lab.lan, lab.rtr, lab.wan
    );
    let files = Files::new();
    let daemon = Daemon::start(&lab, &files)?;
    wait_api(&lab.nas)?;
    let listener = TcpListener::bind(("127.0.0.1", opts.port))
        .with_context(|| format!("listening on 127.0.0.1:{}", opts.port))?;
    let forward = forward(listener, lab.nas.clone())?;
    let url = format!("http://127.0.0.1:{}/", opts.port);
    println!(
        "demo: dashboard at {url} (forwarded into the lab NAS); {minutes} min of traffic, Ctrl-C ends it"
    );
    let result = traffic(&lab, minutes, &url, opts.screenshot.as_deref());
    STOP.store(true, Ordering::SeqCst);
    let _ = forward.join();
    drop(daemon);
    drop(lab);
    drop(files);
    result
}

/// The mix, in bounded cycles until the time is up or Ctrl-C.
fn traffic(lab: &Lab, minutes: u64, url: &str, shot: Option<&Path>) -> anyhow::Result<()> {
    let _sinks = [
        UdpSink::bind(&lab.wan, PORT)?,
        UdpSink::bind(&lab.nas, PORT)?,
        UdpSink::bind(&lab.lan, PORT)?,
    ];
    let start = Instant::now();
    let end = Duration::from_secs(minutes * 60);
    let mut counted = (0u64, 0u64);
    // The screenshot runs beside the traffic, so the live speed panel shows it moving.
    let mut shooter: Option<std::thread::JoinHandle<anyhow::Result<()>>> = None;
    let mut cycle = 0u16;
    while start.elapsed() < end && !STOP.load(Ordering::SeqCst) {
        cycle += 1;
        let port = 5201 + (cycle % 100) * 3;
        // Bulk download from the internet (IPv4), an upload over IPv6, a LAN copy.
        let (snd, rcv) = tcp_transfer(&lab.wan, &lab.nas, NAS_V4.into(), port, 24 << 20)?;
        counted.1 += snd.ip_bytes(false);
        counted.0 += rcv.ip_bytes(false);
        let (snd, rcv) = tcp_transfer(&lab.nas, &lab.wan, WAN_V6.into(), port + 1, 6 << 20)?;
        counted.0 += snd.ip_bytes(true);
        counted.1 += rcv.ip_bytes(true);
        tcp_transfer(&lab.nas, &lab.lan, LAN_V4.into(), port + 2, 32 << 20)?;
        // Inside the /56: LAN, never counted. An IPv6 stream down: counted.
        send_udp(&lab.nas, IpAddr::V6(LAN_V6), PORT, 1400, 3000)?;
        let down6 = send_udp(&lab.wan, NAS_V6.into(), PORT, 1200, 1500)? as u64;
        counted.1 += down6 * 1248;
        println!(
            "demo: cycle {cycle} at {:.0?}: generators' counted totals up {} B, down {} B \
             (LAN copy and intra-/56 traffic not included)",
            start.elapsed(),
            counted.0,
            counted.1
        );
        if let Some(path) = shot
            && shooter.is_none()
            && start.elapsed() > Duration::from_secs(60).min(end / 2)
        {
            let (url, path) = (url.to_owned(), path.to_owned());
            shooter = Some(std::thread::spawn(move || screenshot(&url, &path)));
        }
        sleep_unless_stopped(Duration::from_secs(3));
    }
    match (shooter, shot) {
        (Some(t), _) => t
            .join()
            .map_err(|_| anyhow::anyhow!("the screenshot thread panicked"))??,
        (None, Some(path)) => screenshot(url, path)?,
        (None, None) => {}
    }
    std::thread::sleep(Duration::from_secs(2));
    match totals(&lab.nas) {
        Ok(t) => println!(
            "demo: the daemon counted up {} B, down {} B; the generators {counted:?}",
            t.0, t.1
        ),
        Err(e) => println!("demo: reading the daemon's totals failed: {e:#}"),
    }
    Ok(())
}

fn sleep_unless_stopped(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d && !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The dashboard in headless Chromium, saved as a PNG.
fn screenshot(url: &str, path: &Path) -> anyhow::Result<()> {
    setup::apt_install(&["chromium", "fonts-noto-cjk"])?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let status = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1440,1400",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running chromium")?;
    if !status.success() {
        bail!("chromium failed ({status})");
    }
    println!("demo: screenshot of the dashboard in {}", path.display());
    Ok(())
}

/// Forwards connections to this machine's `listener` (loopback) to the daemon in namespace
/// `ns`, until [`STOP`].
fn forward(listener: TcpListener, ns: String) -> anyhow::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    Ok(std::thread::spawn(move || {
        while !STOP.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((client, _)) => {
                    let ns = ns.clone();
                    std::thread::spawn(move || {
                        // A socket belongs to the namespace it was made in, whichever thread
                        // uses it later.
                        let upstream =
                            Lab::in_ns(&ns, || Ok(TcpStream::connect(("127.0.0.1", WEB_PORT))?));
                        if let Ok(upstream) = upstream {
                            splice(client, upstream);
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }))
}

/// Copies both ways until either side closes.
fn splice(client: TcpStream, upstream: TcpStream) {
    let _ = client.set_nonblocking(false);
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let (mut c, mut u) = (client, upstream);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(std::net::Shutdown::Write);
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        match u.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = c.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}

/// The demo's pin directory and database, removed on drop.
struct Files {
    pins: PathBuf,
    db_dir: PathBuf,
}

impl Files {
    fn new() -> Self {
        let id = std::process::id();
        Files {
            pins: PathBuf::from(format!("/sys/fs/bpf/sentinel-demo-{id}")),
            db_dir: PathBuf::from(format!("/tmp/sentinel-demo-{id}")),
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pins);
        let _ = std::fs::remove_dir_all(&self.db_dir);
    }
}

/// The daemon on the lab NAS; dropping it stops it (SIGINT, as Ctrl-C would; bounded).
struct Daemon(Child);

impl Daemon {
    fn start(lab: &Lab, files: &Files) -> anyhow::Result<Self> {
        let daemon = workspace_root().join("target/release/sentinel");
        // nsenter --net (not `ip netns exec`): only the network namespace changes, so the
        // daemon's pins land on the machine's bpffs, where `bpftool map dump pinned ...` finds
        // them.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", lab.nas))
            .arg("--")
            .arg(&daemon)
            .env("BPF_PIN_DIR", &files.pins)
            .env("DB_PATH", files.db_dir.join("traffic.db"))
            .env("WEB_BIND", "127.0.0.1")
            .env("WEB_PORT", WEB_PORT.to_string())
            .env("MONITOR_IFACE", "eth0")
            .env("PRINT_INTERVAL", "10")
            .stdin(Stdio::null())
            // Ctrl-C reaches the demo, which stops the daemon itself after cleaning up.
            .process_group(0)
            .spawn()
            .context("starting the daemon in the lab")?;
        Ok(Daemon(child))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.0.try_wait() {
                println!("demo: daemon exited: {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
