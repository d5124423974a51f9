//! The `vm` tier: the kernels NAS boxes run (Debian's 5.10, 6.1 and 6.12) booted under QEMU
//! (TCG: nested KVM hangs with them here), each running `cargo xtask vm-guest` against the
//! release daemon. The guest gets the host's root file system read-only over 9p, tmpfs on
//! /tmp and /run, and its kernel's modules over a second 9p tag; a busybox initramfs loads the
//! virtio and 9p modules and chroots into it. Kernel packages come from Debian's archive with a
//! separate apt state under target/vm/ (the host's apt is not touched) and are cached there.
//! No guest has a network card: its lab lives in its own namespaces.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    image::target_dir,
    setup::{self, run, workspace_root},
};

/// Host tools: QEMU, the initramfs' busybox, cpio, depmod/modprobe, capsh (the guest drops
/// capabilities with it), xz for compressed modules.
const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "libcap2-bin",
    "xz-utils",
];

/// Debian's archive, one line per suite a kernel comes from.
const SOURCES: &str = "\
deb http://deb.debian.org/debian bullseye main
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
";

/// A kernel to boot: a pattern for its unsigned image package (the newest match is taken) and
/// the attach mode the daemon must choose on it.
struct Kernel {
    family: &'static str,
    package: &'static str,
    attach: &'static str,
}

const KERNELS: &[Kernel] = &[
    Kernel {
        family: "5.10",
        package: r"^linux-image-5\.10\.0-[0-9]+-amd64-unsigned$",
        attach: "netlink-clsact",
    },
    Kernel {
        family: "6.1",
        package: r"^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$",
        attach: "netlink-clsact",
    },
    Kernel {
        family: "6.12",
        package: r"^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$",
        attach: "tcx",
    },
];

/// Modules the guest's init loads before it can mount the host: virtio-pci and 9p.
const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];
/// Modules the checks need (the lab's veth and bridge, clsact and cls_bpf for netlink).
const LAB_MODULES: &str = "veth bridge sch_ingress cls_bpf";
/// One guest, bounded.
const GUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the tier.
pub fn vm_tier() -> anyhow::Result<()> {
    setup::apt_install(PACKAGES)?;
    setup::cargo(&["build", "--release", "--locked", "-p", "sentinel"])?;
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    let dir = target_dir().join("vm");
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for k in KERNELS {
        let t = Instant::now();
        match boot(&dir, k, &xtask) {
            Ok(results) => {
                let line = format!(
                    "vm: {} ({}) ok in {:.0?}: {}",
                    k.family,
                    results.0,
                    t.elapsed(),
                    results.1.join("; ")
                );
                println!("{line}");
                lines.push(line);
            }
            Err(e) => {
                let line = format!("vm: {} FAILED in {:.0?}: {e:#}", k.family, t.elapsed());
                eprintln!("{line}");
                lines.push(line);
                failures.push(k.family);
            }
        }
    }
    println!("vm: tier took {:.0?}", start.elapsed());
    for l in &lines {
        println!("{}", l.lines().next().unwrap_or_default());
    }
    if !failures.is_empty() {
        bail!("kernels failed: {}", failures.join(", "));
    }
    Ok(())
}

/// Boots one kernel and returns (its release, the guest's results).
fn boot(dir: &Path, k: &Kernel, xtask: &Path) -> anyhow::Result<(String, Vec<String>)> {
    let deb = fetch(dir, k)?;
    let (kdir, kver) = extract(dir, &deb)?;
    let initrd = initramfs(dir, &kdir, &kver, k, xtask)?;
    let vmlinuz = kdir.join(format!("boot/vmlinuz-{kver}"));
    let log = dir.join(format!("guest-{kver}.log"));
    println!("vm: booting {kver} (QEMU TCG), log {}", log.display());
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap,id=r",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=kmods,security_model=none,readonly=on,id=k",
            kdir.display()
        ))
        // The workspace and the target directory again, on their own tags: the guest mounts a
        // tmpfs on /tmp, which would hide a clone or a target directory below /tmp (as CI's can
        // be); mounted at their own paths after it, they are always there.
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=ws,security_model=none,readonly=on,multidevs=remap,id=w",
            workspace_root().display()
        ))
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=tgt,security_model=none,readonly=on,multidevs=remap,id=t",
            target_dir().display()
        ))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > GUEST_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let results: Vec<String> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("VM-RESULT ").map(str::to_owned))
        .collect();
    let exit_ok = out.lines().any(|l| l.trim() == "VM-EXIT 0");
    if status.is_none() {
        bail!(
            "the guest did not finish within {GUEST_TIMEOUT:?}; its console:\n{}",
            tail(&out)
        );
    }
    if !exit_ok {
        bail!(
            "the checks failed in the guest; its console:\n{}",
            tail(&out)
        );
    }
    Ok((kver, results))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The kernel's package, downloaded once into target/vm/debs/.
fn fetch(dir: &Path, k: &Kernel) -> anyhow::Result<PathBuf> {
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let cached = |debs: &Path| -> anyhow::Result<Option<PathBuf>> {
        for entry in std::fs::read_dir(debs)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".deb") && matches_family(name, k.family) {
                return Ok(Some(path));
            }
        }
        Ok(None)
    };
    if let Some(deb) = cached(&debs)? {
        return Ok(deb);
    }
    let apt = dir.join("apt");
    for sub in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(apt.join(sub))?;
    }
    std::fs::write(apt.join("sources.list"), SOURCES)?;
    let opts = [
        format!(
            "Dir::Etc::SourceList={}",
            apt.join("sources.list").display()
        ),
        "Dir::Etc::SourceParts=/dev/null".to_owned(),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
        "Dir::State::status=/dev/null".to_owned(),
        "Debug::NoLocking=1".to_owned(),
    ];
    let with_opts = |program: &str| {
        let mut c = Command::new(program);
        for o in &opts {
            c.args(["-o", o]);
        }
        c
    };
    println!("vm: looking up Debian's {} kernel", k.family);
    run(with_opts("apt-get").args(["update", "-q"]))?;
    let names = with_opts("apt-cache")
        .args(["pkgnames", "linux-image-"])
        .output()
        .context("apt-cache pkgnames")?;
    let pattern = k.package.trim_start_matches('^').trim_end_matches('$');
    let mut found: Vec<String> = String::from_utf8_lossy(&names.stdout)
        .lines()
        .filter(|n| glob_match(n, pattern))
        .map(str::to_owned)
        .collect();
    found.sort_by_key(|n| version_key(n));
    let Some(package) = found.last() else {
        bail!("no package matches {} in Debian's archive", k.package);
    };
    println!("vm: downloading {package}");
    run(with_opts("apt-get")
        .args(["download", "-q", package])
        .current_dir(&debs))?;
    cached(&debs)?
        .with_context(|| format!("{package} downloaded but not found in {}", debs.display()))
}

/// Whether a package file name belongs to the kernel family (`6.1` is not `6.12`).
fn matches_family(name: &str, family: &str) -> bool {
    let Some(rest) = name.strip_prefix(&format!("linux-image-{family}")) else {
        return false;
    };
    !rest.starts_with(|c: char| c.is_ascii_digit())
}

/// The numbers in a package name, for "newest" ordering.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A match for the few regular-expression forms in [`KERNELS`]: `\.` is a dot, `[0-9]+` one
/// or more digits, `\+` a plus.
fn glob_match(name: &str, pattern: &str) -> bool {
    fn go(n: &[u8], p: &[u8]) -> bool {
        if p.is_empty() {
            return n.is_empty();
        }
        if let Some(rest) = p.strip_prefix(b"[0-9]+") {
            let digits = n.iter().take_while(|c| c.is_ascii_digit()).count();
            return (1..=digits).any(|i| go(&n[i..], rest));
        }
        let (c, rest) = if p[0] == b'\\' && p.len() > 1 {
            (p[1], &p[2..])
        } else {
            (p[0], &p[1..])
        };
        n.first() == Some(&c) && go(&n[1..], rest)
    }
    go(name.as_bytes(), pattern.as_bytes())
}

/// Unpacks the package into target/vm/k/<release>/ (once) and runs depmod there.
fn extract(dir: &Path, deb: &Path) -> anyhow::Result<(PathBuf, String)> {
    let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let kver = name
        .strip_prefix("linux-image-")
        .and_then(|r| r.split_once("-unsigned_"))
        .map(|(v, _)| v.to_owned())
        .with_context(|| format!("no kernel release in {name}"))?;
    let kdir = dir.join("k").join(&kver);
    if !kdir.join(format!("boot/vmlinuz-{kver}")).exists() {
        std::fs::create_dir_all(&kdir)?;
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&kdir))?;
    }
    if !kdir
        .join(format!("lib/modules/{kver}/modules.dep"))
        .exists()
    {
        run(Command::new("depmod").arg("-b").arg(&kdir).arg(&kver))?;
    }
    Ok((kdir, kver))
}

/// The initramfs: static busybox, the boot modules (decompressed, in dependency order) and an
/// init that mounts the host and runs the checks.
fn initramfs(
    dir: &Path,
    kdir: &Path,
    kver: &str,
    k: &Kernel,
    xtask: &Path,
) -> anyhow::Result<PathBuf> {
    let root = dir.join(format!("initramfs-{kver}"));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::create_dir_all(root.join("mods"))?;
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).context("copying busybox")?;
    let mut order = Vec::new();
    for m in BOOT_MODULES {
        let out = Command::new("modprobe")
            .arg("-d")
            .arg(kdir)
            .args(["-S", kver, "--show-depends", m])
            .output()
            .context("modprobe --show-depends")?;
        if !out.status.success() {
            bail!(
                "modprobe --show-depends {m} for {kver}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(path) = line.strip_prefix("insmod ") {
                let path = path.trim().to_owned();
                if !order.contains(&path) {
                    order.push(path);
                }
            }
        }
    }
    for (i, path) in order.iter().enumerate() {
        let base = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("m.ko");
        let target = root.join(format!(
            "mods/{:02}-{}",
            i + 10,
            base.trim_end_matches(".xz")
        ));
        if path.ends_with(".xz") {
            let out = Command::new("xz").args(["-dc", path]).output()?;
            if !out.status.success() {
                bail!("xz -d {path} failed");
            }
            std::fs::write(&target, out.stdout)?;
        } else {
            std::fs::copy(path, &target)?;
        }
    }
    let checks = format!(
        "modprobe -a -d /tmp/kmods -S {kver} {LAB_MODULES} || exit 1\n\
         export CARGO_TARGET_DIR='{}'\n\
         exec {} vm-guest --attach {}\n",
        target_dir().display(),
        xtask.display(),
        k.attach
    );
    std::fs::write(root.join("checks.sh"), checks)?;
    let init = INIT
        .replace("@WS@", &workspace_root().display().to_string())
        .replace("@TGT@", &target_dir().display().to_string());
    std::fs::write(root.join("init"), init)?;
    let status = Command::new("sh")
        .arg("-c")
        .arg("chmod +x init && find . | cpio -o -H newc --quiet | gzip -1")
        .current_dir(&root)
        .stdout(std::fs::File::create(
            dir.join(format!("initrd-{kver}.gz")),
        )?)
        .status()?;
    if !status.success() {
        bail!("making the initramfs for {kver} failed");
    }
    Ok(dir.join(format!("initrd-{kver}.gz")))
}

/// The guest's init (busybox sh): modules, the host's root over 9p read-only with tmpfs on
/// /tmp and /run, the kernel's modules over 9p, then the checks in a chroot; power off.
const INIT: &str = r#"#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /mnt
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in /mods/*.ko; do $B insmod "$m" || echo "vm: insmod $m failed"; done
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 root /mnt || echo "vm: mounting the host failed"
$B mount -t tmpfs tmp /mnt/tmp
$B mount -t tmpfs run /mnt/run
$B mount -t proc proc /mnt/proc
$B mount -t sysfs sys /mnt/sys
$B mount -t devtmpfs dev /mnt/dev
$B mkdir -p /mnt/tmp/kmods
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro kmods /mnt/tmp/kmods || echo "vm: mounting the modules failed"
$B mkdir -p "/mnt@WS@" "/mnt@TGT@" 2>/dev/null
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 ws "/mnt@WS@" || echo "vm: mounting the workspace failed"
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 tgt "/mnt@TGT@" || echo "vm: mounting the target directory failed"
$B cp /checks.sh /mnt/tmp/checks.sh
echo "vm: kernel $($B uname -r), BTF: $($B ls /sys/kernel/btf/vmlinux 2>&1)"
$B chroot /mnt /bin/sh /tmp/checks.sh
echo "VM-EXIT $?"
$B poweroff -f
"#;
