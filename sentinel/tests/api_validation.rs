//! Strict parameters and HTTP hygiene (reference 7.4/7.5 fixed): dates exactly `YYYY-MM-DD`,
//! `start > end`, unknown granularity and oversized ranges answered 400 with a JSON error that
//! says what is wrong; unknown parameters and bad `limit`s refused; 404/405 as JSON; HEAD on every
//! GET route; security headers everywhere; static files with ETag/304 and gzip.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod api_support;

use std::io::Read as _;

use api_support::{GET_ROUTES, NOW, TZ, get, reference_fixture, request, send};
use axum::{
    Router,
    http::{Method, StatusCode},
};
use serde_json::Value;

/// `GET uri`, expecting a 400 with a JSON error; returns the message.
async fn bad_request(router: &Router, uri: &str) -> String {
    let r = get(router, uri).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "GET {uri}: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{uri}");
    let v = r.json();
    let obj = v.as_object().expect("object");
    assert_eq!(obj.len(), 1, "only `error`: {v}");
    let message = v["error"].as_str().expect("error is a string").to_owned();
    assert!(!message.is_empty());
    message
}

/// `GET uri`, expecting 200 JSON.
async fn ok(router: &Router, uri: &str) -> Value {
    api_support::get_json(router, uri).await
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn dates_must_be_exactly_yyyy_mm_dd_and_exist() {
    let env = reference_fixture();
    let router = env.router();
    let bad = [
        "2025-3-1",
        "2025-03- 5",
        "2025-03-5",
        " 2025-03-05",
        "2025-03-05 ",
        "2024-02-30",
        "2025-02-29",
        "2024-13-01",
        "2024-00-10",
        "2024-01-00",
        "20250301",
        "2025/03/01",
        "2025-03-011",
        "12025-03-01",
        "+2025-03-01",
        "-2025-03-01",
        "2025-03-01T00:00:00",
        "٢٠٢٥-٠٣-٠١",
        "２０２５-０３-０１",
        "x",
        "",
    ];
    for date in bad {
        for uri in [
            format!("/api/query?start={}&end=2025-03-15", enc(date)),
            format!("/api/query?start=2025-03-01&end={}", enc(date)),
            format!("/api/top_ips?start={}", enc(date)),
            format!("/api/top_ips?start=2025-03-01&end={}", enc(date)),
        ] {
            let message = bad_request(&router, &uri).await;
            assert!(message.contains("YYYY-MM-DD"), "{uri}: {message}");
        }
    }
    // Real days at the edges are fine: a leap day, the first and last days served.
    ok(&router, "/api/query?start=2024-02-29&end=2024-02-29").await;
    let v = ok(&router, "/api/query?start=1970-01-01&end=1970-01-02").await;
    assert_eq!(v["series"].as_array().map(Vec::len), Some(2));
    // The seed answered `end=9999-12-31` with a 500 (OverflowError); ours is a 400 saying the
    // supported span, at every granularity, while the day before still works.
    for g in ["day", "hour", "month"] {
        let message = bad_request(
            &router,
            &format!("/api/query?start=9999-12-31&end=9999-12-31&granularity={g}"),
        )
        .await;
        assert!(message.contains("9999-12-30"), "{g}: {message}");
        let v = ok(
            &router,
            &format!("/api/query?start=9999-12-30&end=9999-12-30&granularity={g}"),
        )
        .await;
        let n = v["series"].as_array().map_or(0, Vec::len);
        assert_eq!(n, if g == "hour" { 24 } else { 1 }, "{g}");
    }
    let message = bad_request(&router, "/api/query?start=0001-01-01&end=0001-01-02").await;
    assert!(message.contains("1970-01-01"), "{message}");
    bad_request(&router, "/api/top_ips?start=9999-12-31&end=9999-12-31").await;
}

#[tokio::test]
async fn start_and_end_are_required_and_ordered() {
    let env = reference_fixture();
    let router = env.router();
    for uri in [
        "/api/query",
        "/api/query?start=2025-03-01",
        "/api/query?end=2025-03-01",
        "/api/query?granularity=day",
    ] {
        let message = bad_request(&router, uri).await;
        assert_eq!(message, "start and end are required", "{uri}");
    }
    // Empty values are malformed dates (the seed: "start and end are required").
    bad_request(&router, "/api/query?start=&end=").await;
    // The seed answered `start > end` with 200 and an empty series.
    for uri in [
        "/api/query?start=2025-03-15&end=2025-03-14",
        "/api/query?start=2025-03-15&end=2025-03-14&granularity=hour",
        "/api/query?start=2025-03-15&end=2025-01-14&granularity=month",
        "/api/top_ips?start=2025-03-15&end=2025-03-14",
    ] {
        let message = bad_request(&router, uri).await;
        assert!(
            message.contains("2025-03-15") && message.contains("after"),
            "{uri}: {message}"
        );
    }
}

#[tokio::test]
async fn granularity_and_format_are_checked() {
    let env = reference_fixture();
    let router = env.router();
    // The seed silently used `day` for anything else (D30).
    for g in ["week", "", "Day", "HOUR", "days", "day ", "0"] {
        let message = bad_request(
            &router,
            &format!(
                "/api/query?start=2025-03-01&end=2025-03-02&granularity={}",
                enc(g)
            ),
        )
        .await;
        assert!(message.contains("granularity"), "{g:?}: {message}");
    }
    for f in ["xml", "", "CSV", "tsv"] {
        let message = bad_request(
            &router,
            &format!(
                "/api/query?start=2025-03-01&end=2025-03-02&format={}",
                enc(f)
            ),
        )
        .await;
        assert!(message.contains("format"), "{f:?}: {message}");
    }
    let r = get(
        &router,
        "/api/query?start=2025-03-01&end=2025-03-02&format=json",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn oversized_ranges_are_refused_with_the_limit() {
    let env = reference_fixture();
    let router = env.router();
    // (granularity, longest accepted range in days)
    for (g, max) in [("hour", 93), ("day", 1830), ("month", 3660)] {
        let end = chrono::NaiveDate::from_ymd_opt(2025, 3, 15).expect("date");
        let start_ok = end - chrono::Days::new(max - 1);
        let start_bad = end - chrono::Days::new(max);
        let v = ok(
            &router,
            &format!("/api/query?start={start_ok}&end={end}&granularity={g}"),
        )
        .await;
        assert!(!v["series"].as_array().expect("series").is_empty());
        let message = bad_request(
            &router,
            &format!("/api/query?start={start_bad}&end={end}&granularity={g}"),
        )
        .await;
        assert!(
            message.contains(&format!("at most {max}")) && message.contains(&(max + 1).to_string()),
            "{g}: {message}"
        );
    }
    // The seed produced 4.7 MB for two centuries; ours refuses.
    bad_request(&router, "/api/query?start=1970-01-01&end=2100-12-31").await;
    // Top remotes: a year at most.
    ok(&router, "/api/top_ips?start=2024-03-15&end=2025-03-15").await;
    let message = bad_request(&router, "/api/top_ips?start=2024-03-14&end=2025-03-15").await;
    assert!(message.contains("at most 366"), "{message}");
}

#[tokio::test]
async fn unknown_parameters_are_refused_where_parameters_mean_something() {
    let env = reference_fixture();
    let router = env.router();
    for uri in [
        "/api/query?start=2025-03-01&end=2025-03-02&granularty=hour",
        "/api/query?start=2025-03-01&end=2025-03-02&Start=2025-03-01",
        "/api/query?start=2025-03-01&end=2025-03-02&=x",
        "/api/top_ips?limt=5",
        "/api/top_ips?date=2025-03-15",
    ] {
        let message = bad_request(&router, uri).await;
        assert!(message.contains("unknown parameter"), "{uri}: {message}");
    }
    // A parameter given twice is ambiguous (which one counts?), even with the same value.
    for uri in [
        "/api/query?start=2025-03-01&end=2025-03-02&start=2025-03-02",
        "/api/query?start=2025-03-01&end=2025-03-02&end=2025-03-02",
        "/api/query?start=2025-03-01&end=2025-03-02&granularity=day&granularity=hour",
        "/api/top_ips?limit=5&limit=5",
    ] {
        let message = bad_request(&router, uri).await;
        assert!(message.contains("more than once"), "{uri}: {message}");
    }
    // Endpoints that take no parameters ignore them, as the seed's did (cache busters such as
    // `?_=123` keep working).
    for uri in [
        "/api/summary?_=1",
        "/api/history/30days?x=y",
        "/api/history/12months?granularity=week",
        "/api/history/today_hours?start=nonsense",
        "/api/date_range?a",
        "/api/realtime?_=1742020641",
        "/api/status?verbose=1",
        "/api/debug/local_ips?x",
    ] {
        ok(&router, uri).await;
    }
}

#[tokio::test]
async fn top_ips_limit_is_1_to_100() {
    let env = reference_fixture();
    let router = env.router();
    for limit in [
        "0",
        "101",
        "-1",
        "1.5",
        "abc",
        "",
        "1e2",
        "99999999999999999999999",
        " 5",
    ] {
        let message = bad_request(&router, &format!("/api/top_ips?limit={}", enc(limit))).await;
        assert!(message.contains("limit"), "{limit:?}: {message}");
    }
    for (limit, n) in [("1", 1), ("3", 3), ("100", 3)] {
        let v = ok(&router, &format!("/api/top_ips?limit={limit}")).await;
        assert_eq!(v["top_ips"].as_array().map(Vec::len), Some(n), "{limit}");
    }
}

#[tokio::test]
async fn unknown_paths_are_404_json() {
    let env = reference_fixture();
    let router = env.router();
    for uri in [
        "/nope",
        "/api",
        "/api/",
        "/api/nope",
        "/api/summary/",
        "/API/SUMMARY",
        "/api/history",
        "/api/history/31days",
        "/static/nope.js",
        "/static/js/",
        "/static/%2e%2e/Cargo.toml",
        "/static/../Cargo.toml",
        "/static/API-CONTRACT.md",
        // Not UTF-8 once decoded (axum's extractor answered a plain-text 400).
        "/static/%ff%fe",
        "/static/js/app.js/%1E%82",
        "/metrics/",
        "/index.html",
    ] {
        let r = get(&router, uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{uri}");
        let v = r.json();
        assert!(v["error"].as_str().is_some(), "{uri}: {v}");
    }
}

#[tokio::test]
async fn other_methods_are_405_json() {
    let env = reference_fixture();
    let router = env.router();
    let methods = [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::TRACE,
        Method::from_bytes(b"FOO").expect("method"),
    ];
    for path in GET_ROUTES {
        for method in &methods {
            let r = send(&router, request(method.clone(), path, &[])).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(
                r.header("content-type"),
                Some("application/json"),
                "{method} {path}"
            );
            let message = r.json()["error"].as_str().expect("error").to_owned();
            assert!(message.contains("GET"), "{message}");
            // RFC 9110 15.5.6: a 405 lists the allowed methods.
            let allow = r.header("allow").unwrap_or_default();
            assert!(
                allow.contains("GET") && allow.contains("HEAD"),
                "{method} {path}: Allow {allow:?}"
            );
        }
    }
}

#[tokio::test]
async fn head_works_on_every_get_route() {
    let env = reference_fixture();
    let router = env.router();
    for path in GET_ROUTES {
        let got = get(&router, path).await;
        let r = send(&router, request(Method::HEAD, path, &[])).await;
        assert_eq!(r.status, StatusCode::OK, "HEAD {path}");
        assert!(r.body.is_empty(), "HEAD {path} has a body");
        assert_eq!(
            r.header("content-type"),
            got.header("content-type"),
            "HEAD {path}"
        );
    }
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

#[tokio::test]
async fn security_headers_are_on_every_answer() {
    let env = reference_fixture();
    let router = env.router();
    let mut requests: Vec<(Method, String)> = GET_ROUTES
        .iter()
        .map(|p| (Method::GET, (*p).to_owned()))
        .collect();
    requests.extend([
        (Method::GET, "/nope".to_owned()),
        (Method::GET, "/api/query?start=x".to_owned()),
        (Method::POST, "/api/summary".to_owned()),
        (Method::HEAD, "/".to_owned()),
        (Method::GET, "/static/index.html".to_owned()),
    ]);
    for (method, path) in requests {
        let r = send(&router, request(method.clone(), &path, &[])).await;
        assert_eq!(
            r.header("content-security-policy"),
            Some(CSP),
            "{method} {path}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{method} {path}"
        );
        assert_eq!(
            r.header("referrer-policy"),
            Some("no-referrer"),
            "{method} {path}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{method} {path}");
    }
}

#[tokio::test]
async fn static_files_answer_304_to_their_etag() {
    let env = reference_fixture();
    let router = env.router();
    for path in ["/", "/static/js/app.js", "/static/style.css"] {
        let first = get(&router, path).await;
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(first.header("cache-control"), Some("no-cache"));
        let etag = first.header("etag").expect("etag").to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let r = send(
            &router,
            request(Method::GET, path, &[("if-none-match", &etag)]),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        // One of a list matches too.
        let list = format!("\"stale\", {etag}");
        let r = send(
            &router,
            request(Method::GET, path, &[("if-none-match", &list)]),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{path} list");
        // Another tag: the file again.
        let r = send(
            &router,
            request(Method::GET, path, &[("if-none-match", "\"0000\"")]),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, first.body);
    }
    // Different files, different tags.
    let a = get(&router, "/static/js/app.js").await;
    let b = get(&router, "/static/style.css").await;
    assert_ne!(a.header("etag"), b.header("etag"));
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[tokio::test]
async fn gzip_when_asked() {
    let env = reference_fixture();
    let router = env.router();
    for path in [
        "/",
        "/static/js/app.js",
        "/static/style.css",
        "/static/favicon.svg",
        "/api/history/30days",
        "/api/query?start=2025-01-01&end=2025-03-15&granularity=day",
        "/metrics",
    ] {
        let plain = get(&router, path).await;
        assert_eq!(plain.header("content-encoding"), None, "{path}");
        let r = send(
            &router,
            request(Method::GET, path, &[("accept-encoding", "gzip, deflate")]),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(r.header("content-type"), plain.header("content-type"));
        let unpacked = gunzip(&r.body);
        assert_eq!(unpacked, plain.body, "{path}");
        if plain.body.len() > 4096 {
            assert!(r.body.len() < plain.body.len() / 2, "{path} barely shrank");
        }
    }
    // Not when only another coding is acceptable.
    let r = send(
        &router,
        request(
            Method::GET,
            "/api/history/30days",
            &[("accept-encoding", "identity")],
        ),
    )
    .await;
    assert_eq!(r.header("content-encoding"), None);
}

#[tokio::test]
async fn an_empty_store_answers_zeros_not_errors() {
    let env = api_support::Env::empty(TZ, NOW);
    let router = env.router();
    for path in GET_ROUTES {
        let r = get(&router, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
    let v = ok(&router, "/api/summary").await;
    assert_eq!(v["year"]["total_fmt"], serde_json::json!("0.00 B"));
    let v = ok(&router, "/api/history/today_hours").await;
    assert_eq!(v["hours"].as_array().map(Vec::len), Some(15));
}
