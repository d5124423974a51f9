//! Local fakes for the billing tests: an HTTP server and an SMTP server on 127.0.0.1 that record
//! what they receive and answer as told (status, delay, failures first). Nothing leaves loopback.
#![allow(
    dead_code,
    reason = "each test target uses a different part of the support module"
)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How the fake answers.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Requests answered 500 before answering `body` with 200.
    pub fail_first: usize,
    /// Sleep before answering.
    pub delay: Duration,
    /// The 200 body.
    pub body: String,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            fail_first: 0,
            delay: Duration::ZERO,
            body: "{}".into(),
        }
    }
}

/// A fake HTTP/1.1 server.
pub struct FakeHttp {
    pub base: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl FakeHttp {
    pub fn start(behaviour: Behaviour) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        std::thread::spawn(move || {
            let mut served = 0usize;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some(req) = read_request(&stream) else {
                    continue;
                };
                log.lock().expect("log").push(req);
                served += 1;
                std::thread::sleep(behaviour.delay);
                let (status, body) = if served <= behaviour.fail_first {
                    (
                        "500 Internal Server Error",
                        "{\"error\":\"try later\"}".to_owned(),
                    )
                } else {
                    ("200 OK", behaviour.body.clone())
                };
                let mut s = stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeHttp { base, received }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    /// Waits (bounded) until `n` requests arrived.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let end = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n || Instant::now() > end {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn read_request(stream: &TcpStream) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

/// A fake SMTP server (clear text) that records the dialogue of each session.
pub struct FakeSmtp {
    pub port: u16,
    pub sessions: Arc<Mutex<Vec<Vec<String>>>>,
}

impl FakeSmtp {
    pub fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let sessions: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let log = sessions.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let lines = smtp_session(stream);
                log.lock().expect("log").push(lines);
            }
        });
        FakeSmtp { port, sessions }
    }

    /// The sessions recorded once `n` have ended (the server records a session when the client
    /// has hung up, which can be a moment after the client returned); waits at most 10 s.
    pub fn sessions(&self, n: usize) -> Vec<Vec<String>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.sessions.lock().expect("log").clone();
            if now.len() >= n || std::time::Instant::now() > deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn smtp_session(stream: TcpStream) -> Vec<String> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut out = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    let _ = out.write_all(b"220 fake.smtp ESMTP\r\n");
    let mut in_data = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        lines.push(line.clone());
        if in_data {
            if line == "." {
                in_data = false;
                let _ = out.write_all(b"250 queued\r\n");
            }
            continue;
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-fake.smtp\r\n250 AUTH PLAIN LOGIN\r\n"
        } else if upper.starts_with("AUTH PLAIN") {
            b"235 ok\r\n"
        } else if upper.starts_with("MAIL FROM") || upper.starts_with("RCPT TO") {
            b"250 ok\r\n"
        } else if upper == "DATA" {
            in_data = true;
            b"354 go on\r\n"
        } else if upper == "QUIT" {
            let _ = out.write_all(b"221 bye\r\n");
            break;
        } else {
            b"500 what\r\n"
        };
        let _ = out.write_all(reply);
    }
    lines
}

use sentinel::store::{Clock, Sample, Store, StoreOptions};
use sentinel_common::abi::Counters;

/// A clock the test moves.
#[derive(Debug)]
pub struct TestClock(pub std::sync::atomic::AtomicI64);

impl TestClock {
    pub fn at(t: i64) -> Arc<TestClock> {
        Arc::new(TestClock(std::sync::atomic::AtomicI64::new(t)))
    }
    pub fn set(&self, t: i64) {
        self.0.store(t, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn advance(&self, secs: i64) -> i64 {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst) + secs
    }
}

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub fn counters(ip_bytes: u64) -> Counters {
    Counters {
        packets: ip_bytes / 1000,
        ip_bytes,
        wire_bytes: ip_bytes,
    }
}

/// Adds traffic at `at` (unflushed until the store flushes).
pub fn record(store: &Store, at: i64, up: u64, down: u64) {
    store.record(&Sample {
        at,
        up: counters(up),
        down: counters(down),
        ..Sample::default()
    });
}

pub fn open_store(path: &std::path::Path, tz: &str, clock: Arc<TestClock>) -> Store {
    Store::open(
        path,
        sentinel::timebucket::Zone::parse(tz).expect("zone"),
        StoreOptions {
            save_interval: Duration::from_secs(3600),
            clock,
            ..StoreOptions::default()
        },
    )
    .expect("open store")
}

/// Unix seconds of local `YYYY-MM-DD HH:MM:SS` in `tz`.
pub fn local(tz: &str, text: &str) -> i64 {
    use chrono::TimeZone as _;
    let tz: chrono_tz::Tz = tz.parse().expect("tz");
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("time");
    tz.from_local_datetime(&naive)
        .single()
        .expect("unambiguous")
        .timestamp()
}
