//! The health stage: turns probe reports into component states and an overall verdict.
//!
//! It owns the state and is its only writer; it publishes through a `watch` channel,
//! which the API reads. Time is passed in (`record(report, now)`), so the rules below
//! are tested without clocks.
//!
//! - A component is `unknown` until its first check, then `ok` or `down` by its last
//!   check.
//! - Overall: `down` when a critical component is down; `degraded` when a non-critical
//!   component is down or any is still unknown; else `ok`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::probe::Sample;
use crate::probe::scheduler::Report;
use crate::store::Labels;

/// A component's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentStatus {
    /// Not checked yet.
    Unknown,
    /// The last check succeeded.
    Ok,
    /// The last check failed.
    Down,
}

/// The verdict over all components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    /// Everything answers.
    Ok,
    /// Something non-critical is down, or not yet checked.
    Degraded,
    /// A critical component is down.
    Down,
}

/// What is known of one probed component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// The probe's name.
    pub name: String,
    /// The probe's kind (`http`, `postgres`, …).
    pub kind: String,
    /// What is probed, secrets redacted.
    pub target: String,
    /// Whether being down makes the overall status `down`.
    pub critical: bool,
    /// Time between checks, in seconds.
    #[serde(with = "crate::float")]
    pub interval_seconds: f64,
    /// The check timeout, in seconds.
    #[serde(with = "crate::float")]
    pub timeout_seconds: f64,
    /// State by the last check.
    pub status: ComponentStatus,
    /// When the last check started.
    pub last_check: Option<DateTime<Utc>>,
    /// When a check last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// Duration of the last check, in milliseconds.
    #[serde(with = "crate::float::option", default)]
    pub latency_ms: Option<f64>,
    /// Failed checks since the last success.
    pub consecutive_failures: u64,
    /// Checks run since the daemon started.
    pub checks_total: u64,
    /// Failed checks since the daemon started.
    pub failures_total: u64,
    /// Why the last failed check failed; kept after recovery until the next failure.
    pub last_error: Option<String>,
    /// Figures measured by the last check.
    pub samples: Vec<Sample>,
}

impl Component {
    /// A component not yet checked.
    pub fn new(
        name: &str,
        kind: &str,
        target: String,
        critical: bool,
        interval: Duration,
        timeout: Duration,
    ) -> Component {
        Component {
            name: name.to_string(),
            kind: kind.to_string(),
            target,
            critical,
            interval_seconds: interval.as_secs_f64(),
            timeout_seconds: timeout.as_secs_f64(),
            status: ComponentStatus::Unknown,
            last_check: None,
            last_success: None,
            latency_ms: None,
            consecutive_failures: 0,
            checks_total: 0,
            failures_total: 0,
            last_error: None,
            samples: Vec::new(),
        }
    }
}

impl Component {
    /// The component's series (with `__name__` and `probe`), as `/metrics` shows them
    /// and the series store records them. A component not yet checked has only its
    /// counters.
    pub fn series(&self) -> Vec<(Labels, f64)> {
        let probe = self.name.as_str();
        let mut out = vec![
            (
                Labels::from_pairs(crate::families::PROBE_CHECKS_TOTAL, &[("probe", probe)]),
                self.checks_total as f64,
            ),
            (
                Labels::from_pairs(crate::families::PROBE_FAILURES_TOTAL, &[("probe", probe)]),
                self.failures_total as f64,
            ),
        ];
        if self.status == ComponentStatus::Unknown {
            return out;
        }
        let pt = [("probe", probe), ("target", self.target.as_str())];
        let success = if self.status == ComponentStatus::Ok {
            1.0
        } else {
            0.0
        };
        out.push((
            Labels::from_pairs(crate::families::PROBE_SUCCESS, &pt),
            success,
        ));
        // Rounded to the microsecond: the float division would print 0.0024196939999999996.
        let seconds = (self.latency_ms.unwrap_or(0.0) * 1000.0).round() / 1e6;
        out.push((
            Labels::from_pairs(crate::families::PROBE_DURATION_SECONDS, &pt),
            seconds,
        ));
        out.push((
            Labels::from_pairs(
                crate::families::PROBE_CONSECUTIVE_FAILURES,
                &[("probe", probe)],
            ),
            self.consecutive_failures as f64,
        ));
        for s in &self.samples {
            let labels = Labels::new(
                s.labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .chain([
                        ("probe", probe),
                        (crate::store::labels::NAME, s.name.as_str()),
                    ]),
            );
            out.push((labels, s.value));
        }
        out
    }
}

/// The state of every component, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// In config order.
    pub components: Vec<Component>,
    /// When the last report arrived, to tell a stuck scheduler from a quiet one.
    pub last_report: Option<DateTime<Utc>>,
    /// The configuration generation these components belong to; reports from older
    /// probes (still in flight during a reload) are ignored.
    pub generation: u64,
}

impl Health {
    /// A state where nothing has been checked.
    pub fn new(components: Vec<Component>) -> Health {
        Health::with_generation(components, 0)
    }

    /// A state where nothing has been checked, for a configuration generation.
    pub fn with_generation(components: Vec<Component>, generation: u64) -> Health {
        Health {
            components,
            last_report: None,
            generation,
        }
    }

    /// Takes over, for every component whose name, kind, target and timings are
    /// those of a component of `old`, what `old` knew of it (a reload that left the
    /// probe as it was must not reset it to unknown).
    pub fn carry_from(&mut self, old: &Health) {
        for c in &mut self.components {
            if let Some(o) = old.components.iter().find(|o| {
                o.name == c.name
                    && o.kind == c.kind
                    && o.target == c.target
                    && o.critical == c.critical
                    && o.interval_seconds == c.interval_seconds
                    && o.timeout_seconds == c.timeout_seconds
            }) {
                *c = o.clone();
            }
        }
    }

    /// Applies one report that arrived at `now`.
    pub fn record(&mut self, report: Report, now: DateTime<Utc>) {
        self.last_report = Some(now);
        if report.generation != self.generation {
            return;
        }
        let Some(c) = self.components.get_mut(report.probe) else {
            return;
        };
        c.checks_total += 1;
        c.last_check = Some(report.started);
        c.latency_ms = Some(report.duration.as_secs_f64() * 1000.0);
        c.samples = report.observation.samples;
        match report.observation.result {
            Ok(()) => {
                c.status = ComponentStatus::Ok;
                c.last_success = Some(report.started);
                c.consecutive_failures = 0;
            }
            Err(reason) => {
                c.status = ComponentStatus::Down;
                c.consecutive_failures += 1;
                c.failures_total += 1;
                c.last_error = Some(reason);
            }
        }
    }

    /// `vigil_status` and every component's series.
    pub fn series(&self) -> Vec<(Labels, f64)> {
        let verdict = match self.overall() {
            Overall::Ok => 0.0,
            Overall::Degraded => 1.0,
            Overall::Down => 2.0,
        };
        let mut out = vec![(Labels::from_pairs(crate::families::STATUS, &[]), verdict)];
        for c in &self.components {
            out.extend(c.series());
        }
        out
    }

    /// The overall verdict.
    pub fn overall(&self) -> Overall {
        let down = |c: &&Component| c.status == ComponentStatus::Down;
        if self.components.iter().filter(down).any(|c| c.critical) {
            Overall::Down
        } else if self
            .components
            .iter()
            .any(|c| c.status != ComponentStatus::Ok)
        {
            Overall::Degraded
        } else {
            Overall::Ok
        }
    }
}

/// Applies reports as they arrive until every sender is gone, and forwards each
/// component's series to the rule manager (when there is one), flagged when the
/// component's verdict changed so that rules are evaluated at once.
pub async fn run(
    mut reports: mpsc::Receiver<Report>,
    state: watch::Sender<Health>,
    engine: Option<mpsc::Sender<crate::rules::manager::Input>>,
) {
    while let Some(report) = reports.recv().await {
        let failed = report.observation.result.is_err();
        let probe = report.probe;
        let t = report.started.timestamp_millis();
        let mut changed_to = None;
        let mut series = None;
        state.send_modify(|h| {
            if report.generation != h.generation {
                return;
            }
            let before = h.components.get(probe).map(|c| c.status);
            h.record(report, Utc::now());
            if let Some(c) = h.components.get(probe) {
                if before != Some(c.status) {
                    changed_to = Some((c.name.clone(), c.status, c.last_error.clone()));
                }
                series = Some((c.name.clone(), c.series()));
            }
        });
        if let Some((name, status, error)) = &changed_to {
            if failed {
                tracing::warn!(message = "Component is down.", component = %name, error = error.as_deref().unwrap_or(""));
            } else {
                tracing::info!(message = "Component is up.", component = %name, status = ?status);
            }
        }
        if let (Some(engine), Some((name, samples))) = (&engine, series) {
            let input = crate::rules::manager::Input::Samples {
                source: format!("probe/{name}"),
                t,
                samples,
                timed: Vec::new(),
                changed: changed_to.is_some(),
            };
            if engine.send(input).await.is_err() {
                tracing::warn!(
                    message =
                        "The rule manager has stopped; probe results no longer reach the rules."
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Observation;

    fn health() -> Health {
        let d = Duration::from_secs(1);
        Health::new(vec![
            Component::new("db", "postgres", "postgres://db".into(), true, d, d),
            Component::new("disk", "disk", "/".into(), false, d, d),
        ])
    }

    fn report(probe: usize, result: Result<(), String>) -> Report {
        Report {
            generation: 0,
            probe,
            started: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            duration: Duration::from_millis(3),
            observation: Observation {
                result,
                samples: vec![Sample::new("x", 1.0)],
            },
        }
    }

    #[test]
    fn verdicts_follow_the_components() {
        let now = DateTime::from_timestamp(1_700_000_001, 0).unwrap();
        let mut h = health();
        assert_eq!(h.overall(), Overall::Degraded, "nothing checked yet");
        h.record(report(0, Ok(())), now);
        h.record(report(1, Ok(())), now);
        assert_eq!(h.overall(), Overall::Ok);
        h.record(report(1, Err("full".into())), now);
        assert_eq!(h.overall(), Overall::Degraded);
        h.record(report(0, Err("refused".into())), now);
        h.record(report(0, Err("refused".into())), now);
        assert_eq!(h.overall(), Overall::Down);
        let db = &h.components[0];
        assert_eq!(
            (db.consecutive_failures, db.failures_total, db.checks_total),
            (2, 2, 3)
        );
        assert_eq!(db.last_error.as_deref(), Some("refused"));
        h.record(report(0, Ok(())), now);
        assert_eq!(h.components[0].consecutive_failures, 0);
        assert_eq!(
            h.components[0].last_error.as_deref(),
            Some("refused"),
            "kept for on-call"
        );
        assert_eq!(h.last_report, Some(now));
    }
}
