//! Home Assistant over MQTT: today's and the cycle's up/down, the quota percentage, the current
//! speed and the alert states, published (retained) as one JSON state message, with MQTT
//! discovery configs for each sensor and an availability topic (`online`, and `offline` as the
//! last will). The client runs on its own thread and reconnects by itself; publishing never
//! blocks (a full queue skips an update, the next one carries the same totals).
//! Knows nothing of the store or the channels.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rumqttc::{Client, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use super::{AlertStates, report::Report};
use crate::timebucket::Zone;

/// A parsed `MQTT_URL`: `mqtt://[user:pass@]host[:port][?topic=..&discovery=..&id=..]`.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttUrl {
    /// Broker host.
    pub host: String,
    /// Broker port (1883).
    pub port: u16,
    /// Login.
    pub user: Option<(String, String)>,
    /// Base of the state and availability topics (`nettraffic-sentinel`).
    pub topic: String,
    /// Home Assistant discovery prefix (`homeassistant`).
    pub discovery: String,
    /// Client and device id (`nettraffic_sentinel`).
    pub id: String,
}

impl std::fmt::Debug for MqttUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}

impl MqttUrl {
    /// Parses the URL; the error is the URL without its password.
    pub fn parse(url: &str) -> Result<MqttUrl, String> {
        let redacted = || match url.rsplit_once('@') {
            Some((_, host)) => format!("mqtt://***@{host}"),
            None => url.to_owned(),
        };
        let rest = url.strip_prefix("mqtt://").ok_or_else(redacted)?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let rest = rest.trim_end_matches('/');
        let (login, hostport) = match rest.rsplit_once('@') {
            Some((l, h)) => (Some(l), h),
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| redacted())?),
            None => (hostport, 1883),
        };
        if host.is_empty() || host.contains('/') {
            return Err(redacted());
        }
        let user = login.map(|l| {
            let (u, p) = l.split_once(':').unwrap_or((l, ""));
            (
                super::notify::url::percent_decode(u),
                super::notify::url::percent_decode(p),
            )
        });
        let mut out = MqttUrl {
            host: host.to_owned(),
            port,
            user,
            topic: "nettraffic-sentinel".into(),
            discovery: "homeassistant".into(),
            id: "nettraffic_sentinel".into(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let ok = !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c));
            match k {
                "topic" if ok => out.topic = v.trim_matches('/').to_owned(),
                "discovery" if ok => out.discovery = v.trim_matches('/').to_owned(),
                "id" if ok => out.id = v.to_owned(),
                _ => return Err(redacted()),
            }
        }
        Ok(out)
    }

    /// The state topic.
    pub fn state_topic(&self) -> String {
        format!("{}/state", self.topic)
    }

    /// The availability topic.
    pub fn availability_topic(&self) -> String {
        format!("{}/availability", self.topic)
    }
}

/// (key, name, component, unit, device class, state class) of each entity.
const ENTITIES: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "today_up",
        "Today upload",
        "sensor",
        "B",
        "data_size",
        "total_increasing",
    ),
    (
        "today_down",
        "Today download",
        "sensor",
        "B",
        "data_size",
        "total_increasing",
    ),
    (
        "cycle_up",
        "Cycle upload",
        "sensor",
        "B",
        "data_size",
        "total_increasing",
    ),
    (
        "cycle_down",
        "Cycle download",
        "sensor",
        "B",
        "data_size",
        "total_increasing",
    ),
    (
        "cycle_used",
        "Cycle used",
        "sensor",
        "B",
        "data_size",
        "total_increasing",
    ),
    ("quota", "Quota", "sensor", "B", "data_size", ""),
    (
        "quota_percent",
        "Quota used",
        "sensor",
        "%",
        "",
        "measurement",
    ),
    (
        "projection",
        "Cycle projection",
        "sensor",
        "B",
        "data_size",
        "measurement",
    ),
    (
        "speed_up",
        "Upload speed",
        "sensor",
        "B/s",
        "data_rate",
        "measurement",
    ),
    (
        "speed_down",
        "Download speed",
        "sensor",
        "B/s",
        "data_rate",
        "measurement",
    ),
    (
        "alert_quota",
        "Quota alert",
        "binary_sensor",
        "",
        "problem",
        "",
    ),
    (
        "alert_projection",
        "Projection over quota",
        "binary_sensor",
        "",
        "problem",
        "",
    ),
    (
        "alert_upload_daily",
        "Daily upload limit",
        "binary_sensor",
        "",
        "problem",
        "",
    ),
    (
        "alert_upload_rate",
        "Sustained upload",
        "binary_sensor",
        "",
        "problem",
        "",
    ),
];

/// Every discovery message: (topic, retained JSON config).
pub fn discovery(url: &MqttUrl) -> Vec<(String, Value)> {
    ENTITIES
        .iter()
        .map(|(key, name, component, unit, device_class, state_class)| {
            let mut config = json!({
                "name": name,
                "unique_id": format!("{}_{key}", url.id),
                "object_id": format!("{}_{key}", url.id),
                "state_topic": url.state_topic(),
                "value_template": format!("{{{{ value_json.{key} }}}}"),
                "availability_topic": url.availability_topic(),
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": {
                    "identifiers": [url.id],
                    "name": "NetTraffic-Sentinel",
                    "manufacturer": "NetTraffic-Sentinel",
                    "sw_version": env!("CARGO_PKG_VERSION"),
                },
            });
            if !unit.is_empty() {
                config["unit_of_measurement"] = json!(unit);
            }
            if !device_class.is_empty() {
                config["device_class"] = json!(device_class);
            }
            if !state_class.is_empty() {
                config["state_class"] = json!(state_class);
            }
            if *component == "binary_sensor" {
                config["payload_on"] = json!("ON");
                config["payload_off"] = json!("OFF");
            }
            (
                format!("{}/{component}/{}/{key}/config", url.discovery, url.id),
                config,
            )
        })
        .collect()
}

/// The state message.
pub fn state(report: &Report, states: &AlertStates, speed: (f64, f64), zone: Zone) -> Value {
    let f = &report.figures;
    let on = |b: bool| if b { "ON" } else { "OFF" };
    json!({
        "today_up": report.today_traffic.up.ip_bytes,
        "today_down": report.today_traffic.down.ip_bytes,
        "cycle_up": report.traffic.up.ip_bytes,
        "cycle_down": report.traffic.down.ip_bytes,
        "cycle_used": f.used,
        "quota": f.quota,
        "quota_percent": f.percent.map(|p| (p * 10.0).round() / 10.0),
        "projection": f.projection,
        "speed_up": speed.0.round(),
        "speed_down": speed.1.round(),
        "alert_quota": on(states.quota_threshold.is_some()),
        "alert_projection": on(states.projection_over),
        "alert_upload_daily": on(states.upload_daily_over),
        "alert_upload_rate": on(states.upload_rate_high),
        "cycle_start": super::local_rfc3339(zone, report.cycle.start_unix),
        "cycle_end": super::local_rfc3339(zone, report.cycle.end_unix),
    })
}

/// The MQTT client and its thread.
pub struct Publisher {
    client: Client,
    url: MqttUrl,
    zone: Zone,
    last: Arc<Mutex<Option<Value>>>,
}

impl Publisher {
    /// Connects in the background (and keeps reconnecting).
    pub fn start(url: &MqttUrl, zone: Zone) -> Publisher {
        let mut options = MqttOptions::new(url.id.clone(), url.host.clone(), url.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_last_will(LastWill::new(
            url.availability_topic(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some((user, password)) = &url.user {
            options.set_credentials(user.clone(), password.clone());
        }
        let (client, mut connection) = Client::new(options, 64);
        let last: Arc<Mutex<Option<Value>>> = Arc::new(Mutex::new(None));
        let (thread_client, thread_url, thread_last) = (client.clone(), url.clone(), last.clone());
        let spawned = std::thread::Builder::new().name("mqtt".into()).spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!(broker = ?thread_url, "MQTT connected; publishing discovery");
                        announce(&thread_client, &thread_url, &thread_last);
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(e) => {
                        tracing::warn!(broker = ?thread_url, error = %e, "MQTT connection failed; retrying in 5 s");
                        std::thread::sleep(Duration::from_secs(5));
                    }
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the MQTT thread; Home Assistant gets no updates");
        }
        Publisher {
            client,
            url: url.clone(),
            zone,
            last,
        }
    }

    /// Publishes the state (retained); skipped when the client's queue is full.
    pub fn publish(&self, report: &Report, states: &AlertStates, speed: (f64, f64)) {
        let value = state(report, states, speed, self.zone);
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(value.clone());
        if let Err(e) = self.client.try_publish(
            self.url.state_topic(),
            QoS::AtLeastOnce,
            true,
            value.to_string(),
        ) {
            tracing::debug!(error = %e, "MQTT state update skipped");
        }
    }

    /// Marks the device offline and disconnects.
    pub fn stop(&self) {
        let _ = self.client.try_publish(
            self.url.availability_topic(),
            QoS::AtLeastOnce,
            true,
            "offline",
        );
        let _ = self.client.try_disconnect();
    }
}

/// Discovery, availability and the last state, after every (re)connect.
fn announce(client: &Client, url: &MqttUrl, last: &Mutex<Option<Value>>) {
    for (topic, config) in discovery(url) {
        let _ = client.try_publish(topic, QoS::AtLeastOnce, true, config.to_string());
    }
    let _ = client.try_publish(url.availability_topic(), QoS::AtLeastOnce, true, "online");
    if let Some(v) = last.lock().unwrap_or_else(PoisonError::into_inner).clone() {
        let _ = client.try_publish(url.state_topic(), QoS::AtLeastOnce, true, v.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = MqttUrl::parse("mqtt://ha:p%40ss@192.168.1.2:1884?topic=nas&discovery=hass")
            .expect("valid");
        assert_eq!((u.host.as_str(), u.port), ("192.168.1.2", 1884));
        assert_eq!(u.user, Some(("ha".into(), "p@ss".into())));
        assert_eq!(
            (u.state_topic().as_str(), u.discovery.as_str()),
            ("nas/state", "hass")
        );
        let err = MqttUrl::parse("mqtts://ha:secret@host").expect_err("scheme");
        assert!(!err.contains("secret"), "{err}");
        assert!(MqttUrl::parse("mqtt://host:x").is_err());
        assert!(MqttUrl::parse("mqtt://host?bad=1").is_err());
    }

    #[test]
    fn discovery_marks_counters_total_increasing() {
        let u = MqttUrl::parse("mqtt://h").expect("valid");
        let d = discovery(&u);
        let today = d
            .iter()
            .find(|(t, _)| t.ends_with("/today_up/config"))
            .expect("today_up");
        assert_eq!(
            today.0,
            "homeassistant/sensor/nettraffic_sentinel/today_up/config"
        );
        assert_eq!(today.1["state_class"], "total_increasing");
        assert_eq!(
            today.1["availability_topic"],
            "nettraffic-sentinel/availability"
        );
        assert!(
            d.iter()
                .any(|(t, _)| t.starts_with("homeassistant/binary_sensor/"))
        );
    }
}
