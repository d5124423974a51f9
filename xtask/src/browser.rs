//! The browser tier: the dashboard in Debian's headless Chromium against the real daemon.
//!
//! A lab NAS runs the daemon (capture attached, so status is honestly "running") on a database
//! seeded with a year of traffic; the Node test suite in `tests/browser/` drives Chromium from
//! inside the NAS's network namespace, where the daemon listens on 127.0.0.1. Screenshots land in
//! `artifacts/screenshots/`.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use xtask::lab::Lab;

use crate::setup::{self, workspace_root};

/// Debian packages the tier needs: the browser, and CJK fonts for the zh-CN page.
const PACKAGES: &[&str] = &["chromium", "fonts-noto-cjk"];

pub fn browser_tier() -> anyhow::Result<()> {
    setup::apt_install(PACKAGES)?;
    let root = workspace_root();
    let tests = root.join("tests/browser");
    if !tests.join("node_modules/playwright-core").exists() {
        setup::run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&tests),
        )?;
    }
    setup::cargo(&[
        "build",
        "--release",
        "-p",
        "sentinel",
        "--bins",
        "--examples",
    ])?;
    let work = std::env::temp_dir().join(format!("sentinel-browser-{}", std::process::id()));
    let _cleanup = Cleanup(work.clone());
    let db = work.join("traffic.db");
    setup::run(
        Command::new(root.join("target/release/examples/seed_history"))
            .arg(&db)
            .args(["400", "Asia/Shanghai"]),
    )?;

    let lab = Lab::create()?;
    let mut daemon = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", lab.nas))
        .arg("--")
        .arg(root.join("target/release/sentinel"))
        .env("MONITOR_IFACE", "eth0")
        .env("TZ", "Asia/Shanghai")
        .env("DB_PATH", &db)
        .env(
            "BPF_PIN_DIR",
            format!("/sys/fs/bpf/sentinel-browser-{}", std::process::id()),
        )
        .env("WEB_BIND", "127.0.0.1")
        .env("WEB_PORT", "8080")
        .env("PRINT_INTERVAL", "0")
        // The billing card (as the fake server of tests/browser/ shows it).
        .env("QUOTA", "1TB")
        .env("UPLOAD_DAILY_LIMIT", "50GB")
        .env("BILLING_DAY", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .context("starting the daemon")?;
    let result = (|| -> anyhow::Result<()> {
        wait_healthy(&lab)?;
        setup::run(
            Command::new("nsenter")
                .arg(format!("--net=/var/run/netns/{}", lab.nas))
                .args([
                    "--",
                    "node",
                    "--test",
                    "--test-concurrency=1",
                    "core.test.mjs",
                    "dashboard.test.mjs",
                ])
                .env("SENTINEL_URL", "http://127.0.0.1:8080")
                .current_dir(&tests),
        )
    })();
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait()?;
    drop(lab);
    let _ = std::fs::remove_dir_all(format!(
        "/sys/fs/bpf/sentinel-browser-{}",
        std::process::id()
    ));
    result?;
    // The reference-fixture test needs a frozen clock the real daemon does not offer: it runs
    // against the suite's fake server, which serves reference 2.2 exactly.
    setup::run(
        Command::new("node")
            .args([
                "--test",
                "--test-name-pattern=seed fixture",
                "dashboard.test.mjs",
            ])
            .current_dir(&tests),
    )?;
    if !status.success() {
        bail!("the daemon exited with {status}");
    }
    println!(
        "browser: screenshots in {}",
        root.join("artifacts/screenshots").display()
    );
    Ok(())
}

fn wait_healthy(lab: &Lab) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let ok = Lab::in_ns(&lab.nas, || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", 8080))?;
            s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out.starts_with("HTTP/1.1 200"))
        })
        .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the daemon did not become healthy within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if Path::new(&self.0).exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
