//! Builds the eBPF crate for `bpfel-unknown-none` (nightly, `-Z build-std=core`, bpf-linker) and
//! leaves the object in `OUT_DIR`, from where `capture::ebpf` embeds it.
//!
//! The nightly is pinned in one file, `sentinel-ebpf/ebpf-toolchain`, read here, by
//! `cargo xtask setup` and (through it) by the Dockerfile.

use std::{path::Path, process::Command};

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "sentinel-ebpf")
        .ok_or_else(|| anyhow!("sentinel-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    let pin_file = root_dir.join("ebpf-toolchain");
    println!("cargo:rerun-if-changed={pin_file}");
    println!("cargo:rerun-if-env-changed=SENTINEL_EBPF_TOOLCHAIN");
    let pin = std::fs::read_to_string(&pin_file)
        .with_context(|| format!("reading the nightly pin {pin_file}"))?;
    let name = toolchain_for(pin.trim());
    aya_build::build_ebpf([package], Toolchain::Custom(&name))
}

/// The installed toolchain that is the pinned nightly: the pin itself when rustup has it by that
/// name, else a plain `nightly` of the same date (`nightly-YYYY-MM-DD` is the date in its
/// channel manifest). `SENTINEL_EBPF_TOOLCHAIN` overrides both.
fn toolchain_for(pin: &str) -> String {
    if let Ok(name) = std::env::var("SENTINEL_EBPF_TOOLCHAIN")
        && !name.is_empty()
    {
        return name;
    }
    if sysroot(pin).is_some() {
        return pin.to_owned();
    }
    let date = pin.strip_prefix("nightly-").unwrap_or(pin);
    let same = sysroot("nightly").is_some_and(|root| manifest_date(&root).as_deref() == Some(date));
    if !same {
        println!(
            "cargo:warning=the pinned eBPF toolchain {pin} is not installed; using `nightly` \
             (cargo xtask setup installs the pin)"
        );
    }
    "nightly".to_owned()
}

fn sysroot(toolchain: &str) -> Option<String> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn manifest_date(sysroot: &str) -> Option<String> {
    let manifest = Path::new(sysroot).join("lib/rustlib/multirust-channel-manifest.toml");
    let text = std::fs::read_to_string(manifest).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("date = "))
        .map(|d| d.trim_matches('"').to_owned())
}
