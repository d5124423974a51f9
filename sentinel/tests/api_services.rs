//! `GET /api/services`: the shape of docs/API-CONTRACT.md, names from the built-in table and
//! `SERVICE_NAMES`, totals exact with unflushed counts, ranges, limits, CSV, strict parameters.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod api_support;

use api_support::{Env, get, get_json, local};
use axum::http::StatusCode;
use sentinel::{listeners::Listener, store::Sample};
use sentinel_common::abi::{
    ListenKey, ROLE_CLIENT, ROLE_NONE, ROLE_SERVER, RemoteCounters, ServiceKey,
};
use serde_json::json;

fn c(up: u64, down: u64) -> RemoteCounters {
    RemoteCounters {
        up_packets: up / 1000,
        up_bytes: up,
        down_packets: down / 1000,
        down_bytes: down,
    }
}

fn key(proto: u8, port: u16, role: u8) -> ServiceKey {
    ServiceKey { port, proto, role }
}

fn env() -> Env {
    let now = local("UTC", "2025-03-15 14:00:00");
    let env = Env::empty("UTC", now);
    let yesterday = local("UTC", "2025-03-14 09:00:00");
    env.store.record(&Sample {
        at: yesterday,
        services: &[(key(6, 445, ROLE_SERVER), c(5_000, 1_000))],
        ..Sample::default()
    });
    env.store.flush_now().expect("flush");
    // Today: flushed and unflushed parts.
    env.store.record(&Sample {
        at: now - 3600,
        services: &[
            (key(6, 8096, ROLE_SERVER), c(2_000_000, 10_000)),
            (key(6, 443, ROLE_CLIENT), c(4_000, 300_000)),
        ],
        other_services: c(10, 0),
        ..Sample::default()
    });
    env.store.flush_now().expect("flush");
    env.store.record(&Sample {
        at: now,
        services: &[
            (key(6, 8096, ROLE_SERVER), c(1_000_000, 0)),
            (key(1, 0, ROLE_NONE), c(84, 84)),
        ],
        other_services: c(0, 5),
        ..Sample::default()
    });
    // Jellyfin listens on 8096 in a container; a process also listens on 443, but the HTTPS
    // row is client traffic (the NAS fetched from remote port 443), so it names no process.
    env.capture.write().expect("status").listeners = vec![
        Listener {
            key: ListenKey::new(6, 8096),
            process: Some("jellyfin".into()),
            container: Some("4f1c0e4b5e2f".into()),
        },
        Listener {
            key: ListenKey::new(6, 443),
            process: Some("nginx".into()),
            container: None,
        },
    ];
    env
}

#[tokio::test]
async fn services_default_to_today_with_names_roles_and_an_exact_other() {
    let env = env();
    let router = env.router();
    let v = get_json(&router, "/api/services").await;
    assert_eq!(
        v,
        json!({
            "services": [
                { "proto": "tcp", "port": 8096, "role": "server", "name": "Jellyfin",
                  "process": "jellyfin", "container": "4f1c0e4b5e2f",
                  "up_bytes": 3_000_000, "down_bytes": 10_000, "total_bytes": 3_010_000,
                  "up_packets": 3000, "down_packets": 10,
                  "up_fmt": "2.86 MB", "down_fmt": "9.77 KB", "total_fmt": "2.87 MB" },
                { "proto": "tcp", "port": 443, "role": "client", "name": "HTTPS",
                  "process": null, "container": null,
                  "up_bytes": 4000, "down_bytes": 300_000, "total_bytes": 304_000,
                  "up_packets": 4, "down_packets": 300,
                  "up_fmt": "3.91 KB", "down_fmt": "292.97 KB", "total_fmt": "296.88 KB" },
                { "proto": "icmp", "port": 0, "role": "none", "name": "ICMP",
                  "process": null, "container": null,
                  "up_bytes": 84, "down_bytes": 84, "total_bytes": 168,
                  "up_packets": 0, "down_packets": 0,
                  "up_fmt": "84.00 B", "down_fmt": "84.00 B", "total_fmt": "168.00 B" },
            ],
            "other": { "up_bytes": 10, "down_bytes": 5, "total_bytes": 15,
                       "up_packets": 0, "down_packets": 0,
                       "up_fmt": "10.00 B", "down_fmt": "5.00 B", "total_fmt": "15.00 B" },
            "start": "2025-03-15", "end": "2025-03-15",
        })
    );
}

#[tokio::test]
async fn ranges_limits_and_csv() {
    let env = env();
    let router = env.router();
    let v = get_json(
        &router,
        "/api/services?start=2025-03-14&end=2025-03-15&limit=2",
    )
    .await;
    let ports: Vec<u64> = v["services"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["port"].as_u64().expect("port"))
        .collect();
    assert_eq!(ports, [8096, 443]);
    // SMB (yesterday) and ICMP are folded into other with the unkept bytes: exact.
    assert_eq!(v["other"]["up_bytes"], json!(5_000 + 84 + 10));
    assert_eq!(v["other"]["down_bytes"], json!(1_000 + 84 + 5));
    let v = get_json(&router, "/api/services?start=2025-03-14&end=2025-03-14").await;
    assert_eq!(v["services"][0]["name"], json!("SMB"));
    let r = get(&router, "/api/services?format=csv&limit=1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.text(),
        "proto,port,role,name,up_bytes,down_bytes,total_bytes,up_packets,down_packets\n\
         tcp,8096,server,Jellyfin,3000000,10000,3010000,3000,10\n\
         ,,,other,4094,300089,304183,4,300\n"
    );
}

#[tokio::test]
async fn bad_parameters_are_400_json() {
    let env = env();
    let router = env.router();
    for uri in [
        "/api/services?limit=0",
        "/api/services?limit=101",
        "/api/services?limit=x",
        "/api/services?start=2025-3-1",
        "/api/services?end=2025-03-14",
        "/api/services?format=xml",
        "/api/services?bogus=1",
        "/api/services?limit=1&limit=2",
    ] {
        let r = get(&router, uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(r.json()["error"].is_string(), "{uri}: {}", r.text());
    }
}

#[tokio::test]
async fn metrics_carry_the_top_services_bytes() {
    let env = env();
    let router = env.router();
    let text = get(&router, "/metrics").await.text();
    for line in [
        "# TYPE sentinel_service_bytes_total counter",
        "sentinel_service_bytes_total{service=\"tcp/8096 server\",name=\"Jellyfin\",direction=\"up\"} 3000000",
        "sentinel_service_bytes_total{service=\"tcp/8096 server\",name=\"Jellyfin\",direction=\"down\"} 10000",
        "sentinel_service_bytes_total{service=\"tcp/445 server\",name=\"SMB\",direction=\"up\"} 5000",
        "sentinel_service_bytes_total{service=\"icmp/0 none\",name=\"ICMP\",direction=\"down\"} 84",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}
