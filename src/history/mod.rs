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
pub const VIEW_INCIDENTS: usize = 50;

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
    /// Shared with the views: copied on write, once per minute closed.
    components: Arc<BTreeMap<String, ComponentHistory>>,
    log: Log,
    /// The view's incidents, rebuilt only when the log changed.
    incidents_view: Arc<Vec<Incident>>,
    /// Whether the log changed since `incidents_view` was built.
    log_changed: bool,
    /// The router's view last seen, to apply its mutes to incidents that open
    /// after it.
    last_paging: Option<PagingView>,
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
    /// The day pruned last.
    pruned: i64,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl History {
    /// Reads what is kept under the state directory, on a blocking thread (the
    /// stage does this first, so that paging never waits for the history).
    async fn open(settings: Settings) -> History {
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
        let (open, problem) = disk.read_open();
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
            components: Arc::new(components),
            incidents_view: Arc::new(log.newest_first().take(VIEW_INCIDENTS).cloned().collect()),
            log_changed: false,
            last_paging: None,
            log,
            pipeline: Pipeline::default(),
            unwritten: open,
            open_written: i64::MIN,
            written_at: None,
            load_problems: problems,
            write_problem: None,
            muted: BTreeMap::new(),
            pruned: today,
        }
    }

    /// Takes the components' new states at `now_ms`; answers whether one changed
    /// status.
    pub fn observe(&mut self, health: &Health, now_ms: i64) -> bool {
        let mut changed = false;
        // A component a reload removed: its minute under way closes, its tracker goes.
        let gone: Vec<String> = self
            .trackers
            .keys()
            .filter(|n| !health.components.iter().any(|c| &c.name == *n))
            .cloned()
            .collect();
        for n in gone {
            if let Some(m) = self.trackers.remove(&n).and_then(|mut t| {
                let _ = t.advance(now_ms);
                t.flush()
            }) {
                self.close(&n, m);
            }
        }
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
        Arc::make_mut(&mut self.components)
            .entry(name.to_string())
            .or_default()
            .add(m);
        self.unwritten.push((name.to_string(), m));
    }

    /// Records a log entry.
    fn record(&mut self, e: Entry) {
        self.log.record(e);
        self.log_changed = true;
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

    /// Logs alerts that started firing and that resolved. An open incident whose
    /// alert is no longer in the list at all (its rule reloaded away, or resolved
    /// while Vigil was stopped) is resolved now; one whose alert is pending again
    /// (its state lost at a restart while it still fails) stays open.
    pub fn alerts(&mut self, alerts: &[RoutedAlert], now: DateTime<Utc>) {
        let mut active = Vec::new();
        let mut opened = false;
        for a in alerts {
            if a.label("severity") == PIPELINE_SEVERITY {
                continue;
            }
            let (alarm, aliases) = self.alarms(&a.labels);
            let open = self.log.open(&alarm).is_some();
            if a.firing || a.pending {
                active.push(alarm.clone());
            }
            if a.firing {
                if !open {
                    let at = a.fired_at.map_or(now, crate::clock::at_ms);
                    opened = true;
                    self.record(Entry {
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
                self.record(Entry {
                    at,
                    alarm,
                    what: What::Resolved,
                });
            }
        }
        let vanished: Vec<String> = self
            .log
            .newest_first()
            .filter(|i| i.resolved_at.is_none() && !active.iter().any(|a| i.is(a)))
            .map(|i| i.alarm.clone())
            .collect();
        for alarm in vanished {
            self.record(Entry {
                at: now,
                alarm,
                what: What::Resolved,
            });
        }
        // Mutes seen before their incident opened apply to it now.
        if opened && let Some(p) = self.last_paging.clone() {
            self.apply_mutes(&p, now, None);
        }
    }

    /// Logs what was held back, newly, and what no longer is.
    pub fn mutes(
        &mut self,
        paging: &PagingView,
        now: DateTime<Utc>,
        silences: Option<&SilenceStore>,
    ) {
        self.last_paging = Some(paging.clone());
        self.apply_mutes(paging, now, silences);
    }

    /// [`History::mutes`]: a mute is remembered once it was logged on an open
    /// incident, so one seen before its incident opened is logged when it does.
    fn apply_mutes(
        &mut self,
        paging: &PagingView,
        now: DateTime<Utc>,
        silences: Option<&SilenceStore>,
    ) {
        let muted = &paging.muted;
        let mut applied = BTreeMap::new();
        for (alarm, why) in muted {
            if self.muted.get(alarm) == Some(why) {
                applied.insert(alarm.clone(), why.clone());
                continue;
            }
            if self.log.open(alarm).is_none() {
                continue;
            }
            applied.insert(alarm.clone(), why.clone());
            let (why_text, by, until) = describe(why, paging, silences);
            self.record(Entry {
                at: now,
                alarm: alarm.clone(),
                what: What::Muted {
                    why: why_text,
                    by,
                    until,
                },
            });
        }
        let released: Vec<String> = self
            .muted
            .keys()
            .filter(|a| !muted.contains_key(*a) && self.log.open(a).is_some())
            .cloned()
            .collect();
        for alarm in released {
            self.record(Entry {
                at: now,
                alarm,
                what: What::Unmuted,
            });
        }
        self.muted = applied;
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
            self.record(Entry {
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
        let appended = !self.unwritten.is_empty();
        if appended {
            match self.disk.append(&mut self.unwritten) {
                Ok(()) => {}
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
        // Rewritten after every append too, so it never holds a minute the day
        // files have.
        if problem.is_none()
            && (now || appended || t.saturating_sub(self.open_written) >= OPEN_EVERY_MS)
        {
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
        if self.log.lost() > 0 {
            problem.get_or_insert_with(|| {
                format!(
                    "{} incident log entr(ies) were lost: the disk could not be written for too long",
                    self.log.lost()
                )
            });
        }
        if today != self.pruned {
            self.pruned = today;
            for c in Arc::make_mut(&mut self.components).values_mut() {
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
    pub fn view(&mut self, lost: u64) -> HistoryView {
        if self.log_changed {
            self.log_changed = false;
            self.incidents_view = Arc::new(
                self.log
                    .newest_first()
                    .take(VIEW_INCIDENTS)
                    .cloned()
                    .collect(),
            );
        }
        let mut problems = self.load_problems.clone();
        problems.extend(self.write_problem.clone());
        HistoryView {
            components: self.components.clone(),
            open: self
                .trackers
                .iter()
                .filter_map(|(n, t)| t.current().map(|m| (n.clone(), m)))
                .collect(),
            incidents: self.incidents_view.clone(),
            pipeline: self.pipeline.clone(),
            problems,
            lost_records: lost,
            written_at: self.written_at,
        }
    }

    /// Runs until the shutdown token fires: then closes the open minutes and writes
    /// them.
    pub async fn run(
        settings: Settings,
        mut inputs: Inputs,
        view: watch::Sender<Arc<HistoryView>>,
        mut shutdown: crate::supervise::Shutdown,
    ) {
        let lost = |i: &Inputs| i.journal.as_ref().map_or(0, |(_, j)| j.lost());
        let mut this = History::open(settings).await;
        view.send_replace(Arc::new(this.view(0)));
        let mut health_open = true;
        let mut alerts_open = true;
        let mut paging_open = inputs.paging.is_some();
        let mut journal_open = inputs.journal.is_some();
        let mut published = std::time::Instant::now();
        let mut minute = tokio::time::interval(Duration::from_secs(60));
        minute.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // What changed only in memory republishes the view; a closed minute, a
            // log entry, a state change or the minutes under way are also written.
            let mut write = false;
            let mut open_now = false;
            // Alerts before mutes before pages: a mute or a page finds the incident
            // its alert opened when they arrive together.
            tokio::select! {
                biased;
                () = shutdown.requested() => break,
                r = inputs.alerts.changed(), if alerts_open => match r {
                    Ok(()) => {
                        let a = inputs.alerts.borrow_and_update().clone();
                        if let Some(a) = a {
                            this.alerts(&a, Utc::now());
                        }
                        write = true;
                    }
                    Err(_) => alerts_open = false,
                },
                r = async { inputs.paging.as_mut()?.changed().await.ok() }, if paging_open => match r {
                    Some(()) => {
                        let p = inputs.paging.as_mut().map(|p| p.borrow_and_update().clone()).unwrap_or_default();
                        this.mutes(&p, Utc::now(), inputs.silences.as_deref());
                        write = true;
                    }
                    None => paging_open = false,
                },
                d = async { inputs.journal.as_mut()?.0.recv().await }, if journal_open => match d {
                    Some(d) => {
                        this.delivered(d);
                        // What else waits, in the same write.
                        if let Some((rx, _)) = inputs.journal.as_mut() {
                            for _ in 0..256 {
                                let Ok(d) = rx.try_recv() else { break };
                                this.delivered(d);
                            }
                        }
                        write = true;
                    }
                    None => journal_open = false,
                },
                r = inputs.health.changed(), if health_open => match r {
                    Ok(()) => {
                        let before = this.unwritten.len();
                        // Read in place: the guard is held for the counting only,
                        // never across an await.
                        open_now = this.observe(&inputs.health.borrow_and_update(), now_ms());
                        write = open_now
                            || this.unwritten.len() > before
                            || now_ms().saturating_sub(this.open_written) >= OPEN_EVERY_MS;
                    }
                    Err(_) => health_open = false,
                },
                _ = minute.tick() => {
                    this.advance(now_ms());
                    write = true;
                }
            }
            if write {
                this = this.write_blocking(open_now).await;
            }
            // What only counted time is shown at most once a second; anything
            // written (a minute closed, a state change, an incident) at once.
            if write || published.elapsed() >= Duration::from_secs(1) {
                view.send_replace(Arc::new(this.view(lost(&inputs))));
                published = std::time::Instant::now();
            }
        }
        this.flush();
        let mut this = this.write_blocking(true).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, firing: bool, pending: bool) -> RoutedAlert {
        RoutedAlert {
            labels: BTreeMap::from([
                ("alertname".to_string(), name.to_string()),
                ("severity".to_string(), "critical".to_string()),
            ]),
            annotations: BTreeMap::new(),
            firing,
            pending,
            value: 1.0,
            expr: "x".into(),
            for_seconds: 0.0,
            active_at: now_ms() - 3_000,
            fired_at: firing.then_some(now_ms() - 2_000),
            resolved_at: (!firing && !pending).then_some(now_ms() - 1_000),
        }
    }

    fn history(dir: &std::path::Path) -> History {
        History::load(Settings {
            state_dir: dir.to_path_buf(),
            environment: "test".into(),
            task: "t1".into(),
        })
    }

    fn open_alarms(h: &History) -> Vec<String> {
        h.log
            .newest_first()
            .filter(|i| i.resolved_at.is_none())
            .map(|i| i.alertname.clone())
            .collect()
    }

    #[test]
    fn an_alert_pending_again_after_a_restart_keeps_its_incident_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = history(dir.path());
        h.alerts(&[alert("CacheDown", true, false)], Utc::now());
        h.write(true);
        let mut h = history(dir.path());
        // Its state was lost: active again, waiting out `for`, still failing.
        h.alerts(&[alert("CacheDown", false, true)], Utc::now());
        assert_eq!(open_alarms(&h), ["CacheDown"]);
    }

    #[test]
    fn an_alert_that_vanishes_resolves_its_incident() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = history(dir.path());
        h.alerts(
            &[
                alert("CacheDown", true, false),
                alert("DbDown", true, false),
            ],
            Utc::now(),
        );
        // A reload removed the rule: its alert is simply gone.
        h.alerts(&[alert("CacheDown", true, false)], Utc::now());
        assert_eq!(open_alarms(&h), ["CacheDown"]);
    }

    #[test]
    fn a_mute_seen_before_its_fired_is_logged_once_the_incident_opens() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = history(dir.path());
        let a = alert("CacheDown", true, false);
        let (alarm, _) = h.alarms(&a.labels);
        let mut view = PagingView::default();
        view.muted.insert(
            alarm,
            Muted::Window {
                name: "nightly".into(),
            },
        );
        h.mutes(&view, Utc::now(), None);
        h.alerts(&[a], Utc::now());
        let i = h.log.newest_first().next().unwrap();
        assert_eq!(i.mutes.len(), 1, "{i:?}");
        assert!(i.mutes[0].why.starts_with("maintenance window nightly"));
    }
}
