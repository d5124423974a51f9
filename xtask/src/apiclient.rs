//! A small client for the daemon's HTTP API inside a lab namespace, for the tiers that run the
//! real binary (container, vm): status, totals from the history API, bounded waits. It knows
//! the API's paths and CSV columns, nothing of the daemon's internals.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use xtask::lab::Lab;

/// The daemon's port in the lab (the default `WEB_PORT`).
pub const WEB_PORT: u16 = 8080;

/// Waits (bounded) until the dashboard's API answers in the NAS namespace.
pub fn wait_api(ns: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if http_get(ns, "/api/summary").is_ok_and(|(s, _)| s == 200) {
            println!("api: up after {:.1?}", start.elapsed());
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the API did not answer within 60 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits (bounded) until the API's totals are `expected`; fails with the last ones seen.
pub fn wait_totals(ns: &str, expected: (u64, u64), what: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(30) {
        last = totals(ns).ok();
        if last == Some(expected) {
            println!("api: totals exact {what}: {expected:?}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("totals {what}: expected (up, down) {expected:?}, the API says {last:?}")
}

/// (up, down) IP bytes from the history API: yesterday and today, stored and pending.
pub fn totals(ns: &str) -> anyhow::Result<(u64, u64)> {
    let (_, summary) = http_get(ns, "/api/summary")?;
    let today = summary
        .split_once("\"today_date\":\"")
        .and_then(|(_, rest)| rest.get(..10))
        .context("no today_date in /api/summary")?
        .to_owned();
    let (status, csv) = http_get(
        ns,
        &format!("/api/query?start={today}&end={today}&granularity=day&format=csv"),
    )?;
    if status != 200 {
        bail!("/api/query: {status} {csv}");
    }
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(up), Some(down)) = (col("up_bytes"), col("down_bytes")) else {
        bail!("no up_bytes/down_bytes in the CSV header {header:?}");
    };
    let mut sum = (0, 0);
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        sum.0 += cells
            .get(up)
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        sum.1 += cells
            .get(down)
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(sum)
}

/// `GET path` on the daemon in namespace `ns` (HTTP/1.0: the answer is never chunked).
pub fn http_get(ns: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let path = path.to_owned();
    Lab::in_ns(ns, move || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", WEB_PORT))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_owned()))
    })
}
