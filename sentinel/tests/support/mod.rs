//! Shared support for the namespace tests: the real daemon binary, started inside a lab NAS, and
//! the counts it reports.

#![allow(
    dead_code,
    reason = "each test target uses a different part of the support module"
)]

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use xtask::lab::Lab;

/// The daemon's counts as it last printed them.
pub type Totals = HashMap<String, u64>;

/// A daemon running on the lab's NAS (nsenter --net keeps the machine's bpffs visible for pins).
pub struct Daemon {
    child: Option<Child>,
    last: Arc<Mutex<Option<Totals>>>,
    log: Arc<Mutex<Vec<String>>>,
    pub pin_dir: PathBuf,
    /// The namespace the daemon (and its web server on 127.0.0.1:8080) lives in.
    pub netns: String,
}

/// The daemon's web port inside the lab NAS's own network namespace.
pub const WEB_PORT: u16 = 8080;

/// How the daemon is put into the lab NAS's network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// `nsenter --net`: the machine's mount namespace, so the machine's bpffs holds the pins.
    Nsenter,
    /// `ip netns exec`: a private mount namespace with /sys remounted, as users often run it; the
    /// daemon has to mount its own bpffs there, which dies with it.
    IpNetnsExec,
}

impl Daemon {
    /// Starts the daemon on the lab NAS's eth0 with extra environment variables.
    pub fn start(lab: &Lab, pin_dir: &PathBuf, env: &[(&str, &str)]) -> Self {
        Self::launch(&lab.nas, Some("eth0"), pin_dir, env, Launcher::Nsenter)
    }

    /// [`Self::start`] through a chosen launcher.
    pub fn start_with(
        lab: &Lab,
        pin_dir: &PathBuf,
        env: &[(&str, &str)],
        launcher: Launcher,
    ) -> Self {
        Self::launch(&lab.nas, Some("eth0"), pin_dir, env, launcher)
    }

    /// Starts the daemon in namespace `netns` on `iface` (`None`: MONITOR_IFACE unset, so the
    /// daemon picks the default route's interface) with extra environment variables.
    pub fn start_in(
        netns: &str,
        iface: Option<&str>,
        pin_dir: &PathBuf,
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(netns, iface, pin_dir, env, Launcher::Nsenter)
    }

    fn launch(
        netns: &str,
        iface: Option<&str>,
        pin_dir: &PathBuf,
        env: &[(&str, &str)],
        launcher: Launcher,
    ) -> Self {
        let db_dir = pin_dir
            .file_name()
            .map(|n| std::env::temp_dir().join(n))
            .expect("pin dir name");
        let mut cmd = match launcher {
            Launcher::Nsenter => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{netns}")).arg("--");
                c
            }
            Launcher::IpNetnsExec => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns]);
                c
            }
        };
        cmd.arg(env!("CARGO_BIN_EXE_sentinel"))
            .env_remove("MONITOR_IFACE")
            .env("PRINT_INTERVAL", "1")
            .env("BPF_PIN_DIR", pin_dir)
            .env("RUST_LOG", "info")
            .env("DB_PATH", db_dir.join("traffic.db"))
            .env("WEB_BIND", "127.0.0.1")
            .env("WEB_PORT", WEB_PORT.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(iface) = iface {
            cmd.env("MONITOR_IFACE", iface);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting the daemon under nsenter");
        let last = Arc::new(Mutex::new(None));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let (l, lg) = (last.clone(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(t) = parse_totals(&line) {
                    *l.lock().expect("lock") = Some(t);
                }
                lg.lock().expect("lock").push(line);
            }
        });
        let lg = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("daemon: {line}");
                lg.lock().expect("lock").push(line);
            }
        });
        let d = Self {
            child: Some(child),
            last,
            log,
            pin_dir: pin_dir.clone(),
            netns: netns.to_owned(),
        };
        d.wait_for("the first totals line", Duration::from_secs(15), |_| true);
        d
    }

    /// The latest totals: up/down packets and bytes from the history API (stored and pending,
    /// yesterday and today), the rest (LAN, transit, errors) from the daemon's printed line.
    pub fn totals(&self) -> Option<Totals> {
        let mut t = self.last.lock().expect("lock").clone()?;
        let (status, body) = self.get("/api/summary").ok()?;
        if status != 200 {
            return None;
        }
        let summary: serde_json::Value = serde_json::from_str(&body).ok()?;
        let today =
            chrono::NaiveDate::parse_from_str(summary["today_date"].as_str()?, "%Y-%m-%d").ok()?;
        let yesterday = today.pred_opt()?;
        let (status, csv) = self
            .get(&format!(
                "/api/query?start={yesterday}&end={today}&granularity=day&format=csv"
            ))
            .ok()?;
        if status != 200 {
            return None;
        }
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.split(',').collect();
        for key in [
            "up_bytes",
            "down_bytes",
            "up_packets",
            "down_packets",
            "up_wire_bytes",
            "down_wire_bytes",
        ] {
            let col = header.iter().position(|h| *h == key)?;
            let sum: u64 = csv
                .lines()
                .skip(1)
                .filter_map(|l| l.split(',').nth(col)?.parse::<u64>().ok())
                .sum();
            t.insert(key.to_owned(), sum);
        }
        Some(t)
    }

    /// `GET path` on the daemon's web server: (status, body).
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let path = path.to_owned();
        Lab::in_ns(&self.netns, move || http_get(WEB_PORT, &path))
    }

    /// Waits until `cond` holds on a fresh totals line, or panics with the last one seen.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Totals) -> bool,
    ) -> Totals {
        let start = Instant::now();
        loop {
            if let Some(t) = self.totals()
                && cond(&t)
            {
                return t;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; last totals: {:?}",
                self.totals()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the totals stop changing for two print periods and returns them.
    pub fn settled(&self) -> Totals {
        let mut prev = self.totals();
        let mut stable = 0;
        let start = Instant::now();
        while stable < 3 {
            std::thread::sleep(Duration::from_millis(1100));
            let now = self.totals();
            if now == prev {
                stable += 1
            } else {
                stable = 0
            }
            prev = now;
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "totals never settled: {prev:?}"
            );
        }
        prev.expect("totals")
    }

    /// Lines the daemon printed (stdout and stderr).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("lock").clone()
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, and wait (bounded by `limit`, then SIGKILL) for the exit: how long it took and
    /// whether it was clean.
    pub fn stop_timed(mut self, limit: Duration) -> (Duration, bool) {
        let Some(mut child) = self.child.take() else {
            return (Duration::ZERO, false);
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return (start.elapsed(), status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        (start.elapsed(), false)
    }

    /// Runs a daemon that is expected to exit by itself within `limit` (killed otherwise): its
    /// exit status (`None`: it had to be killed) and everything it printed.
    pub fn run_to_exit(
        lab: &Lab,
        pin_dir: &PathBuf,
        env: &[(&str, &str)],
        limit: Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        let db_dir = pin_dir
            .file_name()
            .map(|n| std::env::temp_dir().join(n))
            .expect("pin dir name");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", lab.nas))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_sentinel"))
            .env("MONITOR_IFACE", "eth0")
            .env("BPF_PIN_DIR", pin_dir)
            .env("RUST_LOG", "info")
            .env("DB_PATH", db_dir.join("traffic.db"))
            .env("WEB_BIND", "127.0.0.1")
            .env("WEB_PORT", WEB_PORT.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting the daemon under nsenter");
        let start = Instant::now();
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
        }
        (status, out)
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().expect("waiting for the daemon");
            assert!(status.success(), "daemon exited with {status}");
        }
    }

    /// SIGKILL: no clean-up at all.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn parse_totals(line: &str) -> Option<Totals> {
    let rest = line.strip_prefix("totals ")?;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| v.parse::<u64>().ok().map(|v| (k.to_owned(), v)))
            .collect(),
    )
}

/// A pin directory on the machine's bpffs, unique to this test, removed on drop.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new(test: &str) -> Self {
        Self(PathBuf::from(format!(
            "/sys/fs/bpf/sentinel-test-{}-{test}",
            std::process::id()
        )))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        if let Some(name) = self.0.file_name() {
            let _ = std::fs::remove_dir_all(std::env::temp_dir().join(name));
        }
    }
}

/// Looks up one counter.
pub fn get(t: &Totals, key: &str) -> u64 {
    t.get(key)
        .copied()
        .unwrap_or_else(|| panic!("no {key} in {t:?}"))
}

/// A minimal HTTP/1.1 GET on 127.0.0.1 (in the calling thread's namespace).
pub fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
