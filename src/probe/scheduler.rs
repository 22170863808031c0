//! Runs every probe on its own interval, bounded by its own timeout.
//!
//! Each probe is a task of its own, so a hung target costs its probe the timeout and
//! delays no other probe. Start times are spread: each probe's first check waits a
//! random part of `min(interval, 1 s)`, so probes with the same interval do not fire
//! together. A check that overruns its slot delays the next one rather than bunching
//! checks up (`MissedTickBehavior::Delay`).
//!
//! Between ticks the scheduler also waits on [`Probe::lost`]: when a kept Redis or
//! PostgreSQL connection is closed by the server, it checks at once instead of up to
//! an interval later, and the next tick comes an interval after that check.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::{AnyProbe, Observation, Probe};

/// One finished check, sent to the health stage.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which configuration the probe belongs to (bumped by each reload).
    pub generation: u64,
    /// Index of the probe in the config.
    pub probe: usize,
    /// When the check started (wall clock, for `/status`).
    pub started: DateTime<Utc>,
    /// How long it took (monotonic clock); the timeout when it timed out.
    pub duration: Duration,
    /// What it saw.
    pub observation: Observation,
}

/// What the scheduler needs of one probe.
pub struct Scheduled {
    /// The probe.
    pub probe: Arc<AnyProbe>,
    /// Time between check starts.
    pub interval: Duration,
    /// Longest a check may take.
    pub timeout: Duration,
}

/// Starts one task per probe; they run until the returned set is dropped or aborted,
/// or until the receiving side of `reports` is gone.
pub fn start(
    probes: Vec<Scheduled>,
    reports: mpsc::Sender<Report>,
    generation: u64,
    supervisor: &std::sync::Arc<crate::supervise::Supervisor>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for (index, s) in probes.into_iter().enumerate() {
        let name = format!("probe task {index}");
        tasks.spawn(crate::supervise::stage(
            supervisor,
            name,
            run(generation, index, s, reports.clone()),
        ));
    }
    tasks
}

/// Runs one check bounded by `timeout`.
pub async fn check_once(probe: &AnyProbe, timeout: Duration) -> (Duration, Observation) {
    let start = Instant::now();
    let observation = match tokio::time::timeout(timeout, probe.check()).await {
        Ok(o) => o,
        Err(_) => Observation::failed(format!(
            "{}: no answer within the timeout of {}",
            probe.target(),
            crate::settings::duration::format(timeout)
        )),
    };
    (start.elapsed(), observation)
}

/// The most a first check (or scrape) waits: `min(interval, 1 s)`.
pub(crate) fn first_delay_bound(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(1))
}

/// Ticks every `interval`, the first after a random part of
/// [`first_delay_bound`], never bunching up after an overrun. Probes and scrapes
/// both run on these.
pub(crate) fn jittered_ticks(interval: Duration) -> tokio::time::Interval {
    let spread = first_delay_bound(interval).as_millis() as u64;
    let first = Instant::now() + Duration::from_millis(fastrand::u64(0..spread.max(1)));
    let mut ticks = tokio::time::interval_at(first, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

async fn run(generation: u64, index: usize, s: Scheduled, reports: mpsc::Sender<Report>) {
    let mut ticks = jittered_ticks(s.interval);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = s.probe.lost() => ticks.reset(),
        }
        let started = Utc::now();
        let (duration, observation) = check_once(&s.probe, s.timeout).await;
        let report = Report {
            generation,
            probe: index,
            started,
            duration,
            observation,
        };
        if reports.send(report).await.is_err() {
            return;
        }
    }
}
