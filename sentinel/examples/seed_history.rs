//! Fills a history database with plausible traffic (a daily rhythm, weekends busier, a few
//! dozen remotes a day) for the browser tests, screenshots and demos:
//! `seed_history <db path> [days] [TZ]`. Deterministic: the same arguments give the same data.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

use std::{net::IpAddr, sync::Arc};

use anyhow::Context as _;
use sentinel::{
    store::{Sample, Store, StoreOptions, SystemClock},
    timebucket::Zone,
};
use sentinel_common::abi::{Counters, ROLE_CLIENT, ROLE_SERVER, RemoteCounters, ServiceKey};

/// Services of the seeded history: (protocol, port, role, share of the hour). The shares add up
/// to 0.7, at most 0.91 with their jitter (x0.7 to x1.3): the services never exceed the hour.
const SEED_SERVICES: [(u8, u16, u8, f64); 6] = [
    (6, 32400, ROLE_SERVER, 0.25),
    (6, 443, ROLE_CLIENT, 0.18),
    (17, 51413, ROLE_SERVER, 0.12),
    (6, 6690, ROLE_SERVER, 0.07),
    (17, 51820, ROLE_SERVER, 0.05),
    (17, 443, ROLE_CLIENT, 0.03),
];

/// A small deterministic generator (xorshift), so runs repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let db = args
        .next()
        .context("usage: seed_history <db path> [days] [TZ]")?;
    let days: i64 = args.next().map(|d| d.parse()).transpose()?.unwrap_or(400);
    let zone = Zone::parse(&args.next().unwrap_or_else(|| "Asia/Shanghai".into()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::open(
        &db,
        zone,
        StoreOptions {
            clock: Arc::new(SystemClock),
            ..StoreOptions::default()
        },
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let first_hour = (now - days * 86_400) / 3600 * 3600;
    let remotes: Vec<IpAddr> = (1..=40u8)
        .map(|i| {
            if i % 4 == 0 {
                format!("2001:db8:{i:x}::1")
            } else {
                format!("203.0.113.{i}")
            }
        })
        .map(|s| s.parse().context("remote address"))
        .collect::<Result<_, _>>()?;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut hour = first_hour;
    let mut n = 0;
    while hour + 3600 <= now {
        let local_hour = (zone.local_seconds(hour).rem_euclid(86_400) / 3600) as f64;
        // Quiet at night, busy in the evening; a weekly rhythm on top.
        let daily =
            0.15 + 0.85 * (((local_hour - 20.0) / 24.0 * std::f64::consts::TAU).cos() * 0.5 + 0.5);
        let weekly = if (hour / 86_400 + 4) % 7 >= 5 {
            1.4
        } else {
            1.0
        };
        let down = (daily * weekly * (40.0 + 160.0 * rng.unit()) * 1_048_576.0) as u64;
        let up = (down as f64 * (0.08 + 0.3 * rng.unit())) as u64;
        let mut per_remote = Vec::new();
        for _ in 0..3 {
            let ip = remotes[(rng.next() % remotes.len() as u64) as usize];
            let share = rng.unit() * 0.3;
            per_remote.push((
                ip,
                RemoteCounters {
                    up_bytes: (up as f64 * share) as u64,
                    up_packets: (up as f64 * share / 1200.0) as u64,
                    down_bytes: (down as f64 * share) as u64,
                    down_packets: (down as f64 * share / 1400.0) as u64,
                },
            ));
        }
        // The same hour split over a few services (what the NAS serves and what it fetches);
        // the rest stays "other".
        let mut per_service = Vec::new();
        for (proto, port, role, share) in SEED_SERVICES {
            let share = share * (0.7 + 0.6 * rng.unit());
            per_service.push((
                ServiceKey { port, proto, role },
                RemoteCounters {
                    up_bytes: (up as f64 * share) as u64,
                    up_packets: (up as f64 * share / 1200.0) as u64,
                    down_bytes: (down as f64 * share) as u64,
                    down_packets: (down as f64 * share / 1400.0) as u64,
                },
            ));
        }
        let counters = |bytes: u64| Counters {
            packets: bytes / 1300,
            ip_bytes: bytes,
            wire_bytes: bytes + bytes / 1300 * 14,
        };
        store.record(&Sample {
            at: hour + 1800,
            up: counters(up),
            down: counters(down),
            remotes: &per_remote,
            services: &per_service,
            checkpoint: None,
            ..Sample::default()
        });
        n += 1;
        if n % 2000 == 0 {
            store.flush_now()?;
        }
        hour += 3600;
    }
    let report = store.close()?;
    println!("seeded {n} hours into {db} ({report:?})");
    Ok(())
}
