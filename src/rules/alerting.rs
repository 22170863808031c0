//! The alert state machine, as Prometheus's `rules/alerting.go` (2.42) runs it.
//!
//! One alert per output label set. A new result is `pending` from its first
//! evaluation; it becomes `firing` once it has been active for `for`. When its series
//! vanishes a pending alert is dropped and a firing one resolves — unless
//! `keep_firing_for` holds it firing a while longer. Resolved alerts are kept for 15
//! minutes so that the resolve can still be delivered.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use promql_parser::parser::Expr;

use std::sync::Arc;

use super::template::{Env, External, Template};
use crate::promql::{self, Value};
use crate::store::labels::NAME;
use crate::store::{Labels, Store};

/// How long a resolved alert is kept (Prometheus's `resolvedRetention`).
pub(crate) const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Resolved, kept for the resolve notification.
    Inactive,
    /// Active, waiting out `for`.
    Pending,
    /// Active for at least `for`.
    Firing,
}

/// One alert of a rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    /// Its labels: the sample's (name dropped), the rule's, and `alertname`.
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: Vec<(String, String)>,
    /// Its state.
    pub state: State,
    /// The expression's value at the last evaluation where it was active.
    #[serde(with = "crate::float")]
    pub value: f64,
    /// When it became active (ms).
    pub active_at: i64,
    /// When it started firing (ms).
    pub fired_at: Option<i64>,
    /// When it resolved (ms).
    pub resolved_at: Option<i64>,
    /// Since when `keep_firing_for` holds it (ms).
    pub keep_firing_since: Option<i64>,
}

/// An alerting rule and its alerts.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    /// The alert name.
    pub name: String,
    /// The expression.
    pub expr: Expr,
    /// The expression as written, for messages and pages.
    pub expr_text: String,
    /// `for`, in ms.
    pub hold_ms: i64,
    /// `keep_firing_for`, in ms.
    pub keep_firing_for_ms: i64,
    /// Label templates.
    pub labels: Vec<(String, Template)>,
    /// Annotation templates.
    pub annotations: Vec<(String, Template)>,
    /// Alerts by label set.
    pub active: HashMap<Labels, Alert>,
    /// The external labels and URL its templates see.
    pub external: Arc<External>,
}

impl AlertingRule {
    /// A rule with no alerts yet.
    pub fn new(
        name: &str,
        expr: Expr,
        expr_text: String,
        hold_ms: i64,
        keep_firing_for_ms: i64,
        labels: Vec<(String, Template)>,
        annotations: Vec<(String, Template)>,
    ) -> AlertingRule {
        AlertingRule {
            name: name.to_string(),
            expr,
            expr_text,
            hold_ms,
            keep_firing_for_ms,
            labels,
            annotations,
            active: HashMap::default(),
            external: Arc::default(),
        }
    }

    /// Evaluates the rule at `ts` (ms) and advances every alert's state.
    pub fn eval(&mut self, store: &Store, ts: i64, limit: u64) -> Result<(), String> {
        let samples = match promql::evaluate(&self.expr, store, ts).map_err(|e| e.to_string())? {
            Value::Vector(v) => v,
            Value::Scalar(v) => vec![promql::Sample {
                labels: Labels::default(),
                value: v,
            }],
            _ => return Err("an alerting rule must produce a vector".into()),
        };
        let mut seen: HashSet<Labels> =
            HashSet::with_capacity_and_hasher(samples.len(), Default::default());
        let env = Env {
            store: Some(store),
            ts,
            external_labels: &self.external.labels,
            external_url: &self.external.url,
        };
        for s in samples {
            let mut labels = s.labels.without_name();
            for (k, t) in &self.labels {
                labels = labels.with(k, &t.expand_in(&env, &s.labels, s.value));
            }
            labels = labels.with("alertname", &self.name);
            let annotations: Vec<(String, String)> = self
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), t.expand_in(&env, &s.labels, s.value)))
                .collect();
            if !seen.insert(labels.clone()) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            match self.active.get_mut(&labels) {
                Some(a) if a.state != State::Inactive => {
                    a.value = s.value;
                    a.annotations = annotations;
                }
                _ => {
                    self.active.insert(
                        labels.clone(),
                        Alert {
                            labels,
                            annotations,
                            state: State::Pending,
                            value: s.value,
                            active_at: ts,
                            fired_at: None,
                            resolved_at: None,
                            keep_firing_since: None,
                        },
                    );
                }
            }
        }
        let mut active_count = 0u64;
        let keep_for = self.keep_firing_for_ms;
        let hold = self.hold_ms;
        self.active.retain(|labels, a| {
            if !seen.contains(labels) {
                let mut keep_firing = false;
                if a.state == State::Firing && keep_for > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts.saturating_sub(since) < keep_for;
                }
                if a.state == State::Pending
                    || a.resolved_at
                        .is_some_and(|r| ts.saturating_sub(r) > RESOLVED_RETENTION_MS)
                {
                    return false;
                }
                if a.state != State::Inactive && !keep_firing {
                    a.state = State::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    return true;
                }
            } else {
                a.keep_firing_since = None;
            }
            active_count += 1;
            if a.state == State::Pending && ts.saturating_sub(a.active_at) >= hold {
                a.state = State::Firing;
                a.fired_at = Some(ts);
            }
            true
        });
        if limit > 0 && active_count > limit {
            self.active.clear();
            return Err(format!(
                "exceeded limit of {limit} with {active_count} alerts"
            ));
        }
        Ok(())
    }

    /// The `ALERTS` and `ALERTS_FOR_STATE` samples of the pending and firing alerts.
    pub fn series(&self) -> Vec<(Labels, f64)> {
        let mut out = Vec::with_capacity(self.active.len() * 2);
        for a in self.active.values() {
            let state = match a.state {
                State::Pending => "pending",
                State::Firing => "firing",
                State::Inactive => continue,
            };
            out.push((a.labels.with(NAME, "ALERTS").with("alertstate", state), 1.0));
            out.push((
                a.labels.with(NAME, "ALERTS_FOR_STATE"),
                a.active_at as f64 / 1000.0,
            ));
        }
        out
    }

    /// Alerts that are pending or firing.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active.values().filter(|a| a.state != State::Inactive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(hold_ms: i64, keep_ms: i64) -> AlertingRule {
        AlertingRule::new(
            "Down",
            promql::parse("up == 0").unwrap(),
            "up == 0".into(),
            hold_ms,
            keep_ms,
            vec![("severity".into(), Template::parse("critical").unwrap())],
            vec![(
                "summary".into(),
                Template::parse("{{ $labels.job }} down").unwrap(),
            )],
        )
    }

    fn state(r: &AlertingRule) -> Option<State> {
        r.active.values().next().map(|a| a.state)
    }

    #[test]
    fn pending_firing_resolved_and_kept_15_minutes() {
        let mut store = Store::new(100, i64::MAX);
        let up = Labels::from_pairs("up", &[("job", "app")]);
        let mut r = rule(60_000, 0);
        for (t, v) in [(0, 0.0), (30_000, 0.0), (60_000, 0.0), (90_000, 1.0)] {
            store.append(&up, t, v).unwrap();
        }
        r.eval(&store, 0, 0).unwrap();
        assert_eq!(state(&r), Some(State::Pending));
        assert_eq!(r.series().len(), 2);
        r.eval(&store, 30_000, 0).unwrap();
        assert_eq!(state(&r), Some(State::Pending));
        r.eval(&store, 60_000, 0).unwrap();
        assert_eq!(state(&r), Some(State::Firing));
        let a = r.alerts().next().unwrap();
        assert_eq!(
            a.labels.to_string(),
            r#"{alertname="Down", job="app", severity="critical"}"#
        );
        assert_eq!(
            a.annotations,
            vec![("summary".to_string(), "app down".to_string())]
        );
        r.eval(&store, 90_000, 0).unwrap();
        assert_eq!(state(&r), Some(State::Inactive));
        assert!(r.series().is_empty());
        r.eval(&store, 90_000 + RESOLVED_RETENTION_MS, 0).unwrap();
        assert_eq!(state(&r), Some(State::Inactive), "kept for 15 minutes");
        r.eval(&store, 90_001 + RESOLVED_RETENTION_MS, 0).unwrap();
        assert_eq!(state(&r), None);
    }

    #[test]
    fn a_pending_alert_whose_series_vanishes_is_dropped() {
        let mut store = Store::new(100, i64::MAX);
        let up = Labels::from_pairs("up", &[("job", "app")]);
        store.append(&up, 0, 0.0).unwrap();
        store.append(&up, 10_000, 1.0).unwrap();
        let mut r = rule(60_000, 0);
        r.eval(&store, 0, 0).unwrap();
        r.eval(&store, 10_000, 0).unwrap();
        assert_eq!(state(&r), None);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let mut store = Store::new(100, i64::MAX);
        let up = Labels::from_pairs("up", &[("job", "app")]);
        store.append(&up, 0, 0.0).unwrap();
        store.append(&up, 10_000, 1.0).unwrap();
        let mut r = rule(0, 30_000);
        r.eval(&store, 0, 0).unwrap();
        assert_eq!(state(&r), Some(State::Firing));
        r.eval(&store, 10_000, 0).unwrap();
        assert_eq!(state(&r), Some(State::Firing));
        r.eval(&store, 39_999, 0).unwrap();
        assert_eq!(state(&r), Some(State::Firing));
        r.eval(&store, 40_000, 0).unwrap();
        assert_eq!(state(&r), Some(State::Inactive));
    }
}
