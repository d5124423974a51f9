//! `cargo xtask test`: every tier of docs/architecture.md "Tests", plus formatting and lints, each one
//! command. A tier that cannot run (not root, no BPF) fails: a skipped privileged test is not a pass.

use std::{process::Command, time::Instant};

use anyhow::bail;

use crate::setup::{self, cargo_bin, workspace_root};

/// One named step.
/// One named step: a cargo command, or a job of xtask's own.
struct Tier {
    name: &'static str,
    args: Vec<String>,
    /// Runs with the nightly toolchain (the eBPF crate).
    nightly: bool,
    /// Instead of cargo: a function of xtask.
    job: Option<fn() -> anyhow::Result<()>>,
}

fn tier(name: &'static str, args: &[&str]) -> Tier {
    Tier {
        name,
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        nightly: false,
        job: None,
    }
}

/// Integration test targets of the daemon: those named `privileged_*` need root and run in their
/// own tiers; the rest run unprivileged.
fn integration_targets() -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut plain = Vec::new();
    let mut privileged = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("sentinel/tests"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            if stem.starts_with("privileged_") {
                privileged.push(stem.to_owned());
            } else {
                plain.push(stem.to_owned());
            }
        }
    }
    plain.sort();
    privileged.sort();
    Ok((plain, privileged))
}

fn tiers() -> anyhow::Result<Vec<Tier>> {
    let (plain, privileged) = integration_targets()?;
    let mut out = vec![
        tier("fmt", &["fmt", "--all", "--check"]),
        tier(
            "clippy-host",
            &["clippy", "--all-targets", "--", "-D", "warnings"],
        ),
        Tier {
            name: "clippy-ebpf",
            args: [
                "clippy",
                "-p",
                "sentinel-ebpf",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            nightly: true,
            job: None,
        },
        tier("unit", &["test", "--lib", "--bins"]),
    ];
    if !plain.is_empty() {
        let mut args = vec!["test".to_owned(), "-p".to_owned(), "sentinel".to_owned()];
        for t in &plain {
            args.push("--test".to_owned());
            args.push(t.clone());
        }
        out.push(Tier {
            name: "integration",
            args,
            nightly: false,
            job: None,
        });
    }
    for t in privileged {
        let name: &'static str = Box::leak(t.replace('_', "-").into_boxed_str());
        out.push(Tier {
            name,
            args: vec![
                "test".into(),
                "-p".into(),
                "sentinel".into(),
                "--test".into(),
                t,
                "--".into(),
                "--test-threads=1".into(),
            ],
            nightly: false,
            job: None,
        });
    }
    out.push(Tier {
        name: "browser",
        args: Vec::new(),
        nightly: false,
        job: Some(crate::browser::browser_tier),
    });
    out.push(Tier {
        name: "unit-arm64",
        args: Vec::new(),
        nightly: false,
        job: Some(crate::cross::unit_arm64_tier),
    });
    out.push(Tier {
        name: "vm",
        args: Vec::new(),
        nightly: false,
        job: Some(crate::vm::vm_tier),
    });
    out.push(Tier {
        name: "container",
        args: Vec::new(),
        nightly: false,
        job: Some(crate::container::container_tier),
    });
    out.push(tier(
        "bench-smoke",
        &[
            "run",
            "--release",
            "-p",
            "sentinel",
            "--example",
            "bench_classifier",
            "--",
            "--quick",
        ],
    ));
    out.push(tier(
        "bench-smoke-api",
        &[
            "run",
            "--release",
            "-p",
            "sentinel",
            "--example",
            "bench_api",
            "--",
            "--quick",
        ],
    ));
    out.push(tier(
        "bench-smoke-store",
        &[
            "run",
            "--release",
            "-p",
            "sentinel",
            "--example",
            "bench_store",
            "--",
            "--quick",
        ],
    ));
    Ok(out)
}

/// Sets up, then runs every tier (or those matching `only`), and prints a summary.
pub fn test(only: Option<&str>) -> anyhow::Result<()> {
    setup::setup()?;
    let mut results = Vec::new();
    for t in tiers()? {
        if only.is_some_and(|o| !t.name.contains(o)) {
            continue;
        }
        println!("\n==== tier {} ====", t.name);
        let start = Instant::now();
        let mut cmd = if t.nightly {
            let toolchain = setup::ebpf_toolchain()?.unwrap_or_else(|| "nightly".to_owned());
            let mut c = Command::new("rustup");
            c.args(["run", &toolchain, "cargo"]);
            c
        } else {
            Command::new(cargo_bin())
        };
        // The nightly cargo must not inherit the stable toolchain's pins.
        if t.nightly {
            cmd.env_remove("RUSTUP_TOOLCHAIN")
                .env_remove("CARGO")
                .env_remove("RUSTC");
        }
        let ok = match t.job {
            Some(job) => job()
                .map_err(|e| eprintln!("tier {}: {e:#}", t.name))
                .is_ok(),
            None => cmd
                .args(&t.args)
                .current_dir(workspace_root())
                .status()
                .is_ok_and(|s| s.success()),
        };
        println!(
            "==== tier {}: {} in {:.0?} ====",
            t.name,
            if ok { "ok" } else { "FAILED" },
            start.elapsed()
        );
        results.push((t.name, ok, start.elapsed()));
    }
    println!("\nTiers:");
    for (name, ok, took) in &results {
        println!(
            "  {:<22} {:<6} {:>6.1?}",
            name,
            if *ok { "ok" } else { "FAILED" },
            took
        );
    }
    let failed = results.iter().filter(|r| !r.1).count();
    println!(
        "tiers: {} passed, {} failed",
        results.len() - failed,
        failed
    );
    if results.is_empty() {
        bail!("no tier matched");
    }
    if failed > 0 {
        bail!("{failed} tier(s) failed");
    }
    Ok(())
}
