//! Delivery of alerts to every configured channel. Each channel has its own thread and a bounded
//! queue: [`Notifier::send`] never blocks (a full queue drops the notice, counted and logged), a
//! slow or failing channel delays only itself, and each notice is retried with exponential
//! backoff ([`RetryPolicy`]). Knows nothing of cycles, the store or the async runtime.

pub mod http;
pub mod smtp;
pub mod url;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

pub use self::url::{ChannelUrl, UrlError};

/// Notices waiting per channel at most.
const QUEUE: usize = 32;

/// Message language (`NOTIFY_LANG`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// `zh-CN`/`zh`/`cn` or `en`.
    pub fn parse(text: &str) -> Option<Lang> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "en" | "en-us" | "en-gb" | "english" => Some(Lang::En),
            "zh" | "zh-cn" | "zh-hans" | "cn" | "chinese" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The tag in payloads.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }
}

/// One message for every channel: a title and a body in the configured language, and the JSON
/// payload of the webhook.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// Short title.
    pub title: String,
    /// The human message.
    pub body: String,
    /// The `ALERT_WEBHOOK` body (schema in docs/alerts.md).
    pub payload: serde_json::Value,
}

/// How often and how patiently a notice is retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Bound of one attempt.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(15),
        }
    }
}

/// Delivery counters of one channel.
#[derive(Debug, Default)]
pub struct ChannelStats {
    /// Notices delivered.
    pub delivered: AtomicU64,
    /// Failed attempts (each retry counts).
    pub failed_attempts: AtomicU64,
    /// Notices given up after the last attempt.
    pub given_up: AtomicU64,
    /// Notices dropped because the queue was full.
    pub dropped: AtomicU64,
}

struct Worker {
    name: String,
    queue: mpsc::SyncSender<Notice>,
    stats: Arc<ChannelStats>,
}

/// The channels and their workers.
pub struct Notifier {
    workers: Vec<Worker>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.workers.iter().map(|w| &w.name))
            .finish()
    }
}

/// Sends one notice on one channel once.
pub fn deliver(channel: &ChannelUrl, notice: &Notice, timeout: Duration) -> Result<(), String> {
    match channel {
        ChannelUrl::Smtp(target) => smtp::send(target, &notice.title, &notice.body, timeout)
            .map_err(|e| crate::error_chain(&e)),
        other => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
            let request = http::build(other, notice, now_ms).ok_or("not an HTTP channel")?;
            http::send(other, &request, timeout).map_err(|e| crate::error_chain(&e))
        }
    }
}

impl Notifier {
    /// Starts one worker thread per channel.
    pub fn start(channels: &[ChannelUrl], policy: RetryPolicy) -> Notifier {
        let mut workers = Vec::new();
        for (i, channel) in channels.iter().enumerate() {
            let (queue, inbox) = mpsc::sync_channel::<Notice>(QUEUE);
            let stats = Arc::new(ChannelStats::default());
            let name = format!("{}#{}", channel.name(), i + 1);
            let (worker_stats, worker_name, channel) =
                (stats.clone(), name.clone(), channel.clone());
            let spawned = thread::Builder::new()
                .name(format!("notify-{}", i + 1))
                .spawn(move || run_worker(&worker_name, &channel, &inbox, policy, &worker_stats));
            match spawned {
                Ok(_) => workers.push(Worker { name, queue, stats }),
                Err(e) => {
                    tracing::error!(channel = name, error = %e, "cannot start the notification worker; this channel is off")
                }
            }
        }
        Notifier { workers }
    }

    /// Queues `notice` for every channel; never blocks.
    pub fn send(&self, notice: &Notice) {
        for w in &self.workers {
            if let Err(mpsc::TrySendError::Full(_) | mpsc::TrySendError::Disconnected(_)) =
                w.queue.try_send(notice.clone())
            {
                w.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    channel = w.name,
                    title = notice.title,
                    "notification queue full; notice dropped"
                );
            }
        }
    }

    /// Channel names and their counters.
    pub fn stats(&self) -> Vec<(String, Arc<ChannelStats>)> {
        self.workers
            .iter()
            .map(|w| (w.name.clone(), w.stats.clone()))
            .collect()
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// No channel configured.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }
}

fn run_worker(
    name: &str,
    channel: &ChannelUrl,
    inbox: &mpsc::Receiver<Notice>,
    policy: RetryPolicy,
    stats: &ChannelStats,
) {
    // Ends when the notifier is dropped.
    while let Ok(notice) = inbox.recv() {
        let mut wait = policy.first_backoff;
        for attempt in 1..=policy.attempts.max(1) {
            // A panic in a client library must not end this channel's worker for good: it
            // counts as a failed attempt.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                deliver(channel, &notice, policy.timeout)
            }))
            .unwrap_or_else(|_| Err("the sender panicked".to_owned()));
            match outcome {
                Ok(()) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        channel = name,
                        attempt,
                        title = notice.title,
                        "notification delivered"
                    );
                    break;
                }
                Err(error) => {
                    stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    if attempt == policy.attempts.max(1) {
                        stats.given_up.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            channel = name,
                            attempt,
                            error,
                            title = notice.title,
                            "notification failed; giving up"
                        );
                    } else {
                        tracing::warn!(
                            channel = name,
                            attempt,
                            error,
                            retry_in_s = wait.as_secs_f64(),
                            "notification failed; retrying"
                        );
                        thread::sleep(wait);
                        wait = (wait * 2).min(policy.max_backoff);
                    }
                }
            }
        }
    }
}
