//! The command line: the daemon's settings ([`crate::config`]) and the billing settings
//! ([`crate::billing`]) flattened into one clap parser, and the subcommands. `main.rs` parses it
//! and validates it once into [`Settings`].

use clap::Parser;

use crate::{
    billing::{BillingArgs, BillingConfig, BillingConfigError},
    config::{Config, ConfigError, DaemonArgs},
};

/// Command line and environment.
#[derive(Debug, Parser)]
#[command(
    name = "sentinel",
    version,
    about = "Counts a NAS's public internet traffic (eBPF TC) and keeps its history."
)]
pub struct Cli {
    /// What to do (default: run the daemon).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Capture, classification, storage and web settings.
    #[command(flatten)]
    pub daemon: DaemonArgs,

    /// Billing cycle, quota, upload guard, alerts and notifications (see `billing::settings`).
    #[command(flatten)]
    pub billing: BillingArgs,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Asks the running daemon's `/api/health` (on WEB_PORT, with WEB_AUTH) and exits 0 when it is
    /// healthy, 1 otherwise: a container healthcheck that needs no curl.
    Healthcheck,
    /// Sends one test message to every configured channel (ALERT_WEBHOOK, NOTIFY) and reports
    /// each channel's result; exits 1 when one failed.
    NotifyTest,
}

/// Everything validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The daemon's settings.
    pub config: Config,
    /// Billing, alerts and notifications.
    pub billing: BillingConfig,
}

/// A setting that cannot be used (the message names it).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A daemon setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A billing, alert or notification setting.
    #[error(transparent)]
    Billing(#[from] BillingConfigError),
}

impl Cli {
    /// Validates both blocks.
    pub fn validate(self) -> Result<Settings, SettingsError> {
        Ok(Settings {
            billing: self.billing.validate()?,
            config: self.daemon.validate()?,
        })
    }
}
