//! Vigil, the health-monitoring sidecar of the Watch Together server.
//!
//! ```text
//!  probes (http, postgres, redis, tcp, disk)
//!     │  one task each, own interval and timeout, jittered starts
//!     ▼  Report (mpsc)
//!  health stage ── component states, overall verdict (ok | degraded | down)
//!     │  watch channel
//!     ▼
//!  API: /status (JSON, text, HTML), /healthz, /metrics
//! ```
//!
//! Data flows one way; each stage owns its state and hands the next one values.
//! The series store and rule evaluation ([`rules`]), routing and notification
//! ([`paging`]) and CloudWatch publishing ([`publish`]) attach to the same flow.
//!
//! - [`clock`]: times bounded where they enter and arithmetic that saturates.
//! - [`config`]: the YAML file, `${VAR}` expansion, every problem as `file:line:col`,
//!   secrets that never print.
//! - [`probe`]: the [`probe::Probe`] trait, one file per kind, and the scheduler.
//! - [`health`]: reports → component states and the overall verdict.
//! - [`api`]: the HTTP endpoints and their renderings.
//! - [`publish`]: the store's series to CloudWatch (PutMetricData or EMF), with
//!   [`ecs`] (the task metadata endpoint) and [`dashboards`] (render, push, check).
//! - [`supervise`]: a stage that panics or ends turns /healthz to 503 and stops the daemon.
//! - [`daemon`]: wiring and the run loop with graceful shutdown.
//! - [`peer`]: every HTTP peer's answer read with a limit, its errors without URLs.
//! - [`float`]: NaN and ±Inf in every JSON Vigil stores or sends, as Prometheus writes them.
//! - [`logging`]: JSON logs off a terminal, readable logs on one.

pub mod api;
pub mod aws;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dashboards;
pub mod ecs;
pub mod families;
pub mod float;
pub mod health;
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
