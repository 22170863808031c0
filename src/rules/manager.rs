//! The rule manager: owns the series store and the rule groups.
//!
//! It takes samples from the probes (through the health stage) and from scrapes,
//! marks stale what a source stopped reporting, evaluates each group on its interval
//! — and every group at once when a probe's result changes, so an outage is seen
//! without waiting for the next tick — persists alert state in the state directory,
//! and publishes what the API shows ([`EngineView`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use promql_parser::parser::VectorSelector;

use super::alerting::{Alert, State};
use super::{AlertingRule, Group};
use crate::store::{Labels, SeriesWindow, Store};

/// What the manager is sent.
#[derive(Debug)]
pub enum Input {
    /// A batch of samples from one source (a probe, a scrape). Series the source
    /// reported last time and not now are marked stale.
    Samples {
        /// Names the source, e.g. `probe/cache`, `scrape/0`.
        source: String,
        /// The batch's time, ms since the epoch.
        t: i64,
        /// The samples.
        samples: Vec<(Labels, f64)>,
        /// Samples that carry their own time (exposition timestamps): stored at it,
        /// never marked stale.
        timed: Vec<(Labels, i64, f64)>,
        /// Whether a probe's verdict changed: evaluate every group now.
        changed: bool,
    },
    /// New rule groups (a reload); alert state carries over by group and alert name.
    Rules {
        /// The groups.
        groups: Vec<Group>,
        /// The interval of groups that set none.
        default_interval: Duration,
    },
    /// The samples of the metrics to publish in `(from, to]` (ms), for the
    /// CloudWatch publisher.
    Snapshot {
        /// What to select: one answer per selector, in order.
        selectors: Arc<Vec<VectorSelector>>,
        /// How far before `from` a series' baseline is looked for (ms).
        lookback: i64,
        /// Window start, excluded.
        from: i64,
        /// Window end, included.
        to: i64,
        /// Where the answer goes.
        reply: tokio::sync::oneshot::Sender<Vec<Vec<SeriesWindow>>>,
    },
}

/// A firing or resolved alert, as the rule manager hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedAlert {
    /// Its labels (with `alertname`).
    pub labels: BTreeMap<String, String>,
    /// Its expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// Firing, or resolved (kept 15 minutes after it resolved).
    pub firing: bool,
    /// Active but not yet firing (waiting out `for`): never paged nor resolved, but
    /// a page already sent for it stays open.
    pub pending: bool,
    /// The expression's last value.
    pub value: f64,
    /// The rule's expression.
    pub expr: String,
    /// The rule's `for`, in seconds.
    pub for_seconds: f64,
    /// When it became active (ms).
    pub active_at: i64,
    /// When it started firing (ms).
    pub fired_at: Option<i64>,
    /// When it resolved (ms).
    pub resolved_at: Option<i64>,
}

impl RoutedAlert {
    /// The value of label `name`, empty when it has none (as matchers see it).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// An alert as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    /// `alertname`.
    pub name: String,
    /// `pending` or `firing`.
    pub state: State,
    /// All labels.
    pub labels: BTreeMap<String, String>,
    /// Expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// The expression's last value.
    #[serde(with = "crate::float")]
    pub value: f64,
    /// Active since.
    pub active_at: DateTime<Utc>,
    /// Firing since.
    pub fired_at: Option<DateTime<Utc>>,
}

/// The store and the rules, as the API shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineView {
    /// Pending and firing alerts, firing first, then by name.
    pub alerts: Vec<AlertView>,
    /// Series in the store.
    pub series: usize,
    /// Samples in the store.
    pub samples: usize,
    /// New series refused because the store was full, since the start.
    pub dropped_series: u64,
    /// Most series the store holds.
    pub max_series: usize,
    /// What the store holds, in bytes (its estimate of what it allocated).
    #[serde(default)]
    pub bytes: usize,
    /// The store's byte budget.
    #[serde(default)]
    pub max_bytes: usize,
    /// The retention in effect, in seconds: the configured one, or less while the
    /// byte budget is tight.
    #[serde(with = "crate::float", default)]
    pub retention_seconds: f64,
    /// Samples dropped before their retention to keep within the byte budget.
    #[serde(default)]
    pub evicted_samples: u64,
    /// Rule groups loaded.
    pub groups: usize,
    /// Rules loaded.
    pub rules: usize,
    /// When the rules were last evaluated.
    pub last_evaluation: Option<DateTime<Utc>>,
    /// How long that evaluation took, in seconds.
    #[serde(with = "crate::float")]
    pub evaluation_seconds: f64,
    /// Evaluations since the start.
    pub evaluations_total: u64,
    /// Rules whose last evaluation failed, with the error.
    pub rule_errors: BTreeMap<String, String>,
    /// What of the alert state file could not be read at the start, and where it
    /// was kept.
    #[serde(default)]
    pub state_problems: Vec<String>,
}

/// The persisted alert state: per group and alert name, its alerts.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    /// Format version.
    version: u32,
    /// `"group/alert"` → alerts.
    alerts: BTreeMap<String, Vec<Alert>>,
}

/// What a manager is made of.
pub struct Options {
    /// The rule groups.
    pub groups: Vec<Group>,
    /// The interval of groups that set none.
    pub default_interval: Duration,
    /// Most series the store holds.
    pub max_series: usize,
    /// Most bytes the store holds.
    pub max_bytes: usize,
    /// How long the store keeps samples.
    pub retention: Duration,
    /// Where alert state is persisted (`alerts.json`) and restored from.
    pub state_dir: PathBuf,
    /// How long after the first evaluation request rules first run.
    pub warmup: Duration,
    /// Called after every evaluation with the firing, pending and recently resolved
    /// alerts (the router's input); `None` routes nothing.
    pub notify: Option<Notify>,
}

/// Where the manager hands its alerts after every evaluation.
pub type Notify = Box<dyn FnMut(Vec<RoutedAlert>) + Send>;

impl Options {
    /// Options with the config's defaults, alert state in `state_dir`, no rules and
    /// nobody notified.
    pub fn new(state_dir: &Path) -> Options {
        Options {
            groups: Vec::new(),
            default_interval: super::DEFAULT_EVALUATION_INTERVAL,
            max_series: crate::store::DEFAULT_MAX_SERIES,
            max_bytes: crate::store::DEFAULT_MAX_BYTES,
            retention: crate::store::DEFAULT_RETENTION,
            state_dir: state_dir.to_path_buf(),
            warmup: Duration::ZERO,
            notify: None,
        }
    }
}

/// The manager.
pub struct Manager {
    /// The series store.
    store: Store,
    /// `vigil_store_series_dropped_total`: the store's refusals, as a series of its
    /// own that the rules can read (the shipped `SeriesRefused` does).
    dropped_series: Labels,
    /// Rule groups and when each is next due (ms).
    groups: Vec<(Group, i64)>,
    /// Interval of groups that set none.
    default_interval: Duration,
    /// Series each source sent last time.
    previous: HashMap<String, HashSet<Labels>>,
    /// Where alert state is persisted.
    state_file: PathBuf,
    /// Writes it, off the runtime's threads.
    writer: StateWriter,
    /// A digest of the alert states last written there, to write only on change.
    last_written: [u8; 32],
    /// When the store was last trimmed (ms).
    last_trim: i64,
    /// What the API reads.
    view: watch::Sender<EngineView>,
    /// Counters for the view.
    evaluations: u64,
    /// How long after the first evaluation request rules really run: after a start
    /// the store is empty, and judging restored alerts on no data would resolve them
    /// all and page again once the data is back. Every source reports (scrapes twice)
    /// before rules run.
    warmup: Duration,
    /// When the warm-up ends (ms), set by the first evaluation request.
    warm_from: Option<i64>,
    /// Where firing and resolved alerts go after every evaluation (the router).
    notify: Option<Notify>,
    /// What of the state file could not be read, for the view.
    state_problems: Vec<String>,
    /// The latest wall-clock reading (a batch's arrival or an evaluation's, ms), to
    /// notice the clock stepping back.
    clock_high: i64,
}

/// How far behind the latest wall-clock reading a new one may be before it counts as
/// the clock stepping back (readings taken on different threads, a slewing clock).
const CLOCK_STEP_MS: i64 = 2_000;

/// What of an alert is persisted on change: its state and the times of its moves.
type StateTimes = (State, i64, Option<i64>, Option<i64>, Option<i64>);

/// How often the store drops samples past its retention.
const TRIM_EVERY_MS: i64 = 10_000;

fn key(group: &str, alert: &str) -> String {
    format!("{group}/{alert}")
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Manager {
    /// A manager with an empty store; alert state is restored from the state
    /// directory. Rules are first evaluated `warmup` after the first evaluation
    /// request. What the API shows is published on `view`.
    pub fn new(options: Options, view: watch::Sender<EngineView>) -> Manager {
        let state_file = options.state_dir.join("alerts.json");
        let mut store = Store::new(options.max_series, options.retention.as_millis() as i64);
        store.set_max_bytes(options.max_bytes);
        let mut m = Manager {
            store,
            dropped_series: Labels::from_pairs(crate::families::STORE_SERIES_DROPPED_TOTAL, &[]),
            groups: Vec::new(),
            default_interval: options.default_interval,
            previous: HashMap::new(),
            writer: StateWriter::start(state_file.clone()),
            state_file,
            last_written: [0; 32],
            last_trim: 0,
            view,
            evaluations: 0,
            warmup: options.warmup,
            warm_from: None,
            notify: options.notify,
            state_problems: Vec::new(),
            clock_high: i64::MIN,
        };
        let restored = m.read_state();
        m.set_groups(options.groups, restored);
        m
    }

    /// Every alerting rule, with its group's name.
    fn alerting(&self) -> impl Iterator<Item = (&str, &AlertingRule)> {
        self.groups
            .iter()
            .flat_map(|(g, _)| g.alerting().map(move |a| (g.name.as_str(), a)))
    }

    /// Firing and pending alerts and those resolved in the last 15 minutes, for the
    /// router. Pending ones are handed over so that the router does not take an
    /// alert whose state was lost at a restart (and that is pending again while
    /// still failing) for one that vanished, and resolve its page mid-outage.
    pub fn routed_alerts(&self) -> Vec<RoutedAlert> {
        let mut out = Vec::new();
        for (_, a) in self.alerting() {
            for x in a.active.values() {
                out.push(RoutedAlert {
                    pending: x.state == State::Pending,
                    labels: x.labels.to_map(),
                    annotations: x.annotations.iter().cloned().collect(),
                    firing: x.state == State::Firing,
                    value: x.value,
                    expr: a.expr_text.clone(),
                    for_seconds: a.hold_ms as f64 / 1000.0,
                    active_at: x.active_at,
                    fired_at: x.fired_at,
                    resolved_at: x.resolved_at,
                });
            }
        }
        out
    }

    /// The alert state kept in the state file. What cannot be read is never dropped:
    /// a file that is not JSON at all (truncated, say) is moved aside as
    /// `alerts.json.unreadable-<time>` before the next write could overwrite it, an
    /// alert that cannot be decoded is left out while the file is copied aside, and
    /// either is logged and shown in `/status` ([`EngineView::state_problems`]).
    fn read_state(&mut self) -> HashMap<String, Vec<Alert>> {
        let text = match std::fs::read(&self.state_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
            Err(e) => {
                self.state_problem(format!("cannot read {}: {e}", self.state_file.display()));
                return HashMap::new();
            }
        };
        let (restored, problem) = decode_state(&text);
        if let Some(problem) = problem {
            let aside = self.set_aside(problem.whole);
            let what = match &aside {
                Ok(path) => format!("kept as {}", path.display()),
                Err(e) => format!("could not be kept aside: {e}"),
            };
            self.state_problem(format!(
                "{} was {} ({}); {what}",
                self.state_file.display(),
                if problem.whole {
                    "unreadable"
                } else {
                    "partly unreadable"
                },
                problem.reason
            ));
        }
        let n: usize = restored.values().map(Vec::len).sum();
        if n > 0 {
            tracing::info!(message = "Restored alert state.", alerts = n, file = %self.state_file.display());
        }
        restored
    }

    /// Moves (`whole`) or copies the state file to `alerts.json.unreadable-<time>`.
    fn set_aside(&self, whole: bool) -> std::io::Result<PathBuf> {
        let aside = crate::clock::aside_path(&self.state_file);
        if whole {
            std::fs::rename(&self.state_file, &aside)?;
        } else {
            std::fs::copy(&self.state_file, &aside)?;
        }
        Ok(aside)
    }

    fn state_problem(&mut self, problem: String) {
        tracing::error!(message = "The alert state file is unreadable; starting with what could be read.", problem = %problem);
        self.state_problems.push(problem);
    }

    /// Installs `groups`, giving each alerting rule the alerts kept under its name.
    fn set_groups(&mut self, groups: Vec<Group>, mut carried: HashMap<String, Vec<Alert>>) {
        let now = Utc::now().timestamp_millis();
        self.groups = groups
            .into_iter()
            .map(|mut g| {
                let group = g.name.clone();
                for a in g.alerting_mut() {
                    if let Some(alerts) = carried.remove(&key(&group, &a.name)) {
                        a.active = alerts.into_iter().map(|x| (x.labels.clone(), x)).collect();
                    }
                }
                (g, now)
            })
            .collect();
    }

    /// The alert state of every rule, keyed like the state file.
    fn current_state(&self) -> HashMap<String, Vec<Alert>> {
        self.alerting()
            .map(|(g, a)| (key(g, &a.name), a.active.values().cloned().collect()))
            .collect()
    }

    /// Notices a backward step of the wall clock at `t` (ms): the samples and alert
    /// times after `t` are in what is now the future, so they are forgotten or pulled
    /// back to `t`, and groups due later than one interval from `t` are due now.
    /// Without this the store refused every new sample and the groups waited, for as
    /// long as the step, while the probes kept seeing an outage.
    fn clock(&mut self, t: i64) {
        if t >= self.clock_high {
            self.clock_high = t;
            return;
        }
        if self.clock_high - t <= CLOCK_STEP_MS {
            return;
        }
        let dropped = self.store.rewind(t);
        tracing::warn!(
            message = "The wall clock stepped back; forgetting samples from the future.",
            step_seconds = (self.clock_high - t) as f64 / 1000.0,
            samples_dropped = dropped
        );
        for (g, due) in &mut self.groups {
            let interval = g.interval.unwrap_or(self.default_interval).as_millis() as i64;
            *due = (*due).min(t.saturating_add(interval));
            for x in g.alerting_mut().flat_map(|a| a.active.values_mut()) {
                x.active_at = x.active_at.min(t);
                x.fired_at = x.fired_at.map(|f| f.min(t));
                x.resolved_at = x.resolved_at.map(|f| f.min(t));
                x.keep_firing_since = x.keep_firing_since.map(|f| f.min(t));
            }
        }
        if let Some(w) = &mut self.warm_from {
            *w = w.saturating_sub(self.clock_high - t);
        }
        self.last_trim = self.last_trim.min(t);
        self.clock_high = t;
    }

    /// A batch as the daemon receives it, at `now` (ms, the wall clock on arrival):
    /// stored, and every group evaluated at once when a probe's verdict `changed`.
    ///
    /// Whether the wall clock stepped back is judged by `now`, not by the batch's
    /// time `t`: a probe stamps its samples when its check starts, so a check that
    /// took seconds (a timeout) arrives seconds behind the others, and taking that
    /// for a step forgot every other source's samples since `t`. A `t` after `now`
    /// (a check that started before the clock stepped back) is taken as `now`.
    pub fn receive(
        &mut self,
        now: i64,
        source: String,
        t: i64,
        samples: Vec<(Labels, f64)>,
        timed: Vec<(Labels, i64, f64)>,
        changed: bool,
    ) {
        self.clock(now);
        let t = t.min(now);
        self.ingest(source, t, samples);
        self.ingest_timed(t, timed);
        if changed {
            self.evaluate(now, true);
        }
    }

    /// Stores a batch, marking stale what the source no longer reports (a sample
    /// older than its series' last is refused; [`Manager::receive`] notices the
    /// clock stepping back first). A scrape's (`scrape/…`) new series may fill only
    /// [`Store::max_scraped_series`]: the rest is kept for Vigil's own.
    pub fn ingest(&mut self, source: String, t: i64, samples: Vec<(Labels, f64)>) {
        let mut now: HashSet<Labels> = HashSet::with_capacity(samples.len());
        let scraped = source.starts_with("scrape/");
        for (labels, v) in samples {
            let stored = if scraped {
                self.store.append_scraped(&labels, t, v)
            } else {
                self.store.append(&labels, t, v)
            };
            if stored.is_ok() {
                now.insert(labels);
            }
        }
        if let Some(before) = self.previous.get(&source) {
            for gone in before.difference(&now) {
                self.store.mark_stale(gone, t);
            }
        }
        self.previous.insert(source, now);
    }

    /// Appends samples that carry their own time (a scraped line's timestamp). As in
    /// Prometheus they are not tracked for staleness, and one older than the series'
    /// last sample or than the retention is dropped without failing the rest.
    pub fn ingest_timed(&mut self, now: i64, samples: Vec<(Labels, i64, f64)>) {
        let oldest = now.saturating_sub(self.store.retention_ms());
        for (labels, t, v) in samples {
            if t >= oldest {
                let _ = self.store.append_scraped(&labels, t, v);
            }
        }
    }

    /// Evaluates the groups that are due at `now` (all of them with `all`), then
    /// trims the store, persists changed alert state and publishes the view.
    pub fn evaluate(&mut self, now: i64, all: bool) {
        self.clock(now);
        // Made at the first call, before any scrape can fill the store, and kept.
        let dropped = self.store.dropped_series() as f64;
        let _ = self.store.append(&self.dropped_series, now, dropped);
        let warm_from = *self
            .warm_from
            .get_or_insert(now + self.warmup.as_millis() as i64);
        if now < warm_from {
            return;
        }
        let start = Instant::now();
        let mut errors = BTreeMap::new();
        let mut ran = false;
        for (g, due) in &mut self.groups {
            if !all && *due > now {
                continue;
            }
            ran = true;
            let interval = g.interval.unwrap_or(self.default_interval).as_millis() as i64;
            if *due <= now {
                *due = now + interval;
            }
            for outcome in g.eval(&mut self.store, now) {
                if let Some(e) = outcome.error {
                    tracing::warn!(message = "Rule evaluation failed.", group = %g.name, rule = %outcome.rule, error = %e);
                    errors.insert(format!("{}/{}", g.name, outcome.rule), e);
                }
            }
        }
        if now - self.last_trim >= TRIM_EVERY_MS {
            // Trimmed whether or not a group ran: with no rules at all the store
            // would otherwise grow without bound.
            self.store.trim(now);
            self.last_trim = now;
        }
        if !ran {
            if self.groups.is_empty() {
                // No rules: still show what the store holds.
                self.publish(None, Duration::ZERO, BTreeMap::new());
            }
            return;
        }
        // The evaluation's own time, as Prometheus's rule_group_last_duration_seconds
        // counts it: trimming, persisting and publishing come after.
        let took = start.elapsed();
        self.evaluations += 1;
        self.persist();
        if self.notify.is_some() {
            let alerts = self.routed_alerts();
            if let Some(notify) = &mut self.notify {
                notify(alerts);
            }
        }
        self.publish(Some(now), took, errors);
    }

    /// Writes the alert state when a state changed (a new, promoted, resolved or
    /// dropped alert) — not when only a value moved, which would mean a synced write
    /// at every evaluation.
    fn persist(&mut self) {
        let mut signature: Vec<(String, &Labels, StateTimes)> = Vec::new();
        for (g, a) in self.alerting() {
            for x in a.active.values() {
                let times = (
                    x.state,
                    x.active_at,
                    x.fired_at,
                    x.resolved_at,
                    x.keep_firing_since,
                );
                signature.push((key(g, &a.name), &x.labels, times));
            }
        }
        signature.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        // A digest of what is persisted on change, from its JSON, so a change of
        // a Debug rendering changes nothing.
        let Ok(bytes) = serde_json::to_vec(&signature) else {
            return;
        };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if digest == self.last_written {
            return;
        }
        let state = Persisted {
            version: 1,
            alerts: self.current_state().into_iter().collect(),
        };
        let Ok(text) = serde_json::to_string(&state) else {
            return;
        };
        // Handed to the writer's thread: an fsync on a slow or full disk never
        // holds up evaluation. A failed write is retried there until a newer state
        // replaces it.
        self.writer.write(text.into_bytes());
        self.last_written = digest;
    }

    fn publish(
        &self,
        evaluated_at: Option<i64>,
        took: Duration,
        rule_errors: BTreeMap<String, String>,
    ) {
        let mut alerts: Vec<AlertView> = Vec::new();
        let mut rules = 0;
        rules += self
            .groups
            .iter()
            .map(|(g, _)| g.rules.len())
            .sum::<usize>();
        for (_, a) in self.alerting() {
            for x in a.alerts() {
                alerts.push(AlertView {
                    name: a.name.clone(),
                    state: x.state,
                    labels: x.labels.to_map(),
                    annotations: x.annotations.iter().cloned().collect(),
                    value: x.value,
                    active_at: time(x.active_at),
                    fired_at: x.fired_at.map(time),
                });
            }
        }
        alerts.sort_by(|a, b| {
            (b.state == State::Firing, &a.name, &a.labels).cmp(&(
                a.state == State::Firing,
                &b.name,
                &b.labels,
            ))
        });
        self.view.send_replace(EngineView {
            alerts,
            series: self.store.len(),
            samples: self.store.samples(),
            dropped_series: self.store.dropped_series(),
            max_series: self.store.max_series(),
            bytes: self.store.bytes(),
            max_bytes: self.store.max_bytes(),
            retention_seconds: self.store.effective_retention_ms() as f64 / 1000.0,
            evicted_samples: self.store.evicted_samples(),
            groups: self.groups.len(),
            rules,
            last_evaluation: evaluated_at.map(time),
            evaluation_seconds: took.as_secs_f64(),
            evaluations_total: self.evaluations,
            rule_errors,
            state_problems: self.state_problems.clone(),
        });
    }

    /// How often to look for due groups: the shortest group interval, and at least
    /// every second so that the end of the warm-up is not missed by long.
    fn tick(&self) -> Duration {
        self.groups
            .iter()
            .map(|(g, _)| g.interval.unwrap_or(self.default_interval))
            .min()
            .unwrap_or(self.default_interval)
            .clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// The samples each selector picks in `(from, to]`, for publishing.
    pub fn snapshot(
        &self,
        selectors: &[VectorSelector],
        lookback: i64,
        from: i64,
        to: i64,
    ) -> Vec<Vec<SeriesWindow>> {
        selectors
            .iter()
            .map(|v| crate::promql::eval::windows(&self.store, v, from, to, lookback))
            .collect()
    }

    /// Runs until every sender of `inputs` is gone.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let mut ticks = tokio::time::interval(self.tick());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.evaluate(Utc::now().timestamp_millis(), false),
                input = inputs.recv() => match input {
                    None => return,
                    Some(Input::Samples { source, t, samples, timed, changed }) => {
                        self.receive(Utc::now().timestamp_millis(), source, t, samples, timed, changed);
                    }
                    Some(Input::Rules { groups, default_interval }) => {
                        self.default_interval = default_interval;
                        let carried = self.current_state();
                        self.set_groups(groups, carried);
                        ticks = tokio::time::interval(self.tick());
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        self.evaluate(Utc::now().timestamp_millis(), true);
                    }
                    Some(Input::Snapshot { selectors, lookback, from, to, reply }) => {
                        let _ = reply.send(self.snapshot(&selectors, lookback, from, to));
                    }
                }
            }
        }
    }
}

/// Why a state file could not be read in full.
#[derive(Debug)]
struct Unreadable {
    /// Nothing could be read (the file is set aside whole) or only some alerts.
    whole: bool,
    /// What was wrong.
    reason: String,
}

/// Decodes a state file alert by alert, so that one alert that cannot be read (a
/// newer format, a flipped byte) costs that alert, not every alert's state.
fn decode_state(text: &[u8]) -> (HashMap<String, Vec<Alert>>, Option<Unreadable>) {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        alerts: BTreeMap<String, Vec<serde_json::Value>>,
    }
    let loose: Loose = match serde_json::from_slice(text) {
        Ok(l) => l,
        Err(e) => {
            let reason = e.to_string();
            return (
                HashMap::new(),
                Some(Unreadable {
                    whole: true,
                    reason,
                }),
            );
        }
    };
    let mut out = HashMap::new();
    let mut bad = Vec::new();
    for (key, alerts) in loose.alerts {
        let mut kept = Vec::with_capacity(alerts.len());
        for a in alerts {
            match serde_json::from_value::<Alert>(a) {
                Ok(mut a) => {
                    // Times are data: one from before the epoch or after now (a
                    // clock stepped back between two runs) is pulled into range, so
                    // no later arithmetic on it can overflow or wait for ever.
                    let now = Utc::now().timestamp_millis();
                    let clamp = |t: i64| t.clamp(0, now);
                    a.active_at = a.active_at.clamp(0, now);
                    a.fired_at = a.fired_at.map(clamp);
                    a.resolved_at = a.resolved_at.map(clamp);
                    a.keep_firing_since = a.keep_firing_since.map(clamp);
                    kept.push(a)
                }
                Err(e) => bad.push(format!("an alert of {key}: {e}")),
            }
        }
        out.insert(key, kept);
    }
    let problem = (!bad.is_empty()).then(|| Unreadable {
        whole: false,
        reason: bad.join("; "),
    });
    (out, problem)
}

/// Writes the alert state file on a thread of its own, the newest state winning:
/// the rule manager runs on the async runtime and must never wait for a disk. A
/// write that fails is retried every few seconds until a newer state replaces it.
/// Dropping the writer writes what is pending, then stops the thread.
struct StateWriter {
    /// The state waiting to be written, and whether to stop.
    slot: Arc<(Mutex<WriterSlot>, std::sync::Condvar)>,
    /// The thread.
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the writer's thread is handed.
#[derive(Default)]
struct WriterSlot {
    /// The newest state not yet written.
    next: Option<Vec<u8>>,
    /// Stop once nothing is pending.
    stop: bool,
}

impl StateWriter {
    fn start(path: PathBuf) -> StateWriter {
        let slot: Arc<(Mutex<WriterSlot>, std::sync::Condvar)> = Arc::default();
        let shared = slot.clone();
        let thread = std::thread::Builder::new()
            .name("vigil-state-writer".into())
            .spawn(move || {
                let (lock, wake) = &*shared;
                let mut failing = false;
                loop {
                    let bytes = {
                        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                        while s.next.is_none() && !s.stop {
                            s = wake.wait(s).unwrap_or_else(|e| e.into_inner());
                        }
                        match s.next.take() {
                            Some(b) => b,
                            None => return,
                        }
                    };
                    match write_atomically(&path, &bytes) {
                        Ok(()) => {
                            if failing {
                                tracing::info!(message = "Alert state persisted again.", file = %path.display());
                            }
                            failing = false;
                        }
                        Err(e) => {
                            if !failing {
                                tracing::warn!(message = "Cannot persist alert state; retrying.", file = %path.display(), error = %e);
                            }
                            failing = true;
                            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                            s.next.get_or_insert(bytes);
                            if s.stop {
                                return;
                            }
                            let _ = wake
                                .wait_timeout(s, Duration::from_secs(5))
                                .unwrap_or_else(|e| e.into_inner());
                        }
                    }
                }
            })
            .ok();
        StateWriter { slot, thread }
    }

    /// Hands `bytes` to the thread, replacing any state not yet written.
    fn write(&self, bytes: Vec<u8>) {
        let (lock, wake) = &*self.slot;
        lock.lock().unwrap_or_else(|e| e.into_inner()).next = Some(bytes);
        wake.notify_one();
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        let (lock, wake) = &*self.slot;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes `bytes` to `path` through a temporary file, synced before the rename, so a
/// crash leaves the old file or the new one, never half of one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Collector;

    fn groups() -> Vec<Group> {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: vigil_probe_success == 0\n        for: 1m\n";
        let mut c = Collector::new(Path::new("r.yaml"));
        let g = super::super::parse(text, &mut c);
        c.finish().unwrap();
        g
    }

    /// A manager over `groups` with state in `dir`, no warm-up.
    fn manager(groups: Vec<Group>, dir: &Path, view: watch::Sender<EngineView>) -> Manager {
        let hour = Duration::from_secs(3600);
        Manager::new(
            Options {
                groups,
                max_series: 100,
                retention: hour,
                ..Options::new(dir)
            },
            view,
        )
    }

    fn down(m: &mut Manager, t: i64, v: f64) {
        let l = Labels::from_pairs("vigil_probe_success", &[("probe", "cache")]);
        m.receive(t, "probe/cache".into(), t, vec![(l, v)], vec![], true);
    }

    #[test]
    fn a_check_that_reports_late_is_not_the_clock_stepping_back() {
        // A probe stamps its samples when its check starts; one that timed out after
        // 4 s arrives 4 s behind what the others have reported since. That is not the
        // wall clock stepping back: the cache's samples since, and the alert they
        // raised, stay.
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(EngineView::default());
        let mut m = manager(groups(), dir.path(), tx);
        let t = 10_000_000;
        down(&mut m, t, 1.0);
        down(&mut m, t + 5_000, 0.0);
        assert_eq!(rx.borrow().alerts.len(), 1);
        let pending = rx.borrow().alerts[0].clone();
        let app = Labels::from_pairs("vigil_probe_success", &[("probe", "app")]);
        m.receive(
            t + 5_500,
            "probe/app".into(),
            t + 1_500,
            vec![(app, 1.0)],
            vec![],
            false,
        );
        m.evaluate(t + 6_000, true);
        let alerts = rx.borrow().alerts.clone();
        assert_eq!(alerts.len(), 1, "the cache's zeros are kept");
        assert_eq!(alerts[0].active_at, pending.active_at);
        assert_eq!(alerts[0].state, State::Pending);
    }

    fn rules(text: &str) -> Vec<Group> {
        let mut c = Collector::new(Path::new("r.yaml"));
        let g = super::super::parse(text, &mut c);
        c.finish().unwrap();
        g
    }

    #[test]
    fn an_infinite_alert_value_survives_a_restart_with_every_other_alert() {
        let g = "groups:\n  - name: g\n    rules:\n      - alert: Inf\n        expr: vector(1) / vector(0) > 2\n        for: 1m\n      - alert: Down\n        expr: vigil_probe_success == 0\n        for: 1m\n";
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = watch::channel(EngineView::default());
        let mut m = manager(rules(g), dir.path(), tx);
        down(&mut m, 1_000_000, 0.0);
        down(&mut m, 1_070_000, 0.0);
        drop(m);
        let (tx, rx) = watch::channel(EngineView::default());
        let m = manager(rules(g), dir.path(), tx);
        m.publish(None, Duration::ZERO, BTreeMap::new());
        let v = rx.borrow();
        assert!(v.state_problems.is_empty(), "{:?}", v.state_problems);
        assert_eq!(v.alerts.len(), 2, "{:?}", v.alerts);
        assert!(v.alerts.iter().all(|a| a.state == State::Firing));
        let inf = v.alerts.iter().find(|a| a.name == "Inf").unwrap();
        assert_eq!(inf.value, f64::INFINITY);
        // The API's JSON carries it as Prometheus writes it.
        let json = serde_json::to_value(&*v).unwrap();
        assert!(json.to_string().contains(r#""value":"+Inf""#), "{json}");
    }

    /// A state directory whose `alerts.json` holds one pending alert, and that file.
    fn state_with_one_alert() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = watch::channel(EngineView::default());
        let mut m = manager(groups(), dir.path(), tx);
        down(&mut m, 1_000_000, 0.0);
        drop(m);
        let file = dir.path().join("alerts.json");
        (dir, file)
    }

    #[test]
    fn an_unreadable_state_file_is_kept_aside_and_reported_not_overwritten() {
        let (dir, file) = state_with_one_alert();
        let whole = std::fs::read(&file).unwrap();
        std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
        let (tx, rx) = watch::channel(EngineView::default());
        let mut m = manager(groups(), dir.path(), tx);
        down(&mut m, 1_010_000, 0.0);
        let problems = rx.borrow().state_problems.clone();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("alerts.json was unreadable (") && problems[0].contains("kept as"),
            "{problems:?}"
        );
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("alerts.json.unreadable-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(
            std::fs::read(dir.path().join(&aside[0])).unwrap(),
            &whole[..whole.len() / 2]
        );
    }

    #[test]
    fn one_undecodable_alert_costs_that_alert_only() {
        let (dir, file) = state_with_one_alert();
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        v["alerts"]["g/Other"] = serde_json::json!([{"labels": 7}]);
        std::fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
        let (tx, rx) = watch::channel(EngineView::default());
        let m = manager(groups(), dir.path(), tx);
        m.publish(None, Duration::ZERO, BTreeMap::new());
        assert_eq!(rx.borrow().alerts.len(), 1);
        assert!(rx.borrow().state_problems[0].contains("an alert of g/Other"));
    }

    #[test]
    fn a_clock_stepped_back_an_hour_keeps_storing_and_evaluating() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(EngineView::default());
        let mut m = manager(groups(), dir.path(), tx);
        let t = 10_000_000;
        down(&mut m, t, 1.0);
        down(&mut m, t + 10_000, 1.0);
        assert!(rx.borrow().alerts.is_empty());
        // The clock steps back an hour, then the cache goes down.
        let back = t + 10_000 - 3_600_000;
        down(&mut m, back, 0.0);
        assert_eq!(
            rx.borrow().alerts.len(),
            1,
            "the sample was stored and evaluated"
        );
        assert_eq!(rx.borrow().alerts[0].state, State::Pending);
        // `for: 1m` is waited out on the new clock, not the old one.
        down(&mut m, back + 30_000, 0.0);
        down(&mut m, back + 61_000, 0.0);
        assert_eq!(rx.borrow().alerts[0].state, State::Firing);
        // Due times from the old clock do not hold the groups back.
        m.ingest(
            "probe/cache".into(),
            back + 70_000,
            vec![(
                Labels::from_pairs("vigil_probe_success", &[("probe", "cache")]),
                1.0,
            )],
        );
        let before = rx.borrow().evaluations_total;
        m.evaluate(back + 71_000, false);
        assert_eq!(rx.borrow().evaluations_total, before + 1);
    }

    #[test]
    fn a_scrape_whose_labels_churn_cannot_starve_the_probes_and_its_refusals_alert() {
        // A target shows more label values than the store holds. The cache's probe
        // still stores its samples and its alert fires; the store's refusals are a
        // series that the shipped rules/warning.yaml's SeriesRefused reads.
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(EngineView::default());
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/warning.yaml"),
        )
        .unwrap();
        let refused = shipped
            .split("      - alert: ")
            .find(|r| r.starts_with("SeriesRefused"))
            .expect("rules/warning.yaml has SeriesRefused");
        let text = format!(
            "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: vigil_probe_success == 0\n      - alert: {refused}"
        );
        let mut m = manager(rules(&text), dir.path(), tx);
        let t = 10_000_000;
        m.evaluate(t, true);
        let churn: Vec<(Labels, f64)> = (0..150)
            .map(|i| (Labels::from_pairs("churn", &[("id", &i.to_string())]), 1.0))
            .collect();
        m.receive(t + 1000, "scrape/0".into(), t + 1000, churn, vec![], false);
        down(&mut m, t + 2000, 0.0);
        let firing: Vec<String> = rx
            .borrow()
            .alerts
            .iter()
            .filter(|a| a.state == State::Firing)
            .map(|a| a.name.clone())
            .collect();
        assert_eq!(
            firing,
            ["Down", "SeriesRefused"],
            "{:?}",
            rx.borrow().alerts
        );
        // 90 of the 100 for scrapes, one of which the store's own count holds.
        assert_eq!(rx.borrow().dropped_series, 150 - 89);
    }

    #[test]
    fn the_store_is_trimmed_without_any_rules() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(EngineView::default());
        let mut m = Manager::new(
            Options {
                max_series: 100,
                retention: Duration::from_secs(60),
                ..Options::new(dir.path())
            },
            tx,
        );
        let l = Labels::from_pairs("vigil_probe_success", &[("probe", "cache")]);
        for i in 0..100 {
            let t = 1_000_000 + i * 10_000;
            m.ingest("probe/cache".into(), t, vec![(l.clone(), 1.0)]);
            m.evaluate(t, false);
        }
        // One minute of retention at 10 s: a handful of samples, not a hundred, for
        // each of the two series (the probe's, the store's own count).
        let samples = rx.borrow().samples;
        assert!(samples <= 16, "{samples} samples kept");
    }

    mod state_file {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn whatever_the_file_holds_reading_it_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let _ = decode_state(&bytes);
            }

            #[test]
            fn every_alert_reads_back_with_its_value(value in crate::float::arbitrary(), active in any::<i64>(),
                    labels in proptest::collection::btree_map("[a-z_]{1,8}", any::<String>(), 0..4)) {
                let a = Alert {
                    labels: Labels::new(labels),
                    annotations: vec![("summary".into(), "s".into())],
                    state: State::Firing,
                    value,
                    active_at: active,
                    fired_at: Some(active),
                    resolved_at: None,
                    keep_firing_since: None,
                };
                let p = Persisted { version: 1, alerts: [("g/A".to_string(), vec![a.clone()])].into() };
                let before = Utc::now().timestamp_millis();
                let (back, problem) = decode_state(&serde_json::to_vec(&p).unwrap());
                let after = Utc::now().timestamp_millis();
                prop_assert!(problem.is_none(), "{:?}", problem);
                let b = &back["g/A"][0];
                prop_assert!(b.value.to_bits() == value.to_bits() || (b.value.is_nan() && value.is_nan()));
                prop_assert_eq!(&b.labels, &a.labels);
                // Times are pulled into [epoch, now].
                if active <= before {
                    prop_assert_eq!(b.active_at, active.max(0));
                } else {
                    prop_assert!((before..=after).contains(&b.active_at));
                }
            }
        }
    }

    #[test]
    fn alert_state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(EngineView::default());
        let mut m = manager(groups(), dir.path(), tx);
        down(&mut m, 1_000_000, 0.0);
        assert_eq!(rx.borrow().alerts[0].state, State::Pending);
        drop(m);
        // A new manager (a restarted daemon) keeps the pending alert and its start.
        let (tx, rx) = watch::channel(EngineView::default());
        let mut m = manager(groups(), dir.path(), tx);
        down(&mut m, 1_060_000, 0.0);
        let view = rx.borrow();
        assert_eq!(view.alerts.len(), 1);
        assert_eq!(
            view.alerts[0].state,
            State::Firing,
            "for: 1m counted across the restart"
        );
        assert_eq!(view.alerts[0].active_at, time(1_000_000));
    }

    #[test]
    fn a_source_that_stops_reporting_a_series_makes_it_stale() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = watch::channel(EngineView::default());
        let mut m = manager(Vec::new(), dir.path(), tx);
        let a = Labels::from_pairs("x", &[("k", "a")]);
        let b = Labels::from_pairs("x", &[("k", "b")]);
        m.ingest("s".into(), 0, vec![(a.clone(), 1.0), (b.clone(), 1.0)]);
        m.ingest("s".into(), 1000, vec![(a.clone(), 2.0)]);
        assert!(m.store.is_live(&a));
        assert!(!m.store.is_live(&b));
    }
}
