//! Logs written to a pipe (`docker logs`, journald, a file) carry no ANSI colour codes.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A port that is free right now (the daemon never gets as far as listening here anyway).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MONITOR_IFACE", "snt-no-such-if")
        .env("DB_PATH", dir.path().join("traffic.db"))
        .env("BPF_PIN_DIR", dir.path().join("pins"))
        .env("WEB_BIND", "127.0.0.1")
        .env("WEB_PORT", port.to_string())
        .env("TZ", "UTC")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the daemon");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The database is opened (and logged) before anything that needs the interface or root.
    let mut lines = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                let done = line.contains("history database open");
                lines.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "the daemon logged its database; got: {lines:#?}");
    for line in &lines {
        assert!(
            !line.contains('\u{1b}'),
            "an ANSI escape in a piped log line: {line:?}"
        );
    }
}
