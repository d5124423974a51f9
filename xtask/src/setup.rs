//! The fresh-machine set-up (docs/toolchain.md), done by the project itself and
//! idempotent: every step first checks, and only acts when something is missing.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// Debian packages the build and the tests need.
/// - llvm-22-dev: bpf-linker links against LLVM 22 (brings libllvm22, needed at run time);
/// - bpftool: inspecting the pinned maps; iproute2 (`ip netns`) and ethtool (offloads) for the
///   namespace lab; e2fsprogs (chattr) for the read-only database test.
// mosquitto: the MQTT broker the Home Assistant test (sentinel/tests/billing_mqtt.rs) starts.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "bpftool",
    "iproute2",
    "ethtool",
    "e2fsprogs",
    "mosquitto",
];

/// The bpf-linker release that builds against LLVM 22 (docs/toolchain.md).
const BPF_LINKER_VERSION: &str = "0.13.0";

const MANUAL_STEPS: &str = "\
Manual set-up (as root, on Debian 12 or similar):
  apt-get update && apt-get install -y llvm-22-dev bpftool iproute2 ethtool e2fsprogs
  rustup toolchain install $(cat sentinel-ebpf/ebpf-toolchain) --profile minimal --component rust-src
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install --locked bpf-linker --version 0.13.0 \\
      --no-default-features --features llvm-22";

/// Installs whatever is missing.
pub fn setup() -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "set-up, loading eBPF and the tests need root (run as root or with sudo -E).\n{MANUAL_STEPS}"
        );
    }
    if !std::path::Path::new("/etc/debian_version").exists() {
        bail!(
            "automatic set-up supports Debian-like systems only (no /etc/debian_version).\n{MANUAL_STEPS}"
        );
    }
    apt_install(APT_PACKAGES)?;
    nightly_rust_src()?;
    bpf_linker()?;
    Ok(())
}

/// Installs the Debian packages among `packages` that are missing (one `apt-get update` first).
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages present ({})", packages.join(", "));
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// The nightly that builds the eBPF crate, pinned in one file read by `sentinel/build.rs`, by
/// this set-up and (through `cargo xtask setup`) by the Dockerfile.
pub fn ebpf_pin() -> anyhow::Result<String> {
    let path = workspace_root().join("sentinel-ebpf/ebpf-toolchain");
    let pin = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the nightly pin {}", path.display()))?;
    Ok(pin.trim().to_owned())
}

/// The installed toolchain that is the pinned nightly, the same choice `sentinel/build.rs`
/// makes: the pin by name, else a plain `nightly` whose channel manifest has the pin's date.
pub fn ebpf_toolchain() -> anyhow::Result<Option<String>> {
    let pin = ebpf_pin()?;
    if sysroot(&pin).is_some() {
        return Ok(Some(pin));
    }
    let date = pin.strip_prefix("nightly-").unwrap_or(&pin);
    let same = sysroot("nightly").is_some_and(|root| {
        std::fs::read_to_string(
            std::path::Path::new(&root).join("lib/rustlib/multirust-channel-manifest.toml"),
        )
        .is_ok_and(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("date = "))
                .is_some_and(|d| d.trim_matches('"') == date)
        })
    });
    Ok(same.then(|| "nightly".to_owned()))
}

fn sysroot(toolchain: &str) -> Option<String> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let pin = ebpf_pin()?;
    let toolchain = match ebpf_toolchain()? {
        Some(t) => t,
        None => {
            println!("setup: installing the pinned eBPF toolchain {pin} (with rust-src)");
            run(Command::new("rustup").args([
                "toolchain",
                "install",
                &pin,
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))
            .with_context(|| {
                format!(
                    "the pinned nightly {pin} (sentinel-ebpf/ebpf-toolchain) is not installed and \
                     rustup could not install it.\n{MANUAL_STEPS}"
                )
            })?;
            pin.clone()
        }
    };
    let installed = Command::new("rustup")
        .args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            &toolchain,
        ])
        .output()
        .context("running rustup (is the Rust toolchain installed through rustup?)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        println!("setup: eBPF toolchain {toolchain} (pin {pin}) with rust-src present");
        return Ok(());
    }
    println!("setup: adding rust-src to {toolchain}");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", &toolchain]))
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = &version
        && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
    {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    println!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 75 s)");
    run(Command::new("cargo")
        .args([
            "install",
            "--locked",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a command, failing on a non-zero exit.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Runs `cargo <args>` in the workspace root.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new(cargo_bin())
        .args(args)
        .current_dir(workspace_root()))
}

/// The cargo that runs us.
pub fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs a command in the foreground and returns its result (the daemon).
pub fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    run(cmd)
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
