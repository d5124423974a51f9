//! `cargo xtask image`: the runtime image that compose.yaml names, built with the engine at
//! `DOCKER_HOST` (or the default socket) without any network or registry: the base is a minimal
//! root file system made from Debian's packages (mmdebstrap, then `docker import`), and the
//! daemon is the one built on this machine, imported as an image of its own that the
//! Dockerfile's runtime stage copies it from (`DAEMON=<image>`; BuildKit then skips the
//! from-source stage). Idempotent: the rootfs is cached under target/image/, the two imports
//! are redone only when their tarballs change, and the build reuses the engine's cache.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::setup::{self, run, workspace_root};

/// The Debian release of the runtime base (the build stage's `rust:*-bookworm` too).
const SUITE: &str = "bookworm";
/// What the daemon needs at run time: glibc and libgcc (`ldd` on the release binary); the eBPF
/// object, the dashboard and the time-zone database are embedded in the binary.
const PACKAGES: &str = "libc6,libgcc-s1";
const MIRROR: &str = "http://deb.debian.org/debian";
/// The base image's name; its label records which rootfs it was imported from.
const BASE: &str = "nettraffic-sentinel-base:bookworm";
/// The image that holds only /out/sentinel, the daemon built here.
const DAEMON: &str = "nettraffic-sentinel-daemon:host";
/// The label recording the sha256 of the tarball an image was imported from.
const SOURCE_LABEL: &str = "org.nettraffic-sentinel.source-sha256";

/// The docker client: `$DOCKER`, else `docker` from `PATH`.
pub fn docker() -> Command {
    Command::new(std::env::var("DOCKER").unwrap_or_else(|_| "docker".to_owned()))
}

/// Builds the daemon, the base image if needed and the runtime image; prints its name and size.
pub fn image() -> anyhow::Result<()> {
    setup::setup()?;
    setup::apt_install(&["mmdebstrap"])?;
    let name = compose_image()?;
    let engine = docker()
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .context("running the docker client (set DOCKER to its path if it is not on PATH)")?;
    if !engine.status.success() {
        bail!(
            "no Docker engine answers at {}: {}",
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the default socket".to_owned()),
            String::from_utf8_lossy(&engine.stderr).trim()
        );
    }
    println!(
        "image: engine {} at {}",
        String::from_utf8_lossy(&engine.stdout).trim(),
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the default socket".to_owned())
    );
    println!("image: building the daemon (release)");
    setup::cargo(&["build", "--release", "--locked", "-p", "sentinel"])?;
    let dir = target_dir().join("image");
    let rootfs = rootfs(&dir)?;
    import(&rootfs, BASE)?;
    import(&daemon_tarball(&dir)?, DAEMON)?;
    // The runtime stage copies from images only: an empty context is enough.
    let context = dir.join("context");
    std::fs::create_dir_all(&context)?;
    println!("image: building {name} (Dockerfile target runtime, daemon from this machine)");
    run(docker()
        .args(["build", "--target", "runtime"])
        .arg("--build-arg")
        .arg(format!("DAEMON={DAEMON}"))
        .arg("--build-arg")
        .arg(format!("RUNTIME_BASE={BASE}"))
        .arg("-f")
        .arg(workspace_root().join("Dockerfile"))
        .args(["-t", &name])
        .arg(&context)
        // Only BuildKit skips the unused from-source stage (the classic builder builds every
        // stage before the target).
        .env("DOCKER_BUILDKIT", "1"))?;
    let size = inspect(&name, "{{.Size}}")?;
    let mib = size.parse::<f64>().unwrap_or(0.0) / (1024.0 * 1024.0);
    println!("image: {name} ready, {size} bytes ({mib:.1} MiB)");
    Ok(())
}

/// The image name compose.yaml gives the service (`image:`, the default of
/// `${SENTINEL_IMAGE:-...}`), so `docker compose up` finds it.
pub fn compose_image() -> anyhow::Result<String> {
    let path = workspace_root().join("compose.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("image:"))
        .map(|n| n.trim().trim_matches('"'))
        .map(
            |n| match n.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                Some(var) => var.split_once(":-").map_or("", |(_, d)| d).to_owned(),
                None => n.to_owned(),
            },
        )
        .filter(|n| !n.is_empty())
        .with_context(|| format!("no `image:` in {}", path.display()))
}

/// `$CARGO_TARGET_DIR`, else the workspace's target/.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The rootfs tarball, made once per suite and package list.
fn rootfs(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let key = format!("{SUITE}-{}", PACKAGES.replace(',', "_"));
    let tarball = dir.join(format!("rootfs-{key}.tar"));
    if tarball.exists() {
        println!("image: rootfs cached at {}", tarball.display());
        return Ok(tarball);
    }
    println!("image: making a {SUITE} rootfs with {PACKAGES} (mmdebstrap, about 10 s)");
    let partial = tarball.with_extension("tar.part");
    run(Command::new("mmdebstrap")
        .args(["--variant=extract", "--format=tar", "--quiet"])
        .arg(format!("--include={PACKAGES}"))
        // Documentation and locales are of no use in the image.
        .args([
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/lintian/*",
        ])
        // The database volume's mount point and a /tmp, as any image has.
        .arg("--customize-hook=mkdir -p \"$1/data\" \"$1/tmp\" && chmod 1777 \"$1/tmp\"")
        .args([SUITE])
        .arg(&partial)
        .arg(MIRROR))?;
    std::fs::rename(&partial, &tarball)?;
    Ok(tarball)
}

/// A tarball of out/sentinel (the release binary), for [`DAEMON`].
fn daemon_tarball(dir: &Path) -> anyhow::Result<PathBuf> {
    let staging = dir.join("daemon");
    std::fs::create_dir_all(staging.join("out"))?;
    let binary = target_dir().join("release/sentinel");
    std::fs::copy(&binary, staging.join("out/sentinel"))
        .with_context(|| format!("copying {}", binary.display()))?;
    let tarball = dir.join("daemon.tar");
    // Fixed owner and time: the same binary gives the same tarball, hence no re-import.
    run(Command::new("tar")
        .args([
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(&staging)
        .arg("-cf")
        .arg(&tarball)
        .arg("out/sentinel"))?;
    Ok(tarball)
}

/// Imports `tarball` as image `name` unless the image there already came from it.
fn import(tarball: &Path, name: &str) -> anyhow::Result<()> {
    let out = Command::new("sha256sum")
        .arg(tarball)
        .output()
        .context("running sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let sha = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    if sha.is_empty() {
        bail!("sha256sum {} gave no digest", tarball.display());
    }
    let current = inspect(
        name,
        &format!("{{{{index .Config.Labels \"{SOURCE_LABEL}\"}}}}"),
    );
    if current.as_deref().is_ok_and(|c| c == sha) {
        println!("image: {name} is up to date");
        return Ok(());
    }
    println!("image: importing {} as {name}", tarball.display());
    run(docker()
        .arg("import")
        .arg("--change")
        .arg(format!("LABEL {SOURCE_LABEL}={sha}"))
        .arg(tarball)
        .arg(name)
        .stdout(Stdio::null()))
}

/// `docker image inspect -f format name`.
fn inspect(name: &str, format: &str) -> anyhow::Result<String> {
    let out = docker()
        .args(["image", "inspect", "-f", format, name])
        .output()
        .context("running docker image inspect")?;
    if !out.status.success() {
        bail!("no image {name}");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
