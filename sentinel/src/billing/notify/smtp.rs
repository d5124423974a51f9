//! A small SMTP client for alert e-mails: EHLO, STARTTLS or implicit TLS (rustls with the
//! webpki roots), AUTH PLAIN, one message in UTF-8 (base64 body, RFC 2047 subject). Enough for
//! the mail services NAS owners use (QQ, 163, Gmail, a LAN relay); no pooling, no queue: the
//! channel worker retries. Knows nothing of alerts.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    sync::Arc,
    time::Duration,
};

use base64::Engine as _;

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// TLS from the first byte (`mailtos://`, port 465).
    Implicit,
    /// STARTTLS, required (`mailto://`, port 587).
    StartTls,
    /// Clear text (`?tls=no`: a relay on the LAN or a test).
    None,
}

/// Where and how to send alert e-mails.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpTarget {
    /// Server host name.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Protection.
    pub tls: Tls,
    /// Login user (AUTH PLAIN), if any.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Envelope and header sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

impl SmtpTarget {
    /// Builds a target from `user:pass@host:port/to1,to2` and the `from`/`tls` query values.
    pub(crate) fn from_parts(
        implicit: bool,
        rest: &str,
        from: Option<&str>,
        tls: Option<&str>,
    ) -> Result<SmtpTarget, &'static str> {
        let (authority, recipients) = rest.split_once('/').unwrap_or((rest, ""));
        let (login, hostport) = match authority.rsplit_once('@') {
            Some((login, hp)) => (Some(login), hp),
            None => (None, authority),
        };
        let (user, password) = match login.map(|l| l.split_once(':').unwrap_or((l, ""))) {
            Some((u, p)) => (
                Some(super::url::percent_decode(u)),
                Some(super::url::percent_decode(p)),
            ),
            None => (None, None),
        };
        let tls = match (implicit, tls.map(str::to_ascii_lowercase).as_deref()) {
            (true, _) => Tls::Implicit,
            (false, Some("no" | "none" | "off")) => Tls::None,
            (false, None | Some("starttls" | "yes")) => Tls::StartTls,
            _ => return Err("tls= must be no or starttls"),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| "the port is not a number")?),
            None => (hostport, if implicit { 465 } else { 587 }),
        };
        if host.is_empty() {
            return Err("no SMTP host");
        }
        let to: Vec<String> = recipients
            .split(',')
            .map(super::url::percent_decode)
            .filter(|r| r.contains('@'))
            .collect();
        let from = match from {
            Some(f) if f.contains('@') => f.to_owned(),
            Some(_) => return Err("from= is not an address"),
            None => match &user {
                Some(u) if u.contains('@') => u.clone(),
                Some(u) => format!("{u}@{host}"),
                None => to
                    .first()
                    .cloned()
                    .ok_or("no recipient address after the host")?,
            },
        };
        if to.is_empty() {
            return Err("no recipient address after the host");
        }
        Ok(SmtpTarget {
            host: host.to_owned(),
            port,
            tls,
            user,
            password,
            from,
            to,
        })
    }
}

/// Why an e-mail was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// Connecting, reading or writing failed.
    #[error("SMTP {host}:{port}: {what}")]
    Io {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The step.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an unexpected code.
    #[error("SMTP {host}: {step} answered {reply:?}")]
    Reply {
        /// Host.
        host: String,
        /// The command.
        step: &'static str,
        /// The server's reply line.
        reply: String,
    },
    /// STARTTLS is required but not offered, or the TLS set-up failed.
    #[error("SMTP {host}: {0}", host = .1)]
    Tls(String, String),
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

fn tls_wrap(host: &str, tcp: TcpStream) -> Result<Conn, SmtpError> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SmtpError::Tls(e.to_string(), host.to_owned()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| SmtpError::Tls(e.to_string(), host.to_owned()))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| SmtpError::Tls(e.to_string(), host.to_owned()))?;
    Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
}

struct Session<'a> {
    target: &'a SmtpTarget,
    conn: Conn,
}

impl Session<'_> {
    fn io(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> SmtpError + '_ {
        move |source| SmtpError::Io {
            host: self.target.host.clone(),
            port: self.target.port,
            what,
            source,
        }
    }

    /// Reads one (possibly multi-line) reply; returns its code and every line.
    fn reply(&mut self, step: &'static str) -> Result<(u16, Vec<String>), SmtpError> {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while line.len() < 4096 {
                let n = self.conn.read(&mut byte).map_err(self.io(step))?;
                if n == 0 {
                    return Err((self.io(step))(std::io::ErrorKind::UnexpectedEof.into()));
                }
                if byte[0] == b'\n' {
                    break;
                }
                line.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            let code = text.get(..3).and_then(|c| c.parse::<u16>().ok());
            let more = text.as_bytes().get(3) == Some(&b'-');
            lines.push(text);
            match code {
                Some(code) if !more => return Ok((code, lines)),
                Some(_) if lines.len() < 100 => continue,
                _ => {
                    return Err(SmtpError::Reply {
                        host: self.target.host.clone(),
                        step,
                        reply: lines.join(" | "),
                    });
                }
            }
        }
    }

    fn expect(&mut self, step: &'static str, ok: &[u16]) -> Result<Vec<String>, SmtpError> {
        let (code, lines) = self.reply(step)?;
        if ok.contains(&code) {
            Ok(lines)
        } else {
            Err(SmtpError::Reply {
                host: self.target.host.clone(),
                step,
                reply: lines.join(" | "),
            })
        }
    }

    fn command(
        &mut self,
        step: &'static str,
        line: &str,
        ok: &[u16],
    ) -> Result<Vec<String>, SmtpError> {
        let mut data = line.as_bytes().to_vec();
        data.extend_from_slice(b"\r\n");
        self.conn.write_all(&data).map_err(self.io(step))?;
        self.conn.flush().map_err(self.io(step))?;
        self.expect(step, ok)
    }
}

/// RFC 2047 encoded-word for a UTF-8 header value.
fn encoded_word(text: &str) -> String {
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
}

/// The message as sent after DATA (CRLF line ends, base64 body in 76-column lines).
pub(crate) fn message_text(
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
    date: &str,
) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    let mut lines: Vec<String> = vec![
        format!("From: NetTraffic-Sentinel <{from}>"),
        format!("To: {}", to.join(", ")),
        format!("Subject: {}", encoded_word(subject)),
        format!("Date: {date}"),
        "MIME-Version: 1.0".into(),
        "Content-Type: text/plain; charset=utf-8".into(),
        "Content-Transfer-Encoding: base64".into(),
        String::new(),
    ];
    for chunk in encoded.as_bytes().chunks(76) {
        lines.push(String::from_utf8_lossy(chunk).into_owned());
    }
    lines.join("\r\n")
}

/// Sends one e-mail; `timeout` bounds each read and write.
pub fn send(
    target: &SmtpTarget,
    subject: &str,
    body: &str,
    timeout: Duration,
) -> Result<(), SmtpError> {
    let io = |what, source| SmtpError::Io {
        host: target.host.clone(),
        port: target.port,
        what,
        source,
    };
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| io("resolving", e))?
        .next()
        .ok_or_else(|| io("resolving", std::io::ErrorKind::NotFound.into()))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| io("connecting", e))?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| io("connecting", e))?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(|e| io("connecting", e))?;
    let conn = match target.tls {
        Tls::Implicit => tls_wrap(&target.host, tcp)?,
        _ => Conn::Plain(tcp),
    };
    let mut s = Session { target, conn };
    s.expect("greeting", &[220])?;
    let ehlo = s.command("EHLO", "EHLO sentinel", &[250])?;
    if target.tls == Tls::StartTls {
        if !ehlo
            .iter()
            .any(|l| l.to_ascii_uppercase().contains("STARTTLS"))
        {
            return Err(SmtpError::Tls(
                "the server does not offer STARTTLS (use mailtos:// for port 465, or ?tls=no for a LAN relay)".into(),
                target.host.clone(),
            ));
        }
        s.command("STARTTLS", "STARTTLS", &[220])?;
        let Conn::Plain(tcp) = s.conn else {
            return Err(SmtpError::Tls(
                "TLS started twice".into(),
                target.host.clone(),
            ));
        };
        s.conn = tls_wrap(&target.host, tcp)?;
        s.command("EHLO", "EHLO sentinel", &[250])?;
    }
    if let Some(user) = &target.user {
        let token = format!("\0{user}\0{}", target.password.as_deref().unwrap_or(""));
        let line = format!(
            "AUTH PLAIN {}",
            base64::engine::general_purpose::STANDARD.encode(token)
        );
        s.command("AUTH", &line, &[235])?;
    }
    s.command("MAIL FROM", &format!("MAIL FROM:<{}>", target.from), &[250])?;
    for rcpt in &target.to {
        s.command("RCPT TO", &format!("RCPT TO:<{rcpt}>"), &[250, 251])?;
    }
    s.command("DATA", "DATA", &[354])?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let date = chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc2822())
        .unwrap_or_default();
    let text = message_text(&target.from, &target.to, subject, body, &date);
    s.command("message", &format!("{text}\r\n."), &[250])?;
    // The message is accepted; a failed QUIT changes nothing.
    let _ = s.command("QUIT", "QUIT", &[221]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_from_urls() {
        let t =
            SmtpTarget::from_parts(true, "me%40qq.com:pw@smtp.qq.com/a@x.cn,b@y.cn", None, None)
                .expect("valid");
        assert_eq!(
            (t.port, t.tls, t.from.as_str()),
            (465, Tls::Implicit, "me@qq.com")
        );
        assert_eq!(t.to, vec!["a@x.cn".to_owned(), "b@y.cn".to_owned()]);
        let t = SmtpTarget::from_parts(false, "relay.lan:25/a@x.cn", Some("nas@lan"), Some("no"))
            .expect("valid");
        assert_eq!((t.port, t.tls, t.user), (25, Tls::None, None));
        assert!(SmtpTarget::from_parts(false, "relay.lan", None, None).is_err());
        assert!(SmtpTarget::from_parts(false, "relay.lan:x/a@b", None, None).is_err());
    }

    #[test]
    fn message_is_utf8_safe() {
        let text = message_text("a@b", &["c@d".into()], "流量提醒", "已用 80%\n.", "now");
        assert!(text.contains("Subject: =?UTF-8?B?"));
        assert!(text.lines().all(|l| !l.starts_with('.')));
    }
}
