//! What `/status` says of the past: per component, uptime over 24 h, 7, 30 and 90
//! days, the 90 daily bars and the 24-hour latency; the incidents; the alerting
//! pipeline's heartbeat; the fleet. Built per request from the history stage's view
//! (an `Arc`, so a request copies nothing large).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::health::{Component, ComponentStatus};
use crate::history::incidents::Incident;
use crate::history::minutes::{self, ComponentHistory, Minute};
use crate::history::{HistoryView, PIPELINE_SEVERITY};
use crate::rules::alerting::State;
use crate::rules::manager::EngineView;

/// Minutes per point of the latency chart: 288 points in 24 hours.
pub const CHART_STEP_MINUTES: i64 = 5;

/// A day with less downtime than this is a blip (amber); at least this, an outage
/// (red).
pub const OUTAGE_MINUTES: f64 = 1.0;

/// The past of every component, the incidents and the pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistorySummary {
    /// Per component, in config order.
    pub components: Vec<ComponentPast>,
    /// The newest incidents, newest first.
    pub incidents: Arc<Vec<Incident>>,
    /// The alerting pipeline's heartbeat.
    pub pipeline: PipelineSummary,
    /// What of the history could not be read or written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Up to when the per-minute history is on disk.
    #[serde(default)]
    pub written_at: Option<DateTime<Utc>>,
}

/// Uptime over the usual windows, as fractions (`None`: not watched then).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Uptime {
    /// The last 24 hours, minute by minute.
    #[serde(rename = "24h", with = "crate::float::option")]
    pub h24: Option<f64>,
    /// The last 7 UTC days, today included.
    #[serde(rename = "7d", with = "crate::float::option")]
    pub d7: Option<f64>,
    /// The last 30.
    #[serde(rename = "30d", with = "crate::float::option")]
    pub d30: Option<f64>,
    /// The last 90.
    #[serde(rename = "90d", with = "crate::float::option")]
    pub d90: Option<f64>,
}

impl Uptime {
    /// The window named `24h`, `7d`, `30d` or `90d`.
    pub fn get(&self, window: &str) -> Option<Option<f64>> {
        Some(match window {
            "24h" => self.h24,
            "7d" => self.d7,
            "30d" => self.d30,
            "90d" => self.d90,
            _ => return None,
        })
    }
}

/// One UTC day of a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Minutes down.
    #[serde(with = "crate::float")]
    pub down_minutes: f64,
    /// Minutes watched (0: no data).
    #[serde(with = "crate::float")]
    pub watched_minutes: f64,
    /// Checks.
    pub checks: u64,
    /// Failed checks.
    pub failures: u64,
}

impl Day {
    /// How the day's square reads: `none` (no data), `ok`, `blip`, `outage`.
    pub fn grade(&self, down_now: bool) -> &'static str {
        if down_now || self.down_minutes >= OUTAGE_MINUTES {
            "outage"
        } else if self.down_minutes > 0.0 {
            "blip"
        } else if self.watched_minutes > 0.0 {
            "ok"
        } else {
            "none"
        }
    }
}

/// A point of the latency chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyPoint {
    /// The start of its span.
    pub at: DateTime<Utc>,
    /// The median of the span's minutes' medians, ms.
    pub p50: f32,
    /// The highest p95 of its minutes, ms.
    pub p95: f32,
    /// Whether the component was down during it.
    pub down: bool,
}

/// One component's past.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentPast {
    /// The component.
    pub name: String,
    /// Uptime over 24 h, 7 d, 30 d, 90 d.
    pub uptime: Uptime,
    /// The last 90 UTC days, oldest first, today last.
    pub days: Vec<Day>,
    /// The last 24 hours in [`CHART_STEP_MINUTES`] steps, oldest first (spans
    /// without a check left out): the page's chart. Not in the JSON document (288
    /// points per component would be most of it); the per-minute figures are on
    /// disk.
    #[serde(skip)]
    pub latency_24h: Vec<LatencyPoint>,
}

/// Where the Watchdog's heartbeat stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineSummary {
    /// `healthy`, `failing` (a heartbeat could not be delivered, or none for
    /// [`HEARTBEAT_STALE`]), `muted` (the heartbeat is held back), `waiting` (none
    /// delivered yet), `silent` (rules not evaluated yet) or `absent` (no rule).
    pub state: String,
    /// The sentence the page shows.
    pub text: String,
    /// The pipeline alerts (`severity="none"`) firing.
    pub alerts: Vec<String>,
    /// When a heartbeat was last delivered.
    pub last_delivered: Option<DateTime<Utc>>,
}

/// An uptime as the page and the badges read it: `99.95%`, `100%`; never rounded up to 100.
pub fn uptime_text(u: f64) -> String {
    if u >= 1.0 {
        return "100%".into();
    }
    let pct = (u * 10_000.0).floor() / 100.0;
    format!("{pct:.2}%")
}

/// "3s ago", "5m12s ago", "never": how long before `now` a time was.
pub(crate) fn ago(then: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match then {
        None => "never".to_string(),
        Some(t) => {
            let secs = (now - t).num_seconds().max(0) as u64;
            if secs == 0 {
                "just now".to_string()
            } else {
                format!(
                    "{} ago",
                    crate::settings::duration::format(std::time::Duration::from_secs(secs))
                )
            }
        }
    }
}

/// The day's figures, the open minute included.
fn day(h: Option<&ComponentHistory>, open: Option<&Minute>, day: i64) -> Day {
    let mut s = h
        .and_then(|h| h.days.get(&day).copied())
        .unwrap_or_default();
    if let Some(m) = open.filter(|m| minutes::day_of_minute(m.minute) == day) {
        s.checks += u64::from(m.checks);
        s.failures += u64::from(m.failures);
        s.down_ms += u64::from(m.down_ms);
        s.known_ms += u64::from(m.known_ms);
    }
    Day {
        date: minutes::date(day).format("%Y-%m-%d").to_string(),
        down_minutes: s.down_ms as f64 / 60_000.0,
        watched_minutes: s.known_ms as f64 / 60_000.0,
        checks: s.checks,
        failures: s.failures,
    }
}

fn ratio(days: &[Day]) -> Option<f64> {
    let (down, known) = days.iter().fold((0.0, 0.0), |(d, k), x| {
        (d + x.down_minutes, k + x.watched_minutes)
    });
    (known > 0.0).then(|| 1.0 - down / known)
}

/// One component's past at `now`.
pub fn component_past(name: &str, v: &HistoryView, now: DateTime<Utc>) -> ComponentPast {
    let h = v.components.get(name);
    let open = v.open.get(name);
    let now_minute = now.timestamp().div_euclid(60);
    let today = minutes::day_of_minute(now_minute);
    let days: Vec<Day> = (today - minutes::KEEP_DAYS + 1..=today)
        .map(|d| day(h, open, d))
        .collect();
    let tail = |n: usize| ratio(&days[days.len() - n..]);
    let h24 = {
        let (mut down, mut known) = (0u64, 0u64);
        for m in h
            .into_iter()
            .flat_map(|h| h.recent.iter())
            .chain(open)
            .filter(|m| m.minute > now_minute - 24 * 60)
        {
            down += u64::from(m.down_ms);
            known += u64::from(m.known_ms);
        }
        (known > 0).then(|| 1.0 - down as f64 / known as f64)
    };
    ComponentPast {
        name: name.to_string(),
        uptime: Uptime {
            h24,
            d7: tail(7),
            d30: tail(30),
            d90: tail(90),
        },
        latency_24h: chart(h, now_minute),
        days,
    }
}

/// The chart's points: per span, the median of the minutes' p50s and the highest p95.
fn chart(h: Option<&ComponentHistory>, now_minute: i64) -> Vec<LatencyPoint> {
    let Some(h) = h else { return Vec::new() };
    let start = now_minute - 24 * 60;
    let mut out: Vec<LatencyPoint> = Vec::new();
    let mut p50s: Vec<f32> = Vec::new();
    let mut span = i64::MIN;
    let flush = |span: i64, p50s: &mut Vec<f32>, out: &mut Vec<LatencyPoint>| {
        if let Some(last) = out.last_mut()
            && last.at.timestamp() == span * 60 * CHART_STEP_MINUTES
            && !p50s.is_empty()
        {
            p50s.sort_by(f32::total_cmp);
            last.p50 = p50s[p50s.len() / 2];
        }
        p50s.clear();
    };
    for m in h.recent.iter().filter(|m| m.minute > start) {
        let s = m.minute.div_euclid(CHART_STEP_MINUTES);
        if s != span {
            flush(span, &mut p50s, &mut out);
            span = s;
            out.push(LatencyPoint {
                at: crate::clock::at_ms(s * CHART_STEP_MINUTES * 60_000),
                p50: f32::NAN,
                p95: f32::NAN,
                down: false,
            });
        }
        let Some(last) = out.last_mut() else { continue };
        last.down |= m.down_ms > 0;
        if let Some([_, p50, p95, _]) = m.latency {
            p50s.push(p50);
            last.p95 = if last.p95.is_nan() {
                p95
            } else {
                last.p95.max(p95)
            };
        }
    }
    flush(span, &mut p50s, &mut out);
    out.retain(|p| !p.p95.is_nan() || p.down);
    out
}

/// A heartbeat older than this is a pipeline that stopped: the shipped Watchdog
/// repeats every minute.
pub const HEARTBEAT_STALE: chrono::Duration = chrono::Duration::minutes(5);

/// The pipeline's sentence.
pub fn pipeline(
    v: &HistoryView,
    engine: &EngineView,
    paging: Option<&crate::paging::PagingView>,
    now: DateTime<Utc>,
) -> PipelineSummary {
    let alerts: Vec<String> = engine
        .alerts
        .iter()
        .filter(|a| {
            a.state == State::Firing
                && a.labels.get("severity").map(String::as_str) == Some(PIPELINE_SEVERITY)
        })
        .map(|a| a.name.clone())
        .collect();
    let p = &v.pipeline;
    let ago = |t| ago(Some(t), now);
    let (state, text) = if let (Some(f), Some(since)) = (&p.failing, p.failing_since) {
        (
            "failing",
            format!(
                "ALERTING PIPELINE FAILING: heartbeats not delivered since {} ({f}); pages may not arrive either",
                ago(since)
            ),
        )
    } else if alerts.is_empty() {
        if engine.rules > 0 && engine.last_evaluation.is_none() {
            (
                "silent",
                "alerting pipeline: rules not evaluated yet".to_string(),
            )
        } else {
            (
                "absent",
                "alerting pipeline: no Watchdog (a rule with severity=\"none\") fires, so nothing proves pages can leave".to_string(),
            )
        }
    } else if paging.is_none() {
        (
            "waiting",
            format!(
                "alerting pipeline: {} fires, but no routing file is configured: no heartbeat leaves",
                alerts.join(", ")
            ),
        )
    } else if let Some((alarm, why)) = paging.and_then(|pv| {
        pv.muted
            .iter()
            .find(|(alarm, _)| alerts.iter().any(|a| alarm.contains(&format!("-{a}-"))))
    }) {
        (
            "muted",
            format!(
                "alerting pipeline: its heartbeat {alarm} is held back ({}); nothing proves pages can leave from here",
                match why {
                    crate::route::router::Muted::Silence { id } => format!("silence {id}"),
                    crate::route::router::Muted::Window { name } =>
                        format!("maintenance window {name}"),
                    crate::route::router::Muted::Inhibited { source } =>
                        format!("inhibited by {source}"),
                    crate::route::router::Muted::Lease =>
                        "another sidecar holds the lease".to_string(),
                }
            ),
        )
    } else {
        match p.last_delivered {
            Some(t) if now - t > HEARTBEAT_STALE => (
                "failing",
                format!(
                    "ALERTING PIPELINE STALLED: no heartbeat delivered since {}; pages may not arrive either",
                    ago(t)
                ),
            ),
            Some(t) => (
                "healthy",
                format!(
                    "alerting pipeline healthy — heartbeat delivered {}{}",
                    ago(t),
                    p.target
                        .as_ref()
                        .map(|t| format!(" ({t})"))
                        .unwrap_or_default()
                ),
            ),
            None => (
                "waiting",
                format!(
                    "alerting pipeline: {} fires; no heartbeat delivered since the start yet",
                    alerts.join(", ")
                ),
            ),
        }
    };
    PipelineSummary {
        state: state.to_string(),
        text,
        alerts,
        last_delivered: p.last_delivered,
    }
}

/// The whole summary.
pub fn summary(
    components: &[Component],
    v: &HistoryView,
    engine: &EngineView,
    paging: Option<&crate::paging::PagingView>,
    now: DateTime<Utc>,
) -> HistorySummary {
    HistorySummary {
        components: components
            .iter()
            .map(|c| component_past(&c.name, v, now))
            .collect(),
        incidents: v.incidents.clone(),
        pipeline: pipeline(v, engine, paging, now),
        written_at: v.written_at,
        problems: v
            .problems
            .iter()
            .cloned()
            .chain((v.lost_records > 0).then(|| {
                format!(
                    "{} delivery record(s) were lost before reaching the incident log (it fell behind)",
                    v.lost_records
                )
            }))
            .collect(),
    }
}

/// Whether a component is down right now.
pub fn down_now(c: &Component) -> bool {
    c.status == ComponentStatus::Down
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_heartbeat_older_than_five_minutes_is_a_stalled_pipeline_and_a_muted_one_says_so() {
        let now: DateTime<Utc> = "2026-12-02T12:00:00Z".parse().unwrap();
        let engine = EngineView {
            rules: 1,
            last_evaluation: Some(now),
            alerts: vec![crate::rules::manager::AlertView {
                name: "Watchdog".into(),
                state: State::Firing,
                labels: BTreeMap::from([
                    ("alertname".to_string(), "Watchdog".to_string()),
                    ("severity".to_string(), "none".to_string()),
                ]),
                annotations: BTreeMap::new(),
                value: 1.0,
                active_at: now,
                fired_at: Some(now),
            }],
            ..EngineView::default()
        };
        let mut v = HistoryView::default();
        let paging = crate::paging::PagingView::default();
        let at = |ago: i64| {
            let mut v = v.clone();
            v.pipeline.last_delivered = Some(now - chrono::Duration::seconds(ago));
            pipeline(&v, &engine, Some(&paging), now).state
        };
        assert_eq!(at(20), "healthy");
        assert_eq!(at(301), "failing");
        v.pipeline.last_delivered = Some(now);
        let mut paging = crate::paging::PagingView::default();
        paging.muted.insert(
            "prod-Watchdog-0123abcd".into(),
            crate::route::router::Muted::Silence { id: "s1".into() },
        );
        let p = pipeline(&v, &engine, Some(&paging), now);
        assert_eq!(p.state, "muted");
        assert!(p.text.contains("silence s1"), "{}", p.text);
    }

    #[test]
    fn an_uptime_is_never_rounded_up_to_100() {
        assert_eq!(uptime_text(0.999_999), "99.99%");
        assert_eq!(uptime_text(1.0), "100%");
        assert_eq!(uptime_text(0.5), "50.00%");
    }

    #[test]
    fn uptime_counts_watched_time_only_and_today_takes_the_open_minute() {
        let now: DateTime<Utc> = "2026-12-02T12:00:30Z".parse().unwrap();
        let m = now.timestamp() / 60;
        let mut h = ComponentHistory::default();
        for i in (1..=60).rev() {
            h.add(Minute {
                minute: m - i,
                checks: 60,
                failures: if i <= 6 { 60 } else { 0 },
                down_ms: if i <= 6 { 60_000 } else { 0 },
                known_ms: 60_000,
                latency: Some([1.0, 2.0, 3.0 * i as f32, 40.0]),
            });
        }
        let mut v = HistoryView {
            components: Arc::new(BTreeMap::from([("db".to_string(), h)])),
            ..HistoryView::default()
        };
        let past = component_past("db", &v, now);
        assert_eq!(past.uptime.h24, Some(0.9));
        assert_eq!(past.uptime.d90, Some(0.9));
        assert_eq!(past.days.len(), 90);
        assert_eq!(past.days[89].date, "2026-12-02");
        assert_eq!(past.days[89].grade(false), "outage");
        assert_eq!(past.days[88].grade(false), "none");
        assert_eq!(past.latency_24h.len(), 12);
        assert!(past.latency_24h.iter().filter(|p| p.down).count() >= 2);
        // The open minute: 30 s down so far.
        v.open.insert(
            "db".into(),
            Minute {
                minute: m,
                checks: 30,
                failures: 30,
                down_ms: 30_000,
                known_ms: 30_000,
                latency: None,
            },
        );
        let past = component_past("db", &v, now);
        assert_eq!(past.days[89].down_minutes, 6.5);
        assert_eq!(past.uptime.h24, Some(1.0 - 6.5 / 60.5));
    }
}
