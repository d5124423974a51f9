//! Load on the API, shared by `tests/api_load.rs` and `examples/bench_api.rs`:
//! - a store holding a year of hourly traffic and per-day remotes, written through the store's own
//!   path, with the current hour unflushed as in production;
//! - the real server (`api::serve`) on 127.0.0.1:0 in a runtime of its own with two workers, and
//!   beside it, as in the daemon, a capture-like drain that calls `Store::record` (and pushes the
//!   live speed) on a timer and times each call and how late each tick came;
//! - clients speaking minimal HTTP/1.1 with keep-alive, each in the dashboard's request mix
//!   (static/API-CONTRACT.md 4), paced or as fast as answers come.

#![allow(
    dead_code,
    reason = "the load test and the benchmark use different parts"
)]

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use chrono::{Datelike as _, Days, NaiveDate};
use sentinel::{
    api::{self, ApiState, DaemonInfo},
    meter::{SpeedRing, SpeedSample},
    status::{CaptureState, CaptureStatus, SharedStatus},
    store::{Clock, Sample, Store, StoreOptions, SystemClock},
    timebucket::Zone,
};
use sentinel_common::abi::{Counters, RemoteCounters};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
};

/// xorshift64*: small and deterministic, so runs are comparable.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn counters(ip_bytes: u64) -> Counters {
    let packets = ip_bytes / 1200 + 1;
    Counters {
        packets,
        ip_bytes,
        wire_bytes: ip_bytes + packets * 14,
    }
}

/// Remote `i` of a day's list: a pool of 20,000 addresses (a quarter IPv6), `day` shifting which
/// ones a day sees, bytes falling off with rank.
fn remote(day: u64, i: u64) -> (IpAddr, RemoteCounters) {
    let n = (i + day * 37) % 20_000;
    let ip = if n % 4 == 3 {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[8..].copy_from_slice(&n.to_be_bytes());
        IpAddr::from(a)
    } else {
        let v = 0x0B00_0000u32 + n as u32;
        IpAddr::from(v.to_be_bytes())
    };
    let bytes = 2_000_000_000 / (i + 1) + 1000;
    let c = RemoteCounters {
        up_packets: bytes / 4000 + 1,
        up_bytes: bytes / 4,
        down_packets: bytes / 1500 + 1,
        down_bytes: bytes - bytes / 4,
    };
    (ip, c)
}

/// The store under load.
pub struct Year {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub zone: Zone,
    /// Hours written (flushed) and the time it took.
    pub hours: u64,
    pub built: Duration,
}

/// One year of hourly traffic up to the current hour in Asia/Shanghai (system clock), with
/// `remotes_per_day` remotes a day, one flush per day; the current hour and its remotes pending.
/// The writer flushes every `save_interval`.
pub fn build_year(remotes_per_day: u64, save_interval: Duration) -> anyhow::Result<Year> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("temp dir")?;
    let zone = Zone::parse("Asia/Shanghai")?;
    let now = SystemClock.now();
    let today = zone.local_date(now);
    let first = today
        .checked_sub_days(Days::new(365))
        .context("a year ago")?;
    let store = Store::open(
        dir.path().join("traffic.db"),
        zone,
        StoreOptions {
            save_interval,
            ..StoreOptions::default()
        },
    )?;
    let mut rng = Rng::new(42);
    let this_hour = now - now.rem_euclid(3600);
    let mut t = zone.day_start(first);
    let mut hours = 0u64;
    let mut day = u64::MAX;
    let mut day_number = 0u64;
    while t < this_hour {
        let d = zone.local_date(t);
        let new_day = d.num_days_from_ce() as u64 != day;
        if new_day && day != u64::MAX {
            store.flush_now()?;
            day_number += 1;
        }
        day = d.num_days_from_ce() as u64;
        let list: Vec<(IpAddr, RemoteCounters)> = if new_day {
            (0..remotes_per_day)
                .map(|i| remote(day_number, i))
                .collect()
        } else {
            Vec::new()
        };
        store.record(&Sample {
            at: t + 600,
            up: counters(rng.next() % 2_000_000_000),
            down: counters(rng.next() % 8_000_000_000),
            remotes: &list,
            checkpoint: None,
            ..Sample::default()
        });
        hours += 1;
        t += 3600;
    }
    store.flush_now()?;
    // This hour, unflushed.
    let list: Vec<(IpAddr, RemoteCounters)> = (0..remotes_per_day / 4)
        .map(|i| remote(day_number + 1, i))
        .collect();
    store.record(&Sample {
        at: now,
        up: counters(123_456_789),
        down: counters(987_654_321),
        remotes: &list,
        checkpoint: None,
        ..Sample::default()
    });
    Ok(Year {
        dir,
        store: Arc::new(store),
        zone,
        hours,
        built: started.elapsed(),
    })
}

/// The API state over `store`, as the daemon builds it: system clock, capture running.
pub fn state(store: Arc<Store>) -> ApiState {
    let capture: SharedStatus = Arc::new(std::sync::RwLock::new(CaptureStatus {
        backend: "ebpf",
        iface: "eth0".into(),
        ifindex: Some(2),
        attach_mode: Some(sentinel::capture::AttachMode::Tcx),
        state: CaptureState::Running,
        lan_mode: "auto",
        locals: vec!["192.168.1.100".parse().unwrap_or(IpAddr::from([0; 4]))],
        ..CaptureStatus::default()
    }));
    let mut ring = SpeedRing::default();
    let now_ms = SystemClock.now() * 1000;
    for i in 0..120 {
        ring.push(SpeedSample {
            ts_ms: now_ms - (119 - i) * 1000,
            up: 1000 * i as u64,
            down: 5000 * i as u64,
            secs: 1.0,
        });
    }
    ApiState {
        store,
        capture,
        speed: Arc::new(Mutex::new(ring)),
        auth: None,
        allowed_hosts: Arc::new(Vec::new()),
        service_names: Arc::default(),
        info: Arc::new(DaemonInfo {
            version: env!("CARGO_PKG_VERSION"),
            started: Instant::now(),
            started_unix: SystemClock.now(),
            lan_prefix_len: 56,
        }),
        clock: Arc::new(SystemClock),
        billing: Arc::new(sentinel::billing::BillingConfig::default()),
    }
}

/// Which part of a run a drain measurement belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// No clients.
    Idle = 0,
    /// Paced clients.
    Paced = 1,
    /// Clients as fast as answers come.
    Saturated = 2,
    /// Between phases: not recorded.
    Other = 3,
}

/// One drain tick: its phase, how long `record` (store and speed ring) took, how late it ran.
#[derive(Clone, Copy, Debug)]
pub struct DrainTick {
    pub phase: Phase,
    pub record: Duration,
    pub late: Duration,
}

/// The server and the drain beside it.
pub struct Server {
    pub addr: SocketAddr,
    phase: Arc<AtomicU8>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<Vec<DrainTick>>>>,
}

impl Server {
    /// Starts the server for `state` on 127.0.0.1:0 in a two-worker runtime, and a drain every
    /// `drain_period` recording `drain_remotes` remotes per tick (as the daemon's main loop does,
    /// on the runtime's own thread).
    pub fn start(
        state: ApiState,
        drain_period: Duration,
        drain_remotes: u64,
    ) -> anyhow::Result<Server> {
        let phase = Arc::new(AtomicU8::new(Phase::Other as u8));
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let drain_phase = phase.clone();
        let thread = std::thread::Builder::new()
            .name("api-server".into())
            .spawn(move || -> anyhow::Result<Vec<DrainTick>> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    addr_tx.send(listener.local_addr()?)?;
                    let (shutdown, down) = tokio::sync::oneshot::channel::<()>();
                    let web = tokio::spawn(api::serve(
                        listener,
                        api::router(state.clone()),
                        async {
                            let _ = down.await;
                        },
                        api::ServerLimits::default(),
                    ));
                    let mut ticks = Vec::new();
                    let mut interval = tokio::time::interval(drain_period);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut n = 0u64;
                    loop {
                        tokio::select! {
                            scheduled = interval.tick() => {
                                let late = scheduled.into_std().elapsed();
                                let remotes: Vec<(IpAddr, RemoteCounters)> =
                                    (0..drain_remotes).map(|i| remote(1000 + n % 7, i * 13 + n % 13)).collect();
                                n += 1;
                                let t0 = Instant::now();
                                let at = SystemClock.now();
                                state.store.record(&Sample {
                                    at,
                                    up: counters(1_000_000 + n),
                                    down: counters(5_000_000 + n),
                                    remotes: &remotes,
                                    checkpoint: Some(vec![7u8; 96]),
                                    ..Sample::default()
                                });
                                state.speed.lock().unwrap_or_else(|p| p.into_inner()).push(SpeedSample {
                                    ts_ms: at * 1000,
                                    up: 1_000_000,
                                    down: 5_000_000,
                                    secs: drain_period.as_secs_f64(),
                                });
                                // As the daemon's drain does: health wants a recent drain.
                                sentinel::status::update(&state.capture, |c| {
                                    c.last_drain = Some(std::time::SystemTime::now());
                                });
                                let record = t0.elapsed();
                                let phase = match drain_phase.load(Ordering::SeqCst) {
                                    0 => Phase::Idle,
                                    1 => Phase::Paced,
                                    2 => Phase::Saturated,
                                    _ => Phase::Other,
                                };
                                if phase != Phase::Other {
                                    ticks.push(DrainTick { phase, record, late });
                                }
                            }
                            _ = &mut stopped => break,
                        }
                    }
                    let _ = shutdown.send(());
                    web.await??;
                    Ok(ticks)
                })
            })?;
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| anyhow!("the server did not start: {e}"))?;
        Ok(Server {
            addr,
            phase,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Tags the drain's next measurements.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    /// Stops the server and returns the drain's measurements.
    pub fn stop(mut self) -> anyhow::Result<Vec<DrainTick>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("the server thread panicked"))?,
            None => bail!("already stopped"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request of the mix.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: &'static str,
    pub path: String,
    /// Requests per two minutes of one dashboard tab.
    pub weight: u32,
}

/// The dashboard's requests (API-CONTRACT.md 4: per tab and minute, realtime 20, summary, status
/// and health 4 each, today's hours and top IPs 2 each, the histories 0.5 each), plus the date
/// range and the three most used range queries (default 30 days by day, today by hour, this year
/// by month) at the histories' rate.
pub fn dashboard_mix(zone: Zone, now: i64) -> Vec<Endpoint> {
    let today = zone.local_date(now);
    let back = |days: u64| today.checked_sub_days(Days::new(days)).unwrap_or(today);
    let jan1 = NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today);
    let e = |name, path: String, weight| Endpoint { name, path, weight };
    vec![
        e("realtime", "/api/realtime".into(), 40),
        e("summary", "/api/summary".into(), 8),
        e("status", "/api/status".into(), 8),
        e("health", "/api/health".into(), 8),
        e("today_hours", "/api/history/today_hours".into(), 4),
        e("top_ips", "/api/top_ips?limit=10".into(), 4),
        e("30days", "/api/history/30days".into(), 1),
        e("12months", "/api/history/12months".into(), 1),
        e("date_range", "/api/date_range".into(), 1),
        e(
            "query 30d/day",
            format!("/api/query?start={}&end={today}&granularity=day", back(29)),
            1,
        ),
        e(
            "query today/hour",
            format!("/api/query?start={today}&end={today}&granularity=hour"),
            1,
        ),
        e(
            "query year/month",
            format!("/api/query?start={jan1}&end={today}&granularity=month"),
            1,
        ),
    ]
}

/// How the clients behave.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub clients: usize,
    pub duration: Duration,
    /// Each client sends one request per `pace` (a late answer delays the next); `None`: the next
    /// request as soon as the answer is in.
    pub pace: Option<Duration>,
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Per endpoint of the mix: each request's time from sending to the end of the body.
    pub latencies: Vec<Vec<Duration>>,
    pub errors: u64,
    /// The first few errors.
    pub first_errors: Vec<String>,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn requests(&self) -> usize {
        self.latencies.iter().map(Vec::len).sum()
    }
}

/// A keep-alive HTTP/1.1 connection.
struct Conn(BufReader<TcpStream>);

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn(BufReader::new(stream)))
    }

    /// `GET path`: the status and the body.
    async fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: sentinel-load\r\nAccept: */*\r\n\r\n"
        );
        self.0.get_mut().write_all(request.as_bytes()).await?;
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut line = String::new();
        if self.0.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            if self.0.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>().map_err(|_| bad("length"))?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.0.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("chunk"))?;
                let mut chunk = vec![0u8; size + 2];
                self.0.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length.unwrap_or(0), 0);
            self.0.read_exact(&mut body).await?;
        }
        Ok((status, body))
    }
}

/// Runs `plan.clients` clients against `addr` for `plan.duration`.
pub async fn run_clients(addr: SocketAddr, mix: &[Endpoint], plan: Plan) -> LoadReport {
    let mix: Arc<Vec<Endpoint>> = Arc::new(mix.to_vec());
    let total_weight: u64 = mix.iter().map(|e| u64::from(e.weight)).sum();
    let started = tokio::time::Instant::now();
    let deadline = started + plan.duration;
    let mut tasks = Vec::new();
    for client in 0..plan.clients {
        let mix = mix.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(client as u64 + 1);
            let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); mix.len()];
            let (mut errors, mut first_errors) = (0u64, Vec::new());
            let mut conn: Option<Conn> = None;
            // Spread the clients over the first period.
            let mut next = match plan.pace {
                Some(p) => started + p.mul_f64((rng.next() % 1000) as f64 / 1000.0),
                None => started,
            };
            loop {
                if let Some(pace) = plan.pace {
                    tokio::time::sleep_until(next).await;
                    next = next.max(tokio::time::Instant::now() - pace) + pace;
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                let mut pick = rng.next() % total_weight;
                let i = mix
                    .iter()
                    .position(|e| {
                        let w = u64::from(e.weight);
                        if pick < w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .unwrap_or(0);
                let endpoint = &mix[i];
                if conn.is_none() {
                    match Conn::open(addr).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            errors += 1;
                            if first_errors.len() < 5 {
                                first_errors.push(format!("connect: {e}"));
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let t0 = Instant::now();
                let result =
                    tokio::time::timeout(Duration::from_secs(15), c.get(&endpoint.path)).await;
                let took = t0.elapsed();
                let problem = match result {
                    Ok(Ok((200, body))) if body.first() == Some(&b'{') => None,
                    Ok(Ok((status, body))) => Some(format!(
                        "{}: {status} {}",
                        endpoint.path,
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )),
                    Ok(Err(e)) => Some(format!("{}: {e}", endpoint.path)),
                    Err(_) => Some(format!("{}: no answer in 15 s", endpoint.path)),
                };
                match problem {
                    None => latencies[i].push(took),
                    Some(p) => {
                        errors += 1;
                        if first_errors.len() < 5 {
                            first_errors.push(p);
                        }
                        conn = None;
                    }
                }
            }
            (latencies, errors, first_errors)
        }));
    }
    let mut report = LoadReport {
        latencies: vec![Vec::new(); mix.len()],
        ..LoadReport::default()
    };
    for task in tasks {
        match task.await {
            Ok((latencies, errors, first)) => {
                for (all, mine) in report.latencies.iter_mut().zip(latencies) {
                    all.extend(mine);
                }
                report.errors += errors;
                for e in first {
                    if report.first_errors.len() < 10 {
                        report.first_errors.push(e);
                    }
                }
            }
            Err(e) => {
                report.errors += 1;
                report.first_errors.push(format!("client task: {e}"));
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// The `p` quantile (0..=1) of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// A table of requests, p50, p99 and max per endpoint and for all, then requests per second.
/// Returns it and the worst per-endpoint p99.
pub fn table(mix: &[Endpoint], report: &LoadReport) -> (String, f64) {
    let mut out = format!(
        "{:<18} {:>9} {:>9} {:>9} {:>9}\n",
        "endpoint", "requests", "p50 ms", "p99 ms", "max ms"
    );
    let mut all: Vec<Duration> = Vec::new();
    let mut worst = 0.0f64;
    for (e, lat) in mix.iter().zip(&report.latencies) {
        let mut lat = lat.clone();
        lat.sort();
        let p99 = percentile_ms(&lat, 0.99);
        worst = worst.max(p99);
        out.push_str(&format!(
            "{:<18} {:>9} {:>9.2} {:>9.2} {:>9.2}\n",
            e.name,
            lat.len(),
            percentile_ms(&lat, 0.5),
            p99,
            percentile_ms(&lat, 1.0)
        ));
        all.extend(lat);
    }
    all.sort();
    out.push_str(&format!(
        "{:<18} {:>9} {:>9.2} {:>9.2} {:>9.2}\n",
        "all",
        all.len(),
        percentile_ms(&all, 0.5),
        percentile_ms(&all, 0.99),
        percentile_ms(&all, 1.0)
    ));
    out.push_str(&format!(
        "{:.0} requests/s over {:.1} s, {} errors\n",
        all.len() as f64 / report.elapsed.as_secs_f64().max(1e-9),
        report.elapsed.as_secs_f64(),
        report.errors
    ));
    (out, worst)
}

/// p50/p99/max of the drain's `record` time and tick lateness in one phase.
pub fn drain_line(ticks: &[DrainTick], phase: Phase) -> String {
    let mut record: Vec<Duration> = ticks
        .iter()
        .filter(|t| t.phase == phase)
        .map(|t| t.record)
        .collect();
    let mut late: Vec<Duration> = ticks
        .iter()
        .filter(|t| t.phase == phase)
        .map(|t| t.late)
        .collect();
    record.sort();
    late.sort();
    let us = |d: &[Duration], p: f64| percentile_ms(d, p) * 1000.0;
    format!(
        "{:<10} {:>6} ticks  record p50 {:>7.1} us  p99 {:>7.1} us  max {:>7.1} us  |  tick late p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        format!("{phase:?}"),
        record.len(),
        us(&record, 0.5),
        us(&record, 0.99),
        us(&record, 1.0),
        percentile_ms(&late, 0.5),
        percentile_ms(&late, 0.99),
        percentile_ms(&late, 1.0),
    )
}
