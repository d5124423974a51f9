//! The NAS's listening ports, read from `/proc/net/{tcp,tcp6,udp,udp6}` of the daemon's network
//! namespace: the set the per-service rule (`sentinel_common::service`) uses to tell server
//! traffic (keyed by the NAS's port) from client traffic (keyed by the remote's port).
//!
//! A TCP socket counts when it is in LISTEN state; a UDP socket when it is not connected (remote
//! address and port all zero), since a bound unconnected UDP socket is how UDP servers (DNS,
//! WireGuard, QUIC, BitTorrent DHT) listen. Sockets bound to a loopback address cannot receive
//! public traffic and are left out.
//!
//! It must not know maps, rings or the store: it returns [`ListenKey`]s.

use std::{collections::BTreeSet, io, path::Path};

use sentinel_common::abi::{LISTEN_MAX_ENTRIES, ListenKey};

/// `TCP_LISTEN` in `/proc/net/tcp*`'s `st` column (include/net/tcp_states.h).
const TCP_LISTEN: &str = "0A";

/// Reading the socket tables failed.
#[derive(Debug, thiserror::Error)]
#[error("reading {path} failed")]
pub struct ListeningError {
    /// The table that could not be read.
    pub path: String,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// The listening set of the namespace whose `/proc/net` is at `proc_net` (normally
/// `/proc/self/net`), sorted, at most `LISTEN_MAX_ENTRIES` entries (lowest ports first: the
/// well-known services). A missing table (no IPv6 in the kernel) is empty, not an error.
pub fn read(proc_net: &Path) -> Result<Vec<ListenKey>, ListeningError> {
    let mut out = BTreeSet::new();
    for (name, proto) in [("tcp", 6u8), ("tcp6", 6), ("udp", 17), ("udp6", 17)] {
        let path = proc_net.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ListeningError {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        out.extend(parse(&text, proto));
    }
    let mut keys: Vec<ListenKey> = out.into_iter().collect();
    keys.sort_by_key(|k| (k.port, k.proto));
    keys.truncate(LISTEN_MAX_ENTRIES as usize);
    Ok(keys)
}

/// The listening (protocol `proto`) sockets of one `/proc/net/{tcp,udp}[6]` table. Lines that do
/// not parse are skipped (the header, a future format).
pub fn parse(table: &str, proto: u8) -> Vec<ListenKey> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let _slot = cols.next()?;
            let local = cols.next()?;
            let remote = cols.next()?;
            let state = cols.next()?;
            let (laddr, lport) = local.split_once(':')?;
            let port = u16::from_str_radix(lport, 16).ok()?;
            let listening = if proto == 6 {
                state == TCP_LISTEN
            } else {
                remote.bytes().all(|b| b == b'0' || b == b':')
            };
            (listening && port != 0 && !is_loopback(laddr)).then_some(ListenKey::new(proto, port))
        })
        .collect()
}

/// Whether a `/proc/net` hex address (host-order 32-bit words) is a loopback one: 127.0.0.0/8,
/// `::1`, or `::ffff:127.x.y.z`.
fn is_loopback(hex: &str) -> bool {
    match hex.len() {
        // 127.0.0.1 is "0100007F": the first octet is the last byte pair.
        8 => hex.get(6..8) == Some("7F"),
        32 => {
            hex == "00000000000000000000000001000000"
                || (hex.starts_with("0000000000000000FFFF0000") && hex.get(30..32) == Some("7F"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:01BD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0A01A8C0:9C41 0571CBCB:01BB 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:7D90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  10: 00000000:CA6C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3001 2 0000000000000000 0
  11: 0A01A8C0:D431 0571CBCB:0035 01 00000000:00000000 00:00000000 00000000     0        0 3002 2 0000000000000000 0
  12: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3003 2 0000000000000000 0
";

    #[test]
    fn tcp_listen_sockets_count_established_and_loopback_ones_do_not() {
        assert_eq!(parse(TCP, 6), vec![ListenKey::new(6, 445)]);
        assert_eq!(parse(TCP6, 6), vec![ListenKey::new(6, 32144)]);
    }

    #[test]
    fn unconnected_udp_sockets_listen_connected_and_loopback_ones_do_not() {
        // 0.0.0.0:51820 (WireGuard); a connected DNS client socket; systemd-resolved on 127.0.0.53.
        assert_eq!(parse(UDP, 17), vec![ListenKey::new(17, 51820)]);
    }

    #[test]
    fn garbage_lines_are_skipped_and_missing_tables_are_empty() {
        assert!(parse("header\nnot a socket line\n 0: zz:zz 0:0 0A\n", 6).is_empty());
        let dir = std::env::temp_dir().join(format!("snt-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("tcp"), TCP).expect("tcp");
        std::fs::write(dir.join("udp"), UDP).expect("udp");
        let keys = read(&dir).expect("read");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(
            keys,
            vec![ListenKey::new(6, 445), ListenKey::new(17, 51820)]
        );
    }

    #[test]
    fn this_process_namespace_reads() {
        // The real tables parse (whatever they hold); a listener we open is in them.
        let l = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let keys = read(Path::new("/proc/self/net")).expect("read /proc/self/net");
        assert!(
            keys.contains(&ListenKey::new(6, port)),
            "{port} not in {keys:?}"
        );
    }
}
