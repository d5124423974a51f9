//! API benchmark: the real server over a year of hourly data (with per-day remotes and the
//! current hour unflushed), 100 clients in the dashboard's request mix over keep-alive HTTP/1.1,
//! first paced (one request per client every 100 ms: about 28 times what 100 open dashboards
//! ask), then as fast as answers come (the capacity). Prints p50/p99/max per endpoint and requests
//! per second for each, and, for "capture unaffected", the time the capture drain's
//! `Store::record` takes and how late its ticks come, idle and under each load.
//!
//! `cargo run --release -p sentinel --example bench_api -- [--quick] [--clients N] [--pace-ms N]
//! [--seconds N] [--remotes N]` (`cargo xtask bench api [--quick]`). `--quick`: 2 s phases and a
//! smaller remote list, a smoke test of the benchmark itself. Goal: every p99 under 20 ms in the
//! paced phase, with the drain's record time unchanged.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

#[path = "../tests/api_support/load.rs"]
mod load;

use std::time::Duration;

use anyhow::{Context as _, bail};
use load::{Phase, Plan, Server};
use sentinel::store::{Clock as _, SystemClock};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let flags = [
        "--quick",
        "--clients",
        "--pace-ms",
        "--seconds",
        "--remotes",
    ];
    if let Some(unknown) = args
        .iter()
        .find(|a| a.starts_with("--") && !flags.contains(&a.as_str()))
    {
        bail!(
            "unknown flag {unknown}; usage: bench_api [--quick] [--clients N] [--pace-ms N] [--seconds N] [--remotes N]"
        );
    }
    let number = |flag: &str, default: u64| -> anyhow::Result<u64> {
        match args.iter().position(|a| a == flag) {
            Some(i) => args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{flag} N")),
            None => Ok(default),
        }
    };
    let clients = number("--clients", 100)? as usize;
    let pace = Duration::from_millis(number("--pace-ms", 100)?);
    let seconds = Duration::from_secs(number("--seconds", if quick { 2 } else { 10 })?);
    let remotes = number("--remotes", if quick { 300 } else { 1000 })?;

    let year = load::build_year(remotes, Duration::from_secs(5))?;
    println!(
        "bench_api: a year of hourly rows ({} hours, {remotes} remotes a day, zone {}) built in {:.1?}",
        year.hours, year.zone, year.built
    );
    println!(
        "machine: {} cores; server: api::serve, 2 runtime workers, the drain beside it (50 remotes every 100 ms); store flushes every 5 s",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let state = load::state(year.store.clone());
    let server = Server::start(state, Duration::from_millis(100), 50)?;
    let mix = load::dashboard_mix(year.zone, SystemClock.now());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    server.set_phase(Phase::Idle);
    std::thread::sleep(if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    });

    server.set_phase(Phase::Paced);
    let paced = runtime.block_on(load::run_clients(
        server.addr,
        &mix,
        Plan {
            clients,
            duration: seconds,
            pace: Some(pace),
        },
    ));
    server.set_phase(Phase::Other);
    std::thread::sleep(Duration::from_millis(500));

    server.set_phase(Phase::Saturated);
    let saturated = runtime.block_on(load::run_clients(
        server.addr,
        &mix,
        Plan {
            clients,
            duration: seconds,
            pace: None,
        },
    ));
    server.set_phase(Phase::Other);
    let ticks = server.stop()?;

    let (paced_table, worst) = load::table(&mix, &paced);
    let (saturated_table, _) = load::table(&mix, &saturated);
    println!(
        "\n{clients} clients, one request each per {} ms, {:.0?}:\n{paced_table}",
        pace.as_millis(),
        seconds
    );
    println!(
        "{clients} clients, next request as soon as the answer is in, {seconds:.0?}:\n{saturated_table}"
    );
    println!("capture drain (Store::record + speed ring push, 50 remotes, every 100 ms):");
    for phase in [Phase::Idle, Phase::Paced, Phase::Saturated] {
        println!("{}", load::drain_line(&ticks, phase));
    }
    println!(
        "\nworst p99 per endpoint, paced: {worst:.2} ms (goal: < 20){}",
        if quick { "; --quick: short phases" } else { "" }
    );
    let errors = paced.errors + saturated.errors;
    if errors > 0 {
        bail!(
            "{errors} requests failed: {:?} {:?}",
            paced.first_errors,
            saturated.first_errors
        );
    }
    Ok(())
}
