//! The words of each alert in zh-CN and English, and the webhook's JSON payload (its schema is
//! documented in docs/alerts.md). Knows nothing of delivery.

use serde_json::json;

use super::{
    engine::{Alert, AlertKind},
    notify::{Lang, Notice},
    report::Report,
    settings::BillingConfig,
};
use crate::timebucket::Zone;

/// Version of the webhook payload schema.
pub const SCHEMA_VERSION: u32 = 1;

fn pct(v: f64) -> String {
    format!("{v:.1}%")
}

/// The notice of `alert`.
pub fn notice(alert: &Alert, report: &Report, config: &BillingConfig, zone: Zone) -> Notice {
    let u = |b: u64| config.units.format(b);
    let f = &report.figures;
    let quota = f.quota.map(u).unwrap_or_else(|| "-".into());
    let percent = f.percent.map(pct).unwrap_or_else(|| "-".into());
    let cycle = format!(
        "{} – {}",
        report.cycle.start,
        report.cycle.end.pred_opt().unwrap_or(report.cycle.end)
    );
    let (title, body) = match (alert.kind, config.lang) {
        (AlertKind::Quota, Lang::En) => (
            format!("Data quota {}% reached", alert.threshold),
            format!(
                "{} of {quota} used ({percent}) in the billing cycle {cycle}. Projection to the cycle's end: {}. Safe daily budget for the {} days left: {}.",
                u(f.used),
                u(f.projection),
                f.days_left,
                f.safe_daily_budget.map(u).unwrap_or_else(|| "-".into())
            ),
        ),
        (AlertKind::Quota, Lang::Zh) => (
            format!("流量已达套餐的 {}%", alert.threshold),
            format!(
                "本计费周期（{cycle}）已用 {} / {quota}（{percent}）。按当前速度到周期结束预计 {}。剩余 {} 天，每日安全额度 {}。",
                u(f.used),
                u(f.projection),
                f.days_left,
                f.safe_daily_budget.map(u).unwrap_or_else(|| "-".into())
            ),
        ),
        (AlertKind::Projection, Lang::En) => (
            "Projected to exceed the data quota".to_owned(),
            format!(
                "At the current pace the billing cycle {cycle} ends at {} of {quota} ({} used so far). Keep to {} a day to stay within it.",
                u(f.projection),
                u(f.used),
                f.safe_daily_budget.map(u).unwrap_or_else(|| "-".into())
            ),
        ),
        (AlertKind::Projection, Lang::Zh) => (
            "预计将超出流量套餐".to_owned(),
            format!(
                "按当前速度，本计费周期（{cycle}）预计用到 {}，超过套餐 {quota}（已用 {}）。每天控制在 {} 以内可不超额。",
                u(f.projection),
                u(f.used),
                f.safe_daily_budget.map(u).unwrap_or_else(|| "-".into())
            ),
        ),
        (AlertKind::UploadDaily, Lang::En) => (
            "Daily upload limit reached".to_owned(),
            format!(
                "{} uploaded today ({}), over the limit of {}. ISPs may throttle lines whose upload looks like PCDN.",
                u(report.today_traffic.up.ip_bytes),
                report.today,
                u(alert.threshold)
            ),
        ),
        (AlertKind::UploadDaily, Lang::Zh) => (
            "今日上传已达上限".to_owned(),
            format!(
                "今天（{}）已上传 {}，超过设定的 {}。上传量过大可能被运营商判定为 PCDN 而限速。",
                report.today,
                u(report.today_traffic.up.ip_bytes),
                u(alert.threshold)
            ),
        ),
        (AlertKind::UploadRate, Lang::En) => (
            "Sustained heavy upload".to_owned(),
            format!(
                "Upload has stayed above {}/s for {} minutes (now {}/s).",
                u(alert.threshold),
                alert.duration_s / 60,
                u(alert.value)
            ),
        ),
        (AlertKind::UploadRate, Lang::Zh) => (
            "持续大量上传".to_owned(),
            format!(
                "上传速度已连续 {} 分钟高于 {}/s（当前 {}/s）。",
                alert.duration_s / 60,
                u(alert.threshold),
                u(alert.value)
            ),
        ),
        (AlertKind::Test, Lang::En) => (
            "NetTraffic-Sentinel test message".to_owned(),
            format!("This channel works. Current billing cycle: {cycle}, quota {quota}."),
        ),
        (AlertKind::Test, Lang::Zh) => (
            "NetTraffic-Sentinel 测试消息".to_owned(),
            format!("此通知渠道工作正常。当前计费周期：{cycle}，套餐 {quota}。"),
        ),
    };
    let rfc = |t| super::local_rfc3339(zone, t);
    let payload = json!({
        "version": SCHEMA_VERSION,
        "kind": alert.kind.name(),
        "threshold": alert.threshold,
        "threshold_unit": alert.kind.threshold_unit(),
        "value": alert.value,
        "used": f.used,
        "quota": f.quota,
        "basis": config.basis.name(),
        "percent": f.percent,
        "projection": f.projection,
        "cycle": { "start": rfc(report.cycle.start_unix), "end": rfc(report.cycle.end_unix) },
        "period": alert.period,
        "today_upload": report.today_traffic.up.ip_bytes,
        "at": rfc(report.now),
        "lang": config.lang.tag(),
        "title": title,
        "message": body,
    });
    Notice {
        title,
        body,
        payload,
    }
}
