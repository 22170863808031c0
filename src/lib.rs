//! Vigil, the health-monitoring sidecar of the Watch Together server.
//!
//! ```text
//!  probes (http, postgres, redis, tcp,       ─┐  scrapes of /metrics   ECS task metadata
//!          disk, journey)                     │
//!     │ Report (mpsc), one task each          │  (scrape)              (ecs)
//!     ▼                                       │        │                    │
//!  health stage ── component states, verdict │        │ samples (mpsc)     │
//!     │ samples                               ▼        ▼                    ▼
//!     └──────────────────────────────────► rule manager: series store, rules, alerts
//!                                             │ alerts (notify callback)   │ snapshots
//!                                             ▼                            ▼
//!                          paging: router → outbox → notifiers      publish: CloudWatch
//!  health, alerts, mutes, deliveries ──► history: minutes + incidents on disk (90 days)
//!  health, alerts, lease ──► fleet: this task's snapshot in Redis, everyone's read back
//!  API: /status, /healthz, /metrics, /api/alerts, /api/silences, /badge, /api/v2, reload
//! ```
//!
//! Data flows one way; each stage owns its state and hands the next one values. The
//! modules, in the order data flows:
//!
//! - [`settings`]: the toolkit every file reader shares (problems as `file:line:col`,
//!   durations, sizes, secrets, the YAML skeleton); a leaf, importing nothing of Vigil's.
//! - [`config`]: the config file, above every kind's own settings.
//! - [`probe`]: the [`probe::Probe`] trait, one file per kind, and the scheduler.
//! - [`health`]: reports → component states and the overall verdict.
//! - [`scrape`]: the app's `/metrics` into the store, as Prometheus scrapes.
//! - [`ecs`]: the ECS task metadata endpoint: the task, its containers' memory and CPU.
//! - [`store`]: the in-memory series store, held to a byte budget.
//! - [`promql`]: PromQL, evaluated over the store with Prometheus's semantics.
//! - [`rules`]: rule files, the alert state machine, the rule manager, promtool-format
//!   rule tests.
//! - [`route`]: the routing file: routes, grouping, inhibition, silences, maintenance
//!   windows, and the router's decisions.
//! - [`notify`]: the outbox and the notifiers (SNS, PagerDuty Events v2, webhook).
//! - [`paging`]: the paging stage: alerts → router → outbox → one worker per integration.
//! - [`history`]: what happened, kept 90 days past restarts: per component and minute
//!   (checks, failures, downtime, latency), and the incident log (fired, resolved,
//!   paged whom, muted by what).
//! - [`fleet`]: every task's snapshot in the lease's Redis, so any sidecar shows the
//!   whole fleet.
//! - [`publish`]: the store's series to CloudWatch (PutMetricData or EMF).
//! - [`dashboards`]: the CloudWatch dashboards (render, push, check).
//! - [`api`]: the HTTP endpoints and their renderings; [`families`]: every metric
//!   family's name, typed once.
//! - [`supervise`]: stages supervised and stopped one way (one shutdown token).
//! - [`daemon`]: the stages started in this order, then supervised.
//! - Shared leaves: [`peer`] (every peer's answer read with a limit, one retryable
//!   error, one HTTP client), [`aws`] (the SDKs' configuration, answers cut at 1 MiB),
//!   [`clock`] (times bounded where they enter, arithmetic that saturates), [`float`]
//!   (NaN and ±Inf written and read as Prometheus does), [`logging`] (JSON logs off a
//!   terminal, every line scrubbed of secrets).

pub mod api;
pub mod aws;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dashboards;
pub mod ecs;
pub mod families;
pub mod fleet;
pub mod float;
pub mod health;
pub mod history;
pub mod logging;
pub mod notify;
pub mod paging;
pub mod peer;
pub mod probe;
pub mod promql;
pub mod publish;
pub mod route;
pub mod rules;
pub mod scrape;
pub mod settings;
pub mod store;
pub mod supervise;

pub use daemon::Daemon;
