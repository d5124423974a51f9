//! The HTTP server loop: axum's router served by hyper with limits axum's own `serve` lacks.
//!
//! - A header-read timeout: a client that sends part of a request head (or nothing) is dropped
//!   after [`ServerLimits::header_read_timeout`]; the same timer bounds an idle keep-alive
//!   connection waiting for its next request.
//! - A connection cap: beyond [`ServerLimits::max_connections`] a new connection is closed at
//!   once, so idle clients cannot exhaust the daemon's descriptors.
//! - Graceful shutdown with a deadline: on shutdown the listener closes, connections finish
//!   their current request, and after [`ServerLimits::grace`] whatever is left is cut.
//!
//! An accept error (EMFILE, ENFILE) is logged and retried after a pause; it never stops the
//! server.

use std::{future::Future, sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::sync::Semaphore;

/// How long requests in flight get after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The server's limits.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Time a client has to send a whole request head (and an idle connection waits).
    pub header_read_timeout: Duration,
    /// Time requests in flight get at shutdown.
    pub grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 128,
            header_read_timeout: Duration::from_secs(5),
            grace: SHUTDOWN_GRACE,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then at most `limits.grace` more.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a moment
                    // (connections finishing free descriptors) and go on.
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the cap: close at once rather than let it wait holding a descriptor.
            tracing::debug!("connection cap reached; closing a new connection");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = limits.grace.as_secs_f64(),
            "requests still in flight after the grace period were cut"
        );
    }
    Ok(())
}
