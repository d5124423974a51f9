//! The daemon's main loop (for now: load, attach, print live totals until Ctrl-C or SIGTERM,
//! detach).

use std::time::{Duration, Instant};

use sentinel_common::abi::{ErrorKind, Verdict};

use crate::{
    capture::{
        KernelTotals,
        ebpf::{EbpfError, KernelClassifier},
    },
    classify::AddressPlan,
    config::Config,
    iface::{self, IfaceError},
};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The interface could not be found or read.
    #[error(transparent)]
    Iface(#[from] IfaceError),
    /// The eBPF backend failed.
    #[error(transparent)]
    Ebpf(#[from] EbpfError),
    /// Signal handling could not be set up.
    #[error("installing signal handlers failed")]
    Signals(#[source] std::io::Error),
}

/// The address plan for `iface` under `config`.
pub fn address_plan(config: &Config, iface: &str) -> Result<AddressPlan, IfaceError> {
    let locals = iface::local_addresses(iface)?;
    let lan_prefixes = if config.manual_lan_prefixes.is_empty() {
        iface::derived_lan_prefixes(&locals, config.ipv6_lan_prefix_len)
    } else {
        config.manual_lan_prefixes.clone()
    };
    Ok(AddressPlan {
        locals,
        lan_prefixes,
        inside: config.inside.clone(),
        public: config.public.clone(),
    })
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), RunError> {
    let iface = match &config.iface {
        Some(name) => name.clone(),
        None => iface::default_route_interface()?,
    };
    let mut plan = address_plan(&config, &iface)?;
    let mut classifier = KernelClassifier::load()?;
    classifier.set_addresses(&plan)?;
    let mode = classifier.attach(&iface)?;
    tracing::info!(
        iface,
        attach_mode = %mode,
        program_id = classifier.program_id().unwrap_or(0),
        locals = ?plan.locals,
        lan_prefixes = ?plan.lan_prefixes,
        lan_mode = if config.manual_lan_prefixes.is_empty() { "auto" } else { "manual" },
        "counting public traffic"
    );

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RunError::Signals)?;
    let mut ticker = tokio::time::interval(config.print_interval);
    ticker.tick().await;
    let mut last = (Instant::now(), classifier.totals()?);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
        // A cheap safety net until the netlink watch: pick up address changes.
        match address_plan(&config, &iface) {
            Ok(new) if new != plan => {
                classifier.set_addresses(&new)?;
                tracing::info!(locals = ?new.locals, lan_prefixes = ?new.lan_prefixes, "addresses changed");
                plan = new;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading interface addresses failed"),
        }
        let now = (Instant::now(), classifier.totals()?);
        println!("{}", live_line(&last.1, &now.1, now.0 - last.0));
        last = now;
    }
    classifier.detach()?;
    tracing::info!(iface, "detached; bye");
    Ok(())
}

/// One line of live totals and rates since the previous snapshot.
pub fn live_line(prev: &KernelTotals, now: &KernelTotals, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let part = |label: &str, v: Verdict| {
        let (p, n) = (prev.verdict(v), now.verdict(v));
        format!(
            "{label} {} pkts {} B ({:.0} B/s)",
            n.packets,
            n.ip_bytes,
            n.ip_bytes.saturating_sub(p.ip_bytes) as f64 / secs
        )
    };
    let errors: u64 = ErrorKind::ALL
        .iter()
        .filter(|k| **k != ErrorKind::NotIp)
        .map(|k| now.error(*k))
        .sum();
    format!(
        "{} | {} | lan {} pkts | transit {} pkts | parse errors {errors}",
        part("up", Verdict::Up),
        part("down", Verdict::Down),
        now.verdict(Verdict::Lan).packets,
        now.verdict(Verdict::Transit).packets,
    )
}
