//! Storage benchmark: builds a database through the store's own write path (10 years of hourly
//! rows, then one year of per-day remotes with 50,000 distinct remotes a day), then prints the
//! p50/p99 latency of every API query (with unflushed data pending, as in production) and the
//! database's size per year.
//!
//! `cargo run --release -p sentinel --example bench_store -- [--quick] [--top N] [--keep DIR]`
//! `--quick` uses small sizes so CI can smoke-test it in seconds. Goals: every p99 under 20 ms;
//! under 50 MB per year with the remote workload.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{Days, NaiveDate};
use sentinel::{
    store::{Clock, Granularity, Sample, Store, StoreOptions},
    timebucket::Zone,
};
use sentinel_common::abi::{Counters, RemoteCounters};

#[derive(Debug)]
struct BenchClock(AtomicI64);

impl Clock for BenchClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct Plan {
    years: i64,
    remote_days: i64,
    remotes_per_day: u32,
    runs: usize,
    top: u32,
}

/// A small deterministic generator (xorshift64*), so that runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn counters(ip_bytes: u64) -> Counters {
    Counters {
        packets: ip_bytes / 1200 + 1,
        ip_bytes,
        wire_bytes: ip_bytes + (ip_bytes / 1200 + 1) * 14,
    }
}

/// Remote `i` of `day`: 2% are the same every day (CDNs, DNS), the rest new each day; one in four is
/// IPv6. Bytes fall off like a Zipf law with rank.
fn remote(day: i64, i: u32) -> (IpAddr, RemoteCounters) {
    let seed = if i < 1000 {
        u64::from(i)
    } else {
        (day as u64) << 32 | u64::from(i)
    };
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let r = rng.next();
    let ip = if i % 4 == 3 {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&0x2001_0db8_0000_0000u64.to_be_bytes());
        a[8..].copy_from_slice(&r.to_be_bytes());
        IpAddr::from(a)
    } else {
        let v = (r as u32) | 0x0100_0000;
        IpAddr::from(v.to_be_bytes())
    };
    let bytes = 2_000_000_000 / (u64::from(i) + 1) + rng.next() % 1000;
    let c = RemoteCounters {
        up_packets: bytes / 4000 + 1,
        up_bytes: bytes / 4,
        down_packets: bytes / 1500 + 1,
        down_bytes: bytes - bytes / 4,
    };
    (ip, c)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn file_mb(path: &std::path::Path) -> f64 {
    let mut total = 0u64;
    for suffix in ["", "-wal"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(m) = std::fs::metadata(&p) {
            total += m.len();
        }
    }
    total as f64 / 1_048_576.0
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mut plan = if quick {
        Plan {
            years: 1,
            remote_days: 3,
            remotes_per_day: 2000,
            runs: 30,
            top: 1000,
        }
    } else {
        Plan {
            years: 10,
            remote_days: 365,
            remotes_per_day: 50_000,
            runs: 200,
            top: 1000,
        }
    };
    if let Some(top) = value("--top") {
        plan.top = top.parse().context("--top N")?;
    }
    if let Some(unknown) = args
        .iter()
        .find(|a| a.starts_with("--") && !["--quick", "--top", "--keep"].contains(&a.as_str()))
    {
        bail!("unknown flag {unknown}; usage: bench_store [--quick] [--top N] [--keep DIR]");
    }
    let tmp = tempfile::tempdir().context("temp dir")?;
    let dir = value("--keep").map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    std::fs::create_dir_all(&dir).context("bench dir")?;
    let path = dir.join("bench.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }

    let zone = Zone::parse("Asia/Shanghai")?;
    let last_day = NaiveDate::from_ymd_opt(2025, 12, 31).context("date")?;
    let first_day = last_day
        .checked_sub_days(Days::new((plan.years * 365 + plan.years / 4) as u64 - 1))
        .context("date")?;
    let start = zone.day_start(first_day);
    let end = zone.day_start(last_day) + 20 * 3600; // "now": 20:00 on the last day
    let clock = Arc::new(BenchClock(AtomicI64::new(start)));
    let options = StoreOptions {
        save_interval: Duration::from_secs(3600),
        top_remotes_per_day: plan.top,
        remotes_retention_days: 400,
        clock: clock.clone(),
        ..StoreOptions::default()
    };
    println!(
        "bench_store: {} years of hourly rows, {} days x {} remotes (top {} kept per day), zone {zone}",
        plan.years, plan.remote_days, plan.remotes_per_day, plan.top
    );

    // Phase 1: hourly history, flushed once a simulated day.
    let built = Instant::now();
    let store = Store::open(&path, zone, options.clone())?;
    let mut rng = Rng(42);
    let mut t = start;
    let mut hours = 0u64;
    while t < end {
        clock.0.store(t, Ordering::SeqCst);
        store.record(&Sample {
            at: t,
            up: counters(rng.next() % 2_000_000_000),
            down: counters(rng.next() % 8_000_000_000),
            ..Sample::default()
        });
        hours += 1;
        if hours.is_multiple_of(24) {
            store.flush_now()?;
        }
        t += 3600;
    }
    store.flush_now()?;
    store.close()?;
    let hourly_mb = file_mb(&path);
    println!(
        "phase 1: {hours} hours written in {:.1} s; file {hourly_mb:.2} MB",
        built.elapsed().as_secs_f64()
    );

    // Phase 2: per-day remotes for the last `remote_days` days, four flushes a day.
    let built = Instant::now();
    let store = Store::open(&path, zone, options.clone())?;
    let first_remote_day = last_day
        .checked_sub_days(Days::new(plan.remote_days as u64 - 1))
        .context("date")?;
    for (n, day) in first_remote_day
        .iter_days()
        .take(plan.remote_days as usize)
        .enumerate()
    {
        let day_start = zone.day_start(day);
        let chunk = plan.remotes_per_day.div_ceil(4);
        for part in 0..4u32 {
            let at = day_start + i64::from(part) * 6 * 3600 + 3600;
            clock.0.store(at, Ordering::SeqCst);
            let list: Vec<(IpAddr, RemoteCounters)> = (part * chunk
                ..((part + 1) * chunk).min(plan.remotes_per_day))
                .map(|i| remote(n as i64, i))
                .collect();
            store.record(&Sample {
                at,
                remotes: &list,
                ..Sample::default()
            });
            store.flush_now()?;
        }
    }
    clock.0.store(end, Ordering::SeqCst);
    store.close()?;
    let total_mb = file_mb(&path);
    let remote_mb = total_mb - hourly_mb;
    println!(
        "phase 2: {} remote-days written in {:.1} s; file {total_mb:.2} MB",
        plan.remote_days,
        built.elapsed().as_secs_f64()
    );

    let store = Store::open(&path, zone, options)?;
    // Unflushed data, as in production between two flushes: this hour and 5,000 remotes.
    let pending: Vec<(IpAddr, RemoteCounters)> =
        (0..5000).map(|i| remote(plan.remote_days + 7, i)).collect();
    store.record(&Sample {
        at: end,
        up: counters(12345),
        down: counters(67890),
        remotes: &pending,
        ..Sample::default()
    });

    let today = zone.local_date(end);
    let back = |days: u64| today.checked_sub_days(Days::new(days)).unwrap_or(today);
    // The costliest top range: 30 days before the first whole month and 30 after the last one.
    let worst_to = today.pred_opt().unwrap_or(today);
    let worst_from = back(363).max(first_remote_day);
    type Query<'a> = (&'static str, Box<dyn Fn() -> anyhow::Result<usize> + 'a>);
    let s = &store;
    let queries: Vec<Query<'_>> = vec![
        (
            "summary (today/month/year)",
            Box::new(move || Ok(s.summary(end).map(|_| 1)?)),
        ),
        (
            "today's hours",
            Box::new(move || Ok(s.today_hours(end)?.points.len())),
        ),
        (
            "last 30 days",
            Box::new(move || Ok(s.last_30_days(end)?.points.len())),
        ),
        (
            "last 12 months",
            Box::new(move || Ok(s.last_12_months(end)?.points.len())),
        ),
        (
            "date range",
            Box::new(move || Ok(s.date_range(end).map(|_| 1)?)),
        ),
        (
            "range hour, 93 days (max)",
            Box::new(move || Ok(s.series(back(92), today, Granularity::Hour)?.points.len())),
        ),
        (
            "range day, 1830 days (max)",
            Box::new(move || Ok(s.series(back(1829), today, Granularity::Day)?.points.len())),
        ),
        (
            "range month, 3660 days (max)",
            Box::new(move || {
                Ok(s.series(back(3659), today, Granularity::Month)?
                    .points
                    .len())
            }),
        ),
        (
            "top 10 remotes, today",
            Box::new(move || Ok(s.top_remotes(today, today, 10)?.remotes.len())),
        ),
        (
            "top 10 remotes, 30 days",
            Box::new(move || Ok(s.top_remotes(back(29), today, 10)?.remotes.len())),
        ),
        (
            "top 100 remotes, 366 days (max)",
            Box::new(move || Ok(s.top_remotes(back(365), today, 100)?.remotes.len())),
        ),
        (
            "top 100, 363 days, 60 days unrolled",
            Box::new(move || Ok(s.top_remotes(worst_from, worst_to, 100)?.remotes.len())),
        ),
    ];
    println!();
    println!(
        "{:<34} {:>7} {:>9} {:>9} {:>9}",
        "query", "points", "p50 ms", "p99 ms", "max ms"
    );
    let mut worst = 0.0f64;
    for (name, run) in &queries {
        let mut times = Vec::with_capacity(plan.runs);
        let mut points = 0;
        for _ in 0..plan.runs {
            let t0 = Instant::now();
            points = run()?;
            times.push(t0.elapsed());
        }
        times.sort();
        let p99 = percentile(&times, 0.99);
        worst = worst.max(p99);
        println!(
            "{name:<34} {points:>7} {:>9.2} {p99:>9.2} {:>9.2}",
            percentile(&times, 0.5),
            percentile(&times, 1.0)
        );
    }
    let years = plan.years as f64;
    let hourly_per_year = hourly_mb / years;
    let remotes_per_year = remote_mb * 365.0 / plan.remote_days as f64;
    println!();
    println!("database file                      {total_mb:>9.2} MB");
    println!("hourly rows per year               {hourly_per_year:>9.2} MB");
    println!(
        "remotes per year                   {remotes_per_year:>9.2} MB  ({} remotes/day, top {} kept)",
        plan.remotes_per_day, plan.top
    );
    println!(
        "total per year                     {:>9.2} MB  (goal: < 50){}",
        hourly_per_year + remotes_per_year,
        if quick {
            "; --quick sizes are dominated by the open day and not representative"
        } else {
            ""
        }
    );
    println!("worst p99                          {worst:>9.2} ms  (goal: < 20)");
    drop(queries);
    store.close()?;
    Ok(())
}
