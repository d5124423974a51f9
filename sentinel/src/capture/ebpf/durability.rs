//! Will the pinned maps and links outlive this process? (docs/operations.md, "Pins that survive a
//! restart".)
//!
//! Pins live in one bpffs *instance*, and an instance lives as long as one mount of it exists
//! somewhere. When bpffs was already mounted at the pin directory before we started (by the host, or
//! bind-mounted into a container from the host), someone else holds it: the pins survive us. When
//! the daemon had to mount bpffs itself, the new instance lives in the daemon's mount namespace
//! only, and that namespace may die with the process: a container on a host without bpffs (the
//! container's mount namespace goes at `docker restart`), or `ip netns exec`, which unshares the
//! mount namespace and remounts /sys. Then every restart starts from fresh, empty maps, and what
//! was counted since the last flush is lost. That is worth a loud warning, not silence.
//!
//! The rule for a mount we made ourselves: it survives when it propagates to a peer namespace
//! (`shared:N` in mountinfo, as with a bind of the host's /sys/fs/bpf with `rshared` propagation),
//! or when our mount namespace is the machine's own (the same as PID 1's, or, where PID 1's cannot
//! be read, the same as our parent's) and we are not in a container.
//!
//! This module only reads /proc; it must not know the maps.

use std::path::{Path, PathBuf};

/// The verdict, with the reason a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durability {
    /// Whether the counters and links survive a restart of the daemon.
    pub survives_restart: bool,
    /// Why, in one sentence.
    pub reason: String,
}

/// One line of /proc/self/mountinfo, the fields this module needs (proc(5)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Unique id of the mount.
    pub mount_id: u32,
    /// Where it is mounted (octal escapes decoded).
    pub mount_point: PathBuf,
    /// `shared:N`: the mount propagates to (and from) its peer group.
    pub shared: bool,
    /// The file system type (`bpf` for bpffs).
    pub fs_type: String,
}

/// Parses mountinfo text; malformed lines are skipped (the kernel writes it, but never panic).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let mount_id = fields.next()?.parse().ok()?;
    let _parent = fields.next()?;
    let _dev = fields.next()?;
    let _root = fields.next()?;
    let mount_point = PathBuf::from(unescape(fields.next()?));
    let _options = fields.next()?;
    let shared = fields.any(|f| f.starts_with("shared:"));
    let fs_type = after.split(' ').next()?.to_owned();
    Some(MountEntry {
        mount_id,
        mount_point,
        shared,
        fs_type,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = bytes
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path`: the last-mounted entry with the longest mount point above it.
pub fn mount_of<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

/// What the decision needs to know about this process's surroundings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Surroundings {
    /// bpffs at the pin directory was mounted by this process (not found there at start).
    pub mounted_by_us: bool,
    /// That mount propagates to a peer group (`shared:N`).
    pub shared: bool,
    /// Our mount namespace is the one of PID 1 (or of our parent where PID 1's is unreadable);
    /// `None` when neither could be read.
    pub same_namespace_as_host: Option<bool>,
    /// A container marker was found (see `in_container`).
    pub in_container: bool,
}

/// Decides from the surroundings.
pub fn decide(s: &Surroundings) -> Durability {
    let verdict = |survives_restart: bool, reason: &str| Durability {
        survives_restart,
        reason: reason.to_owned(),
    };
    if !s.mounted_by_us {
        return verdict(
            true,
            "bpffs was already mounted at the pin directory: its pins outlive the daemon",
        );
    }
    if s.shared {
        return verdict(
            true,
            "the daemon mounted bpffs itself and the mount propagates to the host (shared)",
        );
    }
    if s.in_container {
        return verdict(
            false,
            "the daemon mounted bpffs inside its container, where the mount dies with the \
             container: mount the host's bpffs into it (-v /sys/fs/bpf:/sys/fs/bpf; on a host \
             without it, first `mount -t bpf bpf /sys/fs/bpf` on the host, or use a bind with \
             rshared propagation)",
        );
    }
    match s.same_namespace_as_host {
        Some(true) => verdict(
            true,
            "the daemon mounted bpffs in the machine's own mount namespace",
        ),
        Some(false) => verdict(
            false,
            "the daemon mounted bpffs in a private mount namespace (as `ip netns exec` makes) that \
             dies with it: mount bpffs at /sys/fs/bpf first and start the daemon with \
             `nsenter --net=/var/run/netns/NAME` instead",
        ),
        None => verdict(
            false,
            "the daemon mounted bpffs itself and cannot tell whether its mount namespace outlives \
             it: mount bpffs at /sys/fs/bpf before starting the daemon",
        ),
    }
}

/// Reads mountinfo and finds whether bpffs holds `dir` (`None` when it does not).
pub fn bpffs_mount(dir: &Path) -> std::io::Result<Option<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounts = parse_mountinfo(&text);
    Ok(mount_of(&mounts, dir)
        .filter(|m| m.fs_type == "bpf")
        .cloned())
}

/// Container markers, any one of which is enough. `/.dockerenv` alone is not: machine images
/// built from container images keep it after they boot as VMs, so it counts only with an overlay
/// root file system, as Docker gives its containers.
fn in_container() -> bool {
    let root_is_overlay = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            parse_mountinfo(&t)
                .iter()
                .rev()
                .find(|m| m.mount_point == Path::new("/"))
                .is_some_and(|m| m.fs_type == "overlay")
        })
        .unwrap_or(false);
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let pid1_env = std::fs::read("/proc/1/environ").unwrap_or_default();
    // PID 1 is a container's entry point (nobody runs a traffic monitor as the machine's init).
    std::process::id() == 1
        || Path::new("/run/.containerenv").exists()
        || (Path::new("/.dockerenv").exists() && root_is_overlay)
        || ["docker", "containerd", "kubepods", "libpod", "lxc"]
            .iter()
            .any(|hint| cgroup.contains(hint))
        || pid1_env
            .split(|b| *b == 0)
            .any(|kv| kv.starts_with(b"container="))
}

/// Gathers the surroundings of this process for a bpffs mount that holds the pin directory.
pub fn surroundings(mount: &MountEntry, mounted_by_us: bool) -> Surroundings {
    let ns = |path: &str| std::fs::read_link(path).ok();
    let ours = ns("/proc/self/ns/mnt");
    let host = ns("/proc/1/ns/mnt").or_else(|| {
        let parent = std::os::unix::process::parent_id();
        ns(&format!("/proc/{parent}/ns/mnt"))
    });
    let same_namespace_as_host = match (ours, host) {
        (Some(a), Some(b)) => Some(a == b),
        _ => None,
    };
    let in_container = in_container();
    Surroundings {
        mounted_by_us,
        shared: mount.shared,
        same_namespace_as_host,
        in_container,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime shared:7 - sysfs sysfs rw
46 23 0:40 / /sys/fs/bpf rw,relatime - bpf bpf rw
47 23 0:41 / /sys/fs/bpf rw,relatime shared:9 - bpf bpf rw
48 27 0:42 / /mnt/with\\040space rw - tmpfs tmpfs rw
broken line without separator
";

    #[test]
    fn mountinfo_is_parsed_and_the_last_mount_on_a_point_wins() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 5, "the malformed line is skipped");
        assert!(mounts[1].shared && !mounts[0].shared);
        assert_eq!(mounts[4].mount_point, PathBuf::from("/mnt/with space"));
        let m = mount_of(&mounts, Path::new("/sys/fs/bpf/sentinel")).expect("a mount");
        assert_eq!(
            (m.mount_id, m.fs_type.as_str(), m.shared),
            (47, "bpf", true)
        );
        let m = mount_of(&mounts, Path::new("/sys/class/net")).expect("a mount");
        assert_eq!(m.fs_type, "sysfs");
        assert!(mount_of(&mounts, Path::new("/home")).is_none());
    }

    #[test]
    fn a_mount_found_at_start_survives() {
        let d = decide(&Surroundings::default());
        assert!(d.survives_restart, "{}", d.reason);
    }

    #[test]
    fn our_own_mount_survives_only_when_shared_or_in_the_host_namespace() {
        let ours = Surroundings {
            mounted_by_us: true,
            ..Surroundings::default()
        };
        let cases = [
            (
                Surroundings {
                    shared: true,
                    ..ours.clone()
                },
                true,
            ),
            (
                Surroundings {
                    same_namespace_as_host: Some(true),
                    ..ours.clone()
                },
                true,
            ),
            (
                Surroundings {
                    same_namespace_as_host: Some(false),
                    ..ours.clone()
                },
                false,
            ),
            (ours.clone(), false),
            (
                Surroundings {
                    same_namespace_as_host: Some(true),
                    in_container: true,
                    ..ours.clone()
                },
                false,
            ),
            (
                Surroundings {
                    shared: true,
                    in_container: true,
                    ..ours.clone()
                },
                true,
            ),
        ];
        for (s, want) in cases {
            let d = decide(&s);
            assert_eq!(d.survives_restart, want, "{s:?}: {}", d.reason);
            assert!(!d.reason.is_empty());
        }
    }
}
