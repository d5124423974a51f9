//! A throwaway Docker engine for tests: Debian's dockerd with its own data root, exec root,
//! pidfile and socket, started inside a lab namespace (so `network_mode: host` containers live
//! on the lab's NAS) and in a mount namespace of its own. Dropping it removes its containers,
//! stops the engine (also when a test fails) and deletes everything it wrote.
//!
//! The mount namespace has shared propagation and no bpffs at /sys/fs/bpf: it plays a NAS host
//! without bpffs, where compose.yaml's `rshared` bind must make the daemon's own bpffs mount
//! outlive the container. Nothing of it reaches this machine's mounts or bpffs; it all goes
//! away with the engine's last process.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// Debian's docker client (the one that speaks to Debian's dockerd, BuildKit built in).
pub const DOCKER: &str = "/usr/bin/docker";

/// A running engine.
pub struct Engine {
    child: Child,
    dir: PathBuf,
    /// `unix://...`, for `DOCKER_HOST`.
    pub host: String,
}

impl Engine {
    /// Starts dockerd in network namespace `netns`, with its state under `dir` (kept short:
    /// the socket path must fit in 108 bytes). Waits (bounded) until it answers.
    pub fn start(netns: &str, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let sock = dir.join("sock");
        let host = format!("unix://{}", sock.display());
        let log = std::fs::File::create(dir.join("dockerd.log"))?;
        let dockerd = format!(
            "for i in 1 2 3 4; do umount /sys/fs/bpf 2>/dev/null || break; done; \
             exec dockerd --data-root {d}/data --exec-root {d}/exec --pidfile {d}/pid -H {host} \
             --bridge=none --iptables=false --ip6tables=false --ip-forward=false \
             --ip-masq=false --shutdown-timeout=5",
            d = dir.display()
        );
        // nsenter, unshare and sh all exec: the child's pid is dockerd's.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{netns}"))
            .args(["--", "unshare", "--mount", "--propagation", "shared", "--"])
            .args(["sh", "-c", &dockerd])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting dockerd (nsenter, unshare)")?;
        let engine = Engine {
            child,
            dir: dir.to_owned(),
            host,
        };
        let start = Instant::now();
        loop {
            let ok = engine
                .docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "dockerd did not answer within 30 s; its log:\n{}",
                    engine.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        println!("engine: dockerd in {netns}, state in {}", dir.display());
        Ok(engine)
    }

    /// A docker client command pointed at this engine.
    pub fn docker(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_HOST", &self.host);
        c
    }

    /// The engine's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Containers first (quickly: the test already checked what it wanted from them).
        if let Ok(out) = self.docker().args(["ps", "-aq"]).output() {
            let ids = String::from_utf8_lossy(&out.stdout);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self
                    .docker()
                    .args(["rm", "-f"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .status();
            }
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if start.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    eprintln!("engine: dockerd did not stop within 20 s; killing it");
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        // The overlay mounts lived in the engine's mount namespace, gone with it.
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("engine: removing {} failed: {e}", self.dir.display());
        }
    }
}
