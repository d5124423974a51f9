//! The daemon's main loop: load and attach the classifier, drain it every second, follow the
//! interface, and detach cleanly on SIGINT/SIGTERM.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime},
};

use sentinel_common::abi::{ErrorKind, REMOTES_MAX_ENTRIES, RemoteCounters, Verdict};
use tokio::sync::mpsc;

use crate::{
    addrwatch::{self, IfaceState, PlanBuilder},
    api::{self, ApiState, DaemonInfo},
    capture::remote_ip,
    capture::{
        KernelTotals,
        active::{ActiveCapture, CaptureOptions, StartError},
    },
    config::Config,
    drain::{Checkpoint, Deltas, Drain},
    iface::{self, IfaceError},
    meter::{SpeedRing, SpeedSample},
    status::{self, CaptureState, CaptureStatus, SharedStatus},
    store::{Sample, Store, StoreOptions},
};

/// How often the maps are drained.
const DRAIN_PERIOD: Duration = Duration::from_secs(1);

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
    /// Signal handling or the netlink watch could not be set up.
    #[error("setting up {what} failed")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), RunError> {
    let iface = match &config.iface {
        Some(name) => name.clone(),
        None => iface::default_route_interface()?,
    };
    let store = Arc::new(open_store(&config)?);
    let mut builder = PlanBuilder::new(&config, &iface);
    let mut current = builder.read(Instant::now())?;
    let options = CaptureOptions {
        choice: config.backend,
        pin_dir: config.bpf_pin_dir.clone(),
        attach: config.attach_mode,
    };
    let mut classifier = ActiveCapture::start(&options, &iface, &current.plan)?;
    let shared: SharedStatus = Arc::new(RwLock::new(CaptureStatus {
        backend: classifier.name(),
        iface: iface.clone(),
        pin_dir: classifier.pin_dir(),
        maps_reused: classifier.counters_reused(),
        remotes_capacity: REMOTES_MAX_ENTRIES,
        lan_mode: if config.manual_lan_prefixes.is_empty() {
            "auto"
        } else {
            "manual"
        },
        ..CaptureStatus::default()
    }));
    attach_or_report(&mut classifier, &config, &current, &shared);
    publish_addresses(&shared, &current);
    log_startup(&config, &status::read(&shared), classifier.instance());

    let checkpoint = match store.checkpoint() {
        Ok(bytes) => bytes.as_deref().and_then(Checkpoint::from_bytes),
        Err(e) => {
            tracing::warn!(error = %e, "reading the capture checkpoint failed; counting from the maps' start");
            None
        }
    };
    match &checkpoint {
        Some(cp) if cp.instance == classifier.instance() => {
            tracing::info!("resuming from the persisted checkpoint of these maps")
        }
        Some(_) => tracing::info!(
            "the persisted checkpoint belongs to other maps; everything in these maps is new"
        ),
        None => {}
    }
    let mut drain = Drain::new(classifier.instance(), checkpoint.as_ref());
    let mut counted = KernelTotals::default();
    let speed = Arc::new(Mutex::new(SpeedRing::default()));

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
        info: Arc::new(DaemonInfo {
            version: env!("CARGO_PKG_VERSION"),
            started: Instant::now(),
            started_unix: unix_now(),
            lan_prefix_len: config.ipv6_lan_prefix_len,
        }),
        clock: Arc::new(crate::store::SystemClock),
        billing: Arc::new(config.billing.clone()),
    };
    // Billing alerts, notifications and MQTT run on threads of their own (see `billing`).
    let billing = crate::billing::Engine::new(
        store.clone(),
        config.billing.clone(),
        Arc::new(crate::store::SystemClock),
        speed.clone(),
        crate::billing::notify::RetryPolicy::default(),
    )
    .spawn();
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let web = tokio::spawn(api::serve(listener, api::router(api_state), async {
        let _ = web_stopped.await;
    }));
    tracing::info!(listen = %config.web_addr, "dashboard and API at http://{}/", config.web_addr);
    let mut meter = Meter {
        store: &store,
        speed: &speed,
        last: Instant::now(),
    };

    let (events_tx, mut events) = mpsc::channel(1);
    addrwatch::spawn_netlink_watch(events_tx).map_err(|source| RunError::Setup {
        what: "the netlink watch",
        source,
    })?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| RunError::Setup {
            what: "signal handlers",
            source,
        })?;
    let mut drain_tick = tokio::time::interval(DRAIN_PERIOD);
    let mut refresh_tick = tokio::time::interval(config.address_refresh);
    let mut print_tick =
        tokio::time::interval(config.print_interval.unwrap_or(Duration::from_secs(3600)));
    print_tick.tick().await;
    let mut printed = (Instant::now(), counted);

    loop {
        tokio::select! {
            _ = drain_tick.tick() => {
                drain_once(&mut classifier, &mut drain, &mut counted, &shared, &mut meter)?;
            }
            Some(()) = events.recv() => {
                follow_interface(&mut builder, &mut current, &mut classifier, &config, &shared)?;
            }
            _ = refresh_tick.tick() => {
                follow_interface(&mut builder, &mut current, &mut classifier, &config, &shared)?;
            }
            _ = print_tick.tick(), if config.print_interval.is_some() => {
                let now = (Instant::now(), counted);
                println!("{}", live_line(&printed.1, &now.1, now.0 - printed.0));
                printed = now;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    // Stop counting, take a last drain so nothing counted before the signal is left behind, and
    // flush it with its checkpoint.
    let _ = stop_web.send(());
    if let Err(e) = classifier.detach() {
        tracing::warn!(error = e, "detaching failed");
    }
    drain_once(
        &mut classifier,
        &mut drain,
        &mut counted,
        &shared,
        &mut meter,
    )?;
    match web.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "web server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "web server task failed"),
        Ok(Ok(())) => {}
    }
    drop(billing);
    // Normally the web server has let go of the store by now; if a query still holds it, flush
    // through the shared handle rather than skip the final flush.
    let report = match Arc::try_unwrap(store) {
        Ok(store) => store.close()?,
        Err(shared) => shared.flush_now()?,
    };
    tracing::info!(
        iface,
        up_bytes = counted.verdict(Verdict::Up).ip_bytes,
        down_bytes = counted.verdict(Verdict::Down).ip_bytes,
        flushed = ?report,
        "detached and flushed; bye"
    );
    Ok(())
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

/// Where each drain's deltas go: the store's pending counts and the live speed.
struct Meter<'a> {
    store: &'a Store,
    speed: &'a Mutex<SpeedRing>,
    last: Instant,
}

impl Meter<'_> {
    fn record(&mut self, deltas: &Deltas, checkpoint: &Checkpoint) {
        let now = Instant::now();
        let secs = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let (up, down) = (
            deltas.totals.verdict(Verdict::Up),
            deltas.totals.verdict(Verdict::Down),
        );
        let remotes: Vec<(IpAddr, RemoteCounters)> = deltas
            .remotes
            .iter()
            .map(|(key, counters)| (remote_ip(key), *counters))
            .collect();
        let at = unix_now();
        self.store.record(&Sample {
            at,
            up,
            down,
            remotes: &remotes,
            checkpoint: Some(checkpoint.to_bytes()),
        });
        let sample = SpeedSample {
            ts_ms: at * 1000,
            up: up.ip_bytes,
            down: down.ip_bytes,
            secs,
        };
        self.speed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sample);
    }
}

/// Reads the maps once and accounts what grew.
fn drain_once(
    classifier: &mut ActiveCapture,
    drain: &mut Drain,
    counted: &mut KernelTotals,
    shared: &SharedStatus,
    meter: &mut Meter<'_>,
) -> Result<(), RunError> {
    let snap = classifier.snapshot()?;
    let deltas = drain.advance(&snap);
    meter.record(&deltas, &drain.checkpoint());
    for (total, delta) in counted.slots.iter_mut().zip(deltas.totals.slots.iter()) {
        total.packets += delta.packets;
        total.ip_bytes += delta.ip_bytes;
        total.wire_bytes += delta.wire_bytes;
    }
    for (total, delta) in counted.errors.iter_mut().zip(deltas.totals.errors.iter()) {
        *total += delta;
    }
    status::update(shared, |s| {
        s.counters = snap.totals;
        s.drops = snap.drops;
        s.remotes_in_map = snap.remotes.len();
        s.last_drain = Some(SystemTime::now());
        // The ring reopens by itself; its state is the capture state.
        if classifier.follows_interface() {
            s.state = match classifier.trouble() {
                Some(reason) => CaptureState::Down(reason),
                None => CaptureState::Running,
            };
        }
    });
    Ok(())
}

/// Attaches when the interface exists; records why not otherwise.
fn attach_or_report(
    classifier: &mut ActiveCapture,
    config: &Config,
    current: &IfaceState,
    shared: &SharedStatus,
) {
    let iface = status::read(shared).iface;
    let result = match current.ifindex {
        None => Err(format!("interface {iface} does not exist; waiting for it")),
        Some(_) => classifier.attach(&iface, config.attach_mode),
    };
    match result {
        Ok(mode) => status::update(shared, |s| {
            s.attach_mode = mode;
            s.state = CaptureState::Running;
            s.program_id = classifier.program_id();
            s.ifindex = current.ifindex;
        }),
        Err(reason) => {
            tracing::error!(iface, reason, "capture is down");
            status::update(shared, |s| {
                s.attach_mode = None;
                s.state = CaptureState::Down(reason);
                s.ifindex = current.ifindex;
            });
        }
    }
}

/// Re-reads the interface; pushes a changed plan to the classifier and re-attaches when the
/// interface came back or was re-created.
fn follow_interface(
    builder: &mut PlanBuilder,
    current: &mut IfaceState,
    classifier: &mut ActiveCapture,
    config: &Config,
    shared: &SharedStatus,
) -> Result<(), RunError> {
    let next = match builder.read(Instant::now()) {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(error = %e, "reading the interface failed; keeping the previous addresses");
            return Ok(());
        }
    };
    if next.plan != current.plan {
        // A failed update (say, more prefixes than the tries hold) keeps the previous plan in
        // force; it is logged and retried at the next event or refresh, not fatal.
        if let Err(e) = classifier.set_addresses(&next.plan) {
            tracing::error!(error = %crate::error_chain(&e), "updating the address plan failed; the previous one stays in force");
            return Ok(());
        }
        tracing::info!(locals = ?next.plan.locals, lan_prefixes = ?next.plan.lan_prefixes, grace_prefixes = ?next.grace_prefixes, "addresses changed");
    }
    if next.ifindex != current.ifindex && !classifier.follows_interface() {
        let was = status::read(shared);
        match next.ifindex {
            Some(index) => {
                tracing::warn!(iface = was.iface, old_ifindex = ?current.ifindex, new_ifindex = index, "interface appeared or was re-created; re-attaching (traffic in between was not seen)");
                attach_or_report(classifier, config, &next, shared);
                status::update(shared, |s| s.reattachments += 1);
            }
            None => {
                if let Err(e) = classifier.detach() {
                    tracing::warn!(error = e, "detaching from the vanished interface failed");
                }
                let reason = format!("interface {} disappeared; waiting for it", was.iface);
                tracing::error!(reason, "capture is down");
                status::update(shared, |s| {
                    s.state = CaptureState::Down(reason);
                    s.attach_mode = None;
                    s.ifindex = None;
                });
            }
        }
    }
    *current = next;
    publish_addresses(shared, current);
    Ok(())
}

fn publish_addresses(shared: &SharedStatus, current: &IfaceState) {
    status::update(shared, |s| {
        s.locals = current.plan.locals.clone();
        s.lan_prefixes = current.plan.lan_prefixes.clone();
        s.grace_prefixes = current.grace_prefixes.clone();
    });
}

fn log_startup(config: &Config, s: &CaptureStatus, instance: u64) {
    tracing::info!(
        iface = s.iface,
        backend = s.backend,
        attach_mode = s.attach_mode.as_deref().unwrap_or("none"),
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
