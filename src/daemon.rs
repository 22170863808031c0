//! The daemon: probes → health stage → API, wired together and run until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::api::{self, ApiState, Info, ReloadOutcome, RunInfo};
use crate::config::{self, Config};
use crate::health::{self, Component, Health};
use crate::probe::Probe;
use crate::probe::scheduler::{self, Scheduled};
use crate::rules::manager::{self, EngineView, Input, Manager};
use crate::supervise::{Stages, Supervisor, stage};

/// After a stop is asked for, in-flight API requests get this long to finish.
pub(crate) const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The API's port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the config.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The state directory could not be created.
    #[error("cannot create the state directory {dir}: {source}")]
    StateDir {
        /// The directory.
        dir: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A probe could not be built.
    #[error("probe {name}: {reason}")]
    Probe {
        /// The probe's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The API server failed.
    #[error("the API server failed: {0}")]
    Serve(std::io::Error),
    /// The paging stage could not start (its outbox).
    #[error(transparent)]
    Paging(#[from] crate::paging::PagingError),
    /// A long-lived stage panicked or ended while the daemon ran.
    #[error("{0}; stopping so that the task is replaced")]
    Stage(String),
}

/// How long after a start the rules wait for data: every probe's first check (its
/// start is jittered by up to a second) and two scrapes of every target (a `rate()`
/// needs two samples), plus a second of margin.
pub(crate) fn warmup(config: &Config) -> Duration {
    let probes = config
        .probes
        .iter()
        .map(|p| scheduler::first_delay_bound(p.interval) + p.timeout);
    let scrapes = config
        .scrapes
        .iter()
        .map(|s| scheduler::first_delay_bound(s.interval) + s.interval + s.timeout);
    probes.chain(scrapes).max().unwrap_or_default() + Duration::from_secs(1)
}

/// A daemon ready to run: the port is bound and the probes are built.
pub struct Daemon {
    /// The validated config.
    config: Config,
    /// The API's socket, bound in `build` so tests can use port 0.
    listener: TcpListener,
    /// One entry per probe, in config order.
    probes: Vec<(Component, Scheduled)>,
    /// SIGHUP, listened for from `build` on: a SIGHUP while the stages start (reading
    /// the ECS metadata or AWS credentials can take seconds) is a reload once they
    /// have, not the end of the process, which is what SIGHUP does unheard.
    hangups: Option<Signal>,
}

/// Builds every probe of `config`.
fn build_probes(config: &Config) -> Result<Vec<(Component, Scheduled)>, DaemonError> {
    let mut probes = Vec::with_capacity(config.probes.len());
    for p in &config.probes {
        let probe = p
            .spec
            .build(p.timeout)
            .map_err(|reason| DaemonError::Probe {
                name: p.name.clone(),
                reason,
            })?;
        let component = Component::new(
            &p.name,
            p.spec.kind(),
            probe.target(),
            p.critical,
            p.interval,
            p.timeout,
        );
        probes.push((
            component,
            Scheduled {
                probe: Arc::new(probe),
                interval: p.interval,
                timeout: p.timeout,
            },
        ));
    }
    Ok(probes)
}

/// `/healthz` fails when no probe has reported for this long.
fn stale_after(config: &Config) -> Duration {
    let slowest = config
        .probes
        .iter()
        .map(|p| p.interval + p.timeout)
        .max()
        .unwrap_or(Duration::from_secs(10));
    (slowest * 3).max(Duration::from_secs(10))
}

impl Daemon {
    /// Binds the port, creates the state directory and builds the probes.
    pub async fn build(config: Config) -> Result<Daemon, DaemonError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| DaemonError::StateDir {
            dir: config.state_dir.display().to_string(),
            source,
        })?;
        let probes = build_probes(&config)?;
        let hangups = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(message = "Cannot listen for SIGHUP; reload through POST /-/reload.", error = %e);
                None
            }
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| DaemonError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Daemon {
            config,
            listener,
            probes,
            hangups,
        })
    }

    /// The API's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Runs until `shutdown` completes, then stops every stage and gives in-flight
    /// API requests [`SHUTDOWN_DEADLINE`] to finish. SIGHUP and `POST /-/reload`
    /// reload the config and the rules.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        self.start().await?.supervise(shutdown).await
    }

    /// Starts every stage, consumers before their sources: the ECS metadata poller
    /// (its task names paging's per-task alerts), paging, the rule manager, the
    /// publisher, the health stage, then the probes and scrapes (owned by the reload
    /// control), and builds the API.
    async fn start(self) -> Result<Started, DaemonError> {
        let supervisor = Supervisor::new();
        let mut stages = Stages::new(supervisor.clone());
        let (components, scheduled): (Vec<_>, Vec<_>) = self.probes.into_iter().unzip();
        let (state_tx, state_rx) = watch::channel(Health::new(components));
        let (report_tx, report_rx) = mpsc::channel(256);
        let (engine_tx, engine_rx) = mpsc::channel(256);
        let (view_tx, view_rx) = watch::channel(EngineView::default());
        let (routed_tx, routed_rx) = watch::channel(None);
        let manager = Manager::new(
            manager::Options {
                groups: self.config.rules.clone(),
                default_interval: self.config.evaluation_interval,
                max_series: self.config.max_series,
                max_bytes: self.config.max_bytes,
                retention: self.config.retention,
                warmup: warmup(&self.config),
                notify: Some(Box::new(move |alerts| {
                    routed_tx.send_replace(Some(alerts));
                })),
                ..manager::Options::new(&self.config.state_dir)
            },
            view_tx,
        );
        let (ecs, task, ecs_interval) =
            start_ecs(&self.config, engine_tx.clone(), &mut stages).await;
        let port = self.listener.local_addr().map_or(0, |a| a.port());
        let task_id = task_name(task.as_ref(), port);
        let history_alerts = routed_rx.clone();
        let history = crate::history::Settings {
            state_dir: self.config.state_dir.clone(),
            environment: self.config.environment.clone(),
            task: task_id.clone(),
        };
        let (journal, journal_rx) = crate::notify::Journal::new(1024);
        let paging = match &self.config.routing {
            Some(routing) => Some(
                crate::paging::start(
                    crate::paging::Settings {
                        routing: routing.clone(),
                        environment: self.config.environment.clone(),
                        state_dir: self.config.state_dir.clone(),
                        external_url: self.config.external_url.clone(),
                        task: task_id.clone(),
                        journal: Some(journal.clone()),
                    },
                    routed_rx,
                    &mut stages,
                )
                .await?,
            ),
            None => {
                tracing::warn!(
                    message = "No routing file in the config: alerts are evaluated and shown, but page nobody."
                );
                None
            }
        };
        let token = std::env::var("VIGIL_API_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(|t| Arc::new(crate::settings::secret::Secret::new(t)));
        // The manager ends when every source of samples is gone, so it still answers
        // the publisher's last snapshot at a stop.
        stages.spawn_draining("the rule manager", manager.run(engine_rx));
        let publish = match &self.config.publish {
            Some(cw) => {
                let place = place(&self.config, cw, task.as_ref());
                let sink = crate::publish::sink(cw).await;
                let publisher = crate::publish::start(
                    cw.clone(),
                    place,
                    sink,
                    engine_tx.clone(),
                    publish_lag(&self.config),
                    &mut stages,
                );
                Some(publisher.view)
            }
            None => None,
        };
        let (history_tx, history_rx) = watch::channel(Arc::default());
        stages.spawn_draining(
            "the history",
            crate::history::History::run(
                history,
                crate::history::Inputs {
                    health: state_rx.clone(),
                    alerts: history_alerts,
                    paging: paging.as_ref().map(|p| p.subscribe()),
                    silences: paging.as_ref().map(|p| p.silences.clone()),
                    journal: Some((journal_rx, journal)),
                },
                history_tx,
                supervisor.shutdown(),
            ),
        );
        let fleet = self
            .config
            .routing
            .as_ref()
            .and_then(|r| r.lease.as_ref())
            .map(|lease| {
                let (tx, rx) = watch::channel(crate::fleet::FleetView::default());
                stages.spawn_draining(
                    "the fleet",
                    crate::fleet::run(
                        crate::fleet::Spec::new(
                            lease.redis.clone(),
                            &self.config.environment,
                            lease.ttl,
                        ),
                        task_id.clone(),
                        task.as_ref()
                            .map_or_else(|| "local".into(), |t| t.availability_zone.clone()),
                        crate::fleet::Sources {
                            health: state_rx.clone(),
                            engine: view_rx.clone(),
                            paging: paging.as_ref().map(|p| p.subscribe()),
                        },
                        tx,
                        supervisor.shutdown(),
                    ),
                );
                rx
            });
        stages.spawn_draining(
            "the health stage",
            health::run(report_rx, state_tx.clone(), Some(engine_tx.clone())),
        );
        let mut probe_tasks = scheduler::start(scheduled, report_tx.clone(), 0, &supervisor);
        let targets: crate::scrape::Targets = Arc::new(watch::channel(Vec::new()).0);
        start_scrapes(
            &self.config,
            &mut probe_tasks,
            &engine_tx,
            &targets,
            0,
            &supervisor,
        );
        let (run_tx, run_rx) = watch::channel(RunInfo {
            environment: self.config.environment.clone(),
            config_hash: self.config.hash.clone(),
            stale_after_seconds: stale_after(&self.config).as_secs_f64(),
            last_reload: None,
        });
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let info = Info {
            version: env!("CARGO_PKG_VERSION"),
            started_at: Utc::now(),
        };
        let router = api::router(ApiState {
            health: state_rx,
            engine: view_rx,
            run: run_rx,
            reload: reload_tx,
            info: Arc::new(info),
            paging: paging.clone(),
            token,
            publish: publish.clone(),
            ecs,
            failed: supervisor.subscribe(),
            scrapes: targets.subscribe(),
            history: history_rx,
            fleet,
            task: task_id.clone(),
            external_url: self.config.external_url.clone(),
        });
        tracing::info!(
            message = "Vigil started.",
            version = env!("CARGO_PKG_VERSION"),
            config = %self.config.file.display(),
            config_hash = %self.config.hash,
            probes = self.config.probes.len(),
            rule_groups = self.config.rules.len(),
            scrapes = self.config.scrapes.len(),
        );
        tracing::info!(message = "Listening.", addr = %self.listener.local_addr().map_err(DaemonError::Serve)?);
        // The control owns the probes and scrapes: cancelled at a stop, it drops
        // them, and with them the last senders of reports and samples.
        let at_start = AtStart::of(&self.config);
        let control = Control {
            config: self.config,
            state: state_tx,
            reports: report_tx,
            engine: engine_tx,
            tasks: probe_tasks,
            generation: 0,
            run: run_tx,
            paging,
            supervisor: supervisor.clone(),
            targets,
            hangups: self.hangups,
            at_start,
            ecs_interval,
        };
        stages.spawn("the reload control", control.run(reload_rx));
        Ok(Started {
            listener: self.listener,
            router,
            stages,
            publish,
        })
    }
}

/// A daemon whose stages run, and its API not yet served.
struct Started {
    /// The API's socket.
    listener: TcpListener,
    /// The API.
    router: axum::Router,
    /// Every stage.
    stages: Stages,
    /// The publisher's view, to say what a stop left unsent.
    publish: Option<watch::Receiver<crate::publish::PublishView>>,
}

impl Started {
    /// Serves the API until `shutdown` completes or a stage fails, drains it for at
    /// most [`SHUTDOWN_DEADLINE`] with every stage still running, then fires the
    /// shutdown token and waits for the stages (the publisher's last flush gets
    /// [`PUBLISH_DEADLINE`]).
    async fn supervise(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        let supervisor = self.stages.supervisor().clone();
        let (stopping_tx, mut stopping_rx) = watch::channel(false);
        let mut failed = supervisor.subscribe();
        let stopping = supervisor.clone();
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            // A stop asked for, or a stage that failed: the API drains either way.
            tokio::select! {
                () = shutdown => {}
                _ = failed.wait_for(Option::is_some) => {}
            }
            // What ends from here on ends because the daemon stops.
            stopping.stopping();
            let _ = stopping_tx.send(true);
        });
        let deadline = async move {
            let _ = stopping_rx.wait_for(|s| *s).await;
            tracing::info!(
                message = "Stopping.",
                deadline_seconds = SHUTDOWN_DEADLINE.as_secs()
            );
            tokio::time::sleep(SHUTDOWN_DEADLINE).await;
        };
        let result = tokio::select! {
            r = server => r.map_err(DaemonError::Serve),
            () = deadline => {
                tracing::warn!(message = "API requests still running at the shutdown deadline; stopping anyway.");
                Ok(())
            }
        };
        let failure = supervisor.failure();
        let left = self.stages.stop(PUBLISH_DEADLINE).await;
        if left > 0 {
            tracing::warn!(
                message = "Stages still running at the stop's deadline were cancelled.",
                stages = left
            );
        }
        if let Some(queued) = self.publish.map(|v| v.borrow().queued).filter(|q| *q > 0) {
            tracing::warn!(
                message = "Stopping with datums not sent to CloudWatch.",
                datums = queued
            );
        }
        tracing::info!(message = "Vigil stopped.");
        match failure {
            Some(reason) => Err(DaemonError::Stage(reason)),
            None => result,
        }
    }
}

/// The name of this sidecar's task: the ECS task id, else `VIGIL_TASK_ID`, else the
/// host's name (a laptop, a VM), else `local`.
fn task_name(task: Option<&crate::ecs::TaskInfo>, port: u16) -> String {
    task.map(|t| t.task_id.clone())
        .or_else(|| std::env::var("VIGIL_TASK_ID").ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            // Several sidecars on one host (a laptop) are told apart by their port.
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "local".into());
            format!("{host}:{port}")
        })
}

/// Starts reading the ECS task metadata when `ECS_CONTAINER_METADATA_URI_V4` is set:
/// the view for the API, the task (for dimensions) and where a reload sends the
/// poller a new evaluation interval; the poller runs in `stages`.
async fn start_ecs(
    config: &Config,
    engine: mpsc::Sender<Input>,
    stages: &mut Stages,
) -> (
    Option<watch::Receiver<crate::ecs::EcsView>>,
    Option<crate::ecs::TaskInfo>,
    Option<watch::Sender<Duration>>,
) {
    let Some(endpoint) = crate::ecs::Endpoint::from_env() else {
        return (None, None, None);
    };
    let (interval_tx, interval_rx) = watch::channel(config.evaluation_interval);
    let (tx, rx) = watch::channel(crate::ecs::EcsView::default());
    let doc = match crate::ecs::read_task(&endpoint).await {
        Ok(doc) => doc,
        Err(e) => {
            tracing::warn!(message = "Cannot read the ECS task metadata; task dimensions fall back to the host name.", error = %e);
            tx.send_modify(|v| v.last_error = Some(e));
            serde_json::Value::Null
        }
    };
    let task = crate::ecs::task_info(&doc).ok();
    stages.spawn(
        "the ECS metadata poller",
        crate::ecs::run(
            endpoint,
            task.clone(),
            crate::ecs::container_names(&doc),
            interval_rx,
            engine,
            tx,
        ),
    );
    (Some(rx), task, Some(interval_tx))
}

/// How far behind real time each CloudWatch flush's window ends: the longest probe or
/// scrape timeout (a sample is stamped when its check starts) and a second.
pub(crate) fn publish_lag(config: &Config) -> Duration {
    let probes = config.probes.iter().map(|p| p.timeout);
    let scrapes = config.scrapes.iter().map(|s| s.timeout);
    probes.chain(scrapes).max().unwrap_or_default() + Duration::from_secs(1)
}

/// Where this Vigil runs, for CloudWatch's fixed dimensions: the ECS task, or the
/// host name and `local` off ECS.
fn place(
    config: &Config,
    cw: &crate::publish::CloudWatchConfig,
    task: Option<&crate::ecs::TaskInfo>,
) -> crate::publish::Place {
    let host = || {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "local".to_string())
    };
    let or_local = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("local").to_string();
    crate::publish::Place {
        environment: config.environment.clone(),
        service: cw.service.clone(),
        task_id: task.map_or_else(host, |t| t.task_id.clone()),
        cluster: or_local(task.map(|t| t.cluster.as_str())),
        availability_zone: or_local(task.map(|t| t.availability_zone.as_str())),
        task_definition: or_local(task.map(|t| t.task_definition.as_str())),
    }
}

/// At a stop, the last CloudWatch flush gets this long to be sent (ECS waits 30 s
/// between SIGTERM and SIGKILL; the API's deadline comes first).
pub(crate) const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// Owns what a reload replaces: the probe and scrape tasks and the config.
struct Control {
    /// The running config.
    config: Config,
    /// The health state, replaced with new components on reload.
    state: watch::Sender<Health>,
    /// Where probes report.
    reports: mpsc::Sender<crate::probe::scheduler::Report>,
    /// Where scrapes and new rules go.
    engine: mpsc::Sender<Input>,
    /// The probe and scrape tasks.
    tasks: JoinSet<()>,
    /// Reload count; reports of older probes are ignored.
    generation: u64,
    /// What the API shows of the running config and the last reload.
    run: watch::Sender<RunInfo>,
    /// The paging stage, which takes a reloaded routing file.
    paging: Option<Arc<crate::paging::Paging>>,
    /// Told when a probe or scrape task started by a reload panics or ends.
    supervisor: Arc<Supervisor>,
    /// The scrape targets' views.
    targets: crate::scrape::Targets,
    /// SIGHUP, when it could be listened for.
    hangups: Option<Signal>,
    /// The settings only a restart applies, as the daemon started with them.
    at_start: AtStart,
    /// The ECS stats poller's interval (the evaluation interval), when it runs.
    ecs_interval: Option<watch::Sender<Duration>>,
}

/// The settings a reload cannot change, as the daemon started with them: the API's
/// address and the state directory; the environment and `external_url` (in the
/// lease's key, alarm names, the history, pages' links); the store's bounds;
/// publishing; whether there is a routing file, and its lease's Redis and length. A
/// reload that changes one says so, in its answer, `/status` and the log, instead of
/// reporting success while the old value runs on.
#[derive(Debug, Clone, PartialEq)]
struct AtStart {
    listen: SocketAddr,
    state_dir: std::path::PathBuf,
    environment: String,
    external_url: String,
    store: (Duration, usize, usize),
    publish: Option<crate::publish::CloudWatchConfig>,
    routing: bool,
    lease: Option<(crate::settings::secret::SecretUrl, Duration)>,
}

impl AtStart {
    fn of(c: &Config) -> AtStart {
        AtStart {
            listen: c.listen,
            state_dir: c.state_dir.clone(),
            environment: c.environment.clone(),
            external_url: c.external_url.clone(),
            store: (c.retention, c.max_series, c.max_bytes),
            publish: c.publish.clone(),
            routing: c.routing.is_some(),
            lease: c
                .routing
                .as_ref()
                .and_then(|r| r.lease.as_ref())
                .map(|l| (l.redis.clone(), l.ttl)),
        }
    }

    /// The settings `config` has otherwise than at the start, by their names in the
    /// config file.
    fn restart_needed(&self, config: &Config) -> Vec<&'static str> {
        let now = AtStart::of(config);
        [
            (self.listen != now.listen, "listen"),
            (self.state_dir != now.state_dir, "state_dir"),
            (self.environment != now.environment, "environment"),
            (self.external_url != now.external_url, "external_url"),
            (self.store != now.store, "store"),
            (self.publish != now.publish, "publish"),
            (self.routing != now.routing, "routing"),
            (self.lease != now.lease, "routing's lease"),
        ]
        .into_iter()
        .filter_map(|(changed, name)| changed.then_some(name))
        .collect()
    }
}

/// Starts one task per scrape target of `config` into `tasks`, and resets the
/// targets' views to "not yet scraped" for `generation`.
fn start_scrapes(
    config: &Config,
    tasks: &mut JoinSet<()>,
    engine: &mpsc::Sender<Input>,
    targets: &crate::scrape::Targets,
    generation: u64,
    supervisor: &Arc<Supervisor>,
) {
    targets.send_replace(
        config
            .scrapes
            .iter()
            .map(|s| crate::scrape::TargetView::new(s, generation))
            .collect(),
    );
    for (i, s) in config.scrapes.iter().enumerate() {
        tasks.spawn(stage(
            supervisor,
            format!("scrape {i}"),
            crate::scrape::run(i, s.clone(), engine.clone(), targets.clone(), generation),
        ));
    }
}

impl Control {
    async fn run(mut self, mut requests: mpsc::Receiver<crate::api::ReloadRequest>) {
        let mut hangups = self.hangups.take();
        loop {
            let mut replies = tokio::select! {
                r = requests.recv() => match r {
                    Some(reply) => vec![reply],
                    None => return,
                },
                Some(()) = async {
                    match hangups.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => Vec::new(),
            };
            // Reloads asked for together are one reload: every asker gets its
            // outcome, and a burst of requests restarts nothing twice.
            while let Ok(more) = requests.try_recv() {
                replies.push(more);
            }
            let result = self.reload().await;
            for reply in replies {
                let _ = reply.send(result.clone());
            }
        }
    }

    async fn reload(&mut self) -> Result<crate::api::Reloaded, String> {
        let file = self.config.file.clone();
        let outcome = match config::load(&file) {
            Err(problems) => Err(problems.to_string()),
            Ok(new) if new.fingerprint == self.config.fingerprint => {
                tracing::info!(message = "Reload asked for; no file changed, so nothing restarts.");
                Ok(self.reloaded())
            }
            Ok(new) => match build_probes(&new) {
                Err(e) => Err(e.to_string()),
                Ok(probes) => {
                    self.apply(new, probes).await;
                    Ok(self.reloaded())
                }
            },
        };
        let at = Utc::now();
        match &outcome {
            Ok(r) if !r.restart_needed.is_empty() => {
                tracing::warn!(
                    message = "Reloaded the configuration; some settings take effect only at the next restart.",
                    config_hash = %r.config_hash,
                    restart_needed = %r.restart_needed.join(", ")
                )
            }
            Ok(r) => {
                tracing::info!(message = "Reloaded the configuration.", config_hash = %r.config_hash)
            }
            Err(e) => {
                tracing::error!(message = "Reload failed; the previous configuration keeps running.", problems = %e)
            }
        }
        self.run.send_modify(|r| {
            r.last_reload = Some(ReloadOutcome {
                at,
                ok: outcome.is_ok(),
                error: outcome.as_ref().err().cloned(),
                // A reload refused leaves what an earlier one made wait: still said.
                restart_needed: match &outcome {
                    Ok(r) => r.restart_needed.clone(),
                    Err(_) => self.reloaded().restart_needed,
                },
            });
        });
        outcome
    }

    /// The running config's hash, and what of it waits for a restart.
    fn reloaded(&self) -> crate::api::Reloaded {
        crate::api::Reloaded {
            config_hash: self.config.hash.clone(),
            restart_needed: self
                .at_start
                .restart_needed(&self.config)
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    async fn apply(&mut self, new: Config, probes: Vec<(Component, Scheduled)>) {
        if self.config.publish.is_some() && publish_lag(&new) > publish_lag(&self.config) {
            tracing::warn!(
                message = "A probe or scrape timeout grew past the publisher's lag: samples of slow checks may miss their CloudWatch window until the next restart.",
                lag_seconds = publish_lag(&self.config).as_secs_f64(),
                needed_seconds = publish_lag(&new).as_secs_f64()
            );
        }
        // Adding or removing the routing file waits for a restart (`AtStart`).
        if let (Some(p), Some(r)) = (&self.paging, &new.routing) {
            p.reload(r.clone()).await;
        }
        self.tasks.abort_all();
        self.tasks = JoinSet::new();
        self.generation += 1;
        let (components, scheduled): (Vec<_>, Vec<_>) = probes.into_iter().unzip();
        let mut health = Health::with_generation(components, self.generation);
        // A probe the reload did not change keeps what it knew: its status, its
        // counts, its last error. Only new or changed probes start unknown.
        health.carry_from(&self.state.borrow());
        // The reload counts as activity for /healthz until the new probes report.
        health.last_report = Some(Utc::now());
        self.state.send_replace(health);
        self.tasks = scheduler::start(
            scheduled,
            self.reports.clone(),
            self.generation,
            &self.supervisor,
        );
        start_scrapes(
            &new,
            &mut self.tasks,
            &self.engine,
            &self.targets,
            self.generation,
            &self.supervisor,
        );
        let _ = self
            .engine
            .send(Input::Rules {
                groups: new.rules.clone(),
                default_interval: new.evaluation_interval,
            })
            .await;
        if let Some(ecs) = &self.ecs_interval {
            ecs.send_if_modified(|d| {
                std::mem::replace(d, new.evaluation_interval) != new.evaluation_interval
            });
        }
        // The environment shown stays the one the daemon runs with (`AtStart`).
        self.run.send_modify(|r| {
            r.config_hash = new.hash.clone();
            r.stale_after_seconds = stale_after(&new).as_secs_f64();
        });
        self.config = new;
    }
}
