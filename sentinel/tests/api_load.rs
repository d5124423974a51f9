//! Load: 100 concurrent clients for 10 s in the dashboard's request mix against the real server
//! (127.0.0.1, keep-alive HTTP/1.1) over a year of hourly data with per-day remotes, while a
//! capture-like drain records into the store beside it. Every request must succeed; the p50/p99
//! per endpoint are printed (`--nocapture`). Latency goals are judged by the release-built
//! benchmark (`cargo xtask bench api`), not by this debug build.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod api_support;

use std::time::Duration;

use api_support::load::{self, Phase, Plan, Server};
use sentinel::store::{Clock as _, SystemClock};

#[test]
fn a_hundred_clients_for_ten_seconds_against_a_year_of_data() -> anyhow::Result<()> {
    let year = load::build_year(300, Duration::from_secs(4))?;
    println!(
        "built a year: {} hours, 300 remotes a day, in {:.1?}",
        year.hours, year.built
    );
    let state = load::state(year.store.clone());
    let server = Server::start(state, Duration::from_millis(100), 50)?;
    let mix = load::dashboard_mix(year.zone, SystemClock.now());
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    server.set_phase(Phase::Idle);
    std::thread::sleep(Duration::from_secs(1));
    server.set_phase(Phase::Paced);
    let report = clients.block_on(load::run_clients(
        server.addr,
        &mix,
        Plan {
            clients: 100,
            duration: Duration::from_secs(10),
            pace: Some(Duration::from_millis(100)),
        },
    ));
    server.set_phase(Phase::Other);
    let ticks = server.stop()?;
    let (table, _) = load::table(&mix, &report);
    println!("100 clients, one request per 100 ms each, 10 s (debug build):\n{table}");
    println!("capture drain beside the server (Store::record + speed ring, 50 remotes):");
    println!("{}", load::drain_line(&ticks, Phase::Idle));
    println!("{}", load::drain_line(&ticks, Phase::Paced));
    assert_eq!(report.errors, 0, "errors: {:?}", report.first_errors);
    // Every endpoint of the mix was exercised, and the load was real.
    for (e, lat) in mix.iter().zip(&report.latencies) {
        assert!(!lat.is_empty(), "{} never answered", e.name);
    }
    assert!(
        report.requests() >= 500,
        "only {} requests in 10 s",
        report.requests()
    );
    // The drain kept ticking under load (100 ticks of 100 ms; lenient for busy CI machines).
    assert!(
        ticks.iter().filter(|t| t.phase == Phase::Paced).count() >= 20,
        "the drain stalled"
    );
    Ok(())
}
