//! `sentinel healthcheck`: one HTTP request to the local daemon's `/api/health`, exit 0 on 200.
//! Plain std networking: a container needs no curl.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    time::Duration,
};

use base64::Engine as _;

use crate::config::Config;

/// Returns `Ok(())` when the daemon answers 200, the reason otherwise.
pub fn check(config: &Config) -> Result<(), String> {
    // A wildcard bind is reached on loopback.
    let ip = match config.web_addr.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    let addr = SocketAddr::new(ip, config.web_addr.port());
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let auth = config
        .web_auth
        .as_ref()
        .filter(|a| !a.exempt.iter().any(|p| p == "/api/health"))
        .map(|a| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(&a.credentials)
            )
        })
        .unwrap_or_default();
    let request =
        format!("GET /api/health HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let mut response = String::new();
    stream
        .take(64 * 1024)
        .read_to_string(&mut response)
        .map_err(|e| format!("reading: {e}"))?;
    let status = response.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        Err(format!("HTTP {status}: {body}"))
    }
}
