//! Shared support for the API tests: a frozen clock, the reference fixture of
//! the reference fixture (docs/compatibility.md) built through the store's own write path, an `ApiState` around
//! it, and requests answered by the router in-process (`tower::ServiceExt::oneshot`, no socket).

#![allow(
    dead_code,
    reason = "each test target uses a different part of the support module"
)]

pub mod load;

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Method, Request, StatusCode},
};
use chrono::{NaiveDateTime, TimeZone as _};
use sentinel::{
    api::{self, ApiState, DaemonInfo, auth::Auth},
    capture::KernelTotals,
    meter::{SpeedRing, SpeedSample},
    status::{CaptureState, CaptureStatus, SharedStatus},
    store::{Clock, Sample, Store, StoreOptions},
    timebucket::Zone,
};
use sentinel_common::abi::{Counters, ErrorKind, RemoteCounters, Verdict, totals_index};
use serde_json::Value;
use tower::ServiceExt as _;

/// The reference fixture's frozen clock: 2025-03-15 14:37:21 in Asia/Shanghai (+08:00).
pub const NOW: i64 = 1_742_020_641;
/// The fixture's zone.
pub const TZ: &str = "Asia/Shanghai";

/// A clock the test sets.
#[derive(Debug, Default)]
pub struct TestClock(pub AtomicI64);

impl TestClock {
    pub fn at(t: i64) -> Arc<TestClock> {
        Arc::new(TestClock(AtomicI64::new(t)))
    }
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn zone(name: &str) -> Zone {
    Zone::parse(name).expect("zone")
}

/// Unix seconds of an unambiguous local time `YYYY-MM-DD HH:MM:SS` in `tz`.
pub fn local(tz: &str, text: &str) -> i64 {
    let tz: chrono_tz::Tz = tz.parse().expect("tz");
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("time");
    tz.from_local_datetime(&naive)
        .single()
        .expect("unambiguous local time")
        .timestamp()
}

/// Counters with `ip_bytes` and plausible packets and wire bytes.
pub fn counters(ip_bytes: u64) -> Counters {
    let packets = ip_bytes.div_ceil(1500);
    Counters {
        packets,
        ip_bytes,
        wire_bytes: ip_bytes + packets * 14,
    }
}

/// Records `up`/`down` IP bytes at `at`, with per-remote traffic.
pub fn record(store: &Store, at: i64, up: u64, down: u64, remotes: &[Remote]) {
    let list: Vec<(IpAddr, RemoteCounters)> = remotes
        .iter()
        .map(|(ip, up, down)| {
            let c = RemoteCounters {
                up_packets: up.div_ceil(1500),
                up_bytes: *up,
                down_packets: down.div_ceil(1500),
                down_bytes: *down,
            };
            (ip.parse().expect("ip"), c)
        })
        .collect();
    store.record(&Sample {
        at,
        up: counters(up),
        down: counters(down),
        remotes: &list,
        checkpoint: None,
        ..Sample::default()
    });
}

/// Store options that flush only on demand, with the given clock.
pub fn options(clock: Arc<TestClock>) -> StoreOptions {
    StoreOptions {
        save_interval: Duration::from_secs(3600),
        clock,
        ..StoreOptions::default()
    }
}

/// A capture status with known counters: every (verdict, family) slot `i` (see
/// [`totals_index`]) holds packets `10 + i`, IP bytes `1000 * (i + 1)`, wire bytes
/// `1000 * (i + 1) + 14 * (10 + i)`; error kind `k` counts `k + 1`; 3 drops.
pub fn capture_status(state: CaptureState) -> CaptureStatus {
    let mut counters = KernelTotals::default();
    for (i, slot) in counters.slots.iter_mut().enumerate() {
        let i = i as u64;
        *slot = Counters {
            packets: 10 + i,
            ip_bytes: 1000 * (i + 1),
            wire_bytes: 1000 * (i + 1) + 14 * (10 + i),
        };
    }
    for (k, e) in counters.errors.iter_mut().enumerate() {
        *e = k as u64 + 1;
    }
    CaptureStatus {
        backend: "ebpf",
        iface: "eth0".into(),
        ifindex: Some(2),
        attach_mode: Some(sentinel::capture::AttachMode::Tcx),
        state,
        program_id: Some(42),
        pin_dir: Some("/sys/fs/bpf/sentinel".into()),
        maps_reused: false,
        counters_survive_restart: true,
        durability_reason: "bpffs was already mounted at the pin directory".into(),
        remotes_in_map: 17,
        remotes_capacity: 65536,
        counters,
        drops: 3,
        last_drain: None,
        locals: [
            "192.168.1.100",
            "240e:33e:2f08:d601::1",
            "240e:33e:2f08:d601:a1b2:c3d4:e5f6:1",
            "fe80::211:32ff:fe12:3456",
        ]
        .iter()
        .map(|a| a.parse().expect("ip"))
        .collect(),
        lan_prefixes: vec!["240e:33e:2f08:d600::/56".parse().expect("prefix")],
        grace_prefixes: Vec::new(),
        lan_mode: "auto",
        reattachments: 0,
        ..CaptureStatus::default()
    }
}

/// The value [`capture_status`] puts in the slot of `verdict` and `family`.
pub fn slot_value(verdict: Verdict, family: u8) -> Counters {
    let i = u64::from(totals_index(verdict, family));
    Counters {
        packets: 10 + i,
        ip_bytes: 1000 * (i + 1),
        wire_bytes: 1000 * (i + 1) + 14 * (10 + i),
    }
}

/// The value [`capture_status`] puts in the counter of `kind`.
pub fn error_value(kind: ErrorKind) -> u64 {
    kind as u64 + 1
}

/// A remote's traffic: address, up bytes, down bytes.
pub type Remote<'a> = (&'a str, u64, u64);

/// A store in a temporary directory with its API state.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub clock: Arc<TestClock>,
    pub capture: SharedStatus,
    pub speed: Arc<Mutex<SpeedRing>>,
    pub state: ApiState,
}

impl Env {
    /// An empty store in `tz` with the clock at `now`, capture running, no auth.
    pub fn empty(tz: &str, now: i64) -> Env {
        Env::with(tz, now, None, |o| o)
    }

    /// Like [`Env::empty`], with auth and adjusted store options.
    pub fn with(
        tz: &str,
        now: i64,
        auth: Option<Auth>,
        adjust: impl FnOnce(StoreOptions) -> StoreOptions,
    ) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = TestClock::at(now);
        let store = Arc::new(
            Store::open(
                dir.path().join("traffic.db"),
                zone(tz),
                adjust(options(clock.clone())),
            )
            .expect("open store"),
        );
        let mut running = capture_status(CaptureState::Running);
        // Drained "just now" by the frozen clock, as a running daemon would have.
        running.last_drain =
            Some(std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(now).unwrap_or(0)));
        let capture: SharedStatus = Arc::new(std::sync::RwLock::new(running));
        let speed = Arc::new(Mutex::new(SpeedRing::default()));
        let state = ApiState {
            store: store.clone(),
            capture: capture.clone(),
            speed: speed.clone(),
            auth,
            allowed_hosts: Arc::new(Vec::new()),
            service_names: Arc::new(
                sentinel::service_names::ServiceNames::parse(&["8096=Jellyfin"]).expect("names"),
            ),
            info: Arc::new(DaemonInfo {
                version: env!("CARGO_PKG_VERSION"),
                started: Instant::now(),
                started_unix: now - 100,
                lan_prefix_len: 56,
            }),
            clock: clock.clone(),
            billing: Arc::new(sentinel::billing::BillingConfig::default()),
        };
        Env {
            dir,
            store,
            clock,
            capture,
            speed,
            state,
        }
    }

    /// The router over this state.
    pub fn router(&self) -> Router {
        api::router(self.state.clone())
    }
}

/// The reference fixture (docs/compatibility.md): the six database rows flushed, the
/// "memory" (14:00 hour and the three speed ticks with their remotes) pending, clock frozen at
/// 2025-03-15 14:37:21 +08:00. One extra remote on 2025-03-14 (flushed) exercises ranges of
/// `/api/top_ips`; remotes carry no totals, so the reference's numbers are unchanged.
pub fn reference_fixture() -> Env {
    reference_fixture_with(None)
}

/// [`reference_fixture`] with auth.
pub fn reference_fixture_with(auth: Option<Auth>) -> Env {
    let env = Env::with(TZ, NOW, auth, |o| o);
    let rows: [(&str, u64, u64); 6] = [
        ("2024-12-31 23:00:00", 7, 9),
        ("2025-02-10 10:00:00", 5_368_709_120, 21_474_836_480),
        ("2025-03-01 08:00:00", 1000, 24000),
        ("2025-03-14 21:00:00", 209_715_200, 1_073_741_824),
        ("2025-03-15 00:00:00", 52_428_800, 314_572_800),
        ("2025-03-15 13:00:00", 1_073_741_824, 4_294_967_296),
    ];
    for (hour, up, down) in rows {
        // Somewhere inside the hour, as a drain would.
        record(&env.store, local(TZ, hour) + 1234, up, down, &[]);
    }
    record(
        &env.store,
        local(TZ, "2025-03-14 21:00:00") + 60,
        0,
        0,
        &[("198.51.100.7", 5000, 7000)],
    );
    env.store.flush_now().expect("flush the database rows");
    // The memory: three drains in the current hour, their remotes, and the speed ring.
    let ticks: [(u64, u64, &[Remote]); 3] = [
        (
            1_048_576,
            11_141_120,
            &[
                ("203.0.113.1", 1_048_576, 10_485_760),
                ("2001:4860:4860::8888", 0, 524_288),
                ("8.8.8.8", 0, 131_072),
            ],
        ),
        (0, 262_144, &[("8.8.8.8", 0, 262_144)]),
        (0, 393_216, &[("8.8.8.8", 0, 393_216)]),
    ];
    let mut speed = env.speed.lock().expect("speed");
    for (i, (up, down, remotes)) in ticks.iter().enumerate() {
        let at = NOW - 3 + i as i64;
        record(&env.store, at, *up, *down, remotes);
        // The reference's three ticks fell within the second 1742020642 (14:37:22).
        speed.push(SpeedSample {
            ts_ms: (NOW + 1) * 1000 + 100 * (i as i64 + 1),
            up: *up,
            down: *down,
            secs: 1.0,
        });
    }
    drop(speed);
    env
}

/// An answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `request` through `router` in-process.
pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("read body");
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.to_vec(),
    }
}

/// A request with headers.
pub fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).expect("request")
}

/// `GET uri`.
pub async fn get(router: &Router, uri: &str) -> Reply {
    send(router, request(Method::GET, uri, &[])).await
}

/// `GET uri`, expecting 200 and JSON.
pub async fn get_json(router: &Router, uri: &str) -> Value {
    let reply = get(router, uri).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "GET {uri}: {:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{uri}"
    );
    reply.json()
}

/// Every GET route of the API, with a valid query where one is needed.
pub const GET_ROUTES: &[&str] = &[
    "/",
    "/static/js/app.js",
    "/static/style.css",
    "/api/summary",
    "/api/query?start=2025-03-13&end=2025-03-15&granularity=day",
    "/api/history/30days",
    "/api/history/12months",
    "/api/history/today_hours",
    "/api/date_range",
    "/api/top_ips",
    "/api/realtime",
    "/api/health",
    "/api/status",
    "/api/debug/local_ips",
    "/metrics",
];
