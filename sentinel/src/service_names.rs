//! Names for service keys (`sentinel_common::service`): the user's mapping (`SERVICE_NAMES`,
//! `8096=Jellyfin,udp/51820=WireGuard`) first, then a built-in table of what NAS boxes run.
//! A port alone in the mapping names both TCP and UDP.
//!
//! Some ports are shared (8080 is QTS's web UI and qBittorrent's default; 443 is HTTPS and the
//! QTS/DSM web UI behind it): the table gives the most common name and the user mapping decides.
//!
//! It must not know the store, `/proc` or HTTP.

use std::collections::HashMap;

use sentinel_common::abi::ServiceKey;

const TCP: u8 = 6;
const UDP: u8 = 17;
/// Both TCP and UDP.
const ANY: u8 = 0;

/// The built-in table: (protocol or [`ANY`], port, name).
const BUILTIN: &[(u8, u16, &str)] = &[
    (TCP, 20, "FTP data"),
    (TCP, 21, "FTP"),
    (TCP, 22, "SSH"),
    (TCP, 25, "SMTP"),
    (ANY, 53, "DNS"),
    (TCP, 80, "HTTP"),
    (UDP, 123, "NTP"),
    (TCP, 139, "SMB (NetBIOS)"),
    (TCP, 443, "HTTPS"),
    (UDP, 443, "QUIC"),
    (TCP, 445, "SMB"),
    (TCP, 465, "SMTPS"),
    (TCP, 548, "AFP"),
    (TCP, 587, "SMTP submission"),
    (TCP, 853, "DNS over TLS"),
    (TCP, 873, "rsync"),
    (TCP, 993, "IMAPS"),
    (ANY, 1194, "OpenVPN"),
    (TCP, 2049, "NFS"),
    (TCP, 3389, "RDP"),
    (ANY, 3478, "STUN"),
    (TCP, 5000, "DSM (HTTP)"),
    (TCP, 5001, "DSM (HTTPS)"),
    (TCP, 5005, "WebDAV (Synology, HTTP)"),
    (TCP, 5006, "WebDAV (Synology, HTTPS)"),
    (TCP, 6690, "Synology Drive"),
    (TCP, 6800, "Aria2"),
    (ANY, 6881, "qBittorrent (BitTorrent)"),
    (TCP, 8080, "QTS / qBittorrent web UI"),
    (TCP, 8081, "QTS (HTTPS)"),
    (TCP, 8096, "Jellyfin / Emby"),
    (TCP, 8920, "Jellyfin / Emby (HTTPS)"),
    (TCP, 9091, "Transmission"),
    (TCP, 32400, "Plex"),
    (UDP, 41641, "Tailscale"),
    (ANY, 51413, "Transmission (BitTorrent)"),
    (UDP, 51820, "WireGuard"),
];

/// A `SERVICE_NAMES` entry that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "SERVICE_NAMES: {entry:?} is not PORT=NAME or tcp/PORT=NAME or udp/PORT=NAME (port 1-65535)"
)]
pub struct NamesError {
    /// The entry.
    pub entry: String,
}

/// The names the API shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceNames {
    /// (protocol or 0 for both, port) -> name.
    user: HashMap<(u8, u16), String>,
}

impl ServiceNames {
    /// Parses `SERVICE_NAMES` entries (already split at commas); empty entries are ignored.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, NamesError> {
        let mut user = HashMap::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let bad = || NamesError {
                entry: entry.to_owned(),
            };
            let (key, name) = entry.split_once('=').ok_or_else(bad)?;
            let (proto, port) = match key.trim().to_ascii_lowercase().split_once('/') {
                Some(("tcp", p)) => (TCP, p.to_owned()),
                Some(("udp", p)) => (UDP, p.to_owned()),
                Some(_) => return Err(bad()),
                None => (ANY, key.trim().to_owned()),
            };
            let port: u16 = port.parse().map_err(|_| bad())?;
            let name = name.trim();
            if port == 0 || name.is_empty() {
                return Err(bad());
            }
            user.insert((proto, port), name.to_owned());
        }
        Ok(Self { user })
    }

    /// The name of `key`: the user's, else the built-in one, else `None`. A key without ports
    /// is named by its protocol.
    pub fn name(&self, key: &ServiceKey) -> Option<String> {
        if key.port == 0 {
            return protocol_name(key.proto).map(str::to_owned);
        }
        for proto in [key.proto, ANY] {
            if let Some(n) = self.user.get(&(proto, key.port)) {
                return Some(n.clone());
            }
        }
        BUILTIN
            .iter()
            .find(|(p, port, _)| *port == key.port && *p == key.proto)
            .or_else(|| {
                BUILTIN
                    .iter()
                    .find(|(p, port, _)| *port == key.port && *p == ANY)
            })
            .map(|(_, _, n)| (*n).to_owned())
    }
}

/// The name of an IP protocol number, for keys without ports and the API's `proto` field.
pub fn protocol_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        1 => "ICMP",
        2 => "IGMP",
        6 => "TCP",
        17 => "UDP",
        41 => "IPv6-in-IPv4",
        44 => "IPv6 fragment",
        47 => "GRE",
        50 => "ESP",
        58 => "ICMPv6",
        132 => "SCTP",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use sentinel_common::abi::{ROLE_CLIENT, ROLE_NONE, ROLE_SERVER};

    use super::*;

    fn key(proto: u8, port: u16, role: u8) -> ServiceKey {
        ServiceKey { port, proto, role }
    }

    #[test]
    fn the_builtin_table_names_what_nas_boxes_run() {
        let n = ServiceNames::default();
        assert_eq!(n.name(&key(6, 445, ROLE_SERVER)).as_deref(), Some("SMB"));
        assert_eq!(n.name(&key(6, 443, ROLE_CLIENT)).as_deref(), Some("HTTPS"));
        assert_eq!(n.name(&key(17, 443, ROLE_CLIENT)).as_deref(), Some("QUIC"));
        assert_eq!(n.name(&key(17, 53, ROLE_CLIENT)).as_deref(), Some("DNS"));
        assert_eq!(n.name(&key(6, 53, ROLE_CLIENT)).as_deref(), Some("DNS"));
        assert_eq!(n.name(&key(6, 32400, ROLE_SERVER)).as_deref(), Some("Plex"));
        assert_eq!(
            n.name(&key(17, 51820, ROLE_SERVER)).as_deref(),
            Some("WireGuard")
        );
        assert_eq!(
            n.name(&key(6, 51820, ROLE_SERVER)),
            None,
            "WireGuard is UDP only"
        );
        assert_eq!(n.name(&key(6, 40001, ROLE_SERVER)), None);
        assert_eq!(n.name(&key(1, 0, ROLE_NONE)).as_deref(), Some("ICMP"));
        assert_eq!(n.name(&key(99, 0, ROLE_NONE)), None);
    }

    #[test]
    fn the_user_mapping_comes_first_and_bad_entries_are_refused() {
        let n = ServiceNames::parse(&[
            "8096=Jellyfin",
            " udp/9000 = Game ",
            "",
            "tcp/8080=qBittorrent",
        ])
        .expect("valid");
        assert_eq!(
            n.name(&key(6, 8096, ROLE_SERVER)).as_deref(),
            Some("Jellyfin")
        );
        assert_eq!(
            n.name(&key(17, 8096, ROLE_SERVER)).as_deref(),
            Some("Jellyfin")
        );
        assert_eq!(n.name(&key(17, 9000, ROLE_SERVER)).as_deref(), Some("Game"));
        assert_eq!(n.name(&key(6, 9000, ROLE_SERVER)), None);
        assert_eq!(
            n.name(&key(6, 8080, ROLE_SERVER)).as_deref(),
            Some("qBittorrent")
        );
        for bad in [
            "8096",
            "x=Y",
            "0=Zero",
            "70000=Big",
            "sctp/1=A",
            "8096=",
            "=A",
        ] {
            assert_eq!(
                ServiceNames::parse(&[bad]),
                Err(NamesError {
                    entry: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
    }
}
