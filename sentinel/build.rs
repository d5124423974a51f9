//! Builds the eBPF crate for `bpfel-unknown-none` (nightly, `-Z build-std=core`, bpf-linker) and
//! leaves the object in `OUT_DIR`, from where `capture::ebpf` embeds it.

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
    // The nightly toolchain that compiles the eBPF crate (`-Z build-std`); a container build can
    // pin a dated one, e.g. SENTINEL_EBPF_TOOLCHAIN=nightly-2026-05-19.
    println!("cargo:rerun-if-env-changed=SENTINEL_EBPF_TOOLCHAIN");
    let pinned = std::env::var("SENTINEL_EBPF_TOOLCHAIN").ok();
    let toolchain = match pinned.as_deref() {
        Some(name) if !name.is_empty() => Toolchain::Custom(name),
        _ => Toolchain::default(),
    };
    aya_build::build_ebpf([package], toolchain)
}
