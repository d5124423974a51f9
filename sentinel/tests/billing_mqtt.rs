//! Home Assistant over MQTT against a real broker: Debian's mosquitto, started by this test on
//! 127.0.0.1 (installed by `cargo xtask setup`; the test fails, loudly, when it is missing).
//! Checks discovery configs (with `state_class: total_increasing` on counters), availability
//! (`online`, then `offline` when the engine stops) and the state message's figures.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod billing_support;

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use billing_support::{TestClock, local, open_store, record};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use sentinel::{
    billing::{BillingConfig, Engine, mqtt::MqttUrl, notify::RetryPolicy},
    meter::SpeedRing,
};

const TZ: &str = "Europe/Berlin";
const GB: u64 = 1_000_000_000;

/// The broker; killed (it is our child) when dropped.
struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker() -> Broker {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "mosquitto is not installed: run `cargo xtask setup` (it installs Debian's mosquitto)",
        );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .expect("config");
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start mosquitto");
    let broker = Broker {
        child,
        port,
        _dir: dir,
    };
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < end,
            "mosquitto did not listen on 127.0.0.1:{port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    broker
}

/// A subscriber that records the last payload of every topic.
fn subscribe(port: u16) -> Arc<Mutex<HashMap<String, Vec<String>>>> {
    let seen: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let (client, mut connection) = Client::new(MqttOptions::new("test-sub", "127.0.0.1", port), 64);
    client
        .subscribe("homeassistant/#", QoS::AtLeastOnce)
        .expect("subscribe");
    client
        .subscribe("nettraffic-sentinel/#", QoS::AtLeastOnce)
        .expect("subscribe");
    let log = seen.clone();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    log.lock()
                        .expect("log")
                        .entry(p.topic.clone())
                        .or_default()
                        .push(String::from_utf8_lossy(&p.payload).into_owned());
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    seen
}

fn wait_until(
    seen: &Mutex<HashMap<String, Vec<String>>>,
    what: &str,
    ok: impl Fn(&HashMap<String, Vec<String>>) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if ok(&seen.lock().expect("log")) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{what} not seen within 20 s: {:?}",
            seen.lock().expect("log").keys()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn home_assistant_discovery_state_and_availability() {
    let broker = start_broker();
    let seen = subscribe(broker.port);
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::at(local(TZ, "2026-10-25 15:00:00"));
    let store = Arc::new(open_store(&dir.path().join("t.db"), TZ, clock.clone()));
    record(&store, local(TZ, "2026-10-25 10:00:00"), 3 * GB, 4 * GB);
    record(&store, local(TZ, "2026-10-02 10:00:00"), GB, 10 * GB);
    let config = BillingConfig {
        quota: Some(100 * GB),
        mqtt: Some(MqttUrl::parse(&format!("mqtt://127.0.0.1:{}", broker.port)).expect("url")),
        interval: Duration::from_secs(1),
        ..BillingConfig::default()
    };
    let handle = Engine::new(
        store.clone(),
        config,
        clock.clone(),
        Arc::new(Mutex::new(SpeedRing::default())),
        RetryPolicy::default(),
    )
    .spawn();

    let config_topic = "homeassistant/sensor/nettraffic_sentinel/today_up/config";
    wait_until(&seen, "discovery, availability and state", |m| {
        m.contains_key(config_topic)
            && m.get("nettraffic-sentinel/availability")
                .is_some_and(|v| v.contains(&"online".to_owned()))
            && m.contains_key("nettraffic-sentinel/state")
    });
    let m = seen.lock().expect("log").clone();
    let today: serde_json::Value = serde_json::from_str(&m[config_topic][0]).expect("json");
    assert_eq!(today["state_class"], "total_increasing");
    assert_eq!(today["device_class"], "data_size");
    assert_eq!(today["unit_of_measurement"], "B");
    assert_eq!(today["state_topic"], "nettraffic-sentinel/state");
    assert_eq!(
        today["availability_topic"],
        "nettraffic-sentinel/availability"
    );
    let percent: serde_json::Value = serde_json::from_str(
        &m["homeassistant/sensor/nettraffic_sentinel/quota_percent/config"][0],
    )
    .expect("json");
    assert_eq!(percent["state_class"], "measurement");
    assert!(
        m.contains_key("homeassistant/binary_sensor/nettraffic_sentinel/alert_upload_rate/config")
    );
    let state: serde_json::Value =
        serde_json::from_str(m["nettraffic-sentinel/state"].last().expect("state")).expect("json");
    assert_eq!(state["today_up"], 3 * GB);
    assert_eq!(state["today_down"], 4 * GB);
    assert_eq!(state["cycle_up"], 4 * GB);
    assert_eq!(state["cycle_down"], 14 * GB);
    assert_eq!(state["quota_percent"], 18.0);
    assert_eq!(state["alert_quota"], "OFF");
    assert_eq!(state["cycle_start"], "2026-10-01T00:00:00+02:00");
    assert_eq!(state["cycle_end"], "2026-11-01T00:00:00+01:00");

    // Stopping the engine marks the device offline.
    drop(handle);
    wait_until(&seen, "availability offline", |m| {
        m.get("nettraffic-sentinel/availability")
            .and_then(|v| v.last())
            .is_some_and(|v| v == "offline")
    });
}
