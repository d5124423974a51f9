//! The HTTP request each channel expects, built as plain data ([`HttpRequest`]) so the shapes are
//! testable without a network, and sent with ureq (rustls). References: Telegram Bot API
//! `sendMessage`; Bark `POST /push`; Server酱 Turbo `POST /{key}.send`; PushPlus `POST /send`;
//! 企业微信 group robot `POST /cgi-bin/webhook/send?key=`; 钉钉 custom robot `POST /robot/send`
//! (HMAC-SHA256 signature over `timestamp\nsecret`); 飞书 custom bot `POST /open-apis/bot/v2/hook/`
//! (HMAC-SHA256 keyed by `timestamp\nsecret` over nothing); ntfy JSON publishing `POST /`.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};

use super::{Notice, url::ChannelUrl};

/// One request, as data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// Full URL.
    pub url: String,
    /// Extra headers (Content-Type included).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer (connection, TLS, timeout).
    #[error("request failed: {0}")]
    Transport(String),
    /// An answer that is not 2xx, or a 2xx whose body reports an error.
    #[error("answered {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// `application/x-www-form-urlencoded` escaping.
fn form_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => Vec::new(),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn json_request(url: String, body: &Value) -> HttpRequest {
    HttpRequest {
        url,
        headers: vec![(
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: body.to_string().into_bytes(),
    }
}

/// The request `channel` needs for `notice`; `now_ms` signs DingTalk and Feishu requests.
/// `None` for channels that are not HTTP (e-mail).
pub fn build(channel: &ChannelUrl, notice: &Notice, now_ms: i64) -> Option<HttpRequest> {
    let text = format!("{}\n{}", notice.title, notice.body);
    Some(match channel {
        ChannelUrl::Webhook { url } => json_request(url.clone(), &notice.payload),
        ChannelUrl::Telegram { token, chat, base } => json_request(
            format!("{base}/bot{token}/sendMessage"),
            &json!({ "chat_id": chat, "text": text, "disable_web_page_preview": true }),
        ),
        ChannelUrl::Bark { key, base } => json_request(
            format!("{base}/push"),
            &json!({ "device_key": key, "title": notice.title, "body": notice.body, "group": "NetTraffic-Sentinel" }),
        ),
        ChannelUrl::ServerChan { key, base } => HttpRequest {
            url: format!("{base}/{key}.send"),
            headers: vec![(
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: format!(
                "title={}&desp={}",
                form_escape(&notice.title),
                form_escape(&notice.body)
            )
            .into_bytes(),
        },
        ChannelUrl::PushPlus { token, base } => json_request(
            format!("{base}/send"),
            &json!({ "token": token, "title": notice.title, "content": notice.body, "template": "txt" }),
        ),
        ChannelUrl::WeCom { key, base } => json_request(
            format!("{base}/cgi-bin/webhook/send?key={}", form_escape(key)),
            &json!({ "msgtype": "text", "text": { "content": text } }),
        ),
        ChannelUrl::DingTalk {
            token,
            secret,
            base,
        } => {
            let mut url = format!("{base}/robot/send?access_token={}", form_escape(token));
            if let Some(secret) = secret {
                let sign = b64(&hmac_sha256(
                    secret.as_bytes(),
                    format!("{now_ms}\n{secret}").as_bytes(),
                ));
                url.push_str(&format!("&timestamp={now_ms}&sign={}", form_escape(&sign)));
            }
            json_request(
                url,
                &json!({ "msgtype": "text", "text": { "content": text } }),
            )
        }
        ChannelUrl::Feishu { hook, secret, base } => {
            let mut body = json!({ "msg_type": "text", "content": { "text": text } });
            if let Some(secret) = secret {
                let ts = now_ms / 1000;
                body["timestamp"] = json!(ts.to_string());
                body["sign"] = json!(b64(&hmac_sha256(format!("{ts}\n{secret}").as_bytes(), b"")));
            }
            json_request(format!("{base}/open-apis/bot/v2/hook/{hook}"), &body)
        }
        ChannelUrl::Ntfy { base, topic, token } => {
            let mut r = json_request(
                format!("{base}/"),
                &json!({ "topic": topic, "title": notice.title, "message": notice.body, "tags": ["bar_chart"] }),
            );
            if let Some(token) = token {
                r.headers
                    .push(("Authorization".into(), format!("Bearer {token}")));
            }
            r
        }
        ChannelUrl::Smtp(_) => return None,
    })
}

/// Services that answer 200 with an error code in the body.
fn body_error(channel: &ChannelUrl, body: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    let code = |k: &str| v.get(k).and_then(Value::as_i64);
    match channel {
        ChannelUrl::Telegram { .. } => v.get("ok").and_then(Value::as_bool) == Some(false),
        ChannelUrl::WeCom { .. } | ChannelUrl::DingTalk { .. } => {
            code("errcode").is_some_and(|c| c != 0)
        }
        ChannelUrl::Feishu { .. } => code("code").or(code("StatusCode")).is_some_and(|c| c != 0),
        ChannelUrl::PushPlus { .. } | ChannelUrl::Bark { .. } => {
            code("code").is_some_and(|c| c != 200)
        }
        ChannelUrl::ServerChan { .. } => code("code").is_some_and(|c| c != 0),
        _ => false,
    }
}

/// Sends `request` (POST) with `timeout` for the whole exchange.
pub fn send(
    channel: &ChannelUrl,
    request: &HttpRequest,
    timeout: Duration,
) -> Result<(), HttpError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("NetTraffic-Sentinel/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut builder = agent.post(&request.url);
    for (k, v) in &request.headers {
        builder = builder.header(k, v);
    }
    let mut response = builder
        .send(&request.body[..])
        .map_err(|e| HttpError::Transport(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let short: String = body.chars().take(200).collect();
    if !(200..300).contains(&status) || body_error(channel, &body) {
        return Err(HttpError::Refused {
            status,
            body: short,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dingtalk_signature_matches_the_documented_example() {
        // The HMAC-SHA256 of "timestamp\nsecret" keyed by the secret, base64 then URL-escaped.
        let sig = b64(&hmac_sha256(b"SEC", b"1700000000000\nSEC"));
        assert_eq!(sig.len(), 44);
        assert_eq!(form_escape("a+b/c="), "a%2Bb%2Fc%3D");
        assert_eq!(form_escape("流 量"), "%E6%B5%81+%E9%87%8F");
    }

    #[test]
    fn errors_in_200_bodies_are_failures() {
        let wecom = ChannelUrl::WeCom {
            key: "k".into(),
            base: "b".into(),
        };
        assert!(body_error(
            &wecom,
            r#"{"errcode":93000,"errmsg":"invalid"}"#
        ));
        assert!(!body_error(&wecom, r#"{"errcode":0,"errmsg":"ok"}"#));
        let tg = ChannelUrl::Telegram {
            token: "t".into(),
            chat: "c".into(),
            base: "b".into(),
        };
        assert!(body_error(&tg, r#"{"ok":false}"#));
        assert!(!body_error(&tg, "not json"));
    }
}
