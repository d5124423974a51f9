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
}

impl Daemon {
    /// Starts the daemon on the lab NAS's eth0 with extra environment variables.
    pub fn start(lab: &Lab, pin_dir: &PathBuf, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", lab.nas))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_sentinel"))
            .env("MONITOR_IFACE", "eth0")
            .env("PRINT_INTERVAL", "1")
            .env("BPF_PIN_DIR", pin_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
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
        };
        d.wait_for("the first totals line", Duration::from_secs(15), |_| true);
        d
    }

    /// The latest totals.
    pub fn totals(&self) -> Option<Totals> {
        self.last.lock().expect("lock").clone()
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
    }
}

/// Looks up one counter.
pub fn get(t: &Totals, key: &str) -> u64 {
    t.get(key)
        .copied()
        .unwrap_or_else(|| panic!("no {key} in {t:?}"))
}
