//! `/api/health`: 200 only while capture runs and storage works; 503 with the reason while capture
//! is starting or down, or while flushes fail (the seed always said ok, D31). Status and metrics
//! tell the same story.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod api_support;

use std::time::Duration;

use api_support::{Env, NOW, TZ, get, local, record};
use axum::http::StatusCode;
use sentinel::{
    status::{self, CaptureState},
    store::StoreOptions,
};
use serde_json::json;

#[tokio::test]
async fn healthy_only_while_capture_runs() {
    let env = api_support::reference_fixture();
    let router = env.router();
    let r = get(&router, "/api/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({ "status": "ok", "ts": "2025-03-15T14:37:21+08:00" })
    );

    status::update(&env.capture, |c| c.state = CaptureState::Starting);
    let r = get(&router, "/api/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({ "status": "unhealthy", "reason": "capture is starting",
                "reasons": ["capture is starting"], "ts": "2025-03-15T14:37:21+08:00" })
    );

    status::update(&env.capture, |c| {
        c.state = CaptureState::Down("interface eth0 is gone".into());
    });
    let r = get(&router, "/api/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json()["reason"],
        json!("capture is down: interface eth0 is gone")
    );
    // HEAD tells the same without a body (for probes that only look at the status).
    let r = api_support::send(
        &router,
        api_support::request(axum::http::Method::HEAD, "/api/health", &[]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.is_empty());

    status::update(&env.capture, |c| c.state = CaptureState::Running);
    assert_eq!(get(&router, "/api/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn unhealthy_while_flushes_fail_and_healthy_again_after() {
    let env = Env::with(TZ, NOW, None, |o| StoreOptions {
        busy_timeout: Duration::from_millis(100),
        ..o
    });
    let router = env.router();
    record(&env.store, NOW, 100, 200, &[]);
    env.store.flush_now().expect("first flush");
    assert_eq!(get(&router, "/api/health").await.status, StatusCode::OK);

    // Another program (a user's sqlite3) holds the write lock: the flush fails.
    let other = rusqlite::Connection::open(env.dir.path().join("traffic.db")).expect("open");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    record(&env.store, NOW, 5, 7, &[]);
    env.store.flush_now().expect_err("the database is locked");

    let r = get(&router, "/api/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let reason = r.json()["reason"].as_str().expect("reason").to_owned();
    assert!(
        reason.starts_with("storage is failing (1 failed flushes in a row)"),
        "{reason}"
    );
    assert!(reason.contains("locked"), "{reason}");

    let v = api_support::get_json(&router, "/api/status").await;
    assert_eq!(v["storage"]["state"], json!("failing"));
    assert_eq!(v["storage"]["consecutive_failures"], json!(1));
    assert!(
        v["storage"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("locked")),
        "{v}"
    );
    assert_eq!(v["capture"]["state"], json!("running"));
    let metrics = get(&router, "/metrics").await.text();
    assert!(
        metrics.contains("\nsentinel_flushes_total{result=\"failed\"} 1\n"),
        "{metrics}"
    );
    // The unflushed bytes are still served: nothing is lost while storage fails.
    let v = api_support::get_json(&router, "/api/summary").await;
    assert_eq!(v["today"]["up_bytes"], json!(105));
    assert_eq!(v["today"]["down_bytes"], json!(207));

    other.execute_batch("COMMIT").expect("unlock");
    env.store.flush_now().expect("flush once free");
    let r = get(&router, "/api/health").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = api_support::get_json(&router, "/api/status").await;
    assert_eq!(v["storage"]["state"], json!("ok"));
    assert_eq!(v["storage"]["error"], serde_json::Value::Null);
    assert_eq!(v["storage"]["pending_hours"], json!(0));
}

#[tokio::test]
async fn every_reason_is_listed_capture_first() {
    let env = Env::with(TZ, NOW, None, |o| StoreOptions {
        busy_timeout: Duration::from_millis(100),
        ..o
    });
    let other = rusqlite::Connection::open(env.dir.path().join("traffic.db")).expect("open");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    record(&env.store, local(TZ, "2025-03-15 10:00:00"), 1, 1, &[]);
    env.store.flush_now().expect_err("locked");
    status::update(&env.capture, |c| {
        c.state = CaptureState::Down("no eth0".into())
    });
    let r = get(&env.router(), "/api/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let v = r.json();
    let reasons = v["reasons"].as_array().expect("reasons");
    assert_eq!(reasons.len(), 2, "{v}");
    assert_eq!(reasons[0], json!("capture is down: no eth0"));
    assert!(
        reasons[1]
            .as_str()
            .is_some_and(|r| r.starts_with("storage is failing")),
        "{v}"
    );
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("capture is down: no eth0; storage is failing")),
        "{v}"
    );
    // /api/status tells the same.
    let s = api_support::get_json(&env.router(), "/api/status").await;
    assert_eq!(s["health"]["status"], json!("unhealthy"));
    assert_eq!(s["health"]["reasons"], v["reasons"]);
    other.execute_batch("COMMIT").expect("unlock");
}

/// "Running" is not enough: the maps must have been drained within the last 5 s (a stuck loop or
/// failing map reads go 503), and a successful flush must be younger than 2 x SAVE_INTERVAL.
#[tokio::test]
async fn a_stale_drain_or_an_old_flush_is_unhealthy() {
    let env = Env::with(TZ, NOW, None, |o| StoreOptions {
        save_interval: Duration::from_secs(60),
        ..o
    });
    let router = env.router();
    env.store.flush_now().expect("flush");
    assert_eq!(get(&router, "/api/health").await.status, StatusCode::OK);
    let epoch = |t: i64| Some(std::time::UNIX_EPOCH + Duration::from_secs(t as u64));
    status::update(&env.capture, |c| c.last_drain = epoch(NOW - 30));
    let r = get(&router, "/api/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json()["reason"],
        json!("capture was last drained 30 s ago (limit 5 s)")
    );
    status::update(&env.capture, |c| c.last_drain = None);
    assert_eq!(
        get(&router, "/api/health").await.json()["reason"],
        json!("capture has not been drained yet")
    );
    status::update(&env.capture, |c| c.last_drain = epoch(NOW - 2));
    assert_eq!(get(&router, "/api/health").await.status, StatusCode::OK);
    // The clock moves on 3 minutes without a flush (SAVE_INTERVAL 60 s: the limit is 120 s).
    env.clock.set(NOW + 180);
    status::update(&env.capture, |c| c.last_drain = epoch(NOW + 179));
    let r = get(&router, "/api/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json()["reason"],
        json!("the last successful flush was 180 s ago (limit 120 s)")
    );
    let v = api_support::get_json(&router, "/api/status").await;
    assert_eq!(v["storage"]["writer_alive"], json!(true));
}

/// `sentinel healthcheck` (the container's probe) against the real server on a socket.
#[test]
fn the_healthcheck_subcommand_follows_health() -> anyhow::Result<()> {
    use clap::Parser as _;
    let config = |port: u16, auth: &[&str]| -> anyhow::Result<sentinel::config::Config> {
        let port = port.to_string();
        let mut argv = vec!["sentinel", "--web-bind", "0.0.0.0", "--web-port", &port];
        argv.extend_from_slice(auth);
        Ok(sentinel::cli::Cli::try_parse_from(argv)?.validate()?.config)
    };
    for auth in [
        &[][..],
        &["--web-auth", "admin:pw"][..],
        &["--web-auth", "admin:pw", "--web-auth-exempt", "/metrics"][..],
    ] {
        let env = Env::empty(TZ, NOW);
        let mut state = env.state.clone();
        state.auth = config(1, auth)?.web_auth;
        let server = api_support::load::Server::start(state, Duration::from_secs(3600), 0)?;
        // A wildcard bind is probed on loopback.
        let probe = config(server.addr.port(), auth)?;
        assert_eq!(sentinel::healthcheck::check(&probe), Ok(()), "{auth:?}");
        status::update(&env.capture, |c| {
            c.state = CaptureState::Down("no eth0".into())
        });
        let err = sentinel::healthcheck::check(&probe).expect_err("unhealthy");
        assert!(
            err.starts_with("HTTP 503") && err.contains("capture is down: no eth0"),
            "{auth:?}: {err}"
        );
        server.stop()?;
    }
    // Nobody listening: an error that says where it looked.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let err = sentinel::healthcheck::check(&config(port, &[])?).expect_err("no server");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    Ok(())
}
