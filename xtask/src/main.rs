//! `cargo xtask <job>`: one subcommand per job. See `cargo xtask --help`.

mod apiclient;
mod bench;
mod browser;
mod container;
mod cross;
mod demo;
mod engine;
mod image;
mod install;
mod setup;
mod test;
mod vm;
mod vm_guest;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "NetTraffic-Sentinel's developer tasks")]
struct Cli {
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    /// Install what building and testing need (Debian packages, nightly rust-src, bpf-linker).
    /// Idempotent: a second run only checks.
    Setup,
    /// Set up if needed, build in release mode and run the daemon (as root). Arguments after `--`
    /// go to the daemon; `MONITOR_IFACE` and friends are read from the environment.
    Run {
        /// Arguments for `sentinel`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up if needed, then run every test tier, `cargo fmt --check` and clippy (as root).
    Test {
        /// Run only the tiers whose name contains this text (e.g. `unit`, `ebpf`).
        #[arg(long)]
        only: Option<String>,
    },
    /// Set up if needed and build the release daemon; `--target aarch64-unknown-linux-gnu`
    /// cross-builds it (std from rust-src, Debian's cross gcc, installed on first use).
    Build {
        /// A target triple other than this machine's.
        #[arg(long)]
        target: Option<String>,
    },
    /// Build the image compose.yaml names, offline: a Debian base from mmdebstrap and the daemon
    /// built here, with the engine at `DOCKER_HOST`. Idempotent.
    Image,
    /// Install the daemon as a systemd service (binary, unit, settings file) and start it.
    Install {
        /// Stage the files under this directory instead, and start nothing.
        #[arg(long)]
        root: Option<std::path::PathBuf>,
    },
    /// Inside a `vm` tier guest: the checks on the guest's kernel (not for direct use).
    #[command(hide = true)]
    VmGuest {
        /// The attach mode the daemon must choose on this kernel.
        #[arg(long)]
        attach: String,
    },
    /// The daemon on a namespace lab with a few minutes of realistic traffic; prints the
    /// dashboard's URL (on this machine's loopback). Same as `lab demo`.
    Demo(DemoArgs),
    /// The network-namespace lab.
    Lab {
        #[command(subcommand)]
        what: LabJob,
    },
    /// Benchmarks that print numbers beside a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

#[derive(Subcommand)]
enum LabJob {
    /// Builds a lab, runs the daemon on its NAS and sends a realistic mix; removes the lab after.
    Demo(DemoArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Minutes of traffic (1 to 30).
    #[arg(long, default_value_t = 3)]
    minutes: u64,
    /// The loopback port that forwards to the dashboard.
    #[arg(long, default_value_t = 18080)]
    port: u16,
    /// Save a screenshot of the dashboard (headless Chromium) to this PNG.
    #[arg(long)]
    screenshot: Option<std::path::PathBuf>,
}

impl DemoArgs {
    fn options(self) -> demo::Options {
        demo::Options {
            minutes: self.minutes,
            port: self.port,
            screenshot: self.screenshot,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.job {
        Job::Setup => setup::setup(),
        Job::Run { args } => run(&args),
        Job::Test { only } => test::test(only.as_deref()),
        Job::Build { target } => cross::build(target.as_deref()),
        Job::Image => image::image(),
        Job::Install { root } => install::install(root.as_deref()),
        Job::VmGuest { attach } => vm_guest::guest(&attach),
        Job::Bench { which } => bench::bench(which),
        Job::Demo(args)
        | Job::Lab {
            what: LabJob::Demo(args),
        } => demo::demo(&args.options()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    setup::setup()?;
    setup::cargo(&["build", "--release", "-p", "sentinel"])?;
    let daemon = setup::workspace_root().join("target/release/sentinel");
    println!("xtask: starting {} {}", daemon.display(), args.join(" "));
    let mut cmd = std::process::Command::new(daemon);
    // Live totals on the terminal unless the caller chose otherwise.
    if std::env::var_os("PRINT_INTERVAL").is_none() {
        cmd.env("PRINT_INTERVAL", "5");
    }
    setup::exec(cmd.args(args))
}
