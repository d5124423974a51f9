//! Each notification channel's request, checked by a fake server on 127.0.0.1: method, path,
//! headers and body as the service documents them. Also the SMTP dialogue, and that a channel
//! answering 200 with an error in its body counts as a failure.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod billing_support;

use std::time::Duration;

use base64::Engine as _;
use billing_support::{Behaviour, FakeHttp, FakeSmtp};
use sentinel::billing::notify::{ChannelUrl, Notice, deliver};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(10);

fn notice() -> Notice {
    Notice {
        title: "流量已达套餐的 80%".into(),
        body: "本计费周期已用 800.00 GB / 1.00 TB（80.0%）。".into(),
        payload: json!({ "version": 1, "kind": "quota_threshold", "threshold": 80 }),
    }
}

/// Delivers through `url` (with `?base=` pointing at a fresh fake) and returns what arrived.
fn one(url: impl Fn(&str) -> String, reply: &str) -> billing_support::Received {
    let fake = FakeHttp::start(Behaviour {
        body: reply.into(),
        ..Behaviour::default()
    });
    let channel = ChannelUrl::parse(&url(&fake.base)).expect("channel URL");
    deliver(&channel, &notice(), TIMEOUT).expect("delivered");
    let got = fake.requests();
    assert_eq!(got.len(), 1, "exactly one request");
    let r = got[0].clone();
    assert_eq!(r.method, "POST");
    r
}

fn is_json(r: &billing_support::Received) {
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
}

#[test]
fn telegram_send_message() {
    let r = one(
        |b| format!("tgram://123:ABC/-1001?base={b}"),
        r#"{"ok":true}"#,
    );
    assert_eq!(r.path, "/bot123:ABC/sendMessage");
    is_json(&r);
    let v = r.json();
    assert_eq!(v["chat_id"], "-1001");
    assert_eq!(v["text"], format!("{}\n{}", notice().title, notice().body));
}

#[test]
fn bark_push() {
    let r = one(
        |b| format!("bark://ignored/DEVKEY?base={b}"),
        r#"{"code":200}"#,
    );
    assert_eq!(r.path, "/push");
    is_json(&r);
    let v = r.json();
    assert_eq!(
        (v["device_key"].as_str(), v["title"].as_str()),
        (Some("DEVKEY"), Some(notice().title.as_str()))
    );
    assert_eq!(v["body"], notice().body);
}

#[test]
fn serverchan_send_form() {
    let r = one(|b| format!("schan://SCT42?base={b}"), r#"{"code":0}"#);
    assert_eq!(r.path, "/SCT42.send");
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let text = r.text();
    let (title, desp) = text.split_once('&').expect("two fields");
    assert_eq!(
        title,
        "title=%E6%B5%81%E9%87%8F%E5%B7%B2%E8%BE%BE%E5%A5%97%E9%A4%90%E7%9A%84+80%25"
    );
    assert!(desp.starts_with("desp=%E6%9C%AC"), "{desp}");
}

#[test]
fn pushplus_send() {
    let r = one(|b| format!("pushplus://TOK?base={b}"), r#"{"code":200}"#);
    assert_eq!(r.path, "/send");
    is_json(&r);
    let v = r.json();
    assert_eq!(
        (v["token"].as_str(), v["template"].as_str()),
        (Some("TOK"), Some("txt"))
    );
    assert_eq!(v["content"], notice().body);
}

#[test]
fn wecom_robot() {
    let r = one(
        |b| format!("wecom://KEY-1?base={b}"),
        r#"{"errcode":0,"errmsg":"ok"}"#,
    );
    assert_eq!(r.path, "/cgi-bin/webhook/send?key=KEY-1");
    is_json(&r);
    let v = r.json();
    assert_eq!(v["msgtype"], "text");
    assert!(
        v["text"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("80%"))
    );
}

#[test]
fn dingtalk_robot_signed() {
    let r = one(
        |b| format!("dingtalk://ATOKEN/SECabc?base={b}"),
        r#"{"errcode":0}"#,
    );
    let (path, query) = r.path.split_once('?').expect("query");
    assert_eq!(path, "/robot/send");
    let params: Vec<(&str, &str)> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| *v)
            .expect(k)
    };
    assert_eq!(get("access_token"), "ATOKEN");
    // The documented signature: base64(HMAC-SHA256(key = secret, "timestamp\nsecret")), URL-escaped.
    use hmac::Mac as _;
    let ts = get("timestamp");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"SECabc").expect("key");
    mac.update(format!("{ts}\nSECabc").as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sign = get("sign")
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    assert_eq!(sign, want);
    is_json(&r);
    assert_eq!(r.json()["msgtype"], "text");
}

#[test]
fn feishu_bot_signed() {
    let r = one(
        |b| format!("feishu://HOOK9/s3cret?base={b}"),
        r#"{"code":0}"#,
    );
    assert_eq!(r.path, "/open-apis/bot/v2/hook/HOOK9");
    is_json(&r);
    let v = r.json();
    assert_eq!(v["msg_type"], "text");
    assert!(
        v["content"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("80%"))
    );
    // base64(HMAC-SHA256(key = "timestamp\nsecret", message = "")).
    use hmac::Mac as _;
    let ts = v["timestamp"].as_str().expect("timestamp");
    let mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(format!("{ts}\ns3cret").as_bytes())
        .expect("key");
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(v["sign"], want);
}

#[test]
fn ntfy_json_publish() {
    let r = one(
        |b| format!("ntfy://host/nas-alerts?token=tk_1&base={b}"),
        "{}",
    );
    assert_eq!(r.path, "/");
    is_json(&r);
    assert_eq!(r.header("authorization"), Some("Bearer tk_1"));
    let v = r.json();
    assert_eq!(
        (v["topic"].as_str(), v["title"].as_str()),
        (Some("nas-alerts"), Some(notice().title.as_str()))
    );
    assert_eq!(v["message"], notice().body);
}

#[test]
fn webhook_posts_the_payload() {
    let fake = FakeHttp::start(Behaviour::default());
    let channel = ChannelUrl::webhook(&format!("{}/hooks/nas", fake.base)).expect("url");
    deliver(&channel, &notice(), TIMEOUT).expect("delivered");
    let r = &fake.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hooks/nas"));
    is_json(r);
    assert_eq!(r.json(), notice().payload);
}

#[test]
fn errors_are_failures() {
    // 200 with an error code in the body.
    let fake = FakeHttp::start(Behaviour {
        body: r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#.into(),
        ..Behaviour::default()
    });
    let wecom = ChannelUrl::parse(&format!("wecom://K?base={}", fake.base)).expect("url");
    let err = deliver(&wecom, &notice(), TIMEOUT).expect_err("refused");
    assert!(err.contains("93000"), "{err}");
    // A 500.
    let fake = FakeHttp::start(Behaviour {
        fail_first: 1,
        ..Behaviour::default()
    });
    let hook = ChannelUrl::webhook(&fake.base).expect("url");
    let err = deliver(&hook, &notice(), TIMEOUT).expect_err("500");
    assert!(err.contains("500"), "{err}");
    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let hook = ChannelUrl::webhook(&format!("http://127.0.0.1:{port}/")).expect("url");
    assert!(deliver(&hook, &notice(), TIMEOUT).is_err());
}

#[test]
fn smtp_dialogue_and_message() {
    let fake = FakeSmtp::start();
    let url = format!(
        "mailto://nas%40example.com:pw@127.0.0.1:{}/me@example.com,you@example.com?tls=no",
        fake.port
    );
    let channel = ChannelUrl::parse(&url).expect("url");
    deliver(&channel, &notice(), TIMEOUT).expect("sent");
    let sessions = fake.sessions(1);
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s[0], "EHLO sentinel");
    let auth = base64::engine::general_purpose::STANDARD.encode("\0nas@example.com\0pw");
    assert_eq!(s[1], format!("AUTH PLAIN {auth}"));
    assert_eq!(s[2], "MAIL FROM:<nas@example.com>");
    assert_eq!(s[3], "RCPT TO:<me@example.com>");
    assert_eq!(s[4], "RCPT TO:<you@example.com>");
    assert_eq!(s[5], "DATA");
    assert!(s.iter().any(|l| l == "To: me@example.com, you@example.com"));
    let subject = format!(
        "Subject: =?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(notice().title)
    );
    assert!(s.contains(&subject), "{s:?}");
    // The body, base64 after the blank line, decodes to the message.
    let start = s.iter().position(|l| l.is_empty()).expect("blank line") + 1;
    let end = s.iter().position(|l| l == ".").expect("end of data");
    let body = base64::engine::general_purpose::STANDARD
        .decode(s[start..end].concat())
        .expect("base64");
    assert_eq!(String::from_utf8(body).expect("utf-8"), notice().body);
    assert_eq!(s.last().map(String::as_str), Some("QUIT"));
}

#[test]
fn smtp_refuses_to_send_a_password_in_clear_without_starttls() {
    let fake = FakeSmtp::start();
    let url = format!("mailto://u:pw@127.0.0.1:{}/me@example.com", fake.port);
    let channel = ChannelUrl::parse(&url).expect("url");
    let err = deliver(&channel, &notice(), TIMEOUT).expect_err("no STARTTLS offered");
    assert!(err.contains("STARTTLS"), "{err}");
    let sessions = fake.sessions(1);
    assert!(
        sessions.iter().flatten().all(|l| !l.starts_with("AUTH")),
        "{sessions:?}"
    );
}

#[test]
fn notify_test_subcommand_reports_every_channel() {
    let hook = FakeHttp::start(Behaviour::default());
    let ntfy = FakeHttp::start(Behaviour::default());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!(
        "http://127.0.0.1:{}",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |notify: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .arg("notify-test")
            .env_clear()
            .env("TZ", "Asia/Shanghai")
            .env("DB_PATH", dir.path().join("t.db"))
            .env("QUOTA", "1TB")
            .env("NOTIFY_LANG", "zh-CN")
            .env("ALERT_WEBHOOK", format!("{}/hook", hook.base))
            .env("NOTIFY", notify)
            .output()
            .expect("run sentinel")
    };
    let ok = run(format!("ntfy://h/nas?base={}", ntfy.base));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["webhook: sent", "ntfy: sent"]
    );
    let payload = hook.requests()[0].json();
    assert_eq!(
        (payload["kind"].as_str(), payload["lang"].as_str()),
        (Some("test"), Some("zh-CN"))
    );
    assert!(
        payload["message"]
            .as_str()
            .is_some_and(|m| m.contains("此通知渠道工作正常")),
        "{payload}"
    );
    assert_eq!(ntfy.requests().len(), 1);
    // One dead channel: the others are still tried, and the exit status says so.
    let bad = run(format!("ntfy://h/nas?base={dead}"));
    assert_eq!(bad.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.contains("webhook: sent") && stdout.contains("ntfy: FAILED"),
        "{stdout}"
    );
    assert_eq!(hook.requests().len(), 2);
    // Nothing configured is an error, not a silent success.
    let none = std::process::Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .arg("notify-test")
        .env_clear()
        .env("TZ", "UTC")
        .output()
        .expect("run sentinel");
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("ALERT_WEBHOOK"));
}
