//! Entry point: parse and validate the configuration, set up logging, run.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use clap::Parser as _;
use sentinel::{
    cli::{Cli, Command, Settings},
    config::LogFormat,
};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    let command = cli.command.take();
    let settings = cli.validate().context("invalid configuration")?;
    let config = &settings.config;
    if let Some(Command::Healthcheck) = command {
        return match sentinel::healthcheck::check(config) {
            Ok(()) => Ok(()),
            Err(reason) => {
                eprintln!("unhealthy: {reason}");
                std::process::exit(1);
            }
        };
    }
    if let Some(Command::NotifyTest) = command {
        return notify_test(&settings);
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: `docker logs`, journald and files get plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(sentinel::run::run(settings.config, settings.billing));
    // Connections cut after the shutdown grace may still have a query on the blocking pool: do
    // not wait for it (everything was flushed already).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result?;
    Ok(())
}

/// `sentinel notify-test`: one message to every channel, one line per channel.
fn notify_test(settings: &Settings) -> anyhow::Result<()> {
    if settings.billing.channels.is_empty() {
        anyhow::bail!("no channel configured: set ALERT_WEBHOOK and/or NOTIFY");
    }
    let now = sentinel::store::Clock::now(&sentinel::store::SystemClock);
    let results = sentinel::billing::notify_test(
        &settings.billing,
        settings.config.zone,
        now,
        std::time::Duration::from_secs(20),
    );
    let mut failed = 0;
    for (channel, result) in &results {
        match result {
            Ok(()) => println!("{channel}: sent"),
            Err(e) => {
                failed += 1;
                println!("{channel}: FAILED: {e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} channels failed", results.len());
    }
    Ok(())
}
