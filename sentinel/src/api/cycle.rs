//! `GET /api/cycle`: the current billing cycle (bounds, used, quota, remaining, percent, daily
//! average, projection, safe daily budget), today's upload against `UPLOAD_DAILY_LIMIT` and the
//! previous 12 cycles, from the hourly history with unflushed counts merged. Shape in
//! static/API-CONTRACT.md.

use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, ApiState, json::Json};
use crate::billing::{local_rfc3339, report, units::Units};

fn fmt_opt(units: Units, v: Option<u64>) -> Value {
    v.map_or(Value::Null, |b| json!(units.format(b)))
}

fn round1(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |p| json!((p * 100.0).round() / 100.0))
}

/// `GET /api/cycle`.
pub async fn cycle(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let config = state.billing.clone();
    let r = state
        .query(move |store, now| report::build(store, &config, now))
        .await?;
    let c = &state.billing;
    let units = c.units;
    let zone = state.store.zone();
    let f = &r.figures;
    let last_day =
        |end: chrono::NaiveDate| end.pred_opt().unwrap_or(end).format("%Y-%m-%d").to_string();
    let up_today = r.today_traffic.up.ip_bytes;
    let limit = c.upload_daily_limit;
    let previous: Vec<Value> = r
        .previous
        .iter()
        .map(|p| {
            let (up, down) = (p.traffic.up.ip_bytes, p.traffic.down.ip_bytes);
            json!({
                "start": local_rfc3339(zone, p.cycle.start_unix),
                "end": local_rfc3339(zone, p.cycle.end_unix),
                "start_date": p.cycle.start.format("%Y-%m-%d").to_string(),
                "end_date": last_day(p.cycle.end),
                "up_bytes": up, "down_bytes": down, "total_bytes": up.saturating_add(down),
                "used": p.used, "used_fmt": units.format(p.used),
            })
        })
        .collect();
    Ok(Json(json!({
        "enabled": c.quota.is_some(),
        "billing_day": c.billing_day,
        "basis": c.basis.name(),
        "units": units.name(),
        "tz": zone.name(),
        "now": local_rfc3339(zone, r.now),
        "start": local_rfc3339(zone, r.cycle.start_unix),
        "end": local_rfc3339(zone, r.cycle.end_unix),
        "start_date": r.cycle.start.format("%Y-%m-%d").to_string(),
        "end_date": last_day(r.cycle.end),
        "up_bytes": r.traffic.up.ip_bytes,
        "down_bytes": r.traffic.down.ip_bytes,
        "adjust": c.adjust,
        "used": f.used, "used_fmt": units.format(f.used),
        "quota": f.quota, "quota_fmt": fmt_opt(units, f.quota),
        "remaining": f.remaining, "remaining_fmt": fmt_opt(units, f.remaining),
        "percent": round1(f.percent),
        "thresholds": c.thresholds,
        "daily_average": f.daily_average, "daily_average_fmt": units.format(f.daily_average),
        "projection": {
            "bytes": f.projection,
            "fmt": units.format(f.projection),
            "exceeds_quota": f.projection_exceeds,
        },
        "safe_daily_budget": f.safe_daily_budget,
        "safe_daily_budget_fmt": fmt_opt(units, f.safe_daily_budget),
        "days_left": f.days_left,
        "seconds_left": f.seconds_left,
        "upload_today": {
            "date": r.today.format("%Y-%m-%d").to_string(),
            "bytes": up_today,
            "fmt": units.format(up_today),
            "limit": limit,
            "limit_fmt": fmt_opt(units, limit),
            "percent": round1(limit.map(|l| up_today as f64 * 100.0 / l as f64)),
            "exceeded": limit.map(|l| up_today >= l),
        },
        "previous": previous,
    })))
}
