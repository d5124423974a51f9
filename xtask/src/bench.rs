//! `cargo xtask bench <which>`: each benchmark is a release-built example of the daemon crate that
//! prints its numbers beside a baseline measured in the same run.

use clap::Subcommand;

use crate::setup;

#[derive(Subcommand)]
pub enum Which {
    /// Per-packet cost of the eBPF program (BPF_PROG_TEST_RUN, 1,000,000 repeats) beside an empty
    /// TC program, and the userspace classifier's frames per second on one core.
    Classifier {
        /// Fewer repeats: a smoke test of the benchmark itself.
        #[arg(long)]
        quick: bool,
    },
    /// The history database: 10 years of hourly rows and a year of per-day remotes (50,000 a
    /// day); p50/p99 of every query and the size per year.
    Store {
        /// Small sizes: a smoke test of the benchmark itself.
        #[arg(long)]
        quick: bool,
    },
    /// The daemon in the namespace lab: the highest 64-byte UDP rate counted exactly, CPU seconds
    /// per million packets and peak RSS, beside the idle daemon; the idle daemon's CPU ticks with 0
    /// and with 20,000 remotes seen, side by side, and its RSS after a full remote map. It starts
    /// with the classifier benchmark, whose table puts the per-packet cost with the service
    /// counter beside the cost without it.
    Capture {
        /// Two short steps: a smoke test of the benchmark itself.
        #[arg(long)]
        quick: bool,
    },
    /// The HTTP API: 100 clients in the dashboard's request mix against the real server over a
    /// year of data, paced and then as fast as it answers; p50/p99 per endpoint, requests per
    /// second, and the capture drain's `Store::record` time idle and under load.
    Api {
        /// Two-second phases: a smoke test of the benchmark itself.
        #[arg(long)]
        quick: bool,
    },
}

pub fn bench(which: Which) -> anyhow::Result<()> {
    setup::setup()?;
    let (example, quick) = match which {
        Which::Classifier { quick } => ("bench_classifier", quick),
        Which::Store { quick } => ("bench_store", quick),
        Which::Api { quick } => ("bench_api", quick),
        Which::Capture { quick } => {
            // First the per-packet cost in the kernel, with and without the service counter.
            let mut classifier = vec!["run", "--release", "-p", "sentinel", "--example"];
            classifier.extend(["bench_classifier", "--"]);
            if quick {
                classifier.push("--quick");
            }
            setup::cargo(&classifier)?;
            // The example runs the daemon binary built next to it.
            setup::cargo(&[
                "build",
                "--release",
                "-p",
                "sentinel",
                "--bins",
                "--examples",
            ])?;
            ("bench_capture", quick)
        }
    };
    let mut args = vec![
        "run",
        "--release",
        "-p",
        "sentinel",
        "--example",
        example,
        "--",
    ];
    if quick {
        args.push("--quick");
    }
    setup::cargo(&args)
}
