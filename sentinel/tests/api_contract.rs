//! Contract tests: every endpoint against the reference fixture (docs/compatibility.md)
//! (six flushed hours, the unflushed "memory" of 14:xx, per-remote traffic; `TZ=Asia/Shanghai`,
//! clock frozen at 2025-03-15 14:37:21 +08:00), field for field, `*_fmt` strings included, and
//! the seed's byte-level encoding (sorted keys, compact, `\uXXXX`, trailing newline).
//!
//! Where our answer deliberately differs from the seed's, the test asserts ours and says why next
//! to it (the defect numbers are those of reference section 7, the new fields those of
//! static/API-CONTRACT.md).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod api_support;

use api_support::{NOW, get, get_json, reference_fixture};
use axum::http::StatusCode;
use serde_json::{Value, json};

/// Parses one of the reference's example bodies.
fn seed(text: &str) -> Value {
    serde_json::from_str(text).expect("reference example is JSON")
}

/// A zero-filled series item with `key: label`.
fn zero(key: &str, label: &str) -> Value {
    let mut v = json!({ "up_bytes": 0, "down_bytes": 0, "total_bytes": 0 });
    v[key] = json!(label);
    v
}

/// A series item with traffic.
fn item(key: &str, label: &str, up: u64, down: u64) -> Value {
    let mut v = json!({ "up_bytes": up, "down_bytes": down, "total_bytes": up + down });
    v[key] = json!(label);
    v
}

#[tokio::test]
async fn summary_is_the_seeds_example_plus_the_clock_and_zone() {
    let env = reference_fixture();
    let reply = get(&env.router(), "/api/summary").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    // The seed's bytes (reference 2.2, exact), with the four new fields (API-CONTRACT.md:
    // `tz`, `tz_offset`, `now`, `today_date`) in their sorted places. The seed merged memory
    // into the summary already, so every number is the reference's.
    let expected = concat!(
        r#"{"month":{"down_bytes":5695102400,"down_fmt":"5.30 GB","total_bytes":7032037800,"total_fmt":"6.55 GB","up_bytes":1336935400,"up_fmt":"1.25 GB"},"#,
        r#""now":"2025-03-15T14:37:21+08:00","#,
        r#""today":{"down_bytes":4621336576,"down_fmt":"4.30 GB","total_bytes":5748555776,"total_fmt":"5.35 GB","up_bytes":1127219200,"up_fmt":"1.05 GB"},"#,
        r#""today_date":"2025-03-15","tz":"Asia/Shanghai","tz_offset":"+08:00","#,
        r#""year":{"down_bytes":27169938880,"down_fmt":"25.30 GB","total_bytes":33875583400,"total_fmt":"31.55 GB","up_bytes":6705644520,"up_fmt":"6.25 GB"}}"#,
        "\n"
    );
    assert_eq!(reply.text(), expected);
    // And the seed's own example, key by key, is contained in ours.
    let ours = reply.json();
    let theirs = seed(
        r#"{"month":{"down_bytes":5695102400,"down_fmt":"5.30 GB","total_bytes":7032037800,"total_fmt":"6.55 GB","up_bytes":1336935400,"up_fmt":"1.25 GB"},"today":{"down_bytes":4621336576,"down_fmt":"4.30 GB","total_bytes":5748555776,"total_fmt":"5.35 GB","up_bytes":1127219200,"up_fmt":"1.05 GB"},"year":{"down_bytes":27169938880,"down_fmt":"25.30 GB","total_bytes":33875583400,"total_fmt":"31.55 GB","up_bytes":6705644520,"up_fmt":"6.25 GB"}}"#,
    );
    for key in ["month", "today", "year"] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
}

#[tokio::test]
async fn query_by_day_is_byte_identical_to_the_seed() {
    let env = reference_fixture();
    let reply = get(&env.router(), "/api/query?start=2025-03-13&end=2025-03-15").await;
    assert_eq!(reply.status, StatusCode::OK);
    // Day granularity (the default) with today in range: the seed merged memory into today's item
    // here too, so ours is the reference's example to the byte.
    assert_eq!(
        reply.text(),
        concat!(
            r#"{"series":[{"day":"2025-03-13","down_bytes":0,"total_bytes":0,"up_bytes":0},{"day":"2025-03-14","down_bytes":1073741824,"total_bytes":1283457024,"up_bytes":209715200},{"day":"2025-03-15","down_bytes":4621336576,"total_bytes":5748555776,"up_bytes":1127219200}],"summary":{"down_bytes":5695078400,"down_fmt":"5.30 GB","total_bytes":7032012800,"total_fmt":"6.55 GB","up_bytes":1336934400,"up_fmt":"1.25 GB"}}"#,
            "\n"
        )
    );
    // `granularity=day` spelled out answers the same.
    let explicit = get(
        &env.router(),
        "/api/query?start=2025-03-13&end=2025-03-15&granularity=day",
    )
    .await;
    assert_eq!(explicit.body, reply.body);
}

#[tokio::test]
async fn query_by_hour_is_zero_filled_with_offsets_and_includes_memory() {
    let env = reference_fixture();
    let v = get_json(
        &env.router(),
        "/api/query?start=2025-03-14&end=2025-03-15&granularity=hour",
    )
    .await;
    // The seed listed only the three hours with rows, left out the unflushed 14:00 hour (D27:
    // 5.29 GB by hour vs 5.30 GB by day) and had no `utc_offset`. Ours: every local hour of both
    // days (D28, zero-filled, hours still to come included as zeros), each with its offset, and
    // the memory in 14:00, so the hour and day views agree.
    let traffic = [
        ("2025-03-14 21:00:00", 209_715_200, 1_073_741_824),
        ("2025-03-15 00:00:00", 52_428_800, 314_572_800),
        ("2025-03-15 13:00:00", 1_073_741_824, 4_294_967_296),
        ("2025-03-15 14:00:00", 1_048_576, 11_796_480),
    ];
    let mut expected = Vec::new();
    for day in ["2025-03-14", "2025-03-15"] {
        for hour in 0..24 {
            let label = format!("{day} {hour:02}:00:00");
            let mut v = match traffic.iter().find(|(l, _, _)| *l == label) {
                Some((_, up, down)) => item("hour_ts", &label, *up, *down),
                None => zero("hour_ts", &label),
            };
            v["utc_offset"] = json!("+08:00");
            expected.push(v);
        }
    }
    assert_eq!(v["series"], Value::Array(expected));
    // The summary is the day query's (the seed's said 5.29 GB / 6.54 GB / 1.24 GB).
    assert_eq!(
        v["summary"],
        seed(
            r#"{"down_bytes":5695078400,"down_fmt":"5.30 GB","total_bytes":7032012800,"total_fmt":"6.55 GB","up_bytes":1336934400,"up_fmt":"1.25 GB"}"#
        )
    );
    // The seed's three items are still there, with the seed's fields and values.
    let seed_items = seed(
        r#"[{"down_bytes":1073741824,"hour_ts":"2025-03-14 21:00:00","total_bytes":1283457024,"up_bytes":209715200},{"down_bytes":314572800,"hour_ts":"2025-03-15 00:00:00","total_bytes":367001600,"up_bytes":52428800},{"down_bytes":4294967296,"hour_ts":"2025-03-15 13:00:00","total_bytes":5368709120,"up_bytes":1073741824}]"#,
    );
    for theirs in seed_items.as_array().expect("array") {
        let ours = v["series"]
            .as_array()
            .expect("series")
            .iter()
            .find(|i| i["hour_ts"] == theirs["hour_ts"])
            .expect("hour present");
        for (key, value) in theirs.as_object().expect("object") {
            assert_eq!(&ours[key], value, "{key} of {}", theirs["hour_ts"]);
        }
    }
}

#[tokio::test]
async fn query_by_month_counts_only_the_days_in_the_range() {
    let env = reference_fixture();
    let router = env.router();
    let v = get_json(
        &router,
        "/api/query?start=2025-02-15&end=2025-03-15&granularity=month",
    )
    .await;
    // The seed widened the range to whole months (D28) and so counted 2025-02-10 (5 GB up, 20 GB
    // down) in a query starting 2025-02-15; it also left out memory (D27). Ours: February has
    // nothing from the 15th on, and March includes the unflushed 14:00 hour.
    assert_eq!(
        v,
        json!({
            "series": [
                zero("month", "2025-02"),
                item("month", "2025-03", 1_336_935_400, 5_695_102_400),
            ],
            "summary": {
                "up_bytes": 1_336_935_400_u64, "down_bytes": 5_695_102_400_u64,
                "total_bytes": 7_032_037_800_u64,
                "up_fmt": "1.25 GB", "down_fmt": "5.30 GB", "total_fmt": "6.55 GB",
            },
        })
    );
    // Asking for the whole months gives the seed's February item exactly, and its March plus the
    // memory (the seed's March: 1335886824 up, 5683305920 down, without it).
    let v = get_json(
        &router,
        "/api/query?start=2025-02-01&end=2025-03-31&granularity=month",
    )
    .await;
    let seed_feb = seed(
        r#"{"down_bytes":21474836480,"month":"2025-02","total_bytes":26843545600,"up_bytes":5368709120}"#,
    );
    assert_eq!(v["series"][0], seed_feb);
    assert_eq!(
        v["series"][1],
        item("month", "2025-03", 1_336_935_400, 5_695_102_400)
    );
    assert_eq!(v["series"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        v["summary"],
        json!({
            "up_bytes": 6_705_644_520_u64, "down_bytes": 27_169_938_880_u64,
            "total_bytes": 33_875_583_400_u64,
            "up_fmt": "6.25 GB", "down_fmt": "25.30 GB", "total_fmt": "31.55 GB",
        })
    );
    // Clamping also cuts the start of a month: from 03-02, 2025-03-01's 25,000 bytes are out.
    let v = get_json(
        &router,
        "/api/query?start=2025-03-02&end=2025-03-15&granularity=month",
    )
    .await;
    assert_eq!(
        v["series"],
        json!([item("month", "2025-03", 1_336_934_400, 5_695_078_400)])
    );
}

#[tokio::test]
async fn query_reproduces_the_seeds_accepted_examples_and_fixes_its_400s() {
    let env = reference_fixture();
    let router = env.router();
    // The seed's 400 for a missing end: the same message.
    let r = get(&router, "/api/query?start=2025-03-15").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.text(), "{\"error\":\"start and end are required\"}\n");
    // The seed's "Invalid date format, use YYYY-MM-DD": ours names the parameter and the value.
    let r = get(&router, "/api/query?start=2024-13-01&end=x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let message = r.json()["error"].as_str().expect("error").to_owned();
    assert!(message.contains("YYYY-MM-DD"), "{message}");
    // The seed answered `start=2025-3-1` with 200 and zeros (D29, string comparison); ours refuses.
    let r = get(&router, "/api/query?start=2025-3-1&end=2025-03-15").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]
            .as_str()
            .expect("error")
            .contains("2025-3-1")
    );
}

#[tokio::test]
async fn csv_export_has_a_header_and_iso_timestamps() {
    let env = reference_fixture();
    let r = get(
        &env.router(),
        "/api/query?start=2025-03-14&end=2025-03-15&format=csv",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"traffic-2025-03-14-2025-03-15.csv\"")
    );
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "period,start,up_bytes,down_bytes,total_bytes,up_packets,down_packets,up_wire_bytes,down_wire_bytes"
    );
    // The fixture records packets = ceil(bytes / 1500) and wire bytes = bytes + 14 per packet, per
    // recorded drain; a row sums the drains of its day.
    let row = |label: &str, ups: &[u64], downs: &[u64]| {
        let sum = |list: &[u64]| {
            list.iter()
                .map(|b| api_support::counters(*b))
                .fold((0, 0, 0), |(i, p, w), c| {
                    (i + c.ip_bytes, p + c.packets, w + c.wire_bytes)
                })
        };
        let ((up, up_p, up_w), (down, down_p, down_w)) = (sum(ups), sum(downs));
        format!(
            "{label},{label}T00:00:00+08:00,{up},{down},{},{up_p},{down_p},{up_w},{down_w}",
            up + down
        )
    };
    assert_eq!(
        lines[1..],
        [
            row("2025-03-14", &[209_715_200], &[1_073_741_824]),
            // Today: two flushed hours and the three pending drains.
            row(
                "2025-03-15",
                &[52_428_800, 1_073_741_824, 1_048_576],
                &[314_572_800, 4_294_967_296, 11_141_120, 262_144, 393_216]
            ),
        ]
    );
    // The totals are the reference's day figures.
    assert!(
        lines[2]
            .starts_with("2025-03-15,2025-03-15T00:00:00+08:00,1127219200,4621336576,5748555776,")
    );
    // Hourly CSV: one row per hour, starts with their offset.
    let r = get(
        &env.router(),
        "/api/query?start=2025-03-15&end=2025-03-15&granularity=hour&format=csv",
    )
    .await;
    let text = r.text();
    assert_eq!(text.lines().count(), 1 + 24);
    assert!(
        text.contains(
            "\n2025-03-15 13:00:00,2025-03-15T13:00:00+08:00,1073741824,4294967296,5368709120,"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn thirty_days_are_zero_filled_and_include_memory() {
    let env = reference_fixture();
    let v = get_json(&env.router(), "/api/history/30days").await;
    let days = v["days"].as_array().expect("days");
    assert_eq!(days.len(), 30);
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "only `days`");
    // The reference's items, from its example.
    assert_eq!(
        days[0],
        seed(r#"{"day":"2025-02-14","down_bytes":0,"total_bytes":0,"up_bytes":0}"#)
    );
    assert_eq!(
        days[15],
        seed(r#"{"day":"2025-03-01","down_bytes":24000,"total_bytes":25000,"up_bytes":1000}"#)
    );
    assert_eq!(
        days[28],
        seed(
            r#"{"day":"2025-03-14","down_bytes":1073741824,"total_bytes":1283457024,"up_bytes":209715200}"#
        )
    );
    // Today: the seed left memory out (D27: 4609540096 down / 1126170624 up); ours includes it, so
    // the bar agrees with the "today" card.
    assert_eq!(
        days[29],
        item("day", "2025-03-15", 1_127_219_200, 4_621_336_576)
    );
    // Every other day is a zero, in order.
    let mut date = chrono::NaiveDate::from_ymd_opt(2025, 2, 14).expect("date");
    for (i, d) in days.iter().enumerate() {
        assert_eq!(d["day"], json!(date.to_string()));
        if ![15, 28, 29].contains(&i) {
            assert_eq!(*d, zero("day", &date.to_string()));
        }
        date = date.succ_opt().expect("next day");
    }
}

#[tokio::test]
async fn twelve_months_are_zero_filled_and_include_memory() {
    let env = reference_fixture();
    let v = get_json(&env.router(), "/api/history/12months").await;
    let months = v["months"].as_array().expect("months");
    let labels: Vec<&str> = months
        .iter()
        .map(|m| m["month"].as_str().expect("label"))
        .collect();
    assert_eq!(
        labels,
        [
            "2024-04", "2024-05", "2024-06", "2024-07", "2024-08", "2024-09", "2024-10", "2024-11",
            "2024-12", "2025-01", "2025-02", "2025-03"
        ]
    );
    assert_eq!(
        months[0],
        seed(r#"{"down_bytes":0,"month":"2024-04","total_bytes":0,"up_bytes":0}"#)
    );
    assert_eq!(
        months[8],
        seed(r#"{"down_bytes":9,"month":"2024-12","total_bytes":16,"up_bytes":7}"#)
    );
    assert_eq!(
        months[9],
        seed(r#"{"down_bytes":0,"month":"2025-01","total_bytes":0,"up_bytes":0}"#)
    );
    assert_eq!(
        months[10],
        seed(
            r#"{"down_bytes":21474836480,"month":"2025-02","total_bytes":26843545600,"up_bytes":5368709120}"#
        )
    );
    // This month: the seed left memory out (D27: 5683305920 down, 1335886824 up).
    assert_eq!(
        months[11],
        item("month", "2025-03", 1_336_935_400, 5_695_102_400)
    );
    for m in &months[1..8] {
        assert_eq!(m["total_bytes"], json!(0), "{m}");
    }
}

#[tokio::test]
async fn today_hours_lists_every_hour_so_far_with_totals_and_memory() {
    let env = reference_fixture();
    let v = get_json(&env.router(), "/api/history/today_hours").await;
    // The seed listed only hours with rows (00:00 and 13:00), without `total_bytes` and without
    // the unflushed current hour (D27). Ours: every hour from 00:00 to the current one, zero-
    // filled, with `total_bytes` and `utc_offset` (API-CONTRACT.md), the current hour from memory.
    let mut expected = Vec::new();
    for hour in 0..=14 {
        let label = format!("2025-03-15 {hour:02}:00:00");
        let mut v = match hour {
            0 => item("hour_ts", &label, 52_428_800, 314_572_800),
            13 => item("hour_ts", &label, 1_073_741_824, 4_294_967_296),
            14 => item("hour_ts", &label, 1_048_576, 11_796_480),
            _ => zero("hour_ts", &label),
        };
        v["utc_offset"] = json!("+08:00");
        expected.push(v);
    }
    assert_eq!(v, json!({ "hours": expected }));
    // The seed's two items, with the seed's fields.
    let theirs = seed(
        r#"{"hours":[{"down_bytes":314572800,"hour_ts":"2025-03-15 00:00:00","up_bytes":52428800},{"down_bytes":4294967296,"hour_ts":"2025-03-15 13:00:00","up_bytes":1073741824}]}"#,
    );
    for (t, i) in theirs["hours"]
        .as_array()
        .expect("hours")
        .iter()
        .zip([0, 13])
    {
        for (key, value) in t.as_object().expect("object") {
            assert_eq!(&v["hours"][i][key], value);
        }
    }
}

#[tokio::test]
async fn date_range_is_byte_identical() {
    let env = reference_fixture();
    let r = get(&env.router(), "/api/date_range").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.text(),
        "{\"max\":\"2025-03-15\",\"min\":\"2024-12-31\"}\n"
    );
}

#[tokio::test]
async fn date_range_of_an_empty_store_is_today() {
    let env = api_support::Env::empty(api_support::TZ, NOW);
    let v = get_json(&env.router(), "/api/date_range").await;
    assert_eq!(v, json!({ "min": "2025-03-15", "max": "2025-03-15" }));
}

#[tokio::test]
async fn realtime_is_byte_identical_and_forgets_after_a_minute() {
    let env = reference_fixture();
    // The reference's three ticks fell in the second 14:37:22 (its `ts` 1742020642).
    env.clock.set(NOW + 1);
    let r = get(&env.router(), "/api/realtime").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.text(),
        concat!(
            r#"{"current_down_Bps":393216,"current_down_bps":3145728,"current_up_Bps":0,"current_up_bps":0,"samples":[{"down":11141120,"ts":1742020642,"up":1048576},{"down":262144,"ts":1742020642,"up":0},{"down":393216,"ts":1742020642,"up":0}]}"#,
            "\n"
        )
    );
    // A minute later nothing is recent: zeros and no samples (as the seed with no samples).
    env.clock.set(NOW + 62);
    let v = get_json(&env.router(), "/api/realtime").await;
    assert_eq!(
        v,
        json!({
            "current_down_Bps": 0, "current_down_bps": 0, "current_up_Bps": 0,
            "current_up_bps": 0, "samples": [],
        })
    );
}

#[tokio::test]
async fn realtime_keeps_the_last_thirty_samples_and_rates_over_measured_time() {
    let env = api_support::Env::empty(api_support::TZ, NOW);
    {
        let mut ring = env.speed.lock().expect("speed");
        for i in 0..45 {
            ring.push(sentinel::meter::SpeedSample {
                ts_ms: (NOW - 44 + i) * 1000,
                up: 1000 + i as u64,
                down: 10,
                secs: 1.0,
            });
        }
        // The last drain came late: 2 s of traffic. The rate is per measured second (D21).
        ring.push(sentinel::meter::SpeedSample {
            ts_ms: NOW * 1000 + 500,
            up: 5000,
            down: 3000,
            secs: 2.0,
        });
    }
    let v = get_json(&env.router(), "/api/realtime").await;
    let samples = v["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 30);
    assert_eq!(samples[29], json!({ "ts": NOW, "up": 5000, "down": 3000 }));
    assert_eq!(samples[0]["up"], json!(1000 + 16));
    assert_eq!(v["current_up_Bps"], json!(2500));
    assert_eq!(v["current_up_bps"], json!(20000));
    assert_eq!(v["current_down_Bps"], json!(1500));
    assert_eq!(v["current_down_bps"], json!(12000));
}

#[tokio::test]
async fn top_ips_default_to_today_and_take_ranges() {
    let env = reference_fixture();
    let router = env.router();
    let v = get_json(&router, "/api/top_ips").await;
    // The seed's list (memory since the process started, both directions added) has the same
    // order and numbers; ours is per local day (default today, across restarts) and adds
    // `up_bytes`/`down_bytes` and the range it covers (API-CONTRACT.md).
    let theirs = seed(
        r#"{"top_ips":[{"bytes":11534336,"bytes_fmt":"11.00 MB","ip":"203.0.113.1"},{"bytes":786432,"bytes_fmt":"768.00 KB","ip":"8.8.8.8"},{"bytes":524288,"bytes_fmt":"512.00 KB","ip":"2001:4860:4860::8888"}]}"#,
    );
    let ours = v["top_ips"].as_array().expect("top_ips");
    assert_eq!(ours.len(), 3);
    for (o, t) in ours.iter().zip(theirs["top_ips"].as_array().expect("list")) {
        for (key, value) in t.as_object().expect("object") {
            assert_eq!(&o[key], value, "{key}");
        }
    }
    assert_eq!(
        v,
        json!({
            "top_ips": [
                { "ip": "203.0.113.1", "bytes": 11_534_336, "bytes_fmt": "11.00 MB",
                  "up_bytes": 1_048_576, "down_bytes": 10_485_760 },
                { "ip": "8.8.8.8", "bytes": 786_432, "bytes_fmt": "768.00 KB",
                  "up_bytes": 0, "down_bytes": 786_432 },
                { "ip": "2001:4860:4860::8888", "bytes": 524_288, "bytes_fmt": "512.00 KB",
                  "up_bytes": 0, "down_bytes": 524_288 },
            ],
            "start": "2025-03-15", "end": "2025-03-15",
        })
    );
    // Yesterday's (flushed) remote joins when the range includes yesterday.
    let v = get_json(&router, "/api/top_ips?start=2025-03-14&end=2025-03-15").await;
    assert_eq!(v["top_ips"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        v["top_ips"][3],
        json!({ "ip": "198.51.100.7", "bytes": 12000, "bytes_fmt": "11.72 KB",
                "up_bytes": 5000, "down_bytes": 7000 })
    );
    assert_eq!(
        (v["start"].clone(), v["end"].clone()),
        (json!("2025-03-14"), json!("2025-03-15"))
    );
    let v = get_json(&router, "/api/top_ips?start=2025-03-14&end=2025-03-14").await;
    assert_eq!(v["top_ips"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["top_ips"][0]["ip"], json!("198.51.100.7"));
    // `limit` cuts the list.
    let v = get_json(&router, "/api/top_ips?limit=2").await;
    let ips: Vec<&str> = v["top_ips"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["ip"].as_str().expect("ip"))
        .collect();
    assert_eq!(ips, ["203.0.113.1", "8.8.8.8"]);
    // `start` defaults to today, so an `end` before today alone is `start > end`.
    let r = get(&router, "/api/top_ips?end=2025-03-14").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A day without remotes: an empty list, not an error.
    let v = get_json(&router, "/api/top_ips?start=2025-01-01&end=2025-01-31").await;
    assert_eq!(v["top_ips"], json!([]));
}

#[tokio::test]
async fn health_says_ok_with_the_local_time() {
    let env = reference_fixture();
    let r = get(&env.router(), "/api/health").await;
    assert_eq!(r.status, StatusCode::OK);
    // The seed's `ts` was naive local time with microseconds (2025-03-15T14:37:22.183521); ours
    // is RFC 3339 with the offset, seconds precision, like every other time we print.
    assert_eq!(
        r.text(),
        "{\"status\":\"ok\",\"ts\":\"2025-03-15T14:37:21+08:00\"}\n"
    );
}

const NOTE_TOP: &str = "上行/下行方向判断依赖 ipv6 列表中的本机地址。若 NAS 的公网 IPv6 未出现，请检查 MONITOR_IFACE 是否正确。";
const NOTE_MANUAL: &str = "手动模式：由 EXCLUDE_IPV6_PREFIX 环境变量指定，优先级最高。";

#[tokio::test]
async fn local_ips_keep_the_seeds_shape_and_escaping() {
    let env = reference_fixture();
    let r = get(&env.router(), "/api/debug/local_ips").await;
    assert_eq!(r.status, StatusCode::OK);
    // The seed's auto note said the prefix is refreshed hourly ("每小时刷新一次"); ours follows
    // address changes at once, and the note says so. `grace_prefixes` is new (issue 5).
    let auto_note = "自动模式：从网卡 GUA 提取 /56 前缀，地址变化时立即刷新。双端地址同属此前缀的 IPv6 包将被视为 LAN 内部流量并排除。";
    assert_eq!(
        r.json(),
        json!({
            "iface": "eth0",
            "ipv4": ["192.168.1.100"],
            "ipv6": ["240e:33e:2f08:d601::1", "240e:33e:2f08:d601:a1b2:c3d4:e5f6:1",
                     "fe80::211:32ff:fe12:3456"],
            "ipv6_lan_filter": {
                "mode": "auto-gua-/56", "note": auto_note,
                "prefixes": ["240e:33e:2f08:d600::/56"], "grace_prefixes": [],
            },
            "note": NOTE_TOP,
            "total": 4,
        })
    );
    // Byte level: ASCII only, Chinese as lowercase `\uXXXX` (the reference's example starts
    // `"note":"\u81ea\u52a8\u6a21\u5f0f`), keys sorted, compact, newline-terminated.
    let text = r.text();
    assert!(text.is_ascii());
    assert!(text.ends_with("}\n"));
    assert!(
        text.starts_with(
            r#"{"iface":"eth0","ipv4":["192.168.1.100"],"ipv6":["240e:33e:2f08:d601::1","240e:33e:2f08:d601:a1b2:c3d4:e5f6:1","fe80::211:32ff:fe12:3456"],"ipv6_lan_filter":{"grace_prefixes":[],"mode":"auto-gua-/56","note":"\u81ea\u52a8\u6a21\u5f0f"#
        ),
        "{text}"
    );
    let tail = concat!(
        r#""prefixes":["240e:33e:2f08:d600::/56"]},"note":"\u4e0a\u884c/\u4e0b\u884c\u65b9\u5411\u5224\u65ad\u4f9d\u8d56 ipv6 \u5217\u8868\u4e2d\u7684\u672c\u673a\u5730\u5740\u3002\u82e5 NAS \u7684\u516c\u7f51 IPv6 \u672a\u51fa\u73b0\uff0c\u8bf7\u68c0\u67e5 MONITOR_IFACE \u662f\u5426\u6b63\u786e\u3002","total":4}"#,
        "\n"
    );
    assert!(text.ends_with(tail), "{text}");
    // Manual mode: the seed's note, word for word.
    sentinel::status::update(&env.capture, |c| c.lan_mode = "manual");
    let v = get_json(&env.router(), "/api/debug/local_ips").await;
    assert_eq!(v["ipv6_lan_filter"]["mode"], json!("manual"));
    assert_eq!(v["ipv6_lan_filter"]["note"], json!(NOTE_MANUAL));
    assert_eq!(v["note"], json!(NOTE_TOP));
}

#[tokio::test]
async fn status_reports_capture_and_storage() {
    let env = reference_fixture();
    let v = get_json(&env.router(), "/api/status").await;
    assert_eq!(v["backend"], json!("ebpf"));
    assert_eq!(v["attach_mode"], json!("tcx"));
    assert_eq!(v["iface"], json!("eth0"));
    assert_eq!(v["ifindex"], json!(2));
    assert_eq!(v["tz"], json!("Asia/Shanghai"));
    assert_eq!(v["version"], json!(env!("CARGO_PKG_VERSION")));
    assert!(v["uptime_s"].is_u64());
    let c = &v["capture"];
    assert_eq!(c["state"], json!("running"));
    assert_eq!(c["error"], Value::Null);
    assert_eq!(c["drops"], json!(3));
    assert_eq!(c["program_id"], json!(42));
    assert_eq!(c["remote_map_entries"], json!(17));
    assert_eq!(c["remote_map_capacity"], json!(65536));
    // Every error kind but "not IP" (not an error: ARP and friends) by name, as the dashboard
    // lists them; "not IP" frames apart.
    let errors = c["errors"].as_object().expect("errors object");
    assert_eq!(errors.len(), sentinel_common::abi::ErrorKind::ALL.len() - 1);
    for kind in sentinel_common::abi::ErrorKind::ALL {
        if kind == sentinel_common::abi::ErrorKind::NotIp {
            assert!(!errors.contains_key(kind.name()));
            assert_eq!(c["not_ip_frames"], json!(api_support::error_value(kind)));
        } else {
            assert_eq!(
                errors[kind.name()],
                json!(api_support::error_value(kind)),
                "{}",
                kind.name()
            );
        }
    }
    let s = &v["storage"];
    assert_eq!(s["state"], json!("ok"));
    assert_eq!(s["error"], Value::Null);
    // The store's clock is frozen too: the fixture's flush happened "at" 14:37:21.
    assert_eq!(s["last_flush"], json!("2025-03-15T14:37:21+08:00"));
    assert_eq!(s["consecutive_failures"], json!(0));
    assert_eq!(s["pending_hours"], json!(1));
    assert_eq!(s["pending_remotes"], json!(3));
    let db_path = s["db_path"].as_str().expect("db_path");
    assert_eq!(
        std::path::Path::new(db_path),
        env.dir.path().join("traffic.db")
    );
    assert!(s["db_size_bytes"].as_u64().expect("size") > 0);
    // Capture down: the state and the reason the banner shows.
    sentinel::status::update(&env.capture, |c| {
        c.state = sentinel::status::CaptureState::Down("eth9 has disappeared".into());
        c.attach_mode = None;
    });
    let v = get_json(&env.router(), "/api/status").await;
    assert_eq!(v["capture"]["state"], json!("down"));
    assert_eq!(v["capture"]["error"], json!("eth9 has disappeared"));
    assert_eq!(v["attach_mode"], Value::Null);
    sentinel::status::update(&env.capture, |c| {
        c.state = sentinel::status::CaptureState::Starting;
    });
    let v = get_json(&env.router(), "/api/status").await;
    assert_eq!(v["capture"]["state"], json!("starting"));
}

#[tokio::test]
async fn the_dashboard_is_served_at_the_root() {
    let env = reference_fixture();
    let r = get(&env.router(), "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert!(r.header("etag").is_some());
    assert!(r.text().to_lowercase().contains("<html"));
    // The seed also served it at /static/index.html; its relative URLs only work at the root
    // (API-CONTRACT.md 1), so that path redirects there.
    let r = get(&env.router(), "/static/index.html").await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location"), Some("/"));
    for (path, kind) in [
        ("/static/js/app.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml"),
    ] {
        let r = get(&env.router(), path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.header("content-type"), Some(kind), "{path}");
    }
    // The contract is not served (`*.md` are left out of the binary).
    let r = get(&env.router(), "/static/API-CONTRACT.md").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_json_answer_uses_the_seeds_encoding() {
    let env = reference_fixture();
    for path in api_support::GET_ROUTES
        .iter()
        .filter(|p| p.starts_with("/api/"))
    {
        let r = get(&env.router(), path).await;
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        let text = r.text();
        assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{path}");
        assert!(text.is_ascii(), "{path}");
        // Compact: re-encoding the parsed value compactly (serde_json's maps are sorted) gives
        // the same bytes, so keys are sorted and there is no whitespace outside strings.
        let value = r.json();
        let compact = serde_json::to_string(&value).expect("encode");
        let ascii: String = compact
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect()
                }
            })
            .collect();
        assert_eq!(text, ascii + "\n", "{path}");
    }
}
