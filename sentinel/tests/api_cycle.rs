//! `GET /api/cycle` and the billing gauges of `/metrics` through the router, with a frozen clock
//! in a zone with DST (a cycle that starts on the spring-forward day), flushed and unflushed
//! counts, the adjustment, the previous 12 cycles, and a changed billing day regrouping history.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod api_support;

use std::sync::Arc;

use api_support::{Env, get, get_json, local, record};
use sentinel::billing::{BillingConfig, cycle::Basis};

const TZ: &str = "America/New_York";
const GB: u64 = 1_000_000_000;

fn env(billing: BillingConfig) -> Env {
    let mut env = Env::empty(TZ, local(TZ, "2026-03-20 12:00:00"));
    // The cycle from 2026-03-08 (spring forward at 02:00 that day).
    record(
        &env.store,
        local(TZ, "2026-03-08 01:00:00"),
        100 * GB,
        200 * GB,
        &[],
    );
    // The day before: the previous cycle.
    record(
        &env.store,
        local(TZ, "2026-03-07 23:00:00"),
        0,
        50 * GB,
        &[],
    );
    // The twelfth previous cycle (2025-03-08 - 2025-04-07), and one older that is not listed.
    record(&env.store, local(TZ, "2025-03-10 12:00:00"), 0, 7 * GB, &[]);
    record(&env.store, local(TZ, "2025-03-01 12:00:00"), 0, 9 * GB, &[]);
    env.store.flush_now().expect("flush");
    // Today, unflushed.
    record(
        &env.store,
        local(TZ, "2026-03-20 10:00:00"),
        20 * GB,
        30 * GB,
        &[],
    );
    env.state.billing = Arc::new(billing);
    env
}

fn config() -> BillingConfig {
    BillingConfig {
        billing_day: 8,
        quota: Some(1000 * GB),
        adjust: 5 * GB as i64,
        upload_daily_limit: Some(300 * GB),
        ..BillingConfig::default()
    }
}

#[tokio::test]
async fn the_current_cycle_with_unflushed_counts_and_dst() {
    let env = env(config());
    let v = get_json(&env.router(), "/api/cycle").await;
    assert_eq!(v["enabled"], true);
    assert_eq!(v["start"], "2026-03-08T00:00:00-05:00");
    assert_eq!(v["end"], "2026-04-08T00:00:00-04:00");
    assert_eq!(
        (v["start_date"].as_str(), v["end_date"].as_str()),
        (Some("2026-03-08"), Some("2026-04-07"))
    );
    let used = 355 * GB;
    assert_eq!(v["used"], used);
    assert_eq!(v["up_bytes"], 120 * GB);
    assert_eq!(v["down_bytes"], 230 * GB);
    assert_eq!(v["quota"], 1000 * GB);
    assert_eq!(v["remaining"], 645 * GB);
    assert_eq!(v["percent"], 35.5);
    // 12.5 days minus the skipped hour elapsed; the cycle is 31 days minus an hour.
    let elapsed: u128 = 12 * 86_400 + 43_200 - 3_600;
    let length: u128 = 31 * 86_400 - 3_600;
    assert_eq!(
        v["daily_average"],
        (u128::from(used) * 86_400 / elapsed) as u64
    );
    assert_eq!(
        v["projection"]["bytes"],
        (u128::from(used) * length / elapsed) as u64
    );
    assert_eq!(v["projection"]["exceeds_quota"], false);
    assert_eq!(v["days_left"], 19);
    assert_eq!(v["safe_daily_budget"], 645 * GB / 19);
    assert_eq!(v["seconds_left"], (length - elapsed) as u64);
    assert_eq!(v["used_fmt"], "330.62 GB", "the seed's units by default");
    let up = &v["upload_today"];
    assert_eq!(
        (up["date"].as_str(), up["bytes"].as_u64()),
        (Some("2026-03-20"), Some(20 * GB))
    );
    assert_eq!(
        (up["limit"].as_u64(), up["exceeded"].as_bool()),
        (Some(300 * GB), Some(false))
    );
    assert_eq!(up["percent"], 6.67);
    let previous = v["previous"].as_array().expect("previous");
    assert_eq!(previous.len(), 12);
    assert_eq!(previous[0]["start_date"], "2026-02-08");
    assert_eq!(previous[0]["end_date"], "2026-03-07");
    assert_eq!(previous[0]["used"], 50 * GB);
    assert_eq!(previous[11]["start"], "2025-03-08T00:00:00-05:00");
    assert_eq!(previous[11]["used"], 7 * GB);
    assert!(previous[1..11].iter().all(|p| p["used"] == 0));
}

#[tokio::test]
async fn a_new_billing_day_regroups_the_history_and_units_apply() {
    let env = env(BillingConfig {
        billing_day: 1,
        basis: Basis::Down,
        units: sentinel::billing::units::Units::Si,
        ..config()
    });
    let v = get_json(&env.router(), "/api/cycle").await;
    assert_eq!(v["start"], "2026-03-01T00:00:00-05:00");
    assert_eq!(
        v["used"],
        285 * GB,
        "down only: 200 + 50 + 30, plus 5 adjusted"
    );
    assert_eq!(v["used_fmt"], "285.00 GB");
    assert_eq!(v["basis"], "down");
    let previous = v["previous"].as_array().expect("previous");
    assert_eq!(previous[0]["start_date"], "2026-02-01");
    assert_eq!(previous[0]["used"], 0);
    assert_eq!(previous[11]["start_date"], "2025-03-01");
    assert_eq!(previous[11]["used"], 16 * GB);
}

#[tokio::test]
async fn without_a_quota_the_cycle_is_reported_but_disabled() {
    let env = env(BillingConfig::default());
    let v = get_json(&env.router(), "/api/cycle").await;
    assert_eq!(v["enabled"], false);
    assert!(v["quota"].is_null() && v["percent"].is_null() && v["safe_daily_budget"].is_null());
    assert!(v["projection"]["exceeds_quota"].is_null());
    assert_eq!(v["start"], "2026-03-01T00:00:00-05:00");
    assert!(v["upload_today"]["limit"].is_null());
}

#[tokio::test]
async fn metrics_carry_the_cycle_gauges() {
    let env = env(config());
    let text = get(&env.router(), "/metrics").await.text();
    for want in [
        "sentinel_cycle_used_bytes{basis=\"total\"} 355000000000",
        "sentinel_cycle_quota_bytes{basis=\"total\"} 1000000000000",
        "sentinel_upload_daily_limit_bytes 300000000000",
        "sentinel_today_bytes{direction=\"up\"} 20000000000",
        "sentinel_cycle_bytes{direction=\"down\"} 230000000000",
        "# TYPE sentinel_cycle_projection_bytes gauge",
        "# TYPE sentinel_cycle_seconds_left gauge",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid exposition format");
    assert!(
        parsed
            .samples
            .iter()
            .any(|s| s.metric == "sentinel_cycle_seconds_left")
    );
}

#[tokio::test]
async fn units_apply_to_every_fmt_string() {
    let iec = env(BillingConfig {
        units: sentinel::billing::units::Units::Iec,
        ..config()
    });
    let s = get_json(&iec.router(), "/api/summary").await;
    assert_eq!(s["today"]["total_fmt"], "46.57 GiB");
    assert_eq!(s["month"]["up_fmt"], "111.76 GiB");
    let seed = env(config());
    let s = get_json(&seed.router(), "/api/summary").await;
    assert_eq!(
        s["today"]["total_fmt"], "46.57 GB",
        "unset: the seed's format, unchanged"
    );
}
