//! The daemon's configuration: one clap block ([`DaemonArgs`], flattened into the command line
//! of [`crate::cli`]), every flag also read from its environment variable (the seed's names kept),
//! validated once into a typed [`Config`]. Nothing else reads the environment.
//!
//! A leaf: it depends on no subsystem (capture, store, api, billing use its types, not the other
//! way round); the choice enums are `clap::ValueEnum`s, so a bad value is clap's clear error.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use ipnet::{IpNet, Ipv6Net};

use crate::timebucket::{Zone, ZoneError};

/// Which capture backend to use (`BACKEND`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// eBPF, falling back to AF_PACKET when the program cannot be loaded.
    #[default]
    Auto,
    /// eBPF only.
    Ebpf,
    /// AF_PACKET only.
    #[value(name = "afpacket")]
    AfPacket,
}

/// Which attach mechanism to use (`ATTACH_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachPreference {
    /// TCX where the kernel has it (>= 6.6), netlink otherwise.
    #[default]
    Auto,
    /// TCX only.
    Tcx,
    /// netlink/clsact only.
    Netlink,
}

/// Log output format (`LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// HTTP Basic auth credentials and the paths exempt from them (`WEB_AUTH`, `WEB_AUTH_EXEMPT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebAuth {
    /// `user:password`.
    pub credentials: String,
    /// Paths answered without credentials.
    pub exempt: Vec<String>,
}

/// The daemon's settings on the command line and in the environment.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Interface to monitor. Default: the interface of the default route.
    #[arg(long, env = "MONITOR_IFACE")]
    pub iface: Option<String>,

    /// IPv6 LAN prefixes, comma-separated (e.g. `240e:33e:2f08:d600::/56`). When set, they replace
    /// the prefixes derived from the interface's global addresses (manual mode).
    #[arg(long, env = "EXCLUDE_IPV6_PREFIX", value_delimiter = ',')]
    pub exclude_ipv6_prefix: Vec<String>,

    /// Length of the LAN prefix derived from each global IPv6 address (auto mode).
    #[arg(long, env = "IPV6_LAN_PREFIX_LEN", default_value_t = 56)]
    pub ipv6_lan_prefix_len: u8,

    /// Extra prefixes to treat as inside (never public), comma-separated, IPv4 or IPv6.
    #[arg(long, env = "INSIDE_PREFIXES", value_delimiter = ',')]
    pub inside_prefixes: Vec<String>,

    /// Prefixes to treat as public even though a built-in set says otherwise (e.g. `100.64.0.0/10`).
    #[arg(long, env = "PUBLIC_PREFIXES", value_delimiter = ',')]
    pub public_prefixes: Vec<String>,

    /// Seconds a vanished derived IPv6 LAN prefix stays a LAN prefix (e.g. across a PPPoE redial).
    #[arg(long, env = "LAN_PREFIX_GRACE", default_value_t = 3600)]
    pub lan_prefix_grace: u64,

    /// Seconds between full re-reads of the interface's addresses (a safety net under the netlink
    /// watch).
    #[arg(long, env = "ADDRESS_REFRESH", default_value_t = 60)]
    pub address_refresh: u64,

    /// Where the eBPF maps and links are pinned (on bpffs).
    #[arg(long, env = "BPF_PIN_DIR", default_value = "/sys/fs/bpf/sentinel")]
    pub bpf_pin_dir: PathBuf,

    /// Capture backend: `auto` (eBPF, falling back to the AF_PACKET ring when the program cannot be
    /// loaded), `ebpf` or `afpacket`.
    #[arg(long, env = "BACKEND", value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// How to attach the TC program: `auto` (TCX on kernels >= 6.6, else netlink), `tcx` or
    /// `netlink`.
    #[arg(long, env = "ATTACH_MODE", value_enum, default_value_t = AttachPreference::Auto)]
    pub attach_mode: AttachPreference,

    /// How often to print live totals, in seconds (0: never).
    #[arg(long, env = "PRINT_INTERVAL", default_value_t = 0)]
    pub print_interval: u64,

    /// Log format: `text` or `json`. Verbosity comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Time zone of hours, days and months: an IANA name such as `Asia/Shanghai` (from the tz
    /// database built into the binary). Default: the system's zone (/etc/timezone or the
    /// /etc/localtime link), else UTC.
    #[arg(long, env = "TZ")]
    pub tz: Option<String>,

    /// SQLite database file (created with its directory if missing; a Python seed `traffic.db` is
    /// backed up and migrated in place). The container image sets `/data/traffic.db`.
    #[arg(long, env = "DB_PATH", default_value = "./data/traffic.db")]
    pub db_path: PathBuf,

    /// Seconds between flushes of the counters to the database (10-3600); also flushed at shutdown.
    #[arg(long, env = "SAVE_INTERVAL", default_value_t = 300)]
    pub save_interval: u64,

    /// Remote addresses kept per day (and per month) once it is over (10-100000); the rest are
    /// summed as "other". About 50 bytes each on disk.
    #[arg(long, env = "TOP_REMOTES_PER_DAY", default_value_t = 1000)]
    pub top_remotes_per_day: u32,

    /// Address the dashboard and API listen on (`0.0.0.0`: every IPv4 address; `::` both families).
    #[arg(long, env = "WEB_BIND", default_value = "0.0.0.0")]
    pub web_bind: IpAddr,

    /// Port of the dashboard and API.
    #[arg(long, env = "WEB_PORT", default_value_t = 8080)]
    pub web_port: u16,

    /// HTTP Basic auth for the dashboard and the API, as `user:password` (unset: no auth; set
    /// but empty: a start-up error, so a blank value cannot turn auth off by accident).
    #[arg(long, env = "WEB_AUTH", hide_env_values = true)]
    pub web_auth: Option<String>,

    /// Host names the dashboard answers to, comma-separated (e.g. `nas.lan,nas`), against DNS
    /// rebinding: other `Host` headers get 403. Addresses (`192.168.1.10:8080`) always work.
    /// Unset: every host.
    #[arg(long, env = "WEB_ALLOWED_HOSTS", value_delimiter = ',')]
    pub web_allowed_hosts: Vec<String>,

    /// Names for services in `/api/services` and the dashboard, comma-separated `PORT=NAME`
    /// (TCP and UDP) or `tcp/PORT=NAME`, `udp/PORT=NAME`; they take precedence over the built-in
    /// table (e.g. `8096=Jellyfin,8080=qBittorrent`).
    #[arg(long, env = "SERVICE_NAMES", value_delimiter = ',')]
    pub service_names: Vec<String>,

    /// Paths served without auth, comma-separated (for container healthchecks and Prometheus).
    #[arg(
        long,
        env = "WEB_AUTH_EXEMPT",
        value_delimiter = ',',
        default_value = "/api/health,/metrics"
    )]
    pub web_auth_exempt: Vec<String>,

    /// Days of per-remote history kept (1-3660).
    #[arg(long, env = "REMOTES_RETENTION_DAYS", default_value_t = 400)]
    pub remotes_retention_days: u32,
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A prefix list entry that is not a valid prefix of the required family.
    #[error("{setting}: {entry:?} is not {expected}")]
    BadPrefix {
        setting: &'static str,
        entry: String,
        expected: &'static str,
    },
    /// A number outside its range.
    #[error("{setting}: {value} is outside {min}..={max}")]
    OutOfRange {
        setting: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    /// An empty interface name.
    /// `WEB_AUTH` set to nothing.
    #[error(
        "WEB_AUTH is set but empty; unset it to run without authentication, or give user:password"
    )]
    EmptyWebAuth,
    /// A `WEB_ALLOWED_HOSTS` entry that is not a host name.
    #[error("WEB_ALLOWED_HOSTS: {0:?} is not a host name (letters, digits, '-' and '.')")]
    AllowedHost(String),
    /// A malformed `SERVICE_NAMES` entry.
    #[error(transparent)]
    ServiceNames(#[from] crate::service_names::NamesError),
    /// A malformed `WEB_AUTH`.
    #[error("WEB_AUTH must be user:password with both parts non-empty")]
    WebAuth,
    /// A relative pin directory.
    #[error("BPF_PIN_DIR: {0:?} must be an absolute path on bpffs")]
    PinDir(PathBuf),
    /// A `TZ` that is not an IANA zone name.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// An empty `DB_PATH`.
    #[error("DB_PATH is set but empty")]
    EmptyDbPath,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `None`: the default-route interface, resolved at start-up.
    pub iface: Option<String>,
    /// Manual IPv6 LAN prefixes (`EXCLUDE_IPV6_PREFIX`); empty = auto mode.
    pub manual_lan_prefixes: Vec<Ipv6Net>,
    /// Prefix length derived from global IPv6 addresses in auto mode.
    pub ipv6_lan_prefix_len: u8,
    /// User inside prefixes.
    pub inside: Vec<IpNet>,
    /// User public prefixes.
    pub public: Vec<IpNet>,
    /// Grace period of vanished derived LAN prefixes.
    pub lan_prefix_grace: Duration,
    /// Full address re-read period.
    pub address_refresh: Duration,
    /// Pin directory on bpffs.
    pub bpf_pin_dir: PathBuf,
    /// Attach mechanism.
    pub attach_mode: AttachPreference,
    /// Capture backend.
    pub backend: BackendChoice,
    /// Live totals print period (`None`: never).
    pub print_interval: Option<Duration>,
    /// Log format.
    pub log_format: LogFormat,
    /// Listen address.
    pub web_addr: std::net::SocketAddr,
    /// Basic auth, when configured.
    pub web_auth: Option<WebAuth>,
    /// Host names the `Host` header may carry (lower-case; empty: any).
    pub web_allowed_hosts: Vec<String>,
    /// Service names (`SERVICE_NAMES` over the built-in table).
    pub service_names: crate::service_names::ServiceNames,
    /// Time zone of the history (`TZ`).
    pub zone: Zone,
    /// Database file (`DB_PATH`).
    pub db_path: PathBuf,
    /// Flush period (`SAVE_INTERVAL`).
    pub save_interval: Duration,
    /// Remotes kept per closed day (`TOP_REMOTES_PER_DAY`).
    pub top_remotes_per_day: u32,
    /// Days of per-remote history (`REMOTES_RETENTION_DAYS`).
    pub remotes_retention_days: u32,
}

impl DaemonArgs {
    /// Validates everything at once.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let iface = match self.iface {
            // Empty means "not chosen", as compose's `MONITOR_IFACE: ${MONITOR_IFACE:-}` passes it:
            // the default route's interface (logged at start-up), never a made-up one.
            Some(name) if name.trim().is_empty() => None,
            Some(name) => Some(name.trim().to_owned()),
            None => None,
        };
        let manual_lan_prefixes = self
            .exclude_ipv6_prefix
            .iter()
            .filter(|e| !e.trim().is_empty())
            .map(|e| parse_ipv6_prefix("EXCLUDE_IPV6_PREFIX", e))
            .collect::<Result<_, _>>()?;
        let inside = parse_prefixes("INSIDE_PREFIXES", &self.inside_prefixes)?;
        let public = parse_prefixes("PUBLIC_PREFIXES", &self.public_prefixes)?;
        in_range(
            "IPV6_LAN_PREFIX_LEN",
            self.ipv6_lan_prefix_len.into(),
            16,
            128,
        )?;
        in_range("PRINT_INTERVAL", self.print_interval, 0, 3600)?;
        in_range("LAN_PREFIX_GRACE", self.lan_prefix_grace, 0, 30 * 86400)?;
        in_range("ADDRESS_REFRESH", self.address_refresh, 1, 3600)?;
        if !self.bpf_pin_dir.is_absolute() {
            return Err(ConfigError::PinDir(self.bpf_pin_dir));
        }
        let web_auth = match self.web_auth.as_deref().map(str::trim) {
            None => None,
            Some("") => return Err(ConfigError::EmptyWebAuth),
            Some(text) => match text.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    Some(WebAuth {
                        credentials: text.to_owned(),
                        exempt: self
                            .web_auth_exempt
                            .iter()
                            .map(|p| p.trim().to_owned())
                            .filter(|p| !p.is_empty())
                            .collect(),
                    })
                }
                _ => return Err(ConfigError::WebAuth),
            },
        };
        let web_allowed_hosts = self
            .web_allowed_hosts
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .map(|h| {
                let ok = h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if ok {
                    Ok(h)
                } else {
                    Err(ConfigError::AllowedHost(h))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.web_port == 0 {
            return Err(ConfigError::OutOfRange {
                setting: "WEB_PORT",
                value: 0,
                min: 1,
                max: 65535,
            });
        }
        let zone = match self.tz.as_deref().map(str::trim) {
            // glibc's ":Area/City" form means the same zone.
            Some(name) if !name.is_empty() => Zone::parse(name.trim_start_matches(':'))?,
            _ => system_zone().unwrap_or(Zone::parse("UTC")?),
        };
        if self.db_path.as_os_str().is_empty() {
            return Err(ConfigError::EmptyDbPath);
        }
        in_range("SAVE_INTERVAL", self.save_interval, 10, 3600)?;
        in_range(
            "TOP_REMOTES_PER_DAY",
            self.top_remotes_per_day.into(),
            10,
            100_000,
        )?;
        in_range(
            "REMOTES_RETENTION_DAYS",
            self.remotes_retention_days.into(),
            1,
            3660,
        )?;
        Ok(Config {
            iface,
            manual_lan_prefixes,
            ipv6_lan_prefix_len: self.ipv6_lan_prefix_len,
            inside,
            public,
            lan_prefix_grace: Duration::from_secs(self.lan_prefix_grace),
            address_refresh: Duration::from_secs(self.address_refresh),
            bpf_pin_dir: self.bpf_pin_dir,
            attach_mode: self.attach_mode,
            backend: self.backend,
            print_interval: (self.print_interval > 0)
                .then(|| Duration::from_secs(self.print_interval)),
            log_format: self.log_format,
            web_addr: std::net::SocketAddr::new(self.web_bind, self.web_port),
            web_auth,
            web_allowed_hosts,
            service_names: crate::service_names::ServiceNames::parse(&self.service_names)?,
            zone,
            db_path: self.db_path,
            save_interval: Duration::from_secs(self.save_interval),
            top_remotes_per_day: self.top_remotes_per_day,
            remotes_retention_days: self.remotes_retention_days,
        })
    }
}

/// The machine's zone: `/etc/timezone`, else the target of the `/etc/localtime` link.
fn system_zone() -> Option<Zone> {
    let from_file = std::fs::read_to_string("/etc/timezone")
        .ok()
        .map(|s| s.trim().to_owned());
    let from_link = std::fs::read_link("/etc/localtime").ok().and_then(|p| {
        let text = p.to_string_lossy().into_owned();
        text.split_once("zoneinfo/")
            .map(|(_, zone)| zone.to_owned())
    });
    [from_file, from_link]
        .into_iter()
        .flatten()
        .find_map(|name| Zone::parse(&name).ok())
}

fn in_range(setting: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            setting,
            value,
            min,
            max,
        })
    }
}

/// An IPv6 prefix with an explicit length; host bits are cleared (`...d601::1/56` means `...d600::/56`).
fn parse_ipv6_prefix(setting: &'static str, entry: &str) -> Result<Ipv6Net, ConfigError> {
    let bad = || ConfigError::BadPrefix {
        setting,
        entry: entry.to_owned(),
        expected: "an IPv6 prefix with a length, such as 240e:33e:2f08:d600::/56",
    };
    match entry.trim().parse::<IpNet>().map_err(|_| bad())? {
        IpNet::V6(net) => Ok(net.trunc()),
        IpNet::V4(_) => Err(bad()),
    }
}

/// A comma list of IPv4/IPv6 prefixes; a bare address means a single host.
fn parse_prefixes(setting: &'static str, entries: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    entries
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::BadPrefix {
                    setting,
                    entry: e.to_owned(),
                    expected: "an IPv4 or IPv6 prefix such as 100.64.0.0/10",
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::{Args as _, FromArgMatches as _};

    /// Parses `args` as the daemon would, but with every environment variable binding removed:
    /// the tests mean the same whatever the shell running them exports (DB_PATH, TZ, ...).
    fn parse(args: &[&str]) -> Result<DaemonArgs, clap::Error> {
        let command = DaemonArgs::augment_args(clap::Command::new("sentinel"))
            .mut_args(|arg| arg.env(None::<&str>));
        let mut argv = vec!["sentinel"];
        argv.extend_from_slice(args);
        DaemonArgs::from_arg_matches(&command.try_get_matches_from(argv)?)
    }

    fn cli(args: &[&str]) -> Result<Config, ConfigError> {
        parse(args)
            .expect("clap accepts the test arguments")
            .validate()
    }

    #[test]
    fn tests_do_not_read_the_environment() {
        // Setting variables here would race other tests, so check the binding instead: no
        // argument of the test parser reads the environment.
        let command = DaemonArgs::augment_args(clap::Command::new("sentinel"))
            .mut_args(|arg| arg.env(None::<&str>));
        assert!(command.get_arguments().all(|a| a.get_env().is_none()));
        // ...while the daemon's own parser does read them (the seed's names).
        let real = DaemonArgs::augment_args(clap::Command::new("sentinel"));
        let envs: Vec<String> = real
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        for name in [
            "MONITOR_IFACE",
            "TZ",
            "DB_PATH",
            "SAVE_INTERVAL",
            "WEB_PORT",
        ] {
            assert!(envs.iter().any(|e| e == name), "{name} is read: {envs:?}");
        }
    }

    #[test]
    fn manual_prefixes_reject_ipv4_and_bare_addresses() {
        // Seed vector 47: an IPv4 network silently switched the IPv6 LAN filter off.
        let err = cli(&["--exclude-ipv6-prefix", "10.0.0.0/8"]).expect_err("IPv4 rejected");
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
        assert!(cli(&["--exclude-ipv6-prefix", "240e::1"]).is_err());
        assert!(cli(&["--exclude-ipv6-prefix", "not-a-prefix"]).is_err());
        assert!(cli(&["--exclude-ipv6-prefix", "240e:33e:2f08:d600::/56,garbage"]).is_err());
    }

    #[test]
    fn manual_prefixes_are_normalised() {
        let config = cli(&[
            "--exclude-ipv6-prefix",
            " 240e:33e:2f08:d601::1/56 ,2408:8756:abc::/48",
        ])
        .expect("valid");
        let want: Vec<Ipv6Net> = vec![
            "240e:33e:2f08:d600::/56".parse().expect("net"),
            "2408:8756:abc::/48".parse().expect("net"),
        ];
        assert_eq!(config.manual_lan_prefixes, want);
    }

    #[test]
    fn ranges_and_names_are_checked() {
        assert!(cli(&["--ipv6-lan-prefix-len", "8"]).is_err());
        assert!(cli(&["--ipv6-lan-prefix-len", "129"]).is_err());
        // Empty (compose's `${MONITOR_IFACE:-}`) means the default route's interface.
        assert_eq!(cli(&["--iface", " "]).expect("empty is auto").iface, None);
        assert_eq!(
            cli(&["--iface", "eth1 "]).expect("named").iface.as_deref(),
            Some("eth1")
        );
        // The choices are clap value enums: a bad value is refused while parsing, naming the
        // values that are allowed.
        for (flag, bad) in [
            ("--log-format", "xml"),
            ("--attach-mode", "xdp"),
            ("--backend", "pcap"),
        ] {
            let err = parse(&[flag, bad]).expect_err("refused").to_string();
            assert!(
                err.contains(bad) && err.contains("possible values"),
                "{err}"
            );
        }
        let typed = cli(&[
            "--backend",
            "afpacket",
            "--attach-mode",
            "netlink",
            "--log-format",
            "json",
        ])
        .expect("valid choices");
        assert_eq!(
            (typed.backend, typed.attach_mode, typed.log_format),
            (
                BackendChoice::AfPacket,
                AttachPreference::Netlink,
                LogFormat::Json
            )
        );
        assert!(cli(&["--web-auth", "nopassword"]).is_err());
        assert!(cli(&["--web-auth", ":pw"]).is_err());
        // Set but empty (WEB_AUTH= in a compose file) must not silently mean "no auth".
        assert!(matches!(
            cli(&["--web-auth", ""]),
            Err(ConfigError::EmptyWebAuth)
        ));
        assert!(matches!(
            cli(&["--web-auth", "  "]),
            Err(ConfigError::EmptyWebAuth)
        ));
        assert_eq!(
            cli(&["--web-allowed-hosts", " NAS.lan., nas"])
                .expect("valid hosts")
                .web_allowed_hosts,
            vec!["nas.lan".to_owned(), "nas".to_owned()]
        );
        assert!(cli(&["--web-allowed-hosts", "nas/evil"]).is_err());
        assert!(cli(&["--web-port", "0"]).is_err());
        let with_auth =
            cli(&["--web-auth", "admin:s3cret:x"]).expect("a colon in the password is fine");
        assert_eq!(
            with_auth.web_auth.map(|a| a.exempt),
            Some(vec!["/api/health".to_owned(), "/metrics".to_owned()])
        );
        assert!(cli(&["--bpf-pin-dir", "relative/dir"]).is_err());
        assert!(cli(&["--address-refresh", "0"]).is_err());
        assert!(cli(&["--public-prefixes", "100.64.0.0/33"]).is_err());
        let config = cli(&[
            "--public-prefixes",
            "100.64.0.0/10",
            "--inside-prefixes",
            "203.0.113.7",
        ])
        .expect("valid");
        assert_eq!(
            config.inside,
            vec!["203.0.113.7/32".parse::<IpNet>().expect("net")]
        );
    }

    #[test]
    fn storage_settings_are_validated() {
        let config = cli(&[]).expect("defaults are valid");
        assert_eq!(config.zone, system_zone().unwrap_or(Zone::UTC));
        assert_eq!(config.save_interval, Duration::from_secs(300));
        assert_eq!(config.db_path, PathBuf::from("./data/traffic.db"));
        assert_eq!(config.top_remotes_per_day, 1000);
        assert_eq!(config.remotes_retention_days, 400);
        let config = cli(&["--tz", "America/New_York", "--save-interval", "10"]).expect("valid");
        assert_eq!(config.zone.name(), "America/New_York");
        assert_eq!(config.save_interval, Duration::from_secs(10));
        // Seed D39: an invalid TZ silently became UTC; D4: SAVE_INTERVAL was not checked.
        let err = cli(&["--tz", "Foo/Bar"]).expect_err("unknown zone");
        assert!(err.to_string().contains("Foo/Bar"), "{err}");
        for (flag, value) in [
            ("--save-interval", "9"),
            ("--save-interval", "3601"),
            ("--save-interval", "0"),
            ("--top-remotes-per-day", "9"),
            ("--remotes-retention-days", "0"),
            ("--remotes-retention-days", "3661"),
        ] {
            let err = cli(&[flag, value]).expect_err("out of range");
            assert!(err.to_string().contains("outside"), "{flag} {value}: {err}");
        }
        assert!(parse(&["--save-interval", "-5"]).is_err());
        assert!(parse(&["--db-path", ""]).is_err());
    }
}
