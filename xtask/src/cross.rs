//! `cargo xtask build [--target T]`: the release daemon for this machine or, cross-compiled, for
//! another architecture, and the `unit-arm64` tier that runs the unit tests of that build under
//! qemu-user. Only the x86-64 standard library is installed (rustup cannot download others
//! here), so a foreign target builds its std from the pinned nightly's rust-src
//! (`-Z build-std`); Debian's cross gcc links it and compiles the bundled SQLite. The eBPF
//! object is architecture-neutral (bpfel) and embedded as on x86-64.

use std::process::Command;

use anyhow::bail;

use crate::setup::{self, run, workspace_root};

/// A target we know how to cross-build and run.
struct Cross {
    triple: &'static str,
    /// The Debian cross compiler (linker and C compiler for rusqlite's bundled SQLite).
    gcc: &'static str,
    /// The sysroot of Debian's cross libc, for qemu-user's `-L`.
    sysroot: &'static str,
    qemu: &'static str,
    packages: &'static [&'static str],
}

const CROSS: &[Cross] = &[Cross {
    triple: "aarch64-unknown-linux-gnu",
    gcc: "aarch64-linux-gnu-gcc",
    sysroot: "/usr/aarch64-linux-gnu",
    qemu: "qemu-aarch64-static",
    packages: &[
        "gcc-aarch64-linux-gnu",
        "libc6-dev-arm64-cross",
        "qemu-user-static",
    ],
}];

/// The arm64 target of the CI tier and the publishing workflow.
pub const ARM64: &str = "aarch64-unknown-linux-gnu";

/// Builds the release daemon, for `target` when given (left at
/// `$CARGO_TARGET_DIR/<target>/release/sentinel`).
pub fn build(target: Option<&str>) -> anyhow::Result<()> {
    setup::setup()?;
    let Some(triple) = target else {
        return setup::cargo(&["build", "--release", "--locked", "-p", "sentinel"]);
    };
    let cross = cross(triple)?;
    setup::apt_install(cross.packages)?;
    println!(
        "build: sentinel for {triple} (std from rust-src, linked by {})",
        cross.gcc
    );
    run(cross_cargo(cross)?
        .args(["build", "--release", "--locked", "-p", "sentinel"])
        .args(["--target", triple]))?;
    let binary = crate::image::target_dir().join(format!("{triple}/release/sentinel"));
    println!("build: {}", binary.display());
    Ok(())
}

/// The `unit-arm64` tier: the arm64 release build, then the daemon's unit tests built for
/// arm64 and run under qemu-user. The tests use the release profile: they then share the
/// dependencies just built (a debug build of them for arm64 would cost minutes of CI).
pub fn unit_arm64_tier() -> anyhow::Result<()> {
    build(Some(ARM64))?;
    let cross = cross(ARM64)?;
    run(cross_cargo(cross)?
        .args(["test", "--release", "--locked", "--lib", "--bins"])
        .args(["-p", "sentinel", "-p", "sentinel-common"])
        .args(["--target", ARM64]))
}

fn cross(triple: &str) -> anyhow::Result<&'static Cross> {
    match CROSS.iter().find(|c| c.triple == triple) {
        Some(c) => Ok(c),
        None => bail!(
            "no cross set-up for {triple}; known: {}",
            CROSS
                .iter()
                .map(|c| c.triple)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `cargo` of the pinned nightly with `-Z build-std` and the cross tools for `cross`.
fn cross_cargo(cross: &Cross) -> anyhow::Result<Command> {
    let Some(toolchain) = setup::ebpf_toolchain()? else {
        bail!("the pinned nightly is not installed (cargo xtask setup installs it)");
    };
    let env = cross.triple.to_uppercase().replace('-', "_");
    let lower = cross.triple.replace('-', "_");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", &toolchain, "cargo"])
        // The nightly cargo must not inherit the stable toolchain's pins.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env(format!("CARGO_TARGET_{env}_LINKER"), cross.gcc)
        .env(
            format!("CARGO_TARGET_{env}_RUNNER"),
            format!("{} -L {}", cross.qemu, cross.sysroot),
        )
        .env(format!("CC_{lower}"), cross.gcc)
        .env(format!("AR_{lower}"), cross.gcc.replace("-gcc", "-ar"))
        .current_dir(workspace_root());
    // std, and panic_abort for profiles that abort; cargo adds `test` for test builds.
    cmd.args(["-Z", "build-std=std,panic_abort"]);
    Ok(cmd)
}
