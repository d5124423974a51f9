//! Optional HTTP Basic auth (`WEB_AUTH=user:password`) over the dashboard and the API, with
//! `/api/health` and `/metrics` exemptable (container healthchecks and Prometheus scrapers).

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine as _;

use super::{ApiState, error::ApiError};

/// Credentials and exemptions, as the configuration validated them.
pub use crate::config::WebAuth as Auth;

/// Constant-time comparison, so response times do not reveal how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a request carries the right credentials.
pub fn authorized(auth: &Auth, request: &Request) -> bool {
    let Some(value) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // The scheme is a case-insensitive token (RFC 9110 11.1): `Basic`, `basic`, `BASIC`...
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .is_ok_and(|decoded| same(&decoded, auth.credentials.as_bytes()))
}

/// The middleware.
pub async fn require(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    match &state.auth {
        Some(auth)
            if !auth.exempt.iter().any(|p| p == request.uri().path())
                && !authorized(auth, &request) =>
        {
            ApiError::Unauthorized.into_response()
        }
        _ => next.run(request).await,
    }
}
