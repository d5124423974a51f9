//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4), named by its
//! conventions: `sentinel_` prefix, base units, `_total` for counters. Counters come from the
//! kernel's monotonic maps, so they survive daemon restarts while the pins live (a reset, when the
//! maps are re-created, is what Prometheus's `rate()` expects of counters).

use std::fmt::Write as _;

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use sentinel_common::abi::{ErrorKind, FAMILY_V4, FAMILY_V6, Verdict};

use super::ApiState;
use crate::billing::{BillingConfig, report::Report};
use crate::status::{self, CaptureState};

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric.
pub fn render(state: &ApiState) -> String {
    let c = status::read(&state.capture);
    let store = state.store.status();
    let mut out = Out(String::new());
    let families = [(FAMILY_V4, "ipv4"), (FAMILY_V6, "ipv6")];
    let directions = [(Verdict::Up, "up"), (Verdict::Down, "down")];
    for (metric, help, pick) in [
        (
            "sentinel_bytes_total",
            "Public internet traffic, IP-layer bytes as they crossed the wire.",
            0,
        ),
        (
            "sentinel_packets_total",
            "Public internet traffic, packets (segments of super-packets counted).",
            1,
        ),
        (
            "sentinel_wire_bytes_total",
            "Public internet traffic, IP bytes plus link-layer headers.",
            2,
        ),
    ] {
        out.family(metric, "counter", help);
        for (verdict, direction) in directions {
            for (family, fname) in families {
                let counters = c.counters.get(verdict, family);
                let v = [counters.ip_bytes, counters.packets, counters.wire_bytes][pick];
                out.sample(metric, &[("direction", direction), ("family", fname)], v);
            }
        }
    }
    out.family(
        "sentinel_ignored_packets_total",
        "counter",
        "Packets seen but not public traffic: LAN (both ends inside) or transit (both public).",
    );
    for (verdict, reason) in [(Verdict::Lan, "lan"), (Verdict::Transit, "transit")] {
        for (family, fname) in families {
            out.sample(
                "sentinel_ignored_packets_total",
                &[("reason", reason), ("family", fname)],
                c.counters.get(verdict, family).packets,
            );
        }
    }
    out.family(
        "sentinel_capture_errors_total",
        "counter",
        "Frames not counted or counted with a correction, by kind.",
    );
    for kind in ErrorKind::ALL {
        out.sample(
            "sentinel_capture_errors_total",
            &[("kind", kind.name())],
            c.counters.error(kind),
        );
    }
    out.family(
        "sentinel_capture_drops_total",
        "counter",
        "Frames the capture path could not count.",
    );
    out.sample("sentinel_capture_drops_total", &[], c.drops);
    out.family(
        "sentinel_capture_up",
        "gauge",
        "1 while capture is attached and counting.",
    );
    out.sample(
        "sentinel_capture_up",
        &[("backend", c.backend)],
        u8::from(c.state == CaptureState::Running),
    );
    out.family(
        "sentinel_capture_repairs_total",
        "counter",
        "Capture repairs by cause: re-attachments after start, and removals of our attachment by someone else.",
    );
    out.sample(
        "sentinel_capture_repairs_total",
        &[("cause", "reattached")],
        c.reattachments,
    );
    out.sample(
        "sentinel_capture_repairs_total",
        &[("cause", "external_detach")],
        c.external_detaches,
    );
    out.family(
        "sentinel_environment_errors_total",
        "counter",
        "Failed map reads, checks or interface reads that were retried without detaching anything.",
    );
    out.sample(
        "sentinel_environment_errors_total",
        &[],
        c.environment_errors,
    );
    out.family(
        "sentinel_healthy",
        "gauge",
        "1 while /api/health answers 200.",
    );
    out.sample(
        "sentinel_healthy",
        &[],
        u8::from(super::live::unhealthy_reasons(state).is_empty()),
    );
    out.family(
        "sentinel_remote_map_entries",
        "gauge",
        "Remotes the last drain read from the per-remote map (those that moved in the last period).",
    );
    out.sample("sentinel_remote_map_entries", &[], c.remotes_in_map);
    out.family(
        "sentinel_last_flush_timestamp_seconds",
        "gauge",
        "Unix time of the last successful flush to the database.",
    );
    out.sample(
        "sentinel_last_flush_timestamp_seconds",
        &[],
        store.last_flush_ok.unwrap_or(0),
    );
    out.family(
        "sentinel_flushes_total",
        "counter",
        "Flushes to the database, by result.",
    );
    out.sample(
        "sentinel_flushes_total",
        &[("result", "ok")],
        store.flushes_ok,
    );
    out.sample(
        "sentinel_flushes_total",
        &[("result", "failed")],
        store.flushes_failed,
    );
    out.family(
        "sentinel_pending_hours",
        "gauge",
        "Hours with counts not yet in the database.",
    );
    out.sample("sentinel_pending_hours", &[], store.pending_hours);
    out.family(
        "sentinel_start_time_seconds",
        "gauge",
        "Unix time the daemon started.",
    );
    out.sample("sentinel_start_time_seconds", &[], state.info.started_unix);
    out.family(
        "sentinel_build_info",
        "gauge",
        "Build and configuration facts; always 1.",
    );
    out.sample(
        "sentinel_build_info",
        &[
            ("version", state.info.version),
            ("backend", c.backend),
            ("tz", state.store.zone().name()),
        ],
        1,
    );
    out.0
}

/// The billing gauges: the cycle (used, quota, projection, seconds left) and today's traffic
/// with the upload limit.
fn billing(out: &mut Out, r: &Report, config: &BillingConfig) {
    let f = &r.figures;
    out.family(
        "sentinel_today_bytes",
        "gauge",
        "Public traffic of the current local day, IP-layer bytes (unflushed counts included).",
    );
    out.sample(
        "sentinel_today_bytes",
        &[("direction", "up")],
        r.today_traffic.up.ip_bytes,
    );
    out.sample(
        "sentinel_today_bytes",
        &[("direction", "down")],
        r.today_traffic.down.ip_bytes,
    );
    out.family(
        "sentinel_cycle_bytes",
        "gauge",
        "Public traffic of the current billing cycle, IP-layer bytes.",
    );
    out.sample(
        "sentinel_cycle_bytes",
        &[("direction", "up")],
        r.traffic.up.ip_bytes,
    );
    out.sample(
        "sentinel_cycle_bytes",
        &[("direction", "down")],
        r.traffic.down.ip_bytes,
    );
    let basis = config.basis.name();
    for (name, help, value) in [
        (
            "sentinel_cycle_used_bytes",
            "Bytes of the current cycle counted against the quota (QUOTA_BASIS, QUOTA_ADJUST applied).",
            Some(f.used),
        ),
        (
            "sentinel_cycle_quota_bytes",
            "The quota of a billing cycle (absent when QUOTA is unset).",
            f.quota,
        ),
        (
            "sentinel_cycle_projection_bytes",
            "Used bytes extrapolated to the end of the cycle at its average rate.",
            Some(f.projection),
        ),
        (
            "sentinel_cycle_safe_daily_budget_bytes",
            "Remaining quota divided by the local days left, today included.",
            f.safe_daily_budget,
        ),
    ] {
        if let Some(v) = value {
            out.family(name, "gauge", help);
            out.sample(name, &[("basis", basis)], v);
        }
    }
    out.family(
        "sentinel_cycle_seconds_left",
        "gauge",
        "Seconds until the current billing cycle ends.",
    );
    out.sample("sentinel_cycle_seconds_left", &[], f.seconds_left);
    out.family(
        "sentinel_cycle_start_time_seconds",
        "gauge",
        "Unix time the current billing cycle started.",
    );
    out.sample("sentinel_cycle_start_time_seconds", &[], r.cycle.start_unix);
    if let Some(limit) = config.upload_daily_limit {
        out.family(
            "sentinel_upload_daily_limit_bytes",
            "gauge",
            "UPLOAD_DAILY_LIMIT: upload per local day that raises an alert.",
        );
        out.sample("sentinel_upload_daily_limit_bytes", &[], limit);
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let config = state.billing.clone();
    let report = state
        .query(move |store, now| crate::billing::report::build(store, &config, now))
        .await;
    let mut text = render(&state);
    match report {
        Ok(r) => {
            let mut out = Out(text);
            billing(&mut out, &r, &state.billing);
            text = out.0;
        }
        Err(e) => tracing::warn!(error = ?e, "billing gauges left out of /metrics"),
    }
    let zone = state.store.zone();
    let top = state
        .query(move |store, now| {
            let today = zone.local_date(now);
            let first = today - chrono::Days::new(SERVICE_METRIC_DAYS - 1);
            store.top_services(first, today, SERVICE_METRIC_TOP)
        })
        .await;
    match top {
        Ok(top) => {
            let mut out = Out(text);
            services(&mut out, &top, &state);
            text = out.0;
        }
        Err(e) => tracing::warn!(error = ?e, "service counters left out of /metrics"),
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Services in `sentinel_service_bytes_total`: the top ones only, so the series stay bounded.
const SERVICE_METRIC_TOP: usize = 10;
/// The days the service counters cover (today and the 365 before: the longest ranking range).
const SERVICE_METRIC_DAYS: u64 = 366;

/// `sentinel_service_bytes_total{service,name,direction}`: the top services' bytes over the kept
/// history (up to a year), unflushed counts included. A service leaving the top list, or old
/// days leaving the retention, lowers or ends its series (a reset to `rate()`).
fn services(out: &mut Out, top: &crate::store::TopServices, state: &ApiState) {
    out.family(
        "sentinel_service_bytes_total",
        "counter",
        "Public IP bytes per service (protocol/port role) over the kept history, top 10 services.",
    );
    for (key, c) in &top.services {
        let service = format!(
            "{}/{} {}",
            super::services::proto_text(key.proto),
            key.port,
            super::services::role_name(key.role)
        );
        let name = state.service_names.name(key).unwrap_or_default();
        for (direction, bytes) in [("up", c.up_bytes), ("down", c.down_bytes)] {
            out.sample(
                "sentinel_service_bytes_total",
                &[
                    ("service", &service),
                    ("name", &name),
                    ("direction", direction),
                ],
                bytes,
            );
        }
    }
}
