//! The paging stage: alerts from the rule manager → router → outbox → notifiers.
//!
//! ```text
//!  rule manager ── watch: firing and resolved alerts after every evaluation
//!     ▼
//!  router task ── silences, windows, inhibition, lease; group timers
//!     │  one synced redb transaction: notifications + notification log
//!     ▼
//!  outbox ──► one worker per integration (SNS, PagerDuty, webhook), in order, retried
//! ```
//!
//! The router runs as soon as the rules' alerts change, so a page leaves within
//! milliseconds of the evaluation that fired it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::notify::lease::{self, LeaseSpec, LeaseState};
use crate::notify::outbox::Outbox;
use crate::notify::{self, Integration, Stats, TargetStats};
use crate::route::Routing;
use crate::route::router::{Muted, Router};
use crate::route::silence::SilenceStore;
use crate::route::window::WindowView;
use crate::rules::manager::RoutedAlert;
use crate::supervise::Stages;

/// What `/status` shows of paging.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct PagingView {
    /// The routing file.
    pub routing_file: String,
    /// Where this sidecar stands on the paging lease (`None` without a lease).
    pub lease: Option<LeaseState>,
    /// Firing alerts held back, and why, by alarm name.
    pub muted: BTreeMap<String, Muted>,
    /// Pages their group's timers hold back (`group_wait`, or `group_interval` after
    /// the group's last page), by alarm name: when they go out.
    #[serde(default)]
    pub held: BTreeMap<String, DateTime<Utc>>,
    /// Maintenance windows: under way until, next start.
    pub windows: Vec<WindowView>,
    /// Silences muting now.
    pub active_silences: usize,
    /// Per integration: the outbox queue and delivery counts.
    pub targets: BTreeMap<String, TargetStats>,
    /// When the router last ran.
    pub last_run: Option<DateTime<Utc>>,
    /// Outbox entries that could not be decoded, kept aside in `notify.redb`.
    #[serde(default)]
    pub dead_letters: usize,
    /// The task this sidecar pages per-task alerts for.
    #[serde(default)]
    pub task: String,
    /// Whether `notify.redb` is written (paging goes on from memory when not).
    #[serde(default)]
    pub storage: crate::notify::outbox::StorageHealth,
}

/// The handles the API uses.
pub struct Paging {
    /// Silences (the API adds and expires them).
    pub silences: Arc<SilenceStore>,
    /// Delivery statistics.
    stats: Stats,
    /// The router's view.
    view: watch::Receiver<PagingView>,
    /// Where a reload sends the new routing.
    reload: mpsc::Sender<Arc<Routing>>,
}

impl Paging {
    /// The view, with fresh delivery statistics.
    pub fn view(&self) -> PagingView {
        let mut v = self.view.borrow().clone();
        v.targets = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v
    }

    /// The router's view as it changes (delivery statistics left out).
    pub fn subscribe(&self) -> watch::Receiver<PagingView> {
        self.view.clone()
    }

    /// Hands a reloaded routing file to the router.
    pub async fn reload(&self, routing: Routing) {
        let _ = self.reload.send(Arc::new(routing)).await;
    }
}

/// Why paging could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the outbox in {dir}: {reason}")]
pub struct PagingError {
    /// The state directory.
    dir: String,
    /// What failed.
    reason: String,
}

/// Everything the stage runs with.
pub struct Settings {
    /// The routing file, validated.
    pub routing: Routing,
    /// Vigil's environment (part of alarm names and the lease key).
    pub environment: String,
    /// Where the outbox lives.
    pub state_dir: std::path::PathBuf,
    /// Vigil's own address, linked from pages.
    pub external_url: String,
    /// This sidecar's task (the ECS task id, `VIGIL_TASK_ID`, or the host's name),
    /// the `task` label of per-task alerts.
    pub task: String,
    /// Where delivery workers tell what became of each notification (the
    /// incident log), if anywhere.
    pub journal: Option<notify::Journal>,
}

/// Opens the outbox and starts the router (which runs the workers) and the lease
/// in `stages`; the shutdown token cancels them (what is queued is in the outbox).
pub async fn start(
    settings: Settings,
    alerts: watch::Receiver<Option<Vec<RoutedAlert>>>,
    stages: &mut Stages,
) -> Result<Arc<Paging>, PagingError> {
    let fail = |dir: &Path, e: &dyn std::fmt::Display| PagingError {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    };
    // Opening may set a corrupt file aside, repair one or read a large one: on a
    // blocking thread, as every other storage call.
    let dir = settings.state_dir.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let outbox = Arc::new(Outbox::open(&dir).map_err(|e| e.to_string())?);
        let silences = SilenceStore::open(outbox.clone(), Utc::now()).map_err(|e| e.to_string())?;
        Ok::<_, String>((outbox, Arc::new(silences)))
    })
    .await;
    let (outbox, silences) = match opened {
        Ok(r) => r.map_err(|e| fail(&settings.state_dir, &e))?,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => return Err(fail(&settings.state_dir, &e)),
    };
    let sent = outbox.sent().map_err(|e| fail(&settings.state_dir, &e))?;
    let held = outbox.held().map_err(|e| fail(&settings.state_dir, &e))?;
    if !held.is_empty() {
        tracing::info!(
            message = "Pages held back by their group's timers before the restart are held again.",
            held = held.len()
        );
    }
    let pending = outbox.queued().map_err(|e| fail(&settings.state_dir, &e))?;
    if pending > 0 {
        tracing::info!(
            message = "Notifications from before the restart are still queued; delivering them.",
            queued = pending
        );
    }
    let stats: Stats = Arc::new(Mutex::new(BTreeMap::new()));
    let (view_tx, view_rx) = watch::channel(PagingView::default());
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let routing = Arc::new(settings.routing);
    let (lease_tx, lease_rx) = watch::channel(LeaseState::Unknown);
    let mut fixed_lease = None;
    if let Some(l) = &routing.lease {
        let id = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "vigil".into()),
            std::process::id(),
            fastrand::u32(..)
        );
        stages.spawn(
            "the paging lease",
            lease::run(
                LeaseSpec {
                    redis: l.redis.clone(),
                    ttl: l.ttl,
                    key: format!("vigil:lease:{}", settings.environment),
                },
                id,
                lease_tx,
            ),
        );
    } else {
        // No lease configured: this sidecar pages for everything.
        lease_tx.send_replace(LeaseState::Holder);
        fixed_lease = Some(lease_tx);
    }
    let mut router =
        Router::new(routing.clone(), &settings.environment, sent).for_task(&settings.task);
    router.restore_held(held);
    let task = RouterTask {
        router,
        routing,
        outbox,
        silences: silences.clone(),
        lease: lease_rx,
        alerts,
        view: view_tx,
        stats: stats.clone(),
        external_url: settings.external_url,
        routing_file: String::new(),
        _fixed_lease: fixed_lease,
        supervisor: stages.supervisor().clone(),
        task: settings.task.clone(),
        journal: settings.journal,
    };
    stages.spawn("the router", task.run(reload_rx));
    Ok(Arc::new(Paging {
        silences,
        stats,
        view: view_rx,
        reload: reload_tx,
    }))
}

/// The router's run loop and what it owns.
struct RouterTask {
    /// The decision state.
    router: Router,
    /// The routing in force.
    routing: Arc<Routing>,
    /// Where decisions are committed.
    outbox: Arc<Outbox>,
    /// Silences.
    silences: Arc<SilenceStore>,
    /// The lease's state.
    lease: watch::Receiver<LeaseState>,
    /// Alerts from the rule manager (`None` until the first evaluation).
    alerts: watch::Receiver<Option<Vec<RoutedAlert>>>,
    /// What `/status` shows.
    view: watch::Sender<PagingView>,
    /// Delivery statistics.
    stats: Stats,
    /// Vigil's address.
    external_url: String,
    /// The routing file's path, for the view.
    routing_file: String,
    /// Without a lease task, the sender of the fixed lease state, kept so that
    /// the lease channel stays open.
    _fixed_lease: Option<watch::Sender<LeaseState>>,
    /// Told when a delivery worker panics or ends.
    supervisor: Arc<crate::supervise::Supervisor>,
    /// This sidecar's task, for the view.
    task: String,
    /// Handed to each delivery worker.
    journal: Option<notify::Journal>,
}

/// A delivery worker as the router keeps it across reloads.
struct Running {
    /// What it delivers with: a reload that leaves this as it was leaves the
    /// worker, and its delivery in flight, alone.
    settings: (notify::IntegrationSpec, Duration, notify::Backoff),
    /// Wakes it when something is queued.
    wake: Arc<Notify>,
    /// Retires it.
    retire: watch::Sender<bool>,
}

impl RouterTask {
    /// Brings the workers in line with the routing in force. A worker whose
    /// integration, timeout and backoff are unchanged keeps running; one whose
    /// settings changed, or whose receiver is gone, is retired (it finishes the
    /// delivery in flight, then ends); new and changed ones start, each waiting for
    /// its predecessor to be done. Answers the wakes by target.
    async fn sync_workers(
        &self,
        set: &mut JoinSet<()>,
        running: &mut HashMap<String, Running>,
        turns: &mut HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    ) -> HashMap<String, Arc<Notify>> {
        while set.try_join_next().is_some() {}
        let mut wanted = HashMap::new();
        for r in &self.routing.receivers {
            for spec in &r.integrations {
                let target = format!("{}/{}", r.name, spec.kind());
                let settings = (spec.clone(), self.routing.timeout, self.routing.backoff);
                wanted.insert(target, settings);
            }
        }
        running.retain(|target, w| {
            let keep = wanted.get(target) == Some(&w.settings);
            if !keep {
                let _ = w.retire.send(true);
            }
            keep
        });
        for (target, settings) in wanted {
            if running.contains_key(&target) {
                continue;
            }
            let wake = Arc::new(Notify::new());
            let (retire, retired) = watch::channel(false);
            let integration = match Integration::build(&settings.0, settings.1, &self.external_url)
                .await
            {
                Ok(i) => i,
                Err(e) => {
                    // Only a platform without a TLS backend gets here. Never
                    // silent: its notifications wait in the outbox, and the
                    // supervisor stops the daemon (503 on /healthz) so that the
                    // task is replaced.
                    tracing::error!(message = "A receiver's client cannot be built; its notifications wait.", target = %target, error = %e);
                    self.supervisor.report(
                        &format!("the delivery worker of {target}"),
                        "could not build its HTTP client",
                    );
                    continue;
                }
            };
            let link = notify::WorkerLink {
                wake: wake.clone(),
                retire: retired,
                turn: turns.entry(target.clone()).or_default().clone(),
            };
            set.spawn(crate::supervise::stage(
                &self.supervisor,
                format!("the delivery worker of {target}"),
                notify::worker(
                    target.clone(),
                    integration,
                    self.outbox.clone(),
                    link,
                    settings.2,
                    self.stats.clone(),
                    self.journal.clone(),
                ),
            ));
            running.insert(
                target,
                Running {
                    settings,
                    wake,
                    retire,
                },
            );
        }
        running
            .iter()
            .map(|(t, w)| (t.clone(), w.wake.clone()))
            .collect()
    }

    async fn run(mut self, mut reloads: mpsc::Receiver<Arc<Routing>>) {
        self.routing_file = self.routing.file.display().to_string();
        let mut workers = JoinSet::new();
        let mut running = HashMap::new();
        let mut turns = HashMap::new();
        let mut wakes = self
            .sync_workers(&mut workers, &mut running, &mut turns)
            .await;
        let mut next_wake: Option<i64> = None;
        loop {
            let now = Utc::now().timestamp_millis();
            // Windows open and close, silences end, repeats fall due: at least once a
            // second, and exactly when a group timer asked for.
            let sleep_ms = next_wake.map_or(1000, |w| (w - now).clamp(0, 1000));
            tokio::select! {
                r = self.alerts.changed() => if r.is_err() { return },
                r = self.lease.changed() => if r.is_err() { return },
                () = self.silences.changed.notified() => {},
                Some(routing) = reloads.recv() => {
                    self.routing = routing.clone();
                    self.routing_file = routing.file.display().to_string();
                    self.router.set_routing(routing);
                    // Never aborted: a page in flight is finished by the worker
                    // that started it.
                    wakes = self
                        .sync_workers(&mut workers, &mut running, &mut turns)
                        .await;
                    tracing::info!(message = "Routing reloaded.", file = %self.routing_file);
                }
                () = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {},
            }
            next_wake = self.step(&wakes).await;
        }
    }

    /// Takes what the outbox's file held when it is merged in after the start (it
    /// could not be read then): the notification log, so that pages sent before the
    /// restart get their resolve and are not sent again, the pages held back then,
    /// and the silences. Answers whether it did.
    async fn absorb_late_file(&mut self) -> bool {
        let (outbox, silences) = (self.outbox.clone(), self.silences.clone());
        let read = tokio::task::spawn_blocking(move || {
            outbox
                .take_merged()
                .then(|| (outbox.sent(), outbox.held(), silences.reload(Utc::now())))
        })
        .await;
        let (sent, held, reloaded) = match read {
            Ok(Some(r)) => r,
            Ok(None) => return false,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return false,
        };
        match sent {
            Ok(sent) => self.router.reload_sent(sent),
            Err(e) => {
                tracing::error!(message = "Cannot read the notification log merged in.", error = %e);
            }
        }
        match held {
            Ok(held) => self.router.restore_held(held),
            Err(e) => {
                tracing::error!(message = "Cannot read the held pages merged in.", error = %e);
            }
        }
        if let Err(e) = reloaded {
            tracing::error!(message = "Cannot read the silences merged in.", error = %e);
        }
        tracing::info!(
            message = "The outbox file, unreadable at the start, is merged in: pages and silences from before the restart are known again."
        );
        true
    }

    /// One decision, committed and handed to the workers.
    async fn step(&mut self, wakes: &HashMap<String, Arc<Notify>>) -> Option<i64> {
        if !self.outbox.health().ok {
            // A failing state file is tried again (at most every few seconds).
            let outbox = self.outbox.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || outbox.retry()).await
                && e.is_panic()
            {
                // The router's supervisor hears of it: never swallowed.
                std::panic::resume_unwind(e.into_panic());
            }
        }
        self.absorb_late_file().await;
        let alerts = self.alerts.borrow_and_update().clone()?;
        let lease = *self.lease.borrow_and_update();
        let silences = self.silences.list();
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        let d = self.router.decide(&alerts, &silences, lease, now_ms);
        let mut next = d.next_wake;
        if !d.notifications.is_empty() || !d.sent.is_empty() || !d.held.is_empty() {
            let outbox = self.outbox.clone();
            let (notifications, sent, held) =
                (d.notifications.clone(), d.sent.clone(), d.held.clone());
            let result =
                tokio::task::spawn_blocking(move || outbox.commit(&notifications, &sent, &held))
                    .await;
            match result {
                Ok(Ok(())) => {
                    self.router.committed(&d, now_ms);
                    // The commit may have merged in the file: decide again at once.
                    if self.absorb_late_file().await {
                        next = Some(now_ms);
                    }
                    for n in &d.notifications {
                        for e in &n.events {
                            tracing::info!(
                                message = if e.firing { "Paging." } else { "Resolving." },
                                target = %n.target,
                                alarm = %e.alarm_name,
                                reason = %e.reason,
                            );
                        }
                        if let Some(w) = wakes.get(&n.target) {
                            w.notify_one();
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(message = "Cannot write the outbox; will try again in a second.", error = %e);
                    next = Some(now_ms + 1000);
                }
                // A panic while committing: the decision may be half applied,
                // so the router must not go on as if nothing happened.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => return None,
            }
        }
        let view = PagingView {
            routing_file: self.routing_file.clone(),
            lease: self.routing.lease.as_ref().map(|_| lease),
            muted: d.muted,
            held: self.router.held_pages(now_ms),
            windows: self.routing.windows.iter().map(|w| w.view(now)).collect(),
            active_silences: silences
                .iter()
                .filter(|s| s.state(now) == crate::route::silence::SilenceState::Active)
                .count(),
            targets: BTreeMap::new(),
            last_run: Some(now),
            dead_letters: self.outbox.dead_letters().unwrap_or(0),
            task: self.task.clone(),
            storage: self.outbox.health(),
        };
        self.view.send_replace(view);
        next
    }
}
