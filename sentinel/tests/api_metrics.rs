//! `/metrics`: parsed with a Prometheus text-format parser (`prometheus-parse`) for names, types,
//! labels and values against a known capture status, and checked line by line against the
//! exposition format's grammar (which that lenient parser does not enforce: it skips lines it
//! cannot read), label escaping included. Naming follows Prometheus's conventions.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod api_support;

use std::collections::{BTreeMap, HashMap, HashSet};

use api_support::{NOW, error_value, get, reference_fixture, slot_value};
use axum::http::StatusCode;
use prometheus_parse::{Scrape, Value};
use sentinel_common::abi::{ErrorKind, FAMILY_V4, FAMILY_V6, Verdict};

/// One sample line, parsed strictly (text format 0.0.4).
#[derive(Debug, PartialEq)]
struct Line {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Parses a sample line: `name{l="v",...} value`, escapes `\\`, `\"` and `\n` in values.
fn parse_sample(line: &str) -> Result<Line, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value: {line:?}"))?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // label name
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if after[start..].starts_with('}') {
                chars.next();
                break;
            }
            let eq = after[start..]
                .find('=')
                .ok_or_else(|| format!("no '=' in labels of {line:?}"))?;
            let label = &after[start..start + eq];
            if !valid_label_name(label) {
                return Err(format!("bad label name {label:?} in {line:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= start + eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label value not quoted in {line:?}"));
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => return Err(format!("bad escape \\{other} in {line:?}")),
                    },
                    '\n' => return Err("raw newline in label value".into()),
                    c => value.push(c),
                }
            }
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("label {label} twice in {line:?}"));
            }
            match chars.next().map(|(_, c)| c) {
                Some(',') => {}
                Some('}') => break,
                other => return Err(format!("unexpected {other:?} in labels of {line:?}")),
            }
        }
        let consumed = chars.peek().map_or(after.len(), |(i, _)| *i);
        rest = &after[consumed..];
    }
    let value_text = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value: {line:?}"))?;
    let mut parts = value_text.split(' ');
    let value: f64 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("bad value in {line:?}"))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp in {line:?}"))?;
    }
    if parts.next().is_some() {
        return Err(format!("trailing text in {line:?}"));
    }
    Ok(Line {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Checks the whole exposition: HELP and TYPE before each family's samples, families contiguous,
/// no series twice, counters named `_total`. Returns every sample and each family's type.
fn check_exposition(text: &str) -> (Vec<Line>, HashMap<String, String>) {
    assert!(text.ends_with('\n'), "the last line ends with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "no empty lines");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(valid_metric_name(name), "{line}");
            assert!(!help.trim().is_empty(), "{line}");
            assert!(helps.insert(name.to_owned()), "HELP twice for {name}");
            if let Some(prev) = current.replace(name.to_owned())
                && prev != name
            {
                finished.insert(prev);
            }
            assert!(!finished.contains(name), "{name} is not contiguous");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert_eq!(current.as_deref(), Some(name), "TYPE right after HELP");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice for {name}"
            );
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            let sample = parse_sample(line).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                current.as_deref(),
                Some(sample.name.as_str()),
                "sample outside its family: {line}"
            );
            assert!(types.contains_key(&sample.name), "no TYPE for {line}");
            let key = format!("{}{:?}", sample.name, sample.labels);
            assert!(series.insert(key), "series twice: {line}");
            samples.push(sample);
        }
    }
    for (name, kind) in &types {
        // Conventions: counters end in `_total`, nothing else does; the `sentinel_` prefix.
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name} {kind}");
        assert!(name.starts_with("sentinel_"), "{name}");
    }
    (samples, types)
}

fn find<'a>(samples: &'a [Line], name: &str, labels: &[(&str, &str)]) -> &'a Line {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .unwrap_or_else(|| panic!("no {name}{labels:?}"))
}

#[tokio::test]
async fn metrics_parse_and_carry_the_capture_status() {
    let env = reference_fixture();
    let r = get(&env.router(), "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    let (samples, types) = check_exposition(&text);

    // The real parser sees every sample line, with the declared types.
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    assert_eq!(
        scrape.samples.len(),
        samples.len(),
        "the parser skipped lines"
    );
    for s in &scrape.samples {
        let (kind, value) = match s.value {
            Value::Counter(v) => ("counter", v),
            Value::Gauge(v) => ("gauge", v),
            ref other => panic!("{}: unexpected {other:?}", s.metric),
        };
        assert_eq!(
            types.get(&s.metric).map(String::as_str),
            Some(kind),
            "{}",
            s.metric
        );
        let labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let strict = samples
            .iter()
            .find(|l| l.name == s.metric && l.labels == labels)
            .unwrap_or_else(|| panic!("{} {labels:?} not found strictly", s.metric));
        assert_eq!(strict.value, value, "{}", s.metric);
        assert!(scrape.docs.contains_key(&s.metric), "HELP of {}", s.metric);
    }

    let expected_types = [
        ("sentinel_bytes_total", "counter"),
        ("sentinel_packets_total", "counter"),
        ("sentinel_wire_bytes_total", "counter"),
        ("sentinel_ignored_packets_total", "counter"),
        ("sentinel_capture_errors_total", "counter"),
        ("sentinel_capture_drops_total", "counter"),
        ("sentinel_capture_up", "gauge"),
        ("sentinel_capture_repairs_total", "counter"),
        ("sentinel_environment_errors_total", "counter"),
        ("sentinel_healthy", "gauge"),
        ("sentinel_remote_map_entries", "gauge"),
        ("sentinel_last_flush_timestamp_seconds", "gauge"),
        ("sentinel_flushes_total", "counter"),
        ("sentinel_pending_hours", "gauge"),
        ("sentinel_start_time_seconds", "gauge"),
        ("sentinel_build_info", "gauge"),
        // Billing (no QUOTA, no UPLOAD_DAILY_LIMIT here; those gauges are tested in api_cycle.rs).
        ("sentinel_today_bytes", "gauge"),
        ("sentinel_cycle_bytes", "gauge"),
        ("sentinel_cycle_used_bytes", "gauge"),
        ("sentinel_cycle_projection_bytes", "gauge"),
        ("sentinel_cycle_seconds_left", "gauge"),
        ("sentinel_cycle_start_time_seconds", "gauge"),
        // Per service, top 10 (their values are checked in api_services.rs).
        ("sentinel_service_bytes_total", "counter"),
    ];
    for (name, kind) in expected_types {
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    assert_eq!(types.len(), expected_types.len(), "{types:?}");

    // The supervisor's repair facts and health.
    assert_eq!(find(&samples, "sentinel_healthy", &[]).value, 1.0);
    assert_eq!(
        find(
            &samples,
            "sentinel_capture_repairs_total",
            &[("cause", "external_detach")]
        )
        .value,
        0.0
    );
    assert_eq!(
        find(&samples, "sentinel_environment_errors_total", &[]).value,
        0.0
    );

    // Traffic by direction and family, from the kernel totals.
    for (verdict, direction) in [(Verdict::Up, "up"), (Verdict::Down, "down")] {
        for (family, fname) in [(FAMILY_V4, "ipv4"), (FAMILY_V6, "ipv6")] {
            let want = slot_value(verdict, family);
            let labels = [("direction", direction), ("family", fname)];
            assert_eq!(
                find(&samples, "sentinel_bytes_total", &labels).value,
                want.ip_bytes as f64
            );
            assert_eq!(
                find(&samples, "sentinel_packets_total", &labels).value,
                want.packets as f64
            );
            assert_eq!(
                find(&samples, "sentinel_wire_bytes_total", &labels).value,
                want.wire_bytes as f64
            );
        }
    }
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.name == "sentinel_bytes_total")
            .count(),
        4
    );
    for (verdict, reason) in [(Verdict::Lan, "lan"), (Verdict::Transit, "transit")] {
        for (family, fname) in [(FAMILY_V4, "ipv4"), (FAMILY_V6, "ipv6")] {
            assert_eq!(
                find(
                    &samples,
                    "sentinel_ignored_packets_total",
                    &[("reason", reason), ("family", fname)]
                )
                .value,
                slot_value(verdict, family).packets as f64
            );
        }
    }
    for kind in ErrorKind::ALL {
        assert_eq!(
            find(
                &samples,
                "sentinel_capture_errors_total",
                &[("kind", kind.name())]
            )
            .value,
            error_value(kind) as f64
        );
    }
    let one = |name: &str, labels: &[(&str, &str)]| find(&samples, name, labels).value;
    assert_eq!(one("sentinel_capture_drops_total", &[]), 3.0);
    assert_eq!(one("sentinel_capture_up", &[("backend", "ebpf")]), 1.0);
    assert_eq!(one("sentinel_remote_map_entries", &[]), 17.0);
    // The fixture's flush, on the store's frozen clock.
    assert_eq!(
        one("sentinel_last_flush_timestamp_seconds", &[]),
        NOW as f64
    );
    assert_eq!(one("sentinel_flushes_total", &[("result", "ok")]), 1.0);
    assert_eq!(one("sentinel_flushes_total", &[("result", "failed")]), 0.0);
    assert_eq!(one("sentinel_pending_hours", &[]), 1.0);
    assert_eq!(one("sentinel_start_time_seconds", &[]), (NOW - 100) as f64);
    assert_eq!(
        one(
            "sentinel_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("backend", "ebpf"),
                ("tz", "Asia/Shanghai")
            ]
        ),
        1.0
    );
}

#[tokio::test]
async fn capture_up_follows_the_state_and_labels_are_escaped() {
    let env = reference_fixture();
    sentinel::status::update(&env.capture, |c| {
        c.state = sentinel::status::CaptureState::Down("gone".into());
        // Not a real backend name: a label value needing every escape of the format.
        c.backend = "af\"pa\\ck\net";
    });
    let text = get(&env.router(), "/metrics").await.text();
    let (samples, _) = check_exposition(&text);
    let up = find(
        &samples,
        "sentinel_capture_up",
        &[("backend", "af\"pa\\ck\net")],
    );
    assert_eq!(up.value, 0.0);
    assert!(
        text.contains(r#"sentinel_capture_up{backend="af\"pa\\ck\net"} 0"#),
        "{text}"
    );
}

#[test]
fn the_strict_line_parser_rejects_what_prometheus_rejects() {
    for bad in [
        "1metric 1",
        "metric",
        "metric{a=\"1\" 1",
        "metric{a=1} 1",
        "metric{__a=\"1\"} 1",
        "metric{a=\"\\x\"} 1",
        "metric{a=\"1\",a=\"2\"} 1",
        "metric one",
        "metric 1 2 3",
    ] {
        assert!(parse_sample(bad).is_err(), "{bad:?} accepted");
    }
    let line = parse_sample("m_total{a=\"x\\\"y\",b=\"\"} 12 1700000000000").expect("valid");
    assert_eq!(line.labels["a"], "x\"y");
    assert_eq!(line.value, 12.0);
}
