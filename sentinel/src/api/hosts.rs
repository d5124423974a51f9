//! `WEB_ALLOWED_HOSTS`: a `Host` header allow-list against DNS rebinding.
//!
//! A page on `http://evil.example/` whose name an attacker later points at the NAS's LAN address
//! makes the victim's browser send requests to the NAS with `Host: evil.example`; the browser
//! treats the answers as same-origin. With an allow-list, such a request gets 403 JSON. Hosts
//! written as IP literals (`192.168.1.10:8080`, `[fd00::1]:8080`) are always accepted: a
//! rebinding page always carries a name, and the container healthcheck and LAN users typing the
//! address keep working. Without the setting every host is accepted (the seed's behaviour).

use std::net::IpAddr;

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{ApiState, error::ApiError};

/// The host part of a `Host` header value, lower-cased, without the port or IPv6 brackets.
pub fn host_name(value: &str) -> String {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match value.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => value,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a `Host` value passes `allowed` (empty: everything passes).
pub fn allowed(allowed: &[String], host: Option<&str>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let name = host_name(host);
    name.parse::<IpAddr>().is_ok() || allowed.contains(&name)
}

/// The middleware.
pub async fn require(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if allowed(&state.allowed_hosts, host.as_deref()) {
        next.run(request).await
    } else {
        ApiError::HostNotAllowed(host.unwrap_or_default()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_ip_literals_always_pass() {
        let list = vec!["nas.lan".to_owned(), "nas".to_owned()];
        for (host, ok) in [
            (Some("nas.lan:8080"), true),
            (Some("NAS.LAN."), true),
            (Some("nas"), true),
            (Some("evil.example:8080"), false),
            (Some("nas.lan.evil.example"), false),
            (Some("192.168.1.10:8080"), true),
            (Some("[fd00::1]:8080"), true),
            (Some("[fd00::1]"), true),
            (None, false),
        ] {
            assert_eq!(allowed(&list, host), ok, "{host:?}");
        }
        assert!(allowed(&[], Some("anything")));
        assert!(allowed(&[], None));
    }
}
