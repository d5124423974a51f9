//! Tier 4 (root, network namespaces): the supervisor's promises, checked on the real daemon in the
//! lab: a bounded shutdown whatever HTTP clients do, repair after someone else detaches our
//! links (with honest health meanwhile), one instance per pin directory and database, and no
//! phantom traffic when a fresh database meets reused maps (docs/operations.md).

mod support;

use std::{
    io::Write,
    net::TcpStream,
    time::{Duration, Instant},
};

use support::{Daemon, PinDir, WEB_PORT, get};
use xtask::lab::{Lab, UdpSink, WAN_V4, send_udp};

const PORT: u16 = 9000;

fn lab() -> Lab {
    Lab::create().unwrap_or_else(|e| {
        panic!("building the namespace lab failed (needs root and iproute2): {e:#}")
    })
}

/// IP length of a UDP/IPv4 datagram with `payload` bytes.
fn udp4_len(payload: u64) -> u64 {
    payload + 28
}

/// Opens `n` connections to the daemon inside its namespace; each sends `prefix` and then nothing.
fn connections(daemon: &Daemon, n: usize, prefix: &'static [u8]) -> Vec<TcpStream> {
    Lab::in_ns(&daemon.netns, move || {
        let mut out = Vec::new();
        for _ in 0..n {
            let mut s = TcpStream::connect(("127.0.0.1", WEB_PORT))?;
            s.write_all(prefix)?;
            out.push(s);
        }
        Ok(out)
    })
    .expect("connecting to the daemon")
}

fn health(daemon: &Daemon) -> u16 {
    daemon.get("/api/health").map_or(0, |(status, _)| status)
}

fn wait_health(daemon: &Daemon, want: u16, limit: Duration) -> Duration {
    let start = Instant::now();
    while health(daemon) != want {
        assert!(
            start.elapsed() < limit,
            "/api/health never answered {want} within {limit:?}: {:?}",
            daemon.get("/api/health")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    start.elapsed()
}

/// A client that sent a request head and never finished it, plus many idle keep-alive
/// connections, do not hold the daemon after SIGTERM: it exits well inside Docker's 10 s, having
/// flushed.
#[test]
fn sigterm_with_half_open_and_idle_connections_exits_quickly_and_flushes() {
    let lab = lab();
    let pins = PinDir::new("halfopen");
    let _sink = UdpSink::bind(&lab.wan, PORT).expect("sink");
    let daemon = Daemon::start(&lab, &pins.0, &[]);
    let sent = send_udp(&lab.nas, WAN_V4.into(), PORT, 1000, 200).expect("send") as u64;
    daemon.wait_for("the burst", Duration::from_secs(10), |t| {
        get(t, "up_packets") == sent
    });
    let _half_open = connections(
        &daemon,
        1,
        b"GET /api/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    );
    let _idle = connections(&daemon, 40, b"");
    std::thread::sleep(Duration::from_millis(500));
    let log = daemon.log();
    let (took, clean) = daemon.stop_timed(Duration::from_secs(30));
    eprintln!("shutdown with a half-open request and 40 idle connections took {took:?}");
    assert!(clean, "the daemon did not exit cleanly (took {took:?})");
    assert!(
        took < Duration::from_secs(8),
        "SIGTERM to exit took {took:?}: Docker would SIGKILL it at 10 s"
    );
    // The final flush happened: a restart on the same database sees the burst.
    drop(log);
    let again = Daemon::start(&lab, &pins.0, &[]);
    let t = again.settled();
    assert_eq!(get(&t, "up_bytes"), sent * udp4_len(1000));
    again.stop();
}

/// More connections than the cap: the extra ones are refused or closed quickly, and the
/// dashboard still answers.
#[test]
fn the_connection_cap_holds_and_the_api_still_answers() {
    let lab = lab();
    let pins = PinDir::new("cap");
    let daemon = Daemon::start(&lab, &pins.0, &[]);
    let _idle = connections(&daemon, 300, b"");
    std::thread::sleep(Duration::from_millis(500));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .map(|d| d.count())
        .unwrap_or(0);
    eprintln!("daemon fds with 300 idle clients: {fds}");
    // Idle connections are dropped after the header-read timeout; then the API answers again.
    let start = Instant::now();
    while health(&daemon) != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the API never answered again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "the API answered {:?} after 300 idle clients",
        start.elapsed()
    );
    assert!(
        fds < 300,
        "every idle client holds a descriptor ({fds}): no cap"
    );
    daemon.stop();
}

/// `bpftool link detach` of our pinned TCX links stops counting; the daemon notices within a few
/// seconds, health says 503 meanwhile, it re-attaches, health returns to 200 and counting resumes
/// exactly.
#[test]
fn an_external_detach_is_noticed_reported_and_repaired() {
    external_removal_is_repaired("tcx", |lab, pins| {
        for direction in ["ingress", "egress"] {
            let pin = pins.join(format!("link_eth0_{direction}"));
            let out = std::process::Command::new("bpftool")
                .args(["link", "detach", "pinned"])
                .arg(&pin)
                .output()
                .expect("bpftool");
            assert!(
                out.status.success(),
                "bpftool link detach pinned {}: {}",
                pin.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = lab;
    });
}

/// The same with netlink/clsact filters removed by `tc filter del`.
#[test]
fn a_deleted_clsact_filter_is_noticed_reported_and_repaired() {
    external_removal_is_repaired("netlink", |lab, _| {
        for direction in ["ingress", "egress"] {
            xtask::lab::netns_exec(&lab.nas, &["tc", "filter", "del", "dev", "eth0", direction])
                .expect("tc filter del");
        }
    });
}

fn external_removal_is_repaired(mode: &str, remove: impl Fn(&Lab, &std::path::Path)) {
    let lab = lab();
    let pins = PinDir::new(&format!("detach-{mode}"));
    let _sink = UdpSink::bind(&lab.wan, PORT).expect("sink");
    let daemon = Daemon::start(&lab, &pins.0, &[("ATTACH_MODE", mode)]);
    wait_health(&daemon, 200, Duration::from_secs(10));
    let first = send_udp(&lab.nas, WAN_V4.into(), PORT, 400, 100).expect("send") as u64;
    daemon.wait_for("the first burst", Duration::from_secs(10), |t| {
        get(t, "up_packets") == first
    });
    remove(&lab, &pins.0);
    // Noticed within a few seconds: health goes 503 (down, then "re-attached, checking")...
    let took = wait_health(&daemon, 503, Duration::from_secs(10));
    eprintln!("{mode}: health went 503 {took:?} after the external removal");
    // ...and back to 200 once the new attachment is confirmed.
    let start = Instant::now();
    wait_health(&daemon, 200, Duration::from_secs(10));
    let (_, body) = daemon.get("/api/status").expect("status");
    let s: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(s["capture"]["external_detaches"], 1, "{s}");
    assert_eq!(s["capture"]["state"], "running", "{s}");
    eprintln!("{mode}: repaired (health 200) {:?} later", start.elapsed());
    assert!(
        daemon.log().iter().any(|l| l.contains("by someone else")),
        "the removal was not logged"
    );
    let second = send_udp(&lab.nas, WAN_V4.into(), PORT, 400, 100).expect("send") as u64;
    let t = daemon.wait_for("the second burst", Duration::from_secs(10), |t| {
        get(t, "up_packets") >= first + second
    });
    assert_eq!(get(&t, "up_bytes"), (first + second) * udp4_len(400));
    daemon.stop();
}

/// While the interface is gone health is 503 with the reason; when it is back, 200.
#[test]
fn health_is_503_while_the_interface_is_gone() {
    let lab = lab();
    let pins = PinDir::new("gone");
    let daemon = Daemon::start(&lab, &pins.0, &[]);
    wait_health(&daemon, 200, Duration::from_secs(10));
    // A live interface cannot be renamed: down, rename (eth0 is gone), rename back, up.
    xtask::lab::ip(&["-n", &lab.nas, "link", "set", "eth0", "down"]).expect("eth0 down");
    xtask::lab::ip(&["-n", &lab.nas, "link", "set", "eth0", "name", "eth0gone"])
        .expect("renaming eth0");
    let took = wait_health(&daemon, 503, Duration::from_secs(10));
    eprintln!("health went 503 {took:?} after the interface vanished");
    let (_, body) = daemon.get("/api/health").expect("health");
    assert!(
        body.contains("eth0"),
        "the reason names the interface: {body}"
    );
    xtask::lab::ip(&["-n", &lab.nas, "link", "set", "eth0gone", "name", "eth0"])
        .expect("renaming eth0 back");
    xtask::lab::ip(&["-n", &lab.nas, "link", "set", "eth0", "up"]).expect("eth0 up");
    let took = wait_health(&daemon, 200, Duration::from_secs(15));
    eprintln!("health went 200 {took:?} after the interface came back");
    daemon.stop();
}

/// A second daemon on the same pin directory or the same database exits non-zero before touching
/// anything, naming the first one's pid; the first keeps counting.
#[test]
fn a_second_instance_exits_nonzero_and_the_first_is_unaffected() {
    let lab = lab();
    let pins = PinDir::new("second");
    let _sink = UdpSink::bind(&lab.wan, PORT).expect("sink");
    let first = Daemon::start(&lab, &pins.0, &[]);
    let pid = first.pid().to_string();
    let db_dir = std::env::temp_dir().join(pins.0.file_name().expect("name"));
    let first_db = db_dir
        .join("traffic.db")
        .to_str()
        .expect("utf-8")
        .to_owned();
    let other_db = db_dir.join("other.db").to_str().expect("utf-8").to_owned();
    let other_pins = PinDir::new("second-other");
    for (what, pin_dir, db) in [
        ("same pins, other database", &pins.0, &other_db),
        ("same database, other pins", &other_pins.0, &first_db),
    ] {
        let env = [("DB_PATH", db.as_str()), ("WEB_PORT", "8081")];
        let (status, out) = Daemon::run_to_exit(&lab, pin_dir, &env, Duration::from_secs(15));
        eprintln!("{what}: {status:?}\n{out}");
        let status = status.unwrap_or_else(|| panic!("{what}: the second daemon kept running"));
        assert!(!status.success(), "{what}: the second daemon exited 0");
        assert!(
            out.contains("another instance") && out.contains(&pid),
            "{what}: the message does not say another instance (pid {pid}) runs: {out}"
        );
    }
    let sent = send_udp(&lab.nas, WAN_V4.into(), PORT, 600, 150).expect("send") as u64;
    let t = first.wait_for("the burst", Duration::from_secs(10), |t| {
        get(t, "up_packets") >= sent
    });
    assert_eq!(get(&t, "up_bytes"), sent * udp4_len(600));
    assert_eq!(health(&first), 200);
    first.stop();
}

/// Run, stop, start on a fresh database with the same pinned maps: today is 0 until new traffic,
/// then exact (the maps' earlier counts are set aside as the baseline, not booked again).
#[test]
fn a_fresh_database_on_reused_maps_counts_no_phantom_traffic() {
    let lab = lab();
    let pins = PinDir::new("phantom");
    let _sink = UdpSink::bind(&lab.wan, PORT).expect("sink");
    let first = Daemon::start(&lab, &pins.0, &[]);
    let before = send_udp(&lab.nas, WAN_V4.into(), PORT, 1200, 500).expect("send") as u64;
    first.wait_for("the first burst", Duration::from_secs(10), |t| {
        get(t, "up_packets") == before
    });
    first.stop();
    let fresh = std::env::temp_dir()
        .join(pins.0.file_name().expect("name"))
        .join("fresh.db");
    let second = Daemon::start(
        &lab,
        &pins.0,
        &[("DB_PATH", fresh.to_str().expect("utf-8"))],
    );
    let t = second.settled();
    let phantom = get(&t, "up_bytes") + get(&t, "down_bytes");
    eprintln!(
        "phantom bytes on a fresh database: {phantom} (the maps held {})",
        before * udp4_len(1200)
    );
    assert_eq!(
        phantom, 0,
        "a fresh database showed traffic that did not happen"
    );
    assert!(
        second.log().iter().any(|l| l.contains("baseline")),
        "setting the maps' counts aside was not logged"
    );
    let after = send_udp(&lab.nas, WAN_V4.into(), PORT, 700, 300).expect("send") as u64;
    let t = second.wait_for("the new burst", Duration::from_secs(10), |t| {
        get(t, "up_packets") >= after
    });
    assert_eq!(get(&t, "up_bytes"), after * udp4_len(700));
    second.stop();
}
