//! The history endpoints of the seed, with their paths and shapes, strict parameters and bounded
//! answers: summary, range query (JSON or CSV), 30 days, 12 months, today's hours, date range,
//! top remotes.

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{ApiError, ApiState, json::Json};
use crate::billing::units::Units;
use crate::{
    store::{Granularity, Period, Point, Series, Traffic},
    timebucket::Zone,
};

/// `{up_bytes, down_bytes, total_bytes, *_fmt}` as the seed's periods and summaries; the `*_fmt`
/// strings in `UNITS` (the seed's format by default).
fn period(t: &Traffic, units: Units) -> Value {
    let (up, down) = (t.up.ip_bytes, t.down.ip_bytes);
    let total = up.saturating_add(down);
    json!({
        "up_bytes": up, "down_bytes": down, "total_bytes": total,
        "up_fmt": units.format(up), "down_fmt": units.format(down), "total_fmt": units.format(total),
    })
}

/// `+08:00` for an offset in seconds.
pub fn offset_text(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    format!("{sign}{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

/// RFC 3339 local time of `unix` in `zone`, seconds precision.
pub fn local_rfc3339(zone: Zone, unix: i64) -> String {
    let offset = zone.offset_at(unix);
    match chrono::DateTime::from_timestamp(unix + i64::from(offset), 0) {
        Some(t) => format!(
            "{}{}",
            t.naive_utc().format("%Y-%m-%dT%H:%M:%S"),
            offset_text(offset)
        ),
        None => String::new(),
    }
}

/// One series item in the seed's shape for its granularity.
fn item(p: &Point) -> Value {
    let (up, down) = (p.traffic.up.ip_bytes, p.traffic.down.ip_bytes);
    let mut v =
        json!({ "up_bytes": up, "down_bytes": down, "total_bytes": up.saturating_add(down) });
    let label = p.period.label();
    match p.period {
        Period::Hour { utc_offset, .. } => {
            v["hour_ts"] = json!(label);
            v["utc_offset"] = json!(offset_text(utc_offset));
        }
        Period::Day(_) => v["day"] = json!(label),
        Period::Month(_) => v["month"] = json!(label),
    }
    v
}

/// A date parameter: exactly `YYYY-MM-DD` and a real day (the seed accepted `2025-3-1` and then
/// compared strings, D29).
pub fn parse_date(name: &str, value: Option<&String>) -> Result<Option<NaiveDate>, ApiError> {
    let Some(text) = value.map(|s| s.as_str()) else {
        return Ok(None);
    };
    let well_formed = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let date = well_formed
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten();
    date.map(Some).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{name}: {text:?} is not a date of the form YYYY-MM-DD"
        ))
    })
}

pub(super) type Params = Query<Vec<(String, String)>>;

/// The parameters by name. Refuses those an endpoint does not know and those given twice: a typo
/// or a repeated parameter should not silently change the answer.
pub(super) fn only(
    params: Vec<(String, String)>,
    known: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let mut map = HashMap::with_capacity(params.len());
    for (k, v) in params {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter {k:?}; expected {}",
                known.join(", ")
            )));
        }
        if map.contains_key(&k) {
            return Err(ApiError::BadRequest(format!(
                "parameter {k:?} is given more than once"
            )));
        }
        map.insert(k, v);
    }
    Ok(map)
}

/// `GET /api/summary`: today, this month, this year, plus the NAS's clock and zone.
pub async fn summary(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let s = state.query(|store, now| store.summary(now)).await?;
    let zone = state.store.zone();
    let now = state.now();
    Ok(Json(json!({
        "today": period(&s.today, state.billing.units), "month": period(&s.month, state.billing.units),
        "year": period(&s.year, state.billing.units),
        "tz": zone.name(), "tz_offset": offset_text(zone.offset_at(now)),
        "now": local_rfc3339(zone, now), "today_date": s.today_date.format("%Y-%m-%d").to_string(),
    })))
}

/// `GET /api/query?start&end&granularity[&format=csv]`.
pub async fn query(
    State(state): State<ApiState>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let params = only(params, &["start", "end", "granularity", "format"])?;
    let (Some(first), Some(last)) = (
        parse_date("start", params.get("start"))?,
        parse_date("end", params.get("end"))?,
    ) else {
        return Err(ApiError::BadRequest("start and end are required".into()));
    };
    if first > last {
        return Err(ApiError::BadRequest(format!(
            "start {first} is after end {last}"
        )));
    }
    let granularity = match params.get("granularity").map(|s| s.as_str()) {
        None | Some("day") => Granularity::Day,
        Some("hour") => Granularity::Hour,
        Some("month") => Granularity::Month,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "granularity {other:?} is not hour, day or month"
            )));
        }
    };
    let csv = match params.get("format").map(|s| s.as_str()) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?} is not json or csv"
            )));
        }
    };
    let series = state
        .query(move |store, _| store.series(first, last, granularity))
        .await?;
    if csv {
        return Ok(csv_response(&series, state.store.zone(), first, last));
    }
    let items: Vec<Value> = series.points.iter().map(item).collect();
    Ok(
        Json(json!({ "series": items, "summary": period(&series.total, state.billing.units) }))
            .into_response(),
    )
}

/// The series as CSV: a header row, ISO 8601 period starts, every counter.
fn csv_response(series: &Series, zone: Zone, first: NaiveDate, last: NaiveDate) -> Response {
    let mut out = String::from(
        "period,start,up_bytes,down_bytes,total_bytes,up_packets,down_packets,up_wire_bytes,down_wire_bytes\n",
    );
    for p in &series.points {
        let t = &p.traffic;
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            p.period.label(),
            local_rfc3339(zone, p.start),
            t.up.ip_bytes,
            t.down.ip_bytes,
            t.total_bytes(),
            t.up.packets,
            t.down.packets,
            t.up.wire_bytes,
            t.down.wire_bytes
        ));
    }
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"traffic-{first}-{last}.csv\""
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `GET /api/history/30days`.
pub async fn days30(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let s = state.query(|store, now| store.last_30_days(now)).await?;
    Ok(Json(
        json!({ "days": s.points.iter().map(item).collect::<Vec<_>>() }),
    ))
}

/// `GET /api/history/12months`.
pub async fn months12(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let s = state.query(|store, now| store.last_12_months(now)).await?;
    Ok(Json(
        json!({ "months": s.points.iter().map(item).collect::<Vec<_>>() }),
    ))
}

/// `GET /api/history/today_hours`: every hour of today so far (zero-filled, current hour
/// included, unflushed counts included).
pub async fn today_hours(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let s = state.query(|store, now| store.today_hours(now)).await?;
    let hours: Vec<Value> = s
        .points
        .iter()
        .filter(|p| p.start <= now)
        .map(item)
        .collect();
    Ok(Json(json!({ "hours": hours })))
}

/// `GET /api/date_range`.
pub async fn date_range(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let (min, max) = state.query(|store, now| store.date_range(now)).await?;
    Ok(Json(
        json!({ "min": min.format("%Y-%m-%d").to_string(), "max": max.format("%Y-%m-%d").to_string() }),
    ))
}

/// The `start`, `end` (default today, in the NAS's zone) and `limit` (1-100, default 10) of a
/// ranked list (top remotes, top services).
pub(super) fn ranked_range(
    state: &ApiState,
    params: &HashMap<String, String>,
) -> Result<(NaiveDate, NaiveDate, usize), ApiError> {
    let today = state.store.zone().local_date(state.now());
    let first = parse_date("start", params.get("start"))?.unwrap_or(today);
    let last = parse_date("end", params.get("end"))?.unwrap_or(today);
    if first > last {
        return Err(ApiError::BadRequest(format!(
            "start {first} is after end {last}"
        )));
    }
    let limit = match params.get("limit") {
        None => 10,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit {text:?} is not a number from 1 to 100"
                )));
            }
        },
    };
    Ok((first, last, limit))
}

/// `GET /api/top_ips[?start&end&limit]`: by up + down bytes over the range (default: today).
pub async fn top_ips(
    State(state): State<ApiState>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let params = only(params, &["start", "end", "limit"])?;
    let (first, last, limit) = ranked_range(&state, &params)?;
    let top = state
        .query(move |store, _| store.top_remotes(first, last, limit))
        .await?;
    let items: Vec<Value> = top
        .remotes
        .iter()
        .map(|r| {
            let bytes = r.counters.up_bytes.saturating_add(r.counters.down_bytes);
            json!({ "ip": r.ip.to_string(), "bytes": bytes, "bytes_fmt": state.billing.units.format(bytes),
                    "up_bytes": r.counters.up_bytes, "down_bytes": r.counters.down_bytes })
        })
        .collect();
    Ok(Json(
        json!({ "top_ips": items, "start": first.to_string(), "end": last.to_string() }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_must_be_exact() {
        let p = |s: &str| parse_date("start", Some(&s.to_owned()));
        assert_eq!(
            p("2025-03-01").ok().flatten(),
            NaiveDate::from_ymd_opt(2025, 3, 1)
        );
        for bad in [
            "2025-3-1",
            "2025-03- 5",
            "2024-02-30",
            "2024-13-01",
            "x",
            "",
            "20250301",
            "2025-03-011",
            "٢٠٢٥-٠٣-٠١",
        ] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_date("start", None).ok().flatten(), None);
    }

    #[test]
    fn offsets_print_like_rfc3339() {
        assert_eq!(offset_text(8 * 3600), "+08:00");
        assert_eq!(offset_text(-(3 * 3600 + 1800)), "-03:30");
        assert_eq!(offset_text(5 * 3600 + 2700), "+05:45");
        assert_eq!(offset_text(0), "+00:00");
    }
}
