//! Notification URLs in the style of Apprise and shoutrrr, parsed once at start-up into
//! [`ChannelUrl`]. Every HTTP channel takes an optional `?base=` that replaces the service's
//! address (a self-hosted relay or an API mirror; the tests point it at 127.0.0.1).
//! Knows nothing of sending.

use std::fmt;

/// A notification URL that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    /// An unknown scheme.
    #[error(
        "{scheme}:// is not a known channel (tgram, bark, barks, schan, pushplus, wecom, dingtalk, feishu, ntfy, ntfys, mailto, mailtos, json, jsons)"
    )]
    Scheme {
        /// The scheme given.
        scheme: String,
    },
    /// A known scheme with a missing or malformed part.
    #[error("{redacted}: {problem} (e.g. {example})")]
    Shape {
        /// The URL with secrets hidden.
        redacted: String,
        /// What is wrong.
        problem: &'static str,
        /// A correct example.
        example: &'static str,
    },
}

/// One configured channel.
#[derive(Clone, PartialEq, Eq)]
pub enum ChannelUrl {
    /// `ALERT_WEBHOOK` (or `json://`/`jsons://`): the documented JSON schema, POSTed.
    Webhook {
        /// Full URL.
        url: String,
    },
    /// `tgram://BOT_TOKEN/CHAT_ID`: Bot API `sendMessage`.
    Telegram {
        /// Bot token.
        token: String,
        /// Chat id.
        chat: String,
        /// API base.
        base: String,
    },
    /// `bark://host/DEVICE_KEY` (http) or `barks://host/DEVICE_KEY` (https).
    Bark {
        /// Device key.
        key: String,
        /// Server base.
        base: String,
    },
    /// `schan://SENDKEY`: Server酱 Turbo.
    ServerChan {
        /// SendKey.
        key: String,
        /// API base.
        base: String,
    },
    /// `pushplus://TOKEN`.
    PushPlus {
        /// Token.
        token: String,
        /// API base.
        base: String,
    },
    /// `wecom://KEY`: 企业微信 group robot.
    WeCom {
        /// Webhook key.
        key: String,
        /// API base.
        base: String,
    },
    /// `dingtalk://ACCESS_TOKEN[/SECRET]`: 钉钉 custom robot, signed when a secret is given.
    DingTalk {
        /// Access token.
        token: String,
        /// Signing secret.
        secret: Option<String>,
        /// API base.
        base: String,
    },
    /// `feishu://HOOK_ID[/SECRET]`: 飞书 custom bot, signed when a secret is given.
    Feishu {
        /// Hook id.
        hook: String,
        /// Signing secret.
        secret: Option<String>,
        /// API base.
        base: String,
    },
    /// `ntfy://host/topic` (http), `ntfys://host/topic` (https), `ntfy://topic` (ntfy.sh).
    Ntfy {
        /// Server base.
        base: String,
        /// Topic.
        topic: String,
        /// Access token (`?token=`).
        token: Option<String>,
    },
    /// `mailto://user:pass@host[:port]/to@example.com[,to2]?from=me@example.com`; `mailtos://`
    /// is implicit TLS (port 465), `mailto://` uses STARTTLS when the server offers it (port 587
    /// by default), `?tls=no` sends in clear text (a relay on the LAN).
    Smtp(super::smtp::SmtpTarget),
}

impl fmt::Debug for ChannelUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// `scheme://rest?query` split, with the query as pairs.
struct Parts<'a> {
    scheme: String,
    rest: &'a str,
    query: Vec<(String, String)>,
}

fn split(url: &str) -> Option<Parts<'_>> {
    let (scheme, after) = url.split_once("://")?;
    let (rest, query) = after.split_once('?').unwrap_or((after, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_ascii_lowercase(), percent_decode(v))
        })
        .collect();
    Some(Parts {
        scheme: scheme.to_ascii_lowercase(),
        rest: rest.trim_end_matches('/'),
        query,
    })
}

impl Parts<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn base(&self, default: &str) -> String {
        self.get("base")
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_owned()
    }

    fn segments(&self) -> Vec<String> {
        self.rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect()
    }
}

/// Decodes `%xx` escapes (invalid escapes are kept as written).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `scheme://` and the first characters of the rest: safe for logs.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let shown: String = rest.chars().take(4).collect();
            format!("{scheme}://{shown}...")
        }
        None => "(not a URL)".to_owned(),
    }
}

fn http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")) && url.len() > 8
}

impl ChannelUrl {
    /// An `ALERT_WEBHOOK` URL.
    pub fn webhook(url: &str) -> Result<ChannelUrl, UrlError> {
        if http_url(url) {
            Ok(ChannelUrl::Webhook {
                url: url.to_owned(),
            })
        } else {
            Err(UrlError::Shape {
                redacted: redact(url),
                problem: "not an http(s) URL",
                example: "https://example.com/hook",
            })
        }
    }

    /// Parses one `NOTIFY` entry.
    pub fn parse(url: &str) -> Result<ChannelUrl, UrlError> {
        let shape = |problem, example| UrlError::Shape {
            redacted: redact(url),
            problem,
            example,
        };
        let p = split(url).ok_or_else(|| shape("not a URL", "tgram://123:ABC/456"))?;
        let seg = p.segments();
        let one = |example| match seg.as_slice() {
            [key] if !key.is_empty() => Ok(key.clone()),
            _ => Err(shape("expected exactly one key after the scheme", example)),
        };
        let key_and_secret = |example| match seg.as_slice() {
            [key] => Ok((key.clone(), None)),
            [key, secret] => Ok((key.clone(), Some(secret.clone()))),
            _ => Err(shape("expected a token and an optional secret", example)),
        };
        Ok(match p.scheme.as_str() {
            "json" | "jsons" => {
                let scheme = if p.scheme == "json" { "http" } else { "https" };
                ChannelUrl::Webhook {
                    url: format!("{scheme}://{}", url.split_once("://").map_or("", |x| x.1)),
                }
            }
            "tgram" => match seg.as_slice() {
                [token, chat] => ChannelUrl::Telegram {
                    token: token.clone(),
                    chat: chat.clone(),
                    base: p.base("https://api.telegram.org"),
                },
                _ => {
                    return Err(shape(
                        "expected a bot token and a chat id",
                        "tgram://123:ABC/456",
                    ));
                }
            },
            "bark" | "barks" => match seg.as_slice() {
                [host, key] => {
                    let scheme = if p.scheme == "bark" { "http" } else { "https" };
                    ChannelUrl::Bark {
                        key: key.clone(),
                        base: p.base(&format!("{scheme}://{host}")),
                    }
                }
                _ => {
                    return Err(shape(
                        "expected a host and a device key",
                        "barks://api.day.app/KEY",
                    ));
                }
            },
            "schan" => ChannelUrl::ServerChan {
                key: one("schan://SCT123abc")?,
                base: p.base("https://sctapi.ftqq.com"),
            },
            "pushplus" => ChannelUrl::PushPlus {
                token: one("pushplus://TOKEN")?,
                base: p.base("https://www.pushplus.plus"),
            },
            "wecom" | "wxwork" => ChannelUrl::WeCom {
                key: one("wecom://693a91f6-7xxx")?,
                base: p.base("https://qyapi.weixin.qq.com"),
            },
            "dingtalk" => {
                let (token, secret) = key_and_secret("dingtalk://TOKEN/SECxxx")?;
                ChannelUrl::DingTalk {
                    token,
                    secret,
                    base: p.base("https://oapi.dingtalk.com"),
                }
            }
            "feishu" | "lark" => {
                let (hook, secret) = key_and_secret("feishu://HOOK_ID/SECRET")?;
                ChannelUrl::Feishu {
                    hook,
                    secret,
                    base: p.base("https://open.feishu.cn"),
                }
            }
            "ntfy" | "ntfys" => {
                let scheme = if p.scheme == "ntfy" { "http" } else { "https" };
                let (base, topic) = match seg.as_slice() {
                    [topic] => ("https://ntfy.sh".to_owned(), topic.clone()),
                    [host, topic] => (format!("{scheme}://{host}"), topic.clone()),
                    _ => return Err(shape("expected [host/]topic", "ntfys://ntfy.sh/my-nas")),
                };
                ChannelUrl::Ntfy {
                    base: p.base(&base),
                    topic,
                    token: p.get("token").map(str::to_owned),
                }
            }
            "mailto" | "mailtos" => ChannelUrl::Smtp(
                super::smtp::SmtpTarget::from_parts(
                    p.scheme == "mailtos",
                    p.rest,
                    p.get("from"),
                    p.get("tls"),
                )
                .map_err(|problem| {
                    shape(problem, "mailtos://me:pw@smtp.example.com/me@example.com")
                })?,
            ),
            other => {
                return Err(UrlError::Scheme {
                    scheme: other.to_owned(),
                });
            }
        })
    }

    /// A short name for logs and metrics (no secrets).
    pub fn name(&self) -> String {
        match self {
            ChannelUrl::Webhook { .. } => "webhook".into(),
            ChannelUrl::Telegram { .. } => "telegram".into(),
            ChannelUrl::Bark { .. } => "bark".into(),
            ChannelUrl::ServerChan { .. } => "serverchan".into(),
            ChannelUrl::PushPlus { .. } => "pushplus".into(),
            ChannelUrl::WeCom { .. } => "wecom".into(),
            ChannelUrl::DingTalk { .. } => "dingtalk".into(),
            ChannelUrl::Feishu { .. } => "feishu".into(),
            ChannelUrl::Ntfy { .. } => "ntfy".into(),
            ChannelUrl::Smtp(_) => "email".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses() {
        let t =
            ChannelUrl::parse("tgram://123:ABC/-100200?base=http://127.0.0.1:9/").expect("tgram");
        assert_eq!(
            t,
            ChannelUrl::Telegram {
                token: "123:ABC".into(),
                chat: "-100200".into(),
                base: "http://127.0.0.1:9".into()
            }
        );
        assert!(matches!(ChannelUrl::parse("barks://api.day.app/KEY"),
            Ok(ChannelUrl::Bark { ref base, ref key }) if base == "https://api.day.app" && key == "KEY"));
        assert!(matches!(ChannelUrl::parse("ntfy://my-nas"),
            Ok(ChannelUrl::Ntfy { ref base, .. }) if base == "https://ntfy.sh"));
        assert!(
            matches!(ChannelUrl::parse("ntfy://10.0.0.2:8080/nas?token=tk"),
            Ok(ChannelUrl::Ntfy { ref base, ref token, .. }) if base == "http://10.0.0.2:8080" && token.as_deref() == Some("tk"))
        );
        assert!(matches!(ChannelUrl::parse("dingtalk://tok/SEC1"),
            Ok(ChannelUrl::DingTalk { ref secret, .. }) if secret.as_deref() == Some("SEC1")));
        assert!(matches!(ChannelUrl::parse("jsons://example.com/hook"),
            Ok(ChannelUrl::Webhook { ref url }) if url == "https://example.com/hook"));
        for ok in [
            "schan://SCT1",
            "pushplus://tok",
            "wecom://k",
            "feishu://h",
            "mailtos://u:p@smtp.example.com/to@example.com",
        ] {
            assert!(ChannelUrl::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn bad_urls_are_refused_without_leaking_secrets() {
        let err = ChannelUrl::parse("tgram://SECRETTOKEN").expect_err("no chat");
        assert!(!err.to_string().contains("SECRETTOKEN"), "{err}");
        assert!(ChannelUrl::parse("gotify://x").is_err());
        assert!(ChannelUrl::parse("no scheme").is_err());
        assert!(ChannelUrl::parse("schan://").is_err());
        assert!(ChannelUrl::parse("mailto://smtp.example.com").is_err());
        assert!(ChannelUrl::webhook("ftp://x").is_err());
        assert_eq!(percent_decode("a%40b%2"), "a@b%2");
    }
}
