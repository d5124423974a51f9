//! The daemon's wiring: one instance lock, the store, the supervisor over the real OS inputs
//! ([`crate::supervisor`]), the web server, and the bounded shutdown on SIGINT/SIGTERM.

use std::{
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime},
};

use sentinel_common::abi::{ErrorKind, Verdict};

use crate::{
    addrwatch::PlanBuilder,
    api::{self, ApiState, DaemonInfo},
    billing::BillingConfig,
    capture::{
        KernelTotals,
        active::{BackendChoice, CaptureOptions, StartError},
    },
    config::Config,
    iface::{self, IfaceError},
    meter::SpeedRing,
    status::{CaptureStatus, SharedStatus},
    store::{Store, StoreOptions},
    supervisor::{OsInputs, Outputs, Settings, Supervisor},
};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The interface could not be found or read.
    #[error(transparent)]
    Iface(#[from] IfaceError),
    /// No capture backend could start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Reading the backend failed.
    #[error(transparent)]
    Backend(#[from] crate::capture::BackendError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The final flush failed (the counts stay in the kernel maps and the checkpoint is older, so
    /// the next start picks them up).
    #[error(transparent)]
    Flush(#[from] crate::store::FlushError),
    /// The web server could not listen.
    #[error("listening on {addr} failed (WEB_BIND/WEB_PORT)")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Another instance holds the pin directory or the database.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// The checkpoint could not be read or committed at start-up (counting from zero instead
    /// would book the maps' whole history as new traffic).
    #[error(
        "{what} failed {attempts} times ({reason}); not counting rather than counting traffic twice"
    )]
    Checkpoint {
        what: &'static str,
        attempts: u32,
        reason: String,
    },
    /// The final flush failed (the counts stay in the pinned maps and the checkpoint is older, so
    /// the next start picks them up).
    #[error("the final flush failed")]
    FinalFlush {
        #[source]
        source: crate::supervisor::LedgerError,
    },
    /// Signal handling or the netlink watch could not be set up.
    #[error("setting up {what} failed")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Runs until SIGINT or SIGTERM: one instance per pin directory and database, the supervisor
/// over the real OS inputs, the web server; then a bounded shutdown (web server at most
/// [`api::SHUTDOWN_GRACE`], then drain, flush, detach).
pub async fn run(config: Config, billing: BillingConfig) -> Result<(), RunError> {
    // Before anything is touched: a second daemon on the same database or pins stops here.
    let pins = (config.backend != BackendChoice::AfPacket).then_some(config.bpf_pin_dir.as_path());
    let _lock = crate::lock::acquire(&config.db_path, pins)?;
    let iface = match &config.iface {
        Some(name) => name.clone(),
        None => iface::default_route_interface()?,
    };
    let store = Arc::new(open_store(&config)?);
    let builder = PlanBuilder::new(&config, &iface);
    let options = CaptureOptions {
        choice: config.backend,
        pin_dir: config.bpf_pin_dir.clone(),
        attach: config.attach_mode,
    };
    let inputs = OsInputs::real(builder, options).map_err(|source| RunError::Setup {
        what: "the netlink watch and signal handlers",
        source,
    })?;
    let shared: SharedStatus = Arc::new(RwLock::new(CaptureStatus::default()));
    let speed = Arc::new(Mutex::new(SpeedRing::default()));
    let mut settings = Settings::new(&iface);
    settings.lan_mode = if config.manual_lan_prefixes.is_empty() {
        "auto"
    } else {
        "manual"
    };
    settings.address_refresh = config.address_refresh;
    settings.print_interval = config.print_interval;
    let outputs = Outputs {
        status: shared.clone(),
        speed: speed.clone(),
    };
    let ledger: Arc<dyn crate::supervisor::Ledger> = store.clone();
    let (mut supervisor, shutdown) =
        tokio::task::block_in_place(|| Supervisor::start(settings, inputs, ledger, outputs))?;
    log_startup(&config, &supervisor.status(), supervisor.instance());

    let listener = tokio::net::TcpListener::bind(config.web_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.web_addr,
            source,
        })?;
    let api_state = ApiState {
        store: store.clone(),
        capture: shared.clone(),
        speed: speed.clone(),
        auth: config.web_auth.clone(),
        allowed_hosts: Arc::new(config.web_allowed_hosts.clone()),
        service_names: Arc::new(config.service_names.clone()),
        info: Arc::new(DaemonInfo {
            version: env!("CARGO_PKG_VERSION"),
            started: Instant::now(),
            started_unix: unix_now(),
            lan_prefix_len: config.ipv6_lan_prefix_len,
        }),
        clock: Arc::new(crate::store::SystemClock),
        billing: Arc::new(billing.clone()),
    };
    // Billing alerts, notifications and MQTT run on threads of their own (see `billing`).
    let billing = crate::billing::Engine::new(
        store.clone(),
        billing,
        Arc::new(crate::store::SystemClock),
        speed.clone(),
        crate::billing::notify::RetryPolicy::default(),
    )
    .spawn();
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let web = tokio::spawn(api::serve(
        listener,
        api::router(api_state),
        async {
            let _ = web_stopped.await;
        },
        api::ServerLimits::default(),
    ));
    log_exposure(&config);

    supervisor.run(shutdown).await;
    // Stop accepting and give requests in flight a bounded time; the server enforces the grace
    // itself, the outer timeout only guards against a stuck task.
    let _ = stop_web.send(());
    let limit = api::SHUTDOWN_GRACE + Duration::from_secs(1);
    match tokio::time::timeout(limit, web).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "web server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "web server task failed"),
        Err(_) => tracing::warn!("web server did not stop in time; going on with the shutdown"),
        Ok(Ok(Ok(()))) => {}
    }
    // The billing engine lets go of the store (its thread ends after its current evaluation).
    drop(billing);
    let finished = tokio::task::block_in_place(|| supervisor.finish())?;
    // Normally the web server has let go of the store by now; if a cut connection still holds
    // it, the flush above already committed everything.
    let report = match Arc::try_unwrap(store) {
        Ok(store) => Some(store.close()?),
        Err(_) => None,
    };
    let counted = finished.counted;
    tracing::info!(
        iface,
        up_bytes = counted.verdict(Verdict::Up).ip_bytes,
        down_bytes = counted.verdict(Verdict::Down).ip_bytes,
        flushed = ?report,
        "detached and flushed; bye"
    );
    Ok(())
}

/// Says whether auth is on and where the dashboard is exposed; warns when it is open to every
/// address without auth.
fn log_exposure(config: &Config) {
    let auth = config.web_auth.is_some();
    let everywhere = config.web_addr.ip().is_unspecified();
    tracing::info!(
        listen = %config.web_addr,
        auth = if auth { "on" } else { "off" },
        allowed_hosts = ?config.web_allowed_hosts,
        "dashboard and API at http://{}/",
        config.web_addr
    );
    if everywhere && !auth {
        tracing::warn!(
            listen = %config.web_addr,
            "the dashboard is reachable on every address of this machine without authentication; \
             set WEB_AUTH=user:password, or WEB_BIND to a LAN address, or WEB_ALLOWED_HOSTS"
        );
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn open_store(config: &Config) -> Result<Store, RunError> {
    let options = StoreOptions {
        save_interval: config.save_interval,
        top_remotes_per_day: config.top_remotes_per_day,
        remotes_retention_days: config.remotes_retention_days,
        ..StoreOptions::default()
    };
    let store = Store::open(&config.db_path, config.zone, options)?;
    let report = store.open_report();
    tracing::info!(
        db = %config.db_path.display(),
        created = report.created,
        migrations = ?report.migrations,
        backup = ?report.backup,
        seed_database = report.seed.is_some(),
        tz = config.zone.name(),
        utc_offset = crate::api::format_offset(config.zone.offset_at(unix_now())),
        save_interval_s = config.save_interval.as_secs(),
        "history database open"
    );
    Ok(store)
}

fn log_startup(config: &Config, s: &CaptureStatus, instance: u64) {
    tracing::info!(
        iface = s.iface,
        backend = s.backend,
        attach_mode = s.attach_mode.map_or("none", |m| m.as_str()),
        program_id = s.program_id.unwrap_or(0),
        pin_dir = %config.bpf_pin_dir.display(),
        maps = if s.maps_reused { "reused" } else { "created" },
        instance = format_args!("{instance:016x}"),
        locals = ?s.locals,
        lan_prefixes = ?s.lan_prefixes,
        lan_mode = s.lan_mode,
        "counting public traffic"
    );
}

/// One line of live totals (machine-readable `key=value` pairs) and rates since the previous one.
pub fn live_line(prev: &KernelTotals, now: &KernelTotals, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let (up, down) = (now.verdict(Verdict::Up), now.verdict(Verdict::Down));
    let rate = |v: Verdict| {
        now.verdict(v)
            .ip_bytes
            .saturating_sub(prev.verdict(v).ip_bytes) as f64
            / secs
    };
    let errors: u64 = ErrorKind::ALL
        .iter()
        .filter(|k| **k != ErrorKind::NotIp)
        .map(|k| now.error(*k))
        .sum();
    format!(
        "totals up_packets={} up_bytes={} down_packets={} down_bytes={} up_wire_bytes={} down_wire_bytes={} lan_packets={} transit_packets={} errors={errors} up_rate={:.0}B/s down_rate={:.0}B/s",
        up.packets,
        up.ip_bytes,
        down.packets,
        down.ip_bytes,
        up.wire_bytes,
        down.wire_bytes,
        now.verdict(Verdict::Lan).packets,
        now.verdict(Verdict::Transit).packets,
        rate(Verdict::Up),
        rate(Verdict::Down),
    )
}
