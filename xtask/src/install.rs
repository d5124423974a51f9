//! `cargo xtask install`: the daemon without containers, on a systemd host (plain Debian,
//! fnOS, a Proxmox VM): the release binary in /usr/local/bin, the unit from
//! packaging/systemd/ in /etc/systemd/system, a commented settings file in /etc (kept when it
//! exists), then `systemctl enable --now`. `--root DIR` stages the same files under DIR and
//! touches nothing else (packaging, or a look before installing).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::{
    image::target_dir,
    setup::{self, run, workspace_root},
};

const UNIT: &str = "nettraffic-sentinel.service";
const ENV_FILE: &str = "etc/nettraffic-sentinel.env";

/// Builds and installs; with `root`, only stages the files under it.
pub fn install(root: Option<&Path>) -> anyhow::Result<()> {
    setup::setup()?;
    setup::cargo(&["build", "--release", "--locked", "-p", "sentinel"])?;
    let dest = root.map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let packaging = workspace_root().join("packaging/systemd");
    copy(
        &target_dir().join("release/sentinel"),
        &dest.join("usr/local/bin/sentinel"),
        0o755,
    )?;
    copy(
        &packaging.join(UNIT),
        &dest.join("etc/systemd/system").join(UNIT),
        0o644,
    )?;
    let env = dest.join(ENV_FILE);
    if env.exists() {
        println!("install: keeping {}", env.display());
    } else {
        copy(&packaging.join("nettraffic-sentinel.env"), &env, 0o644)?;
    }
    if root.is_some() {
        println!("install: staged under {}; nothing started", dest.display());
        return Ok(());
    }
    if !Path::new("/run/systemd/system").exists() {
        println!(
            "install: systemd is not running here; start /usr/local/bin/sentinel with your init \
             system (settings: /{ENV_FILE})"
        );
        return Ok(());
    }
    run(std::process::Command::new("systemctl").arg("daemon-reload"))?;
    run(std::process::Command::new("systemctl").args(["enable", "--now", UNIT]))?;
    println!("install: {UNIT} enabled and started; `journalctl -u {UNIT}` shows its log");
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Through a temporary name: replacing a running daemon's binary in place fails (ETXTBSY).
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, to).with_context(|| format!("installing {}", to.display()))?;
    println!("install: {}", to.display());
    Ok(())
}
