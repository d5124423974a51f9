//! `GET /api/services[?start&end&limit&format=csv]`: which services used the public traffic over
//! a range of local days (default today), top `limit` (default 10, at most 100) plus "other",
//! unflushed counts included (see docs/services.md for the server/client rule).
//!
//! Knows HTTP and the JSON/CSV shapes; the ranking is the store's, the names `service_names`'.

use axum::{
    extract::{Query, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use sentinel_common::abi::{ListenKey, ROLE_CLIENT, ROLE_SERVER, RemoteCounters, ServiceKey};
use serde_json::{Value, json};

use super::{
    ApiError, ApiState,
    json::Json,
    traffic::{Params, only, ranked_range},
};
use crate::{billing::units::Units, service_names::protocol_name, store::TopServices};

/// `"server"`, `"client"`, or `"none"` for traffic without ports (ICMP, fragments...).
pub fn role_name(role: u8) -> &'static str {
    match role {
        ROLE_SERVER => "server",
        ROLE_CLIENT => "client",
        _ => "none",
    }
}

/// The protocol as the API writes it: `tcp`, `udp`, `icmp`..., or the number.
pub fn proto_text(proto: u8) -> String {
    protocol_name(proto).map_or_else(|| proto.to_string(), str::to_ascii_lowercase)
}

fn counters(c: &RemoteCounters, units: Units) -> serde_json::Map<String, Value> {
    let total = c.up_bytes.saturating_add(c.down_bytes);
    let v = json!({
        "up_bytes": c.up_bytes, "down_bytes": c.down_bytes, "total_bytes": total,
        "up_packets": c.up_packets, "down_packets": c.down_packets,
        "up_fmt": units.format(c.up_bytes), "down_fmt": units.format(c.down_bytes),
        "total_fmt": units.format(total),
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn service(
    state: &ApiState,
    owners: &[crate::listeners::Listener],
    key: &ServiceKey,
    c: &RemoteCounters,
) -> Value {
    let mut m = counters(c, state.billing.units);
    m.insert("proto".into(), json!(proto_text(key.proto)));
    m.insert("port".into(), json!(key.port));
    m.insert("role".into(), json!(role_name(key.role)));
    m.insert("name".into(), json!(state.service_names.name(key)));
    // Who listens on a server port now (null for client and portless traffic, or not found).
    let owner = (key.role == ROLE_SERVER)
        .then(|| {
            owners
                .iter()
                .find(|l| l.key == ListenKey::new(key.proto, key.port))
        })
        .flatten();
    m.insert(
        "process".into(),
        json!(owner.and_then(|l| l.process.clone())),
    );
    m.insert(
        "container".into(),
        json!(owner.and_then(|l| l.container.clone())),
    );
    Value::Object(m)
}

/// The handler.
pub async fn services(
    State(state): State<ApiState>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let params = only(params, &["start", "end", "limit", "format"])?;
    let (first, last, limit) = ranked_range(&state, &params)?;
    let csv = match params.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?} is not json or csv"
            )));
        }
    };
    let top = state
        .query(move |store, _| store.top_services(first, last, limit))
        .await?;
    if csv {
        return Ok(csv_response(&state, &top, &format!("{first}-{last}")));
    }
    let owners = crate::status::read(&state.capture).listeners;
    let items: Vec<Value> = top
        .services
        .iter()
        .map(|(k, c)| service(&state, &owners, k, c))
        .collect();
    let other = Value::Object(counters(&top.other, state.billing.units));
    Ok(Json(json!({
        "services": items, "other": other, "start": first.to_string(), "end": last.to_string(),
    }))
    .into_response())
}

fn csv_response(state: &ApiState, top: &TopServices, range: &str) -> Response {
    let mut out = String::from(
        "proto,port,role,name,up_bytes,down_bytes,total_bytes,up_packets,down_packets\n",
    );
    let mut line = |proto: &str, port: &str, role: &str, name: &str, c: &RemoteCounters| {
        out.push_str(&format!(
            "{proto},{port},{role},{},{},{},{},{},{}\n",
            csv_field(name),
            c.up_bytes,
            c.down_bytes,
            c.up_bytes.saturating_add(c.down_bytes),
            c.up_packets,
            c.down_packets
        ));
    };
    for (k, c) in &top.services {
        let name = state.service_names.name(k).unwrap_or_default();
        line(
            &proto_text(k.proto),
            &k.port.to_string(),
            role_name(k.role),
            &name,
            c,
        );
    }
    line("", "", "", "other", &top.other);
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"services-{range}.csv\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// A user-given name quoted for CSV when it needs it (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_quote_for_csv_and_roles_and_protocols_print() {
        assert_eq!(csv_field("Plex"), "Plex");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(role_name(ROLE_SERVER), "server");
        assert_eq!(role_name(ROLE_CLIENT), "client");
        assert_eq!(role_name(2), "none");
        assert_eq!(proto_text(6), "tcp");
        assert_eq!(proto_text(58), "icmpv6");
        assert_eq!(proto_text(253), "253");
    }
}
