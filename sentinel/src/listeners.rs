//! Who listens on the NAS's ports: the process (`/proc/PID/comm`) holding each listening socket
//! (its inode, from `/proc/net/{tcp,udp}[6]`, matched against `/proc/PID/fd/*` links
//! `socket:[INODE]`) and the container it runs in (the 64-hex-digit id in `/proc/PID/cgroup`:
//! Docker, containerd and Podman all put it there, as `/docker/ID` or `docker-ID.scope`), named
//! through the Docker engine's socket when it is mounted.
//!
//! Read only when the listening set changes: a full fd scan costs a few milliseconds on a NAS.
//! Processes we may not look at (another user's, with a hardened /proc) are skipped.
//!
//! It must not know maps, the store or HTTP.

use std::{collections::HashMap, path::Path};

use sentinel_common::abi::ListenKey;

/// The process and container behind one listening port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listener {
    /// The port.
    pub key: ListenKey,
    /// The process name (`comm`), when found.
    pub process: Option<String>,
    /// The container, when in one: its name when the Docker socket is mounted
    /// ([`crate::docker_names`]), else its id (first 12 hex digits, as `docker ps` shows it).
    pub container: Option<String>,
}

/// The listening sockets' inodes of one `/proc/net` table, by port (the rule of
/// [`crate::listening::parse`]).
pub fn inodes(table: &str, proto: u8) -> Vec<(ListenKey, u64)> {
    let keys = crate::listening::parse(table, proto);
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (_, port) = cols.get(1)?.split_once(':')?;
            let key = ListenKey::new(proto, u16::from_str_radix(port, 16).ok()?);
            let inode: u64 = cols.get(9)?.parse().ok()?;
            (inode != 0 && keys.contains(&key)).then_some((key, inode))
        })
        .collect()
}

/// The container id in a `/proc/PID/cgroup` text: the last path segment holding 64 hex digits.
pub fn container_id(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .flat_map(|line| line.rsplit('/'))
        .find_map(|segment| {
            let s = segment
                .trim_start_matches("docker-")
                .trim_start_matches("libpod-")
                .trim_start_matches("cri-containerd-")
                .trim_end_matches(".scope");
            (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s[..12].to_owned())
        })
}

/// The listeners of the namespace at `proc_net`, with owners found under `proc` (normally
/// `/proc/self/net` and `/proc`).
pub fn read(proc_net: &Path, proc: &Path) -> Vec<Listener> {
    let mut by_inode: HashMap<u64, ListenKey> = HashMap::new();
    for (name, proto) in [("tcp", 6u8), ("tcp6", 6), ("udp", 17), ("udp6", 17)] {
        if let Ok(text) = std::fs::read_to_string(proc_net.join(name)) {
            by_inode.extend(inodes(&text, proto).into_iter().map(|(k, i)| (i, k)));
        }
    }
    let mut found: HashMap<ListenKey, Listener> = HashMap::new();
    let Ok(pids) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    for pid in pids.flatten() {
        let dir = pid.path();
        let is_pid = pid
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            continue;
        };
        if !is_pid {
            continue;
        }
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok());
            let Some(key) = inode.and_then(|i| by_inode.get(&i)) else {
                continue;
            };
            found.entry(*key).or_insert_with(|| Listener {
                key: *key,
                process: std::fs::read_to_string(dir.join("comm"))
                    .ok()
                    .map(|c| c.trim().to_owned()),
                container: std::fs::read_to_string(dir.join("cgroup"))
                    .ok()
                    .and_then(|c| container_id(&c)),
            });
        }
    }
    let mut out: Vec<Listener> = found.into_values().collect();
    out.sort_by_key(|l| (l.key.port, l.key.proto));
    if out.iter().any(|l| l.container.is_some()) {
        name_containers(
            &mut out,
            &crate::docker_names::names(Path::new(crate::docker_names::DOCKER_SOCKET)),
        );
    }
    out
}

/// Replaces container ids by the engine's names where it knows them (`docker_names`).
fn name_containers(listeners: &mut [Listener], names: &HashMap<String, String>) {
    for l in listeners {
        if let Some(name) = l.container.as_ref().and_then(|id| names.get(id)) {
            l.container = Some(name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_named_when_the_engine_knows_them() {
        let mut ls = vec![
            Listener {
                container: Some("0123456789ab".into()),
                ..Listener::default()
            },
            Listener {
                container: Some("ffffffffffff".into()),
                ..Listener::default()
            },
            Listener::default(),
        ];
        let names = HashMap::from([("0123456789ab".to_owned(), "jellyfin".to_owned())]);
        name_containers(&mut ls, &names);
        let got: Vec<Option<&str>> = ls.iter().map(|l| l.container.as_deref()).collect();
        assert_eq!(got, [Some("jellyfin"), Some("ffffffffffff"), None]);
    }

    #[test]
    fn container_ids_come_from_the_cgroup_path() {
        let id = "4f1c0e4b5e2f8a9d0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d";
        assert_eq!(
            container_id(&format!("0::/system.slice/docker-{id}.scope\n")).as_deref(),
            Some("4f1c0e4b5e2f")
        );
        assert_eq!(
            container_id(&format!("12:memory:/docker/{id}\n11:cpu:/docker/{id}\n")).as_deref(),
            Some("4f1c0e4b5e2f")
        );
        assert_eq!(
            container_id("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
    }

    #[test]
    fn this_process_is_found_behind_its_own_listener() {
        let l = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let all = read(Path::new("/proc/self/net"), Path::new("/proc"));
        let me = all
            .iter()
            .find(|x| x.key == ListenKey::new(6, port))
            .unwrap_or_else(|| panic!("{port} not in {all:?}"));
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        assert_eq!(me.process.as_deref(), Some(comm.trim()));
    }
}
