//! `cargo xtask bench capture`: the daemon on a lab NAS, 64-byte UDP packets at rising rates; for
//! each rate, whether the counts are exact, the daemon's CPU seconds per million packets, and its
//! peak RSS. The idle row (0 packets/s) is the baseline measured in the same run. Then the idle
//! daemon's CPU ticks over a window with no remote ever seen and again after 20,000 distinct
//! remotes were seen, side by side (the drain must cost the same), and its RSS after a full remote
//! map. Needs root.

use std::{
    io::{BufRead, BufReader},
    net::IpAddr,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use xtask::lab::{Lab, UdpSink, WAN_V4, WAN_V6, blast_udp, spray_remotes};

const PORT: u16 = 9100;

/// Distinct remotes seen before the second idle window (more than one remote map holds).
const SPRAYED_REMOTES: u32 = 20_000;

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let step = Duration::from_secs(if quick { 1 } else { 3 });
    let rates: &[u64] = if quick {
        &[0, 50_000]
    } else {
        &[0, 50_000, 100_000, 200_000, 400_000, 0]
    };
    let lab = Lab::create()?;
    let pins = format!("/sys/fs/bpf/sentinel-bench-{}", std::process::id());
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", lab.nas))
        .arg("--")
        .arg(daemon_path()?)
        .env("MONITOR_IFACE", "eth0")
        .env("PRINT_INTERVAL", "1")
        .env("BPF_PIN_DIR", &pins)
        .env(
            "DB_PATH",
            format!("{pins}-db/traffic.db").replace("/sys/fs/bpf/", "/tmp/"),
        )
        .env("WEB_BIND", "127.0.0.1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the daemon")?;
    let pid = child.id();
    let last = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().context("stdout")?;
    let l = last.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("totals ") {
                *l.lock().unwrap_or_else(|p| p.into_inner()) = line;
            }
        }
    });
    let result = run(&lab, pid, &last, rates, step);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&pins);
    let _ = std::fs::remove_dir_all(format!("{pins}-db").replace("/sys/fs/bpf/", "/tmp/"));
    drop(lab);
    result
}

fn run(
    lab: &Lab,
    pid: u32,
    last: &Arc<Mutex<String>>,
    rates: &[u64],
    step: Duration,
) -> anyhow::Result<()> {
    let _sinks = [
        UdpSink::bind(&lab.wan, PORT)?,
        UdpSink::bind(&lab.nas, PORT)?,
    ];
    std::thread::sleep(Duration::from_secs(2));
    let idle_window = if step < Duration::from_secs(2) {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(20)
    };
    // Before any traffic: no remote was ever seen.
    let idle_empty = idle_ticks(pid, idle_window)?;
    println!(
        "capture benchmark: 64-byte IP packets (UDP) through the lab NAS's eth0, {step:?} per step."
    );
    println!(
        "The idle row (0 pps) is the baseline; the unlimited row (\"max\") is the generator's ceiling."
    );
    println!();
    println!(
        "{:<6} {:>10} {:>12} {:>12} {:>7} {:>14} {:>10}",
        "family", "target pps", "sent pps", "counted", "exact", "CPU s / Mpkt", "CPU %"
    );
    for v6 in [false, true] {
        for (i, &rate) in rates.iter().enumerate() {
            let idle = rate == 0 && i == 0;
            let before = (counted(last, v6)?, cpu_seconds(pid)?, Instant::now());
            let sent = if idle {
                std::thread::sleep(step);
                0
            } else {
                let (from, to): (&str, IpAddr) = if v6 {
                    (&lab.nas, WAN_V6.into())
                } else {
                    (&lab.nas, WAN_V4.into())
                };
                blast_udp(from, to, PORT, rate, step)?
            };
            let elapsed = before.2.elapsed().as_secs_f64();
            let cpu = cpu_seconds(pid)? - before.1;
            // Wait for the daemon to print counts that include the whole step.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut got = counted(last, v6)? - before.0;
            while got < sent && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                got = counted(last, v6)? - before.0;
            }
            std::thread::sleep(Duration::from_millis(1200));
            got = counted(last, v6)? - before.0;
            let label = if idle {
                "0".to_owned()
            } else if rate == 0 {
                "max".to_owned()
            } else {
                rate.to_string()
            };
            let per_m = if sent > 0 {
                format!("{:.3}", cpu / (sent as f64 / 1e6))
            } else {
                "-".to_owned()
            };
            println!(
                "{:<6} {:>10} {:>12.0} {:>12} {:>7} {:>14} {:>9.1}%",
                if v6 { "IPv6" } else { "IPv4" },
                label,
                sent as f64 / elapsed,
                got,
                if got == sent { "yes" } else { "NO" },
                per_m,
                100.0 * cpu / elapsed
            );
        }
    }
    let before = counted(last, true)?;
    let sent = spray_remotes(lab, SPRAYED_REMOTES, PORT)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while counted(last, true)? - before < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss_full = rss_kb(pid, "VmRSS:")?;
    // Let the drain settle (the remotes are the kernel's now), then measure the idle daemon again.
    std::thread::sleep(Duration::from_secs(3));
    let idle_full = idle_ticks(pid, idle_window)?;
    println!();
    println!(
        "idle daemon, CPU ticks (1/{} s) over {idle_window:?}: {idle_empty} with 0 remotes seen, {idle_full} after {sent} distinct remotes (sent {SPRAYED_REMOTES}, counted {}); goal: the same within noise",
        clock_ticks_per_second(),
        counted(last, true)? - before
    );
    println!("daemon RSS right after the remote map filled: {rss_full} kB");
    println!(
        "daemon RSS: {} kB now, {} kB peak (goal: under 25 MB; the peak is aya's one-off parse of the kernel's BTF at start-up)",
        rss_kb(pid, "VmRSS:")?,
        rss_kb(pid, "VmHWM:")?
    );
    Ok(())
}

/// Up packets of one family, from the daemon's last totals line (both families are summed in the
/// line, and each step sends only one family, so the difference is that family's).
fn counted(last: &Arc<Mutex<String>>, _v6: bool) -> anyhow::Result<u64> {
    let line = last.lock().unwrap_or_else(|p| p.into_inner()).clone();
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("up_packets="))
        .and_then(|v| v.parse().ok())
        .context("no totals line yet")
}

/// The daemon's CPU ticks (user + system) over `window` while nothing is sent.
fn idle_ticks(pid: u32, window: Duration) -> anyhow::Result<u64> {
    let start = cpu_ticks(pid)?;
    std::thread::sleep(window);
    Ok(cpu_ticks(pid)? - start)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).unwrap_or(100)
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?)
}

fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn rss_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no such field in /proc/<pid>/status")
}

fn daemon_path() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    // target/release/examples/bench_capture -> target/release/sentinel
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .context("target dir")?;
    Ok(dir.join("sentinel"))
}
