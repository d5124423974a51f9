//! The live endpoints: speed, health, capture and storage status, local addresses.

use std::net::IpAddr;

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use sentinel_common::abi::ErrorKind;
use serde_json::{Value, json};

use super::{ApiState, json::Json, traffic::local_rfc3339};
use crate::{
    capture::AttachMode,
    status::{self, CaptureState},
};

/// `GET /api/realtime`: the last 30 one-second samples of the last minute, and the current speed
/// (the last sample, over the time it really covered).
pub async fn realtime(State(state): State<ApiState>) -> Json<Value> {
    let now_ms = state.now() * 1000 + 999;
    let samples = state
        .speed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .recent(now_ms, 60_000, 30);
    let (up, down) = samples.last().map_or((0, 0), |s| {
        (s.up_bps().round() as u64, s.down_bps().round() as u64)
    });
    let items: Vec<Value> = samples
        .iter()
        .map(|s| json!({ "ts": s.ts_ms / 1000, "up": s.up, "down": s.down }))
        .collect();
    Json(json!({
        "current_up_Bps": up, "current_up_bps": up * 8,
        "current_down_Bps": down, "current_down_bps": down * 8,
        "samples": items,
    }))
}

/// Capture must have been drained within this many seconds to count as healthy.
pub const DRAIN_STALE_S: i64 = 5;

/// Why the daemon is unhealthy; empty when it is healthy. Healthy means: capture attached and
/// counting, drained within [`DRAIN_STALE_S`], the store's writer thread alive, no failing
/// flushes, and the last successful flush younger than twice `SAVE_INTERVAL` (counted from the
/// start until the first one).
pub fn unhealthy_reasons(state: &ApiState) -> Vec<String> {
    let mut reasons = Vec::new();
    let now = state.now();
    let capture = status::read(&state.capture);
    match &capture.state {
        CaptureState::Down(reason) => reasons.push(format!("capture is down: {reason}")),
        CaptureState::Starting => reasons.push("capture is starting".into()),
        CaptureState::Running => {
            let drained = capture
                .last_drain
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            match drained {
                None => reasons.push("capture has not been drained yet".into()),
                Some(at) if now - at > DRAIN_STALE_S => reasons.push(format!(
                    "capture was last drained {} s ago (limit {DRAIN_STALE_S} s)",
                    now - at
                )),
                Some(_) => {}
            }
        }
    }
    if !state.store.writer_alive() {
        reasons.push("the database writer thread has stopped".into());
    }
    let store = state.store.status();
    if store.consecutive_failures > 0 {
        let why = store.last_error.map(|e| e.message).unwrap_or_default();
        reasons.push(format!(
            "storage is failing ({} failed flushes in a row): {why}",
            store.consecutive_failures
        ));
    }
    let limit = 2 * state.store.save_interval().as_secs() as i64;
    let since = store.last_success.unwrap_or(state.info.started_unix);
    if now - since > limit {
        reasons.push(match store.last_success {
            Some(_) => format!(
                "the last successful flush was {} s ago (limit {limit} s)",
                now - since
            ),
            None => format!(
                "no successful flush in the {} s since start (limit {limit} s)",
                now - since
            ),
        });
    }
    reasons
}

/// `GET /api/health`: 200 while capture and storage work, 503 with the reason otherwise.
pub async fn health(State(state): State<ApiState>) -> Response {
    let ts = local_rfc3339(state.store.zone(), state.now());
    let reasons = unhealthy_reasons(&state);
    if reasons.is_empty() {
        Json(json!({ "status": "ok", "ts": ts })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unhealthy", "reason": reasons.join("; "), "reasons": reasons, "ts": ts,
            })),
        )
            .into_response()
    }
}

/// `GET /api/status`: backend, attach mode, drops and errors, storage, version, uptime.
pub async fn status(State(state): State<ApiState>) -> Json<Value> {
    let c = status::read(&state.capture);
    let store = state.store.status();
    let zone = state.store.zone();
    let errors: serde_json::Map<String, Value> = ErrorKind::ALL
        .iter()
        .filter(|k| **k != ErrorKind::NotIp)
        .map(|k| (k.name().to_owned(), json!(c.counters.error(*k))))
        .collect();
    let (capture_state, capture_error) = match &c.state {
        CaptureState::Running => ("running", None),
        CaptureState::Starting => ("starting", None),
        CaptureState::Down(reason) => ("down", Some(reason.clone())),
    };
    let failing = store.consecutive_failures > 0;
    let health = unhealthy_reasons(&state);
    let db_size = std::fs::metadata(state.store.path())
        .map(|m| m.len())
        .unwrap_or(0);
    Json(json!({
        "backend": c.backend,
        "attach_mode": c.attach_mode.map(AttachMode::as_str),
        "iface": c.iface,
        "ifindex": c.ifindex,
        "capture": {
            "state": capture_state, "error": capture_error, "drops": c.drops, "errors": errors,
            "not_ip_frames": c.counters.error(ErrorKind::NotIp),
            "program_id": c.program_id,
            "pin_dir": c.pin_dir.as_ref().map(|p| p.display().to_string()),
            "maps_reused": c.maps_reused,
            "counters_survive_restart": c.counters_survive_restart,
            "counters_survive_restart_reason": c.durability_reason,
            "remote_map_entries": c.remotes_in_map, "remote_map_capacity": c.remotes_capacity,
            "last_drain": c.last_drain.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| local_rfc3339(zone, d.as_secs() as i64)),
            "reattachments": c.reattachments,
            "attach_attempts": c.attach_attempts,
            "external_detaches": c.external_detaches,
            "environment_errors": c.environment_errors,
            "last_environment_error": c.last_environment_error,
        },
        "health": {
            "status": if health.is_empty() { "ok" } else { "unhealthy" },
            "reasons": health,
        },
        "storage": {
            "state": if failing { "failing" } else { "ok" },
            "last_flush": store.last_flush_ok.map(|t| local_rfc3339(zone, t)),
            "last_flush_success": store.last_success.map(|t| local_rfc3339(zone, t)),
            "writer_alive": state.store.writer_alive(),
            "error": if failing { store.last_error.as_ref().map(|e| e.message.clone()) } else { None },
            "consecutive_failures": store.consecutive_failures,
            "pending_hours": store.pending_hours, "pending_remotes": store.pending_remotes,
            "db_path": state.store.path().display().to_string(), "db_size_bytes": db_size,
        },
        "tz": zone.name(),
        "version": state.info.version,
        "uptime_s": state.info.started.elapsed().as_secs(),
    }))
}

const NOTE_MANUAL: &str = "手动模式：由 EXCLUDE_IPV6_PREFIX 环境变量指定，优先级最高。";
const NOTE_AUTO: &str = "自动模式：从网卡 GUA 提取 /56 前缀，每小时刷新一次。双端地址同属此前缀的 IPv6 包将被视为 LAN 内部流量并排除。";
const NOTE_TOP: &str = "上行/下行方向判断依赖 ipv6 列表中的本机地址。若 NAS 的公网 IPv6 未出现，请检查 MONITOR_IFACE 是否正确。";

/// `GET /api/debug/local_ips`: the seed's shape, plus the prefixes kept by their grace period.
pub async fn local_ips(State(state): State<ApiState>) -> Json<Value> {
    let c = status::read(&state.capture);
    let mut v4: Vec<String> = c
        .locals
        .iter()
        .filter(|a| a.is_ipv4())
        .map(IpAddr::to_string)
        .collect();
    let mut v6: Vec<String> = c
        .locals
        .iter()
        .filter(|a| a.is_ipv6())
        .map(IpAddr::to_string)
        .collect();
    v4.sort();
    v6.sort();
    let manual = c.lan_mode == "manual";
    let mode = if manual {
        "manual".to_owned()
    } else {
        format!("auto-gua-/{}", state.info.lan_prefix_len)
    };
    let note = if manual {
        NOTE_MANUAL.to_owned()
    } else {
        NOTE_AUTO
            .replace("/56", &format!("/{}", state.info.lan_prefix_len))
            .replace("每小时刷新一次", "地址变化时立即刷新")
    };
    Json(json!({
        "iface": c.iface,
        "total": v4.len() + v6.len(),
        "ipv4": v4,
        "ipv6": v6,
        "ipv6_lan_filter": {
            "mode": mode,
            "note": note,
            "prefixes": c.lan_prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "grace_prefixes": c.grace_prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        },
        "note": NOTE_TOP,
    }))
}
