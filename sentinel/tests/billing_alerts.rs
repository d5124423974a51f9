//! The alert engine with a fixed clock against a local webhook listener: each rule fires exactly
//! once per cycle (or day), nothing repeats across a restart, several thresholds crossed at once
//! send one message, and a failing channel is retried without delaying the others.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod billing_support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use billing_support::{Behaviour, FakeHttp, TestClock, local, open_store, record};
use sentinel::{
    billing::{
        BillingConfig, Engine,
        notify::{ChannelUrl, Notice, Notifier, RetryPolicy},
        units::RateRule,
    },
    meter::SpeedRing,
};

const TZ: &str = "Asia/Shanghai";
const GB: u64 = 1_000_000_000;

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        timeout: Duration::from_secs(20),
    }
}

fn config(hook: &FakeHttp) -> BillingConfig {
    BillingConfig {
        quota: Some(100 * GB),
        thresholds: vec![50, 80, 100],
        upload_daily_limit: Some(10 * GB),
        upload_rate: Some(RateRule {
            bytes_per_sec: 1_000_000,
            duration: Duration::from_secs(60),
        }),
        channels: vec![ChannelUrl::webhook(&format!("{}/hook", hook.base)).expect("url")],
        ..BillingConfig::default()
    }
}

fn engine(
    store: &Arc<sentinel::store::Store>,
    config: &BillingConfig,
    clock: &Arc<TestClock>,
) -> Engine {
    Engine::new(
        store.clone(),
        config.clone(),
        clock.clone(),
        Arc::new(Mutex::new(SpeedRing::default())),
        fast_policy(),
    )
}

fn kinds(engine: &mut Engine) -> Vec<String> {
    let mut k: Vec<String> = engine
        .tick()
        .expect("tick")
        .into_iter()
        .map(|a| format!("{}:{}", a.rule, a.period))
        .collect();
    k.sort();
    k
}

#[test]
fn each_alert_fires_once_and_never_again_after_a_restart() {
    let hook = FakeHttp::start(Behaviour::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("traffic.db");
    let clock = TestClock::at(local(TZ, "2026-06-11 12:00:00"));
    let config = config(&hook);
    let store = Arc::new(open_store(&path, TZ, clock.clone()));
    let mut e = engine(&store, &config, &clock);

    // 30 % used, projection 86 GB: nothing.
    record(&store, local(TZ, "2026-06-05 10:00:00"), 0, 30 * GB);
    store.flush_now().expect("flush");
    assert!(kinds(&mut e).is_empty());

    // Today: 11 GB up and 14 GB down (unflushed) -> 55 %, projection 157 GB, daily upload over.
    record(
        &store,
        sentinel::store::Clock::now(&*clock),
        11 * GB,
        14 * GB,
    );
    assert_eq!(
        kinds(&mut e),
        vec![
            "projection:2026-06-01",
            "quota:50:2026-06-01",
            "upload_daily:2026-06-11"
        ]
    );
    assert!(
        kinds(&mut e).is_empty(),
        "the same state fires nothing again"
    );

    // Sustained upload: 2 MB/s for 30 s is not yet 60 s; for 60 s it fires, once.
    for (i, want) in [(1, false), (2, true), (3, false)] {
        let t = clock.advance(30);
        record(&store, t, 60_000_000, 0);
        let fired = kinds(&mut e);
        assert_eq!(
            fired == vec!["upload_rate:2026-06-11".to_owned()],
            want,
            "step {i}: {fired:?}"
        );
    }

    // 85 %, then 105 %.
    record(&store, clock.advance(10), 0, 30 * GB);
    assert_eq!(kinds(&mut e), vec!["quota:80:2026-06-01"]);
    record(&store, clock.advance(10), 0, 20 * GB);
    assert_eq!(kinds(&mut e), vec!["quota:100:2026-06-01"]);

    // Every alert reached the listener exactly once, with the documented fields.
    let got = hook.wait_for(6, Duration::from_secs(20));
    let mut by_kind: HashMap<String, usize> = HashMap::new();
    for r in &got {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hook"));
        let v = r.json();
        for field in [
            "kind",
            "threshold",
            "used",
            "quota",
            "cycle",
            "message",
            "period",
            "lang",
        ] {
            assert!(v.get(field).is_some(), "{field} missing in {v}");
        }
        assert_eq!(v["cycle"]["start"], "2026-06-01T00:00:00+08:00");
        assert_eq!(v["cycle"]["end"], "2026-07-01T00:00:00+08:00");
        let key = format!("{}:{}", v["kind"].as_str().unwrap_or(""), v["threshold"]);
        *by_kind.entry(key).or_default() += 1;
    }
    let mut keys: Vec<_> = by_kind.iter().map(|(k, n)| format!("{k}x{n}")).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "quota_projection:100000000000x1",
            "quota_threshold:100x1",
            "quota_threshold:50x1",
            "quota_threshold:80x1",
            "upload_daily_limit:10000000000x1",
            "upload_sustained_rate:1000000x1",
        ]
    );

    // Restart: a new engine over the reopened database fires nothing.
    drop(e);
    let store = Arc::into_inner(store).expect("sole owner");
    store.close().expect("close");
    let store = Arc::new(open_store(&path, TZ, clock.clone()));
    let mut e = engine(&store, &config, &clock);
    assert!(kinds(&mut e).is_empty(), "nothing repeats after a restart");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hook.requests().len(), 6, "no request after the restart");

    // The next day has its own daily-upload alert; the cycle's alerts stay fired.
    clock.set(local(TZ, "2026-06-12 09:00:00"));
    record(&store, sentinel::store::Clock::now(&*clock), 10 * GB, 0);
    assert_eq!(kinds(&mut e), vec!["upload_daily:2026-06-12"]);
    // A new cycle starts over.
    clock.set(local(TZ, "2026-07-03 09:00:00"));
    record(&store, sentinel::store::Clock::now(&*clock), 0, 60 * GB);
    assert_eq!(
        kinds(&mut e),
        vec!["projection:2026-07-01", "quota:50:2026-07-01"]
    );
}

#[test]
fn thresholds_crossed_together_send_one_message() {
    let hook = FakeHttp::start(Behaviour::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::at(local(TZ, "2026-06-20 12:00:00"));
    let mut config = config(&hook);
    config.thresholds = vec![80, 95, 100];
    config.upload_daily_limit = None;
    let store = Arc::new(open_store(&dir.path().join("t.db"), TZ, clock.clone()));
    let mut e = engine(&store, &config, &clock);
    record(&store, local(TZ, "2026-06-02 10:00:00"), 0, 96 * GB);
    assert_eq!(
        kinds(&mut e),
        vec!["projection:2026-06-01", "quota:95:2026-06-01"]
    );
    // 80 was marked with it: it never fires later in this cycle.
    record(&store, clock.advance(60), 0, GB);
    assert!(kinds(&mut e).is_empty());
    assert_eq!(hook.wait_for(2, Duration::from_secs(20)).len(), 2);
}

#[test]
fn a_failing_channel_is_retried_and_delays_no_other() {
    let failing = FakeHttp::start(Behaviour {
        fail_first: 2,
        ..Behaviour::default()
    });
    // The slow channel answers after 20 s: the others must be done well before it, with margin
    // for a busy machine (the point is "not after the slow one", not a latency target).
    let slow = FakeHttp::start(Behaviour {
        delay: Duration::from_secs(20),
        ..Behaviour::default()
    });
    let healthy = FakeHttp::start(Behaviour::default());
    let channels: Vec<ChannelUrl> = [&slow, &failing, &healthy]
        .iter()
        .map(|f| ChannelUrl::webhook(&format!("{}/x", f.base)).expect("url"))
        .collect();
    let notifier = Notifier::start(&channels, fast_policy());
    let notice = Notice {
        title: "t".into(),
        body: "b".into(),
        payload: serde_json::json!({ "kind": "test" }),
    };
    let started = Instant::now();
    notifier.send(&notice);
    let queued = started.elapsed();
    let fast = healthy.wait_for(1, Duration::from_secs(20));
    let healthy_after = started.elapsed();
    let retried = failing.wait_for(3, Duration::from_secs(20));
    let failing_after = started.elapsed();
    println!(
        "send() returned after {queued:?}; healthy channel delivered after {healthy_after:?}, \
         failing one after 3 attempts at {failing_after:?}, while the slow one still answers (20 s)"
    );
    assert_eq!(fast.len(), 1);
    assert_eq!(retried.len(), 3, "two failures, then success");
    // The healthy and the retried channels were done long before the slow one answered.
    assert!(healthy_after < Duration::from_secs(15), "{healthy_after:?}");
    assert!(failing_after < Duration::from_secs(15), "{failing_after:?}");
    let stats: HashMap<String, (u64, u64)> = notifier
        .stats()
        .into_iter()
        .map(|(n, s)| {
            (
                n,
                (
                    s.delivered.load(Ordering::Relaxed),
                    s.failed_attempts.load(Ordering::Relaxed),
                ),
            )
        })
        .collect();
    assert_eq!(stats.get("webhook#2"), Some(&(1, 2)), "{stats:?}");
    assert_eq!(slow.wait_for(1, Duration::from_secs(40)).len(), 1);
}
