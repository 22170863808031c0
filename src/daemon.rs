//! The daemon: probes → health stage → API, wired together and run until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::api::{self, ApiState, Info};
use crate::config::Config;
use crate::health::{self, Component, Health};
use crate::probe::Probe;
use crate::probe::scheduler::{self, Scheduled};
use crate::rules::manager::{EngineView, Manager};

/// After a stop is asked for, in-flight API requests get this long to finish.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

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
}

/// How long after a start the rules wait for data: every probe's first check (its
/// start is jittered by up to a second) and two scrapes of every target (a `rate()`
/// needs two samples), plus a second of margin.
pub fn warmup(config: &Config) -> Duration {
    let probes = config
        .probes
        .iter()
        .map(|p| p.interval.min(Duration::from_secs(1)) + p.timeout);
    let scrapes = config
        .scrapes
        .iter()
        .map(|s| s.interval.min(Duration::from_secs(1)) + s.interval + s.timeout);
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
}

impl Daemon {
    /// Binds the port, creates the state directory and builds the probes.
    pub async fn build(config: Config) -> Result<Daemon, DaemonError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| DaemonError::StateDir {
            dir: config.state_dir.display().to_string(),
            source,
        })?;
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
        })
    }

    /// The API's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Runs until `shutdown` completes, then stops the probes and gives in-flight
    /// API requests [`SHUTDOWN_DEADLINE`] to finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        let slowest = self
            .probes
            .iter()
            .map(|(_, s)| s.interval + s.timeout)
            .max()
            .unwrap_or(Duration::from_secs(10));
        let (components, scheduled): (Vec<_>, Vec<_>) = self.probes.into_iter().unzip();
        let (state_tx, state_rx) = watch::channel(Health::new(components));
        let (report_tx, report_rx) = mpsc::channel(256);
        let (engine_tx, engine_rx) = mpsc::channel(256);
        let (view_tx, view_rx) = watch::channel(EngineView::default());
        let manager = Manager::new(
            self.config.rules.clone(),
            self.config.evaluation_interval,
            self.config.max_series,
            self.config.retention,
            &self.config.state_dir,
            view_tx,
            warmup(&self.config),
        );
        let manager_task = tokio::spawn(manager.run(engine_rx));
        let health_task = tokio::spawn(health::run(report_rx, state_tx, Some(engine_tx.clone())));
        let mut probe_tasks = scheduler::start(scheduled, report_tx);
        for (i, s) in self.config.scrapes.iter().enumerate() {
            probe_tasks.spawn(crate::scrape::run(i, s.clone(), engine_tx.clone()));
        }
        drop(engine_tx);

        let info = Info {
            version: env!("CARGO_PKG_VERSION"),
            environment: self.config.environment.clone(),
            config_hash: self.config.hash.clone(),
            started_at: Utc::now(),
            stale_after: (slowest * 3).max(Duration::from_secs(10)),
        };
        let router = api::router(ApiState {
            health: state_rx,
            engine: view_rx,
            info: Arc::new(info),
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

        let (stopping_tx, mut stopping_rx) = watch::channel(false);
        let server = axum::serve(self.listener, router).with_graceful_shutdown(async move {
            shutdown.await;
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
        probe_tasks.abort_all();
        health_task.abort();
        manager_task.abort();
        tracing::info!(message = "Vigil stopped.");
        result
    }
}
