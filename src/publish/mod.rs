//! Publishing to CloudWatch: every `interval`, the configured series of the store
//! become datums (see [`aggregate`]) that a [`Sink`] sends — PutMetricData calls
//! ([`cloudwatch`]) or Embedded Metric Format lines on stdout ([`emf`]).
//!
//! ```text
//!  flusher ── every interval: snapshot from the manager → datums + vigil_heartbeat
//!     │  bounded queue (max_queued datums; past it the oldest are dropped, counted)
//!     ▼
//!  sender ── batches of ≤ 1 000 datums and ≤ 1 MB → sink; retries with backoff
//! ```
//!
//! Neither task ever waits on probing or evaluation, and nothing they do can make
//! those wait: the manager answers a snapshot request with a copy of the samples, and
//! a CloudWatch outage only grows the queue.

pub mod aggregate;
pub mod cloudwatch;
pub mod config;
pub mod emf;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot, watch};

pub use aggregate::{Datum, DatumValue, Place};
pub use config::{CloudWatchConfig, Mode, PublishSettings};

use crate::notify::Backoff;
use crate::peer::SendError;
use crate::rules::manager::Input;
use crate::supervise::{Shutdown, Stages};

/// The metric published every interval, whatever else is configured, so that a
/// CloudWatch alarm treating missing data as breaching pages when Vigil dies.
pub const HEARTBEAT: &str = crate::families::HEARTBEAT;

/// Where batches go: one file per mode, one variant of [`AnySink`].
pub trait Sink: Send + Sync + 'static {
    /// Most datums per call.
    fn max_datums(&self) -> usize;
    /// Most bytes per call, as [`Datum::size_bound`] counts them.
    fn max_bytes(&self) -> usize;
    /// Sends one batch; the caller retries what is retryable.
    fn send(&self, batch: &[Datum]) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// Any sink; static dispatch over the modes.
pub enum AnySink {
    /// `mode: api`, see [`cloudwatch::CloudWatchSink`].
    CloudWatch(cloudwatch::CloudWatchSink),
    /// `mode: emf`, see [`emf::EmfSink`].
    Emf(emf::EmfSink),
}

impl Sink for AnySink {
    fn max_datums(&self) -> usize {
        match self {
            AnySink::CloudWatch(s) => s.max_datums(),
            AnySink::Emf(s) => s.max_datums(),
        }
    }

    fn max_bytes(&self) -> usize {
        match self {
            AnySink::CloudWatch(s) => s.max_bytes(),
            AnySink::Emf(s) => s.max_bytes(),
        }
    }

    async fn send(&self, batch: &[Datum]) -> Result<(), SendError> {
        match self {
            AnySink::CloudWatch(s) => s.send(batch).await,
            AnySink::Emf(s) => s.send(batch).await,
        }
    }
}

/// What `/status` and `/metrics` show of publishing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct PublishView {
    /// `api` or `emf`.
    pub mode: String,
    /// The namespace.
    pub namespace: String,
    /// Seconds between flushes.
    #[serde(with = "crate::float")]
    pub interval_seconds: f64,
    /// Datums waiting to be sent.
    pub queued: usize,
    /// Flushes since the start.
    pub flushes: u64,
    /// Calls (or EMF lines) that succeeded.
    pub calls: u64,
    /// Datums sent.
    pub datums_sent: u64,
    /// Failed calls.
    pub errors: u64,
    /// Datums dropped: the queue was full, or CloudWatch refused a batch for good.
    pub dropped: u64,
    /// Values left out because CloudWatch cannot take them (NaN, ±Inf).
    pub skipped_values: u64,
    /// When a call last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// The last failure, if any.
    pub last_error: Option<PublishError>,
}

/// A failed call, for `/status`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PublishError {
    /// When.
    pub at: DateTime<Utc>,
    /// What CloudWatch (or the network) said.
    pub message: String,
}

/// The queue between the flusher and the sender.
struct Queue {
    /// Datums, oldest first.
    datums: Mutex<VecDeque<Datum>>,
    /// Most datums kept.
    max: usize,
    /// Wakes the sender.
    ready: Notify,
    /// Set after the last flush: the sender stops once the queue is empty.
    closed: AtomicBool,
}

impl Queue {
    /// Appends `new`, dropping the oldest past the limit; returns how many dropped.
    fn push(&self, new: Vec<Datum>) -> usize {
        let mut q = self.datums.lock().expect("queue lock");
        q.extend(new);
        let dropped = self.drop_oldest(&mut q);
        drop(q);
        self.ready.notify_one();
        dropped
    }

    /// Puts a batch that failed back at the head, dropping the oldest past the
    /// limit; returns how many dropped.
    fn unshift(&self, batch: Vec<Datum>) -> usize {
        let mut q = self.datums.lock().expect("queue lock");
        for d in batch.into_iter().rev() {
            q.push_front(d);
        }
        self.drop_oldest(&mut q)
    }

    /// Drops the oldest datums of `q` past the limit; returns how many.
    fn drop_oldest(&self, q: &mut VecDeque<Datum>) -> usize {
        let over = q.len().saturating_sub(self.max);
        q.drain(..over);
        over
    }

    /// Takes the next batch within the sink's limits.
    fn take(&self, max_datums: usize, max_bytes: usize) -> Vec<Datum> {
        let mut q = self.datums.lock().expect("queue lock");
        let n = aggregate::batch_len(q.iter(), max_datums, max_bytes);
        q.drain(..n).collect()
    }

    fn len(&self) -> usize {
        self.datums.lock().expect("queue lock").len()
    }
}

/// Builds the sink of `cfg.mode`.
pub async fn sink(cfg: &CloudWatchConfig) -> Arc<AnySink> {
    Arc::new(match cfg.mode {
        Mode::Api => AnySink::CloudWatch(cloudwatch::CloudWatchSink::new(cfg).await),
        Mode::Emf => AnySink::Emf(emf::EmfSink::stdout(cfg)),
    })
}

/// The running publisher.
pub struct Publisher {
    /// What `/status` and `/metrics` show.
    pub view: watch::Receiver<PublishView>,
}

/// Starts the flusher and the sender in `stages`. Snapshots are asked of the manager
/// through `engine`; what happens shows in the returned view. Both drain: when the
/// shutdown token fires, the flusher flushes what the last interval has so far (the
/// heartbeat included) and the sender sends the queue, so a task's last minute is not
/// lost; what the stop's deadline leaves queued is logged.
///
/// Samples are stamped when their check or scrape started and reach the store up to
/// a timeout later, so each flush covers the interval that ended `lag` ago (the
/// longest timeout and a second): every sample of it is in the store by then, and
/// none is sent twice or lost between two flushes.
pub fn start(
    cfg: CloudWatchConfig,
    place: Place,
    sink: Arc<AnySink>,
    engine: mpsc::Sender<Input>,
    lag: Duration,
    stages: &mut Stages,
) -> Publisher {
    let (view_tx, view_rx) = watch::channel(PublishView {
        mode: match cfg.mode {
            Mode::Api => "api".into(),
            Mode::Emf => "emf".into(),
        },
        namespace: cfg.namespace.clone(),
        interval_seconds: cfg.interval.as_secs_f64(),
        ..PublishView::default()
    });
    let view = Arc::new(view_tx);
    let queue = Arc::new(Queue {
        datums: Mutex::new(VecDeque::new()),
        max: cfg.max_queued,
        ready: Notify::new(),
        closed: AtomicBool::new(false),
    });
    let shutdown = stages.supervisor().shutdown();
    stages.spawn_draining(
        "the CloudWatch flusher",
        flusher(
            cfg,
            place,
            engine,
            lag,
            shutdown.clone(),
            Arc::clone(&queue),
            Arc::clone(&view),
        ),
    );
    stages.spawn_draining("the CloudWatch sender", sender(sink, queue, view, shutdown));
    Publisher { view: view_rx }
}

/// The datum of [`HEARTBEAT`].
pub fn heartbeat(cfg: &CloudWatchConfig, place: &Place, t: i64) -> Datum {
    Datum {
        name: HEARTBEAT.to_string(),
        dimensions: place.dimensions(&cfg.dimensions),
        timestamp_ms: t,
        value: DatumValue::Single(1.0),
        unit: Some("Count".to_string()),
        high_resolution: false,
    }
}

async fn flusher(
    cfg: CloudWatchConfig,
    place: Place,
    engine: mpsc::Sender<Input>,
    lag: Duration,
    mut stopping: Shutdown,
    queue: Arc<Queue>,
    view: Arc<watch::Sender<PublishView>>,
) {
    let metrics = Arc::new(cfg.metrics.clone());
    let selectors = Arc::new(
        cfg.metrics
            .iter()
            .map(|m| m.selector.clone())
            .collect::<Vec<_>>(),
    );
    let mut ticks = tokio::time::interval(cfg.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lag_ms = lag.as_millis() as i64;
    ticks.tick().await;
    let mut from = Utc::now().timestamp_millis() - lag_ms;
    loop {
        // The last flush, when stopping, takes everything up to now: nothing more
        // is coming.
        let last = tokio::select! {
            _ = ticks.tick() => false,
            () = stopping.requested() => true,
        };
        let to = Utc::now().timestamp_millis() - if last { 0 } else { lag_ms };
        let (reply, answer) = oneshot::channel();
        let asked = engine
            .send(Input::Snapshot {
                selectors: Arc::clone(&selectors),
                lookback: config::BASELINE_LOOKBACK_MS,
                from,
                to,
                reply,
            })
            .await;
        let windows = match asked {
            Ok(()) => answer.await.unwrap_or_default(),
            Err(_) => {
                // The manager is gone: nothing more to flush; let the sender finish.
                queue.closed.store(true, Ordering::SeqCst);
                queue.ready.notify_one();
                return;
            }
        };
        let mut skipped = 0;
        let expand = cfg.mode == Mode::Emf;
        let mut datums = aggregate::datums(&metrics, windows, &place, to, expand, &mut skipped);
        datums.push(heartbeat(&cfg, &place, to));
        let n = datums.len();
        let dropped = queue.push(datums);
        if dropped > 0 {
            tracing::warn!(
                message = "The CloudWatch queue is full; dropped the oldest datums.",
                dropped
            );
        }
        view.send_modify(|v| {
            v.flushes += 1;
            v.dropped += dropped as u64;
            v.skipped_values += skipped;
            v.queued = queue.len();
        });
        tracing::debug!(message = "Flushed.", datums = n, last);
        from = to;
        if last {
            queue.closed.store(true, Ordering::SeqCst);
            queue.ready.notify_one();
            return;
        }
    }
}

/// Retry waits while CloudWatch fails.
const BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(30),
};

/// The longest wait between two attempts while stopping.
const STOPPING_RETRY: Duration = Duration::from_millis(500);

async fn sender(
    sink: Arc<AnySink>,
    queue: Arc<Queue>,
    view: Arc<watch::Sender<PublishView>>,
    mut stopping: Shutdown,
) {
    let mut failures = 0u32;
    loop {
        let batch = queue.take(sink.max_datums(), sink.max_bytes());
        if batch.is_empty() {
            if queue.closed.load(Ordering::SeqCst) {
                return;
            }
            queue.ready.notified().await;
            continue;
        }
        match sink.send(&batch).await {
            Ok(()) => {
                failures = 0;
                view.send_modify(|v| {
                    v.calls += 1;
                    v.datums_sent += batch.len() as u64;
                    v.last_success = Some(Utc::now());
                    v.queued = queue.len();
                });
            }
            Err(e) => {
                failures += 1;
                let n = batch.len();
                let dropped = if e.retryable { queue.unshift(batch) } else { n };
                if e.retryable {
                    tracing::warn!(message = "Publishing to CloudWatch failed; will retry.", error = %e.reason, datums = n, failures);
                } else {
                    tracing::error!(message = "CloudWatch refused a batch; dropped it.", error = %e.reason, datums = n);
                }
                view.send_modify(|v| {
                    v.errors += 1;
                    v.dropped += dropped as u64;
                    v.queued = queue.len();
                    v.last_error = Some(PublishError {
                        at: Utc::now(),
                        message: e.reason.clone(),
                    });
                });
                if e.retryable {
                    // While stopping, retries come every half second at most, so the
                    // last flush gets its chances before the deadline; a stop also
                    // cuts a long wait short.
                    let wait = BACKOFF.delay(failures);
                    if stopping.is_requested() {
                        tokio::time::sleep(wait.min(STOPPING_RETRY)).await;
                    } else {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = stopping.requested() => {}
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(i: usize) -> Datum {
        Datum {
            name: format!("m{i}"),
            dimensions: vec![],
            timestamp_ms: i as i64,
            value: DatumValue::Single(1.0),
            unit: None,
            high_resolution: false,
        }
    }

    #[test]
    fn the_queue_keeps_the_newest_and_counts_what_it_drops() {
        let q = Queue {
            datums: Mutex::new(VecDeque::new()),
            max: 5,
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        };
        assert_eq!(q.push((0..4).map(d).collect()), 0);
        assert_eq!(q.push((4..7).map(d).collect()), 2);
        let batch = q.take(2, usize::MAX);
        assert_eq!(batch, vec![d(2), d(3)]);
        assert_eq!(q.push((7..9).map(d).collect()), 0);
        // A failed batch goes back at the head; the oldest past the limit go.
        assert_eq!(q.unshift(batch), 2);
        let rest = q.take(10, usize::MAX);
        assert_eq!(rest, (4..9).map(d).collect::<Vec<_>>());
    }
}
