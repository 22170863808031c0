//! What happened, kept past a restart: per component and minute, checks, failures,
//! downtime and latency for 90 days ([`minutes`]), and the incident log
//! ([`incidents`]): what fired, for how long, what paged whom, what was muted and why.
//!
//! ```text
//!  health (watch) ── every state change ─► trackers ── closed minutes ─► day files
//!  rule manager's alerts (watch) ── fired / resolved ─┐
//!  paging view (watch) ── muted / released ───────────┼─► incident log ─► day files
//!  delivery workers (Journal) ── pages ───────────────┘
//!                                      └─► HistoryView (watch, Arc) ─► /status, badges
//! ```
//!
//! The stage is the only writer of `<state_dir>/history/`. It writes on a blocking
//! thread and never holds up a probe or a page: the journal drops (and counts) what
//! it cannot take, and the health and alert channels are watches, which keep the
//! newest value.

pub mod incidents;
pub mod minutes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::health::Health;
use crate::notify::Delivered;
use crate::paging::PagingView;
use crate::route::router::Muted;
use crate::route::silence::SilenceStore;
use crate::rules::manager::RoutedAlert;
use incidents::{Entry, Incident, Log, What};
use minutes::{ComponentHistory, Disk, Minute, Tracker};

/// Incidents the view carries (the newest).
pub const VIEW_INCIDENTS: usize = 100;

/// How often the minutes under way are written (`open.bin`), so a SIGKILL loses at
/// most this much; a component changing state writes them at once.
pub const OPEN_EVERY_MS: i64 = 5_000;

/// The `severity` of alerts that are the pipeline's own heartbeat (the Watchdog).
pub const PIPELINE_SEVERITY: &str = "none";

/// What the API shows of the history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HistoryView {
    /// Per component: days and the last 24 hours (closed minutes).
    #[serde(skip)]
    pub components: Arc<BTreeMap<String, ComponentHistory>>,
    /// Per component, the minute being filled.
    #[serde(skip)]
    pub open: BTreeMap<String, Minute>,
    /// The newest incidents, newest first.
    pub incidents: Arc<Vec<Incident>>,
    /// The alerting pipeline's heartbeat.
    pub pipeline: Pipeline,
    /// What could not be read or written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Delivery records the journal could not take.
    pub lost_records: u64,
    /// Up to when the per-minute history is on disk (what a SIGKILL keeps).
    pub written_at: Option<DateTime<Utc>>,
}

/// The Watchdog's deliveries: the pipeline works end to end when they arrive.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pipeline {
    /// When a heartbeat (a notification of only `severity="none"` alerts) was last
    /// delivered, and where.
    pub last_delivered: Option<DateTime<Utc>>,
    /// Its integration.
    pub target: Option<String>,
    /// The last heartbeat that failed, and why, when it is newer than the last
    /// delivered one.
    pub failing: Option<String>,
    /// Since when.
    pub failing_since: Option<DateTime<Utc>>,
}

/// The stage's settings.
pub struct Settings {
    /// Where `history/` lives.
    pub state_dir: PathBuf,
    /// Vigil's environment (part of alarm names).
    pub environment: String,
    /// This sidecar's task (per-task alerts' `task` label).
    pub task: String,
}

/// What the stage watches.
pub struct Inputs {
    /// Component states.
    pub health: watch::Receiver<Health>,
    /// The rule manager's alerts, as the router gets them.
    pub alerts: watch::Receiver<Option<Vec<RoutedAlert>>>,
    /// The router's view (mutes), when paging is configured.
    pub paging: Option<watch::Receiver<PagingView>>,
    /// Silences, to say who set one.
    pub silences: Option<Arc<SilenceStore>>,
    /// Deliveries.
    pub journal: Option<(mpsc::Receiver<Delivered>, crate::notify::Journal)>,
}

/// The history stage.
pub struct History {
    settings: Settings,
    disk: Disk,
    trackers: BTreeMap<String, Tracker>,
    components: BTreeMap<String, ComponentHistory>,
    log: Log,
    pipeline: Pipeline,
    /// Minutes closed and not yet written.
    unwritten: Vec<(String, Minute)>,
    /// When `open.bin` was last written (ms).
    open_written: i64,
    /// Up to when the history is on disk.
    written_at: Option<DateTime<Utc>>,
    /// Problems from loading.
    load_problems: Vec<String>,
    /// The last write's problem, if it failed.
    write_problem: Option<String>,
    /// Mutes in force, by alarm, as last seen.
    muted: BTreeMap<String, Muted>,
    /// Whether the first alerts since the start were seen.
    seen_alerts: bool,
    /// The day pruned last.
    pruned: i64,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl History {
    /// Loads what is kept under the state directory (on a blocking thread).
    pub async fn open(settings: Settings) -> History {
        tokio::task::spawn_blocking(move || History::load(settings))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    fn load(settings: Settings) -> History {
        let started = std::time::Instant::now();
        let disk = Disk::new(&settings.state_dir);
        let today = minutes::day_of_minute(now_ms().div_euclid(60_000));
        let (mut components, mut problems) = disk.load(today);
        // The minutes under way when Vigil last stopped without closing them.
        let (open, problem) = disk.read_open(&components);
        problems.extend(problem);
        for (c, m) in &open {
            components.entry(c.clone()).or_default().add(*m);
        }
        let mut log = Log::new(&settings.state_dir);
        problems.extend(log.load(Utc::now().date_naive()));
        tracing::info!(
            message = "History read.",
            components = components.len(),
            days = components.values().map(|c| c.days.len()).sum::<usize>(),
            incidents = log.newest_first().count(),
            problems = problems.len(),
            seconds = started.elapsed().as_secs_f64(),
        );
        History {
            settings,
            disk,
            trackers: BTreeMap::new(),
            components,
            log,
            pipeline: Pipeline::default(),
            unwritten: open,
            open_written: i64::MIN,
            written_at: None,
            load_problems: problems,
            write_problem: None,
            muted: BTreeMap::new(),
            seen_alerts: false,
            pruned: today,
        }
    }

    /// Takes the components' new states at `now_ms`; answers whether one changed
    /// status.
    pub fn observe(&mut self, health: &Health, now_ms: i64) -> bool {
        let mut changed = false;
        for c in &health.components {
            let t = self
                .trackers
                .entry(c.name.clone())
                .or_insert_with(|| Tracker::new(c.interval_seconds));
            changed |= t.status() != c.status;
            for m in t.observe(c, now_ms) {
                self.close(&c.name, m);
            }
        }
        changed
    }

    /// Counts time up to `now_ms` for every component, closing past minutes.
    pub fn advance(&mut self, now_ms: i64) {
        let closed: Vec<(String, Minute)> = self
            .trackers
            .iter_mut()
            .flat_map(|(n, t)| t.advance(now_ms).into_iter().map(|m| (n.clone(), m)))
            .collect();
        for (n, m) in closed {
            self.close(&n, m);
        }
    }

    fn close(&mut self, name: &str, m: Minute) {
        self.components.entry(name.to_string()).or_default().add(m);
        self.unwritten.push((name.to_string(), m));
    }

    /// The alarm names an alert is paged under: its own, and with this task's
    /// `task` label when it has none (per-task alerts).
    fn alarms(&self, labels: &BTreeMap<String, String>) -> (String, Vec<String>) {
        let env = &self.settings.environment;
        let own = crate::route::router::alarm_name(env, labels);
        let mut aliases = Vec::new();
        if !self.settings.task.is_empty() && !labels.contains_key("task") {
            let mut l = labels.clone();
            l.insert("task".into(), self.settings.task.clone());
            aliases.push(crate::route::router::alarm_name(env, &l));
        }
        (own, aliases)
    }

    /// Logs alerts that started firing and that resolved.
    pub fn alerts(&mut self, alerts: &[RoutedAlert], now: DateTime<Utc>) {
        let mut firing_now = Vec::new();
        for a in alerts {
            if a.label("severity") == PIPELINE_SEVERITY {
                continue;
            }
            let (alarm, aliases) = self.alarms(&a.labels);
            let open = self.log.open(&alarm).is_some();
            if a.firing {
                firing_now.push(alarm.clone());
                if !open {
                    let at = a.fired_at.map_or(now, crate::clock::at_ms);
                    self.log.record(Entry {
                        at,
                        alarm,
                        what: What::Fired {
                            alertname: a.label("alertname").to_string(),
                            severity: a.label("severity").to_string(),
                            summary: a
                                .annotations
                                .get("summary")
                                .cloned()
                                .unwrap_or_else(|| a.label("alertname").to_string()),
                            runbook_url: a.annotations.get("runbook_url").cloned(),
                            aliases,
                        },
                    });
                }
            } else if !a.pending && open {
                let at = a.resolved_at.map_or(now, crate::clock::at_ms);
                self.log.record(Entry {
                    at,
                    alarm,
                    what: What::Resolved,
                });
            }
        }
        // At the first evaluation after a start, what the log holds open and no
        // longer fires resolved while Vigil was away.
        if !self.seen_alerts {
            self.seen_alerts = true;
            let stale: Vec<String> = self
                .log
                .newest_first()
                .filter(|i| i.resolved_at.is_none() && !firing_now.contains(&i.alarm))
                .map(|i| i.alarm.clone())
                .collect();
            for alarm in stale {
                self.log.record(Entry {
                    at: now,
                    alarm,
                    what: What::Resolved,
                });
            }
        }
    }

    /// Logs what was held back, newly, and what no longer is.
    pub fn mutes(
        &mut self,
        paging: &PagingView,
        now: DateTime<Utc>,
        silences: Option<&SilenceStore>,
    ) {
        let muted = &paging.muted;
        for (alarm, why) in muted {
            if self.muted.get(alarm) == Some(why) {
                continue;
            }
            let (why_text, by, until) = describe(why, paging, silences);
            self.log.record(Entry {
                at: now,
                alarm: alarm.clone(),
                what: What::Muted {
                    why: why_text,
                    by,
                    until,
                },
            });
        }
        for alarm in self.muted.keys() {
            if !muted.contains_key(alarm) && self.log.open(alarm).is_some() {
                self.log.record(Entry {
                    at: now,
                    alarm: alarm.clone(),
                    what: What::Unmuted,
                });
            }
        }
        self.muted = muted.clone();
    }

    /// Logs a delivery; a heartbeat's updates the pipeline instead.
    pub fn delivered(&mut self, d: Delivered) {
        let heartbeat =
            !d.alerts.is_empty() && d.alerts.iter().all(|(_, _, sev)| sev == PIPELINE_SEVERITY);
        if heartbeat {
            match &d.error {
                None => {
                    self.pipeline.last_delivered = Some(d.at);
                    self.pipeline.target = Some(d.target.clone());
                    self.pipeline.failing = None;
                    self.pipeline.failing_since = None;
                }
                Some(e) => {
                    self.pipeline.failing = Some(format!("{}: {e}", d.target));
                    self.pipeline.failing_since.get_or_insert(d.at);
                }
            }
            return;
        }
        for (alarm, firing, sev) in d.alerts {
            if sev == PIPELINE_SEVERITY {
                continue;
            }
            self.log.record(Entry {
                at: d.at,
                alarm,
                what: What::Page {
                    target: d.target.clone(),
                    firing,
                    delivered: d.error.is_none(),
                    error: d.error.clone(),
                },
            });
        }
    }

    /// Closes every open minute (a stop).
    pub fn flush(&mut self) {
        let now = now_ms();
        self.advance(now);
        let open: Vec<(String, Minute)> = self
            .trackers
            .iter_mut()
            .filter_map(|(n, t)| t.flush().map(|m| (n.clone(), m)))
            .collect();
        for (n, m) in open {
            self.close(&n, m);
        }
    }

    /// Writes what is unwritten, and the minutes under way when [`OPEN_EVERY_MS`]
    /// passed or `now` asks; a failure is kept for the next write and shown.
    pub fn write(&mut self, now: bool) {
        let t = now_ms();
        let today = minutes::day_of_minute(t.div_euclid(60_000));
        let mut problem = None;
        if !self.unwritten.is_empty() {
            match self.disk.append(&self.unwritten) {
                Ok(()) => self.unwritten.clear(),
                Err(e) => {
                    problem = Some(format!(
                        "cannot write the per-minute history ({e}); {} minute(s) wait in memory",
                        self.unwritten.len()
                    ));
                    // A day's worth at most waits: past it, the oldest go.
                    let excess = self.unwritten.len().saturating_sub(24 * 60 * 16);
                    self.unwritten.drain(..excess);
                }
            }
        }
        if problem.is_none() && (now || t.saturating_sub(self.open_written) >= OPEN_EVERY_MS) {
            let open: Vec<(String, Minute)> = self
                .trackers
                .iter()
                .filter_map(|(n, tr)| tr.current().map(|m| (n.clone(), m)))
                .collect();
            match self.disk.write_open(&open) {
                Ok(()) => {
                    self.open_written = t;
                    self.written_at = Some(crate::clock::at_ms(t));
                }
                Err(e) => problem = Some(format!("cannot write the minutes under way ({e})")),
            }
        }
        if let Err(e) = self.log.write() {
            problem = Some(format!(
                "cannot write the incident log ({e}); {} entr(ies) wait in memory",
                self.log.unwritten()
            ));
        }
        if today != self.pruned {
            self.pruned = today;
            for c in self.components.values_mut() {
                c.prune(today);
            }
            let _ = self.disk.prune(today);
            let _ = self.log.prune(Utc::now().date_naive());
        }
        if problem.is_some() && self.write_problem.is_none() {
            tracing::error!(message = "Cannot write the history; it waits in memory and is retried every minute.", problem = ?problem);
        }
        self.write_problem = problem;
    }

    /// The view.
    pub fn view(&self, lost: u64) -> HistoryView {
        let mut problems = self.load_problems.clone();
        problems.extend(self.write_problem.clone());
        HistoryView {
            components: Arc::new(self.components.clone()),
            open: self
                .trackers
                .iter()
                .filter_map(|(n, t)| t.current().map(|m| (n.clone(), m)))
                .collect(),
            incidents: Arc::new(
                self.log
                    .newest_first()
                    .take(VIEW_INCIDENTS)
                    .cloned()
                    .collect(),
            ),
            pipeline: self.pipeline.clone(),
            problems,
            lost_records: lost,
            written_at: self.written_at,
        }
    }

    /// Runs until the shutdown token fires: then closes the open minutes and writes
    /// them.
    pub async fn run(
        mut self,
        mut inputs: Inputs,
        view: watch::Sender<Arc<HistoryView>>,
        mut shutdown: crate::supervise::Shutdown,
    ) {
        let lost = |i: &Inputs| i.journal.as_ref().map_or(0, |(_, j)| j.lost());
        view.send_replace(Arc::new(self.view(0)));
        let mut health_open = true;
        let mut alerts_open = true;
        let mut paging_open = inputs.paging.is_some();
        let mut journal_open = inputs.journal.is_some();
        let mut minute = tokio::time::interval(Duration::from_secs(60));
        minute.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // What changed only in memory republishes the view; a closed minute, a
            // log entry, a state change or the minutes under way are also written.
            let mut write = false;
            let mut open_now = false;
            tokio::select! {
                () = shutdown.requested() => break,
                r = inputs.health.changed(), if health_open => match r {
                    Ok(()) => {
                        let h = inputs.health.borrow_and_update().clone();
                        let before = self.unwritten.len();
                        open_now = self.observe(&h, now_ms());
                        write = open_now
                            || self.unwritten.len() > before
                            || now_ms().saturating_sub(self.open_written) >= OPEN_EVERY_MS;
                    }
                    Err(_) => health_open = false,
                },
                r = inputs.alerts.changed(), if alerts_open => match r {
                    Ok(()) => {
                        let a = inputs.alerts.borrow_and_update().clone();
                        if let Some(a) = a {
                            self.alerts(&a, Utc::now());
                        }
                        write = true;
                    }
                    Err(_) => alerts_open = false,
                },
                r = async { inputs.paging.as_mut()?.changed().await.ok() }, if paging_open => match r {
                    Some(()) => {
                        let p = inputs.paging.as_mut().map(|p| p.borrow_and_update().clone()).unwrap_or_default();
                        self.mutes(&p, Utc::now(), inputs.silences.as_deref());
                        write = true;
                    }
                    None => paging_open = false,
                },
                d = async { inputs.journal.as_mut()?.0.recv().await }, if journal_open => match d {
                    Some(d) => {
                        self.delivered(d);
                        write = true;
                    }
                    None => journal_open = false,
                },
                _ = minute.tick() => {
                    self.advance(now_ms());
                    write = true;
                }
            }
            if write {
                self = self.write_blocking(open_now).await;
            }
            view.send_replace(Arc::new(self.view(lost(&inputs))));
        }
        self.flush();
        let this = self.write_blocking(true).await;
        view.send_replace(Arc::new(this.view(lost(&inputs))));
    }

    /// [`History::write`] on a blocking thread: a slow disk holds this stage only.
    async fn write_blocking(self, open_now: bool) -> History {
        let mut this = self;
        tokio::task::spawn_blocking(move || {
            this.write(open_now);
            this
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// A mute as a sentence, who set it, and until when.
fn describe(
    why: &Muted,
    paging: &PagingView,
    silences: Option<&SilenceStore>,
) -> (String, Option<String>, Option<DateTime<Utc>>) {
    match why {
        Muted::Silence { id } => {
            let s = silences.and_then(|s| s.list().into_iter().find(|s| &s.id == id));
            match s {
                Some(s) => (
                    format!(
                        "silence {} by {} until {}: {}",
                        s.id,
                        s.created_by,
                        s.ends_at.format("%Y-%m-%d %H:%M UTC"),
                        s.comment
                    ),
                    Some(s.created_by),
                    Some(s.ends_at),
                ),
                None => (format!("silence {id}"), None, None),
            }
        }
        Muted::Window { name } => {
            let until = paging
                .windows
                .iter()
                .find(|w| &w.name == name)
                .and_then(|w| w.active_until);
            let text = match until {
                Some(t) => format!(
                    "maintenance window {name} until {}",
                    t.format("%Y-%m-%d %H:%M UTC")
                ),
                None => format!("maintenance window {name}"),
            };
            (text, None, until)
        }
        Muted::Inhibited { source } => (format!("inhibited by {source}"), None, None),
        Muted::Lease => (
            "paged by the sidecar holding the lease".to_string(),
            None,
            None,
        ),
    }
}
