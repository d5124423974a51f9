//! The HTTP side (axum): the seed's JSON API with its paths and shapes, the embedded dashboard,
//! `/api/status`, `/api/health`, CSV export and `/metrics`. Only this module knows axum.
//!
//! Every request is a read: no endpoint changes state. Queries run on the blocking pool (SQLite
//! is blocking) and every response merges unflushed counts the same way (the store does it).
//! Limits: a 10 s timeout per request, 64 requests in flight, gzip for text, security headers
//! with a CSP that allows only the NAS itself, optional Basic auth, an optional `Host` allow-list
//! ([`hosts`]); the server loop ([`serve`]) adds a header-read timeout, a connection cap and a
//! bounded graceful shutdown.

mod assets;
pub mod auth;
mod cycle;
mod error;
pub mod format;
pub mod hosts;
mod json;
mod live;
mod metrics;
mod server;
pub mod services;
mod traffic;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::Request,
    http::{HeaderName, HeaderValue, header},
    middleware,
    response::IntoResponse,
    routing::get,
};
use tower_http::{compression::CompressionLayer, set_header::SetResponseHeaderLayer};

pub use self::{
    error::ApiError,
    server::{SHUTDOWN_GRACE, ServerLimits, serve},
};
use crate::{
    meter::SpeedRing,
    status::SharedStatus,
    store::{Clock, Store},
};

/// What the handlers read.
#[derive(Clone)]
pub struct ApiState {
    /// History and pending counts.
    pub store: Arc<Store>,
    /// Capture status.
    pub capture: SharedStatus,
    /// The live speed.
    pub speed: Arc<Mutex<SpeedRing>>,
    /// Basic auth, when configured.
    pub auth: Option<auth::Auth>,
    /// Host names the `Host` header may carry (`WEB_ALLOWED_HOSTS`; empty: any). IP literals
    /// are always accepted.
    pub allowed_hosts: Arc<Vec<String>>,
    /// Service names for `/api/services` (`SERVICE_NAMES` over the built-in table).
    pub service_names: Arc<crate::service_names::ServiceNames>,
    /// Static facts about the daemon.
    pub info: Arc<DaemonInfo>,
    /// The clock "now" and "today" come from (the system clock in the daemon; tests freeze it).
    pub clock: Arc<dyn Clock>,
    /// Billing cycle and quota settings (`/api/cycle`, `/metrics`).
    pub billing: Arc<crate::billing::BillingConfig>,
}

/// Facts for `/api/status` and `/metrics`.
#[derive(Debug)]
pub struct DaemonInfo {
    /// Crate version.
    pub version: &'static str,
    /// When the daemon started.
    pub started: Instant,
    /// Unix seconds of the start.
    pub started_unix: i64,
    /// The LAN prefix length derived in auto mode.
    pub lan_prefix_len: u8,
}

impl ApiState {
    /// Unix seconds now, by the state's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Runs a blocking store query off the async runtime.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store, i64) -> Result<T, crate::store::QueryError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        let now = self.now();
        tokio::task::spawn_blocking(move || f(&store, now))
            .await
            .map_err(|e| ApiError::Internal(format!("query task: {e}")))?
            .map_err(|e| match e {
                crate::store::QueryError::Range(r) => ApiError::BadRequest(r.to_string()),
                other => ApiError::Internal(crate::error_chain(&other)),
            })
    }
}

/// `+08:00` for an offset in seconds east of UTC.
pub fn format_offset(seconds: i32) -> String {
    traffic::offset_text(seconds)
}

/// The content security policy: only the NAS itself.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// Requests in flight at most (more wait their turn).
const MAX_IN_FLIGHT: usize = 64;

/// The router with every route and layer.
pub fn router(state: ApiState) -> Router {
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    Router::new()
        .route("/", get(assets::index))
        .route("/static/{*path}", get(assets::file))
        .route("/api/summary", get(traffic::summary))
        .route("/api/query", get(traffic::query))
        .route("/api/history/30days", get(traffic::days30))
        .route("/api/history/12months", get(traffic::months12))
        .route("/api/history/today_hours", get(traffic::today_hours))
        .route("/api/date_range", get(traffic::date_range))
        .route("/api/top_ips", get(traffic::top_ips))
        .route("/api/services", get(services::services))
        .route("/api/realtime", get(live::realtime))
        .route("/api/health", get(live::health))
        .route("/api/status", get(live::status))
        .route("/api/debug/local_ips", get(live::local_ips))
        .route("/metrics", get(metrics::metrics))
        .route("/api/cycle", get(cycle::cycle))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            hosts::require,
        ))
        .layer(CompressionLayer::new())
        .layer(header(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(middleware::from_fn(deadline))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_IN_FLIGHT,
        ))
        .with_state(state)
}

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Ends a request that takes too long, with a JSON error like every other one.
async fn deadline(request: Request, next: middleware::Next) -> axum::response::Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(REQUEST_TIMEOUT.as_secs()).into_response(),
    }
}

async fn not_found(request: Request) -> impl IntoResponse {
    ApiError::NotFound(request.uri().path().to_owned())
}

async fn method_not_allowed(request: Request) -> impl IntoResponse {
    ApiError::MethodNotAllowed(request.method().to_string())
}
