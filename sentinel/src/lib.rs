//! NetTraffic-Sentinel: the daemon's library. `main.rs` only parses the configuration and calls
//! [`run::run`].
//!
//! Data flows one way: [`capture`] -> meter -> [`store`] / api. Only `capture` knows aya; only
//! `store` knows rusqlite.

pub mod addrwatch;
pub mod api;
pub mod billing;
pub mod capture;
pub mod classify;
pub mod cli;
pub mod config;
pub mod docker_names;
pub mod drain;
pub mod healthcheck;
pub mod iface;
pub mod links;
pub mod listeners;
pub mod listening;
pub mod lock;
pub mod meter;
pub mod run;
pub mod service_names;
pub mod status;
pub mod store;
pub mod supervisor;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod timebucket;

/// An error and its causes on one line (for logs and status).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
