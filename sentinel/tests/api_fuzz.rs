//! Fuzzing the API's input: thousands of random and adversarial paths and query strings (random
//! bytes percent-encoded, broken escapes, huge and negative numbers, unicode, repeated and empty
//! parameters, very long values) against every endpoint of the reference fixture. The server
//! never answers 5xx, and every answer under `/api/` (and every error anywhere) is JSON.
//!
//! Seeded and bounded: `API_FUZZ_SEED` and `API_FUZZ_CASES` reproduce or extend a run; by default
//! 4,000 cases or 8 seconds, whichever comes first.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod api_support;

use std::{
    io::Read as _,
    time::{Duration, Instant},
};

use api_support::{reference_fixture, send};
use axum::{
    body::Body,
    http::{Method, Request, StatusCode},
};

/// xorshift64*: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const ROUTES: &[&str] = &[
    "/api/query",
    "/api/query",
    "/api/query",
    "/api/top_ips",
    "/api/top_ips",
    "/api/summary",
    "/api/history/30days",
    "/api/history/12months",
    "/api/history/today_hours",
    "/api/date_range",
    "/api/realtime",
    "/api/health",
    "/api/status",
    "/api/debug/local_ips",
    "/metrics",
    "/",
    "/static/js/app.js",
    "/static/index.html",
];

const KEYS: &[&str] = &[
    "start",
    "start",
    "end",
    "end",
    "granularity",
    "format",
    "limit",
    "limit",
    "Start",
    "_",
    "",
    "start[]",
    "end%00",
    "%73tart",
    "granularity ",
    "\u{e9}",
];

const WORDS: &[&str] = &[
    "2025-03-15",
    "2025-03-14",
    "2025-02-15",
    "2024-02-29",
    "1970-01-01",
    "9999-12-30",
    "9999-12-31",
    "0000-00-00",
    "2025-3-1",
    "2025-03- 5",
    "2024-02-30",
    "2025-13-01",
    "+2025-03-01",
    "2025-03-01T00:00:00Z",
    "hour",
    "day",
    "month",
    "week",
    "csv",
    "json",
    "0",
    "1",
    "100",
    "101",
    "-1",
    "18446744073709551616",
    "-9223372036854775809",
    "99999999999999999999999999999999999999",
    "1e309",
    "NaN",
    "inf",
    "0x10",
    "null",
    "true",
    "[]",
    "{}",
    "\"",
    "'",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "%",
    "%z",
    "%%",
    "%0",
    "%ff%fe",
    "%00",
    "%e2%82",
    "+",
    "=",
    "==",
    "&",
    ";",
    "日期",
    "٢٠٢٥-٠٣-٠١",
    "２０２５-０３-１５",
    "🙂",
    "\u{202e}2025-03-15",
    "",
];

/// Percent-encodes everything but unreserved characters.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
            out.push(*b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Keeps characters a URI may carry as they are and encodes the rest (so broken escapes like
/// `%z` and separators like `&` reach the server raw).
fn raw_or_encoded(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_graphic() && !"#\"<>\\^`{|}".contains(c) {
            out.push(c);
        } else {
            out.push_str(&encode(c.to_string().as_bytes()));
        }
    }
    out
}

fn value(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => {
            // Random bytes, encoded (invalid UTF-8 included).
            let n = rng.below(40);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            encode(&bytes)
        }
        1 => {
            // A very long value.
            let n = 1 + rng.below(20_000);
            let c = *rng.pick(&["9", "a", "%41", "-", "%ff"]);
            c.repeat(n)
        }
        2 => {
            // A random date-shaped value, possibly out of range or impossible.
            format!(
                "{:04}-{:02}-{:02}",
                rng.below(10_000),
                rng.below(14),
                rng.below(33)
            )
        }
        3 => {
            // A random number.
            let n = rng.next();
            match rng.below(3) {
                0 => n.to_string(),
                1 => format!("-{n}"),
                _ => format!("{n}{n}"),
            }
        }
        4 => encode(rng.pick(WORDS).as_bytes()),
        _ => raw_or_encoded(rng.pick::<&str>(WORDS)),
    }
}

fn key(rng: &mut Rng) -> String {
    if rng.chance(5) {
        let n = rng.below(12);
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        return encode(&bytes);
    }
    raw_or_encoded(rng.pick::<&str>(KEYS))
}

fn query(rng: &mut Rng) -> String {
    let mut parts = Vec::new();
    let n = rng.below(7);
    for _ in 0..n {
        let k = key(rng);
        parts.push(match rng.below(12) {
            0 => k,               // no `=`
            1 => format!("{k}="), // empty value
            2 => format!("={}", value(rng)),
            _ => format!("{k}={}", value(rng)),
        });
        if rng.chance(10) {
            // The same parameter again.
            let again = parts.last().cloned().unwrap_or_default();
            parts.push(again);
        }
    }
    let sep = *rng.pick(&["&", "&", "&", "&&", ";", "&amp;"]);
    parts.join(sep)
}

fn path(rng: &mut Rng) -> String {
    let base = *rng.pick(ROUTES);
    match rng.below(24) {
        0 => format!("{base}/"),
        1 => format!("/{base}"),
        2 => base.to_uppercase(),
        3 => format!("{base}/{}", encode(&[rng.next() as u8, rng.next() as u8])),
        4 => format!("/static/{}", value(rng)),
        5 => format!("/api/{}", value(rng)),
        6 => format!("{base}{}", "/x".repeat(rng.below(3000))),
        7 => format!(
            "/static/%2e%2e/{}",
            rng.pick(&["Cargo.toml", "..", "%2e%2e/etc/passwd"])
        ),
        _ => base.to_owned(),
    }
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[tokio::test]
async fn no_input_gets_a_5xx_and_every_api_answer_is_json() {
    let env = reference_fixture();
    let router = env.router();
    let seed: u64 = std::env::var("API_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2025_0315);
    let cases: usize = std::env::var("API_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    let budget = if std::env::var("API_FUZZ_CASES").is_ok() {
        Duration::MAX
    } else {
        Duration::from_secs(8)
    };
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let started = Instant::now();
    let (mut done, mut unbuildable) = (0usize, 0usize);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    while done < cases && started.elapsed() < budget {
        let path = path(&mut rng);
        let q = query(&mut rng);
        let uri = if q.is_empty() && rng.chance(50) {
            path.clone()
        } else {
            format!("{path}?{q}")
        };
        let method = if rng.chance(10) {
            Method::HEAD
        } else {
            Method::GET
        };
        let mut builder = Request::builder().method(method.clone()).uri(&uri);
        if rng.chance(20) {
            builder = builder.header("accept-encoding", "gzip");
        }
        if rng.chance(5) {
            builder = builder.header("if-none-match", value(&mut rng));
        }
        let Ok(request) = builder.body(Body::empty()) else {
            // Not a URI a client could send (the server never sees it).
            unbuildable += 1;
            continue;
        };
        done += 1;
        let r = send(&router, request).await;
        *statuses.entry(r.status.as_u16()).or_default() += 1;
        let shown: String = uri.chars().take(300).collect();
        assert!(
            !r.status.is_server_error(),
            "seed {seed}: {method} {shown} -> {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if method == Method::HEAD || r.status == StatusCode::NOT_MODIFIED {
            assert!(r.body.is_empty(), "{method} {shown}: a body");
            continue;
        }
        let body = if r.header("content-encoding") == Some("gzip") {
            gunzip(&r.body)
        } else {
            r.body.clone()
        };
        let request_path = uri.split('?').next().unwrap_or_default();
        let not_json_ok = r.status.is_success() || r.status.is_redirection();
        let is_file_or_metrics = request_path == "/"
            || request_path.starts_with("/static/")
            || request_path == "/metrics";
        let is_csv = r.header("content-type") == Some("text/csv; charset=utf-8");
        if not_json_ok && (is_file_or_metrics || is_csv) {
            if is_csv {
                assert_eq!(request_path, "/api/query", "{shown}");
            }
            continue;
        }
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "seed {seed}: {shown} -> {}",
            r.status
        );
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body);
        assert!(
            parsed.is_ok(),
            "seed {seed}: {shown} -> {} not JSON: {:?}",
            r.status,
            String::from_utf8_lossy(&body)
        );
        if r.status.is_client_error() {
            assert!(
                parsed.is_ok_and(|v| v["error"].is_string()),
                "seed {seed}: {shown}: an error without `error`"
            );
        }
    }
    println!(
        "api fuzz: {done} requests in {:.1?} (seed {seed}, {unbuildable} unbuildable URIs skipped); statuses {statuses:?}",
        started.elapsed()
    );
    assert!(done >= 1000, "only {done} cases ran in the time budget");
    assert!(
        unbuildable * 10 < done,
        "{unbuildable} of the generated URIs were not URIs"
    );
    // The generator reaches both answers and refusals.
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > done / 20,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > done / 20,
        "{statuses:?}"
    );
    assert!(statuses.get(&404).copied().unwrap_or(0) > 0, "{statuses:?}");
}
