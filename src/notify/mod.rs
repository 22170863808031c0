//! Delivery: the outbox and the notifiers (SNS, PagerDuty Events v2, webhook).
//!
//! The router decides *what* to send and writes it to the [`outbox::Outbox`] in the
//! same synced transaction that records it as sent, so a crash can neither lose a page
//! nor send it twice from a fresh start. One [`worker`] per integration then delivers
//! that integration's notifications in order (a resolve never overtakes its page),
//! retrying with exponential backoff and jitter on errors that can succeed later and
//! dropping — loudly, counted — those that cannot. A slow or dead receiver delays only
//! its own queue, never another receiver, the probes or the evaluation.
//!
//! Adding a kind is one file (`src/notify/<kind>.rs`: settings, rendering, sending),
//! one variant of [`IntegrationSpec`] and one match arm in [`Integration::send`].

pub mod lease;
pub mod outbox;
pub mod pagerduty;
pub mod sns;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use outbox::Outbox;

use crate::peer::SendError;

/// One alert's change, frozen when the router decided to send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Stable per alert label set and environment: the SNS `AlarmName` and the
    /// PagerDuty `dedup_key`, so a resolve finds its incident and a second sidecar
    /// or a restart never opens another.
    pub alarm_name: String,
    /// Hex digest of the label set (Alertmanager's `fingerprint`).
    pub fingerprint: String,
    /// `firing` (ALARM) or not (OK).
    pub firing: bool,
    /// Why it is sent: `first`, `repeat`, `resolved`.
    pub reason: String,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// Its expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// The expression's last value.
    #[serde(with = "crate::float")]
    pub value: f64,
    /// The rule's expression.
    pub expr: String,
    /// The rule's `for`, in seconds.
    #[serde(with = "crate::float")]
    pub for_seconds: f64,
    /// When it became active.
    pub starts_at: DateTime<Utc>,
    /// When it resolved.
    pub ends_at: Option<DateTime<Utc>>,
    /// When the state changed (firing or resolved).
    pub changed_at: DateTime<Utc>,
    /// Vigil's environment.
    pub environment: String,
}

impl AlertEvent {
    /// `alertname`.
    pub fn alertname(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// `severity`, or "" when the rule sets none.
    pub fn severity(&self) -> &str {
        self.labels
            .get("severity")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The summary annotation, or the alert name.
    pub fn summary(&self) -> String {
        self.annotations
            .get("summary")
            .cloned()
            .unwrap_or_else(|| self.alertname().to_string())
    }
}

/// A notification waiting in the outbox for one integration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The integration: `receiver/kind`, e.g. `critical/sns`.
    pub target: String,
    /// The receiver's name.
    pub receiver: String,
    /// The alert group's key.
    pub group_key: String,
    /// The changes it carries (one for SNS and PagerDuty, the group's for a webhook).
    pub events: Vec<AlertEvent>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

/// An integration's validated settings, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum IntegrationSpec {
    /// AWS SNS, CloudWatch-alarm-shaped.
    Sns(sns::SnsSpec),
    /// PagerDuty Events API v2.
    PagerDuty(pagerduty::PagerDutySpec),
    /// Alertmanager-compatible webhook (payload version 4).
    Webhook(webhook::WebhookSpec),
}

impl IntegrationSpec {
    /// The kind's name, the second half of a target.
    pub fn kind(&self) -> &'static str {
        match self {
            IntegrationSpec::Sns(_) => "sns",
            IntegrationSpec::PagerDuty(_) => "pagerduty",
            IntegrationSpec::Webhook(_) => "webhook",
        }
    }

    /// Whether resolves are sent.
    pub fn send_resolved(&self) -> bool {
        match self {
            IntegrationSpec::Sns(s) => s.send_resolved,
            IntegrationSpec::PagerDuty(s) => s.send_resolved,
            IntegrationSpec::Webhook(s) => s.send_resolved,
        }
    }

    /// Whether each alert change goes out on its own (SNS, PagerDuty) rather than
    /// one message per group (webhook).
    pub fn per_alert(&self) -> bool {
        !matches!(self, IntegrationSpec::Webhook(_))
    }
}

/// A receiver's client: one file per kind, one variant of [`Integration`].
pub trait Notifier: Send + Sync + 'static {
    /// Delivers one notification; the caller retries what is retryable.
    fn send(&self, n: &Notification) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// A built integration, ready to send; static dispatch over the kinds.
pub enum Integration {
    /// SNS.
    Sns(sns::SnsNotifier),
    /// PagerDuty.
    PagerDuty(pagerduty::PagerDutyNotifier),
    /// Webhook.
    Webhook(webhook::WebhookNotifier),
}

impl Integration {
    /// Builds the client for `spec`; `timeout` bounds every attempt. Fails only
    /// when the platform refuses an HTTP client.
    pub async fn build(
        spec: &IntegrationSpec,
        timeout: Duration,
        external_url: &str,
    ) -> Result<Integration, String> {
        Ok(match spec {
            IntegrationSpec::Sns(s) => {
                Integration::Sns(sns::SnsNotifier::new(s.clone(), timeout).await)
            }
            IntegrationSpec::PagerDuty(s) => Integration::PagerDuty(
                pagerduty::PagerDutyNotifier::new(s.clone(), timeout, external_url)?,
            ),
            IntegrationSpec::Webhook(s) => Integration::Webhook(webhook::WebhookNotifier::new(
                s.clone(),
                timeout,
                external_url,
            )?),
        })
    }
}

impl Notifier for Integration {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        match self {
            Integration::Sns(x) => x.send(n).await,
            Integration::PagerDuty(x) => x.send(n).await,
            Integration::Webhook(x) => x.send(n).await,
        }
    }
}

/// How deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub initial: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` failed attempts: doubling from `initial` up to
    /// `max`, with "equal jitter" (half fixed, half random) so that sidecars that
    /// failed together do not retry together.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// What `/status` and `/metrics` show of one integration's queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetStats {
    /// Notifications waiting.
    pub depth: usize,
    /// When the oldest waiting one was queued.
    pub oldest: Option<DateTime<Utc>>,
    /// Delivery attempts since the start.
    pub attempts: u64,
    /// Notifications delivered since the start.
    pub delivered: u64,
    /// Failed attempts since the start.
    pub failures: u64,
    /// Notifications dropped because the receiver refused them for good.
    pub dropped: u64,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the last delivery succeeded.
    pub last_success: Option<DateTime<Utc>>,
}

/// A delivery's outcome, for the incident log ([`crate::history`]): one per
/// notification delivered, refused for good, or failing for the first time.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// The integration, `receiver/kind`.
    pub target: String,
    /// When it was known.
    pub at: DateTime<Utc>,
    /// `None` when delivered, else why not.
    pub error: Option<String>,
    /// What it carried: alarm name, firing or resolved, and `severity`.
    pub alerts: Vec<(String, bool, String)>,
}

/// Where delivery workers tell what happened to each notification. Never waits: a
/// full journal loses the record (counted), never a page.
#[derive(Debug, Clone)]
pub struct Journal {
    /// The history stage's queue.
    tx: tokio::sync::mpsc::Sender<Delivered>,
    /// Records the queue could not take.
    lost: Arc<std::sync::atomic::AtomicU64>,
}

impl Journal {
    /// A journal and the receiving end; `capacity` records may wait.
    pub fn new(capacity: usize) -> (Journal, tokio::sync::mpsc::Receiver<Delivered>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        (
            Journal {
                tx,
                lost: Arc::default(),
            },
            rx,
        )
    }

    /// Hands a record over, or counts it lost.
    pub fn record(&self, d: Delivered) {
        if self.tx.try_send(d).is_err() {
            self.lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Records lost so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn tell(&self, target: &str, n: &Notification, error: Option<String>) {
        self.record(Delivered {
            target: target.to_string(),
            at: Utc::now(),
            error,
            alerts: n
                .events
                .iter()
                .map(|e| (e.alarm_name.clone(), e.firing, e.severity().to_string()))
                .collect(),
        });
    }
}

/// Per-integration statistics, shared by the workers and the API.
pub type Stats = Arc<Mutex<BTreeMap<String, TargetStats>>>;

/// What a delivery worker is handed besides its integration.
pub struct WorkerLink {
    /// Notified when the router queues something.
    pub wake: Arc<Notify>,
    /// Set to `true` to retire the worker (a reload changed its integration): it
    /// finishes the delivery in flight, never cut short, and ends.
    pub retire: tokio::sync::watch::Receiver<bool>,
    /// Held while the worker runs: the worker that replaces a retired one waits for
    /// it, so one target never has two deliveries in flight.
    pub turn: Arc<tokio::sync::Mutex<()>>,
}

/// Delivers `target`'s notifications from `outbox` in order, until the task is
/// dropped or retired through `link`.
pub async fn worker(
    target: String,
    integration: Integration,
    outbox: Arc<Outbox>,
    mut link: WorkerLink,
    backoff: Backoff,
    stats: Stats,
    journal: Option<Journal>,
) -> crate::supervise::Ended {
    use crate::supervise::Ended;
    let _turn = link.turn.clone().lock_owned().await;
    let mut failures: u32 = 0;
    loop {
        if *link.retire.borrow_and_update() {
            return Ended::Asked;
        }
        // Registered before looking, so a wake between the look and the wait is kept.
        let woken = link.wake.notified();
        let head = {
            let outbox = outbox.clone();
            let target = target.clone();
            tokio::task::spawn_blocking(move || outbox.head(&target)).await
        };
        let (id, n) = match head {
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => {
                update(&stats, &target, |s| {
                    s.depth = 0;
                    s.oldest = None;
                });
                tokio::select! {
                    () = woken => {}
                    // The router gone: its set of workers is being dropped.
                    r = link.retire.changed() => if r.is_err() { return Ended::Unasked },
                }
                continue;
            }
            Ok(Err(e)) => {
                tracing::error!(message = "Cannot read the outbox.", target = %target, error = %e);
                tokio::select! {
                    () = tokio::time::sleep(backoff.max) => {}
                    // The router gone: its set of workers is being dropped.
                    r = link.retire.changed() => if r.is_err() { return Ended::Unasked },
                }
                continue;
            }
            Err(_) => return Ended::Unasked,
        };
        update(&stats, &target, |s| s.attempts += 1);
        match integration.send(&n).await {
            Ok(()) => {
                failures = 0;
                tracing::info!(
                    message = "Delivered a notification.",
                    target = %target,
                    alerts = %n.events.iter().map(|e| format!("{} {}", e.alarm_name, if e.firing { "ALARM" } else { "OK" })).collect::<Vec<_>>().join(", "),
                    queued_for_seconds = (Utc::now() - n.created_at).num_milliseconds() as f64 / 1000.0,
                );
                remove(&outbox, id, &target).await;
                if let Some(j) = &journal {
                    j.tell(&target, &n, None);
                }
                update(&stats, &target, |s| {
                    s.delivered += 1;
                    s.last_error = None;
                    s.last_success = Some(Utc::now());
                });
            }
            Err(e) if !e.retryable => {
                failures = 0;
                tracing::error!(message = "The receiver refused a notification for good; dropping it.", target = %target, error = %e);
                remove(&outbox, id, &target).await;
                if let Some(j) = &journal {
                    j.tell(&target, &n, Some(format!("refused for good: {}", e.reason)));
                }
                update(&stats, &target, |s| {
                    s.failures += 1;
                    s.dropped += 1;
                    s.last_error = Some(e.reason.clone());
                });
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1
                    && let Some(j) = &journal
                {
                    j.tell(&target, &n, Some(format!("{}; retrying", e.reason)));
                }
                let wait = backoff.delay(failures);
                tracing::warn!(message = "Delivery failed; will retry.", target = %target, attempt = failures, retry_in_seconds = wait.as_secs_f64(), error = %e);
                update(&stats, &target, |s| {
                    s.failures += 1;
                    s.last_error = Some(e.reason.clone());
                });
                // A retirement cuts the wait short, never a delivery: the new
                // worker retries at once with the new settings.
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    // The router gone: its set of workers is being dropped.
                    r = link.retire.changed() => if r.is_err() { return Ended::Unasked },
                }
            }
        }
        let depth = {
            let outbox = outbox.clone();
            let target = target.clone();
            tokio::task::spawn_blocking(move || outbox.depth(&target)).await
        };
        if let Ok(Ok((depth, oldest))) = depth {
            update(&stats, &target, |s| {
                s.depth = depth;
                s.oldest = oldest;
            });
        }
    }
}

async fn remove(outbox: &Arc<Outbox>, id: u64, target: &str) {
    let o = outbox.clone();
    let t = target.to_string();
    match tokio::task::spawn_blocking(move || o.remove(&t, id)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(message = "Cannot remove a delivered notification from the outbox; it may be sent again.", target = %target, error = %e)
        }
        // Never swallowed: the worker's supervisor hears of it.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => {}
    }
}

fn update(stats: &Stats, target: &str, f: impl FnOnce(&mut TargetStats)) {
    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
    f(s.entry(target.to_string()).or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        for (failures, full) in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (40, 30)] {
            let d = b.delay(failures);
            let full = Duration::from_secs(full);
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?}");
        }
    }
}
