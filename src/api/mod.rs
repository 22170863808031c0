//! The HTTP API: `GET /status` (JSON, text, HTML), `GET /healthz`, `GET /metrics`,
//! `GET /api/alerts`, `GET` and `POST /api/silences`, `DELETE /api/silences/{id}` and
//! `POST /-/reload`. Every error is JSON with a reason:
//! `{"error": "...", "reason": "..."}`.

pub mod badge;
pub mod history;
pub mod metrics;
pub mod page;
pub mod silences;
pub mod status;
pub mod statuspage;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use crate::health::{Health, Overall};
use crate::rules::manager::EngineView;
use crate::store::Labels;
use status::StatusReport;

/// What the API knows of the daemon that never changes.
#[derive(Debug, Clone)]
pub struct Info {
    /// Vigil's version.
    pub version: &'static str,
    /// When the daemon started.
    pub started_at: DateTime<Utc>,
}

/// The running configuration as the API shows it; replaced by reloads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The environment from the config.
    pub environment: String,
    /// The config's hash.
    pub config_hash: String,
    /// `/healthz` fails when no probe has reported for this long: the scheduler or
    /// the health stage is stuck.
    #[serde(with = "crate::float")]
    pub stale_after_seconds: f64,
    /// The last reload, if any.
    pub last_reload: Option<ReloadOutcome>,
}

/// How a reload went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    /// When it was asked for.
    pub at: DateTime<Utc>,
    /// Whether the new configuration runs.
    pub ok: bool,
    /// Why not, every problem as file:line:col.
    pub error: Option<String>,
    /// Settings the reloaded files change that only a restart applies (`environment`,
    /// `store`, …): until then the daemon runs with those it started with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_needed: Vec<String>,
}

/// What a reload that succeeded answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reloaded {
    /// The new config's hash.
    pub config_hash: String,
    /// Settings it changes that take effect only at the next restart.
    pub restart_needed: Vec<String>,
}

/// A reload asked through the API (`POST /-/reload`, SIGHUP too); the answer is
/// what was reloaded, or the problems.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<Reloaded, String>>;

/// The API's shared state.
#[derive(Clone)]
pub struct ApiState {
    /// The health stage's published state.
    pub health: watch::Receiver<Health>,
    /// The rule manager's published state: alerts, store figures.
    pub engine: watch::Receiver<EngineView>,
    /// The running configuration and the last reload.
    pub run: watch::Receiver<RunInfo>,
    /// Asks the daemon to reload.
    pub reload: tokio::sync::mpsc::Sender<ReloadRequest>,
    /// Facts about the daemon.
    pub info: Arc<Info>,
    /// Paging: silences, the outbox and the router's view (`None` without a
    /// routing file).
    pub paging: Option<Arc<crate::paging::Paging>>,
    /// The first stage of the daemon that panicked or ended, if one did:
    /// `/healthz` then answers 503 while the daemon stops.
    pub failed: watch::Receiver<Option<String>>,
    /// The bearer token that guards silences (`VIGIL_API_TOKEN`); without one, the
    /// silence endpoints answer 401.
    pub token: Option<Arc<crate::settings::secret::Secret>>,
    /// CloudWatch publishing (`None` when not configured).
    pub publish: Option<watch::Receiver<crate::publish::PublishView>>,
    /// The ECS task (`None` off ECS).
    pub ecs: Option<watch::Receiver<crate::ecs::EcsView>>,
    /// The scrape targets, in config order.
    pub scrapes: watch::Receiver<Vec<crate::scrape::TargetView>>,
    /// What happened: per-minute history, incidents, the pipeline's heartbeat.
    pub history: watch::Receiver<Arc<crate::history::HistoryView>>,
    /// Every task's snapshot (`None` without a lease Redis: this task alone).
    pub fleet: Option<watch::Receiver<crate::fleet::FleetView>>,
    /// This sidecar's task.
    pub task: String,
    /// Vigil's own address (config `external_url`), for links.
    pub external_url: String,
}

/// How long a request may take before it is answered 503.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .route("/api/alerts", get(alerts))
        .route("/api/v2/summary.json", get(statuspage::summary_json))
        .route("/api/v2/status.json", get(statuspage::status_json))
        .route("/badge/{component}/{file}", get(badge::status))
        .route("/badge/{component}/uptime/{file}", get(badge::uptime))
        .route("/-/reload", axum::routing::post(reload))
        .route("/api/silences", get(silences::list).post(silences::add))
        .route(
            "/api/silences/{id}",
            axum::routing::delete(silences::expire),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            API_TIMEOUT,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Every error answered in plain text or with no body — what axum's extractors say of a
/// query that does not parse, a body over the limit or of the wrong type, a path that
/// is not UTF-8, and the timeout's empty 503 — becomes the JSON every other error is,
/// `{"error": kind, "reason": text}`, its text the reason. A 5xx in plain text is left
/// as it is: that is `/status?format=text` saying the service is down.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(kind.is_empty() || kind.starts_with("text/plain") && status.is_client_error()) {
        return response;
    }
    // The texts are a line; a longer body is cut, not buffered whole.
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let reason = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::SERVICE_UNAVAILABLE) => {
            format!("no answer within {} s", API_TIMEOUT.as_secs())
        }
        (true, _) => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let kind = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace([' ', '-'], "_");
    error(status, &kind, reason)
}

/// A handler that panicked answers 500 with a JSON reason, and the panic is logged
/// (rather than the connection simply closing).
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(message = "An API handler panicked.", panic = %what);
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request failed inside Vigil; see its log",
    )
}

/// A JSON error: `{"error": kind, "reason": reason}`.
pub fn error(status: StatusCode, kind: &str, reason: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": kind, "reason": reason.into() })),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {}; try /status, /healthz or /metrics",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not accept {method}", uri.path()),
    )
}

/// Builds the `/status` document from the current state.
pub fn report(state: &ApiState, now: DateTime<Utc>) -> StatusReport {
    // One watch guard at a time, each dropped at the end of its statement: a guard
    // is a read lock, and a second read of the same lock on this thread while its
    // writer waits (the rule manager publishing) would block forever.
    let health = state.health.borrow().clone();
    let run = state.run.borrow().clone();
    let engine = state.engine.borrow().clone();
    let past = state.history.borrow().clone();
    let paging = state.paging.as_ref().map(|p| p.view());
    StatusReport {
        status: health.overall(),
        version: state.info.version.to_string(),
        environment: run.environment.clone(),
        started_at: state.info.started_at,
        uptime_seconds: (now - state.info.started_at).num_seconds().max(0) as u64,
        config_hash: run.config_hash.clone(),
        last_reload: run.last_reload.clone(),
        generated_at: now,
        history: Some(history::summary(
            &health.components,
            &past,
            &engine,
            paging.as_ref(),
            now,
        )),
        fleet: Some(fleet(state, &health, now)),
        components: health.components,
        engine,
        paging,
        publishing: state.publish.as_ref().map(|p| p.borrow().clone()),
        task: state.ecs.as_ref().map(|e| e.borrow().clone()),
        scrapes: state.scrapes.borrow().clone(),
        silences: state
            .paging
            .as_ref()
            .map(|p| {
                p.silences
                    .list()
                    .into_iter()
                    .filter(|s| s.state(now) != crate::route::silence::SilenceState::Expired)
                    .map(|s| status::SilenceSummary {
                        id: s.id,
                        matchers: s.matchers.iter().map(ToString::to_string).collect(),
                        starts_at: s.starts_at,
                        ends_at: s.ends_at,
                        created_by: s.created_by,
                        comment: s.comment,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The fleet as the fleet stage last read it, or this task alone and why.
fn fleet(state: &ApiState, health: &Health, now: DateTime<Utc>) -> crate::fleet::FleetView {
    let me = || crate::fleet::Snapshot {
        task: state.task.clone(),
        availability_zone: state
            .ecs
            .as_ref()
            .and_then(|e| {
                e.borrow()
                    .task
                    .as_ref()
                    .map(|t| t.availability_zone.clone())
            })
            .unwrap_or_else(|| "local".into()),
        version: state.info.version.to_string(),
        status: health.overall(),
        components: health
            .components
            .iter()
            .map(|c| (c.name.clone(), c.status))
            .collect(),
        firing: Vec::new(),
        lease: state.paging.as_ref().and_then(|p| p.view().lease),
        seen_at: now,
    };
    match &state.fleet {
        Some(f) => {
            let v = f.borrow().clone();
            if v.tasks.is_empty() {
                crate::fleet::alone(me(), "the fleet has not been read yet".into())
            } else {
                v
            }
        }
        None => crate::fleet::alone(
            me(),
            "no lease Redis is configured (routing: lease:), so sidecars cannot see each other: this task alone".into(),
        ),
    }
}

/// `POST /-/reload`: reloads the config and the rules. 200 with the new config hash;
/// 400 with every problem when the new files are invalid (the old ones keep running).
async fn reload(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    // A reload restarts probes: anything that reaches the port could otherwise
    // keep them from ever reporting. SIGHUP needs no token.
    if let Some(refused) =
        silences::check_token(&state, &headers, "reloading over HTTP is disabled")
    {
        return refused;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if state.reload.send(tx).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the daemon is stopping",
        );
    }
    match rx.await {
        Ok(Ok(r)) => Json(json!({
            "status": "reloaded",
            "config_hash": r.config_hash,
            "restart_needed": r.restart_needed,
        }))
        .into_response(),
        Ok(Err(problems)) => error(
            StatusCode::BAD_REQUEST,
            "reload_failed",
            format!("the previous configuration keeps running: {problems}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the daemon is stopping",
        ),
    }
}

/// `GET /api/alerts`: pending and firing alerts, firing first.
async fn alerts(State(state): State<ApiState>) -> Response {
    let alerts = state.engine.borrow().alerts.clone();
    Json(json!({ "alerts": alerts })).into_response()
}

/// `?format=` of `/status`.
#[derive(Debug, Deserialize)]
struct StatusQuery {
    format: Option<String>,
}

async fn status(
    State(state): State<ApiState>,
    Query(query): Query<StatusQuery>,
    headers: HeaderMap,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = match query.format.as_deref() {
        Some(f @ ("json" | "text" | "html")) => f,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("format {other:?} is not known; use json, text or html"),
            );
        }
        None if accept.contains("text/html") => "html",
        None if accept.contains("text/plain") && !accept.contains("json") => "text",
        None => "json",
    };
    let r = report(&state, Utc::now());
    let code = if r.status == Overall::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let no_store = (header::CACHE_CONTROL, "no-store");
    match format {
        "html" => (
            code,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8"), no_store],
            page::render(&r),
        )
            .into_response(),
        "text" => (
            code,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                no_store,
            ],
            status::render_text(&r),
        )
            .into_response(),
        _ => (code, [no_store], Json(r)).into_response(),
    }
}

/// `/healthz`: 200 while the daemon itself works, which means probe reports keep
/// arriving; 503 when they stopped (the container's health check restarts it).
async fn healthz(State(state): State<ApiState>) -> Response {
    let now = Utc::now();
    let since = state
        .health
        .borrow()
        .last_report
        .unwrap_or(state.info.started_at);
    let quiet = (now - since).to_std().unwrap_or_default();
    let stale_after = Duration::from_secs_f64(state.run.borrow().stale_after_seconds);
    if let Some(reason) = state.failed.borrow().clone() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "stage_stopped", reason);
    }
    if state.health.has_changed().is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopped",
            "the health stage has stopped",
        );
    }
    if quiet > stale_after {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stuck",
            format!("no probe has reported for {}s", quiet.as_secs()),
        );
    }
    // Storage trouble is said, not failed on: pages go out from memory, and a new
    // task would find the same full disk.
    let storage = state.paging.as_ref().map(|p| p.view().storage);
    match storage.and_then(|s| s.error) {
        Some(e) => Json(json!({ "status": "ok", "storage": format!("failing: {e}") })),
        None => Json(json!({ "status": "ok" })),
    }
    .into_response()
}

async fn metrics_page(State(state): State<ApiState>) -> Response {
    let start_time = state.info.started_at.timestamp_millis() as f64 / 1000.0;
    let mut series = vec![
        (
            Labels::from_pairs(
                crate::families::BUILD_INFO,
                &[("version", state.info.version)],
            ),
            1.0,
        ),
        (
            Labels::from_pairs(crate::families::START_TIME_SECONDS, &[]),
            start_time,
        ),
    ];
    series.extend(state.health.borrow().series());
    let e = state.engine.borrow().clone();
    let firing = e
        .alerts
        .iter()
        .filter(|a| a.state == crate::rules::alerting::State::Firing)
        .count();
    series.extend([
        (
            Labels::from_pairs(crate::families::STORE_SERIES, &[]),
            e.series as f64,
        ),
        (
            Labels::from_pairs(crate::families::STORE_SAMPLES, &[]),
            e.samples as f64,
        ),
        (
            Labels::from_pairs(crate::families::STORE_SERIES_DROPPED_TOTAL, &[]),
            e.dropped_series as f64,
        ),
        (
            Labels::from_pairs(crate::families::STORE_BYTES, &[]),
            e.bytes as f64,
        ),
        (
            Labels::from_pairs(crate::families::STORE_MAX_BYTES, &[]),
            e.max_bytes as f64,
        ),
        (
            Labels::from_pairs(crate::families::STORE_RETENTION_SECONDS, &[]),
            e.retention_seconds,
        ),
        (
            Labels::from_pairs(crate::families::STORE_SAMPLES_EVICTED_TOTAL, &[]),
            e.evicted_samples as f64,
        ),
        (
            Labels::from_pairs(crate::families::RULE_EVALUATIONS_TOTAL, &[]),
            e.evaluations_total as f64,
        ),
        (
            Labels::from_pairs(crate::families::RULE_EVALUATION_DURATION_SECONDS, &[]),
            e.evaluation_seconds,
        ),
        (
            Labels::from_pairs(crate::families::RULE_EVALUATION_FAILURES, &[]),
            e.rule_errors.len() as f64,
        ),
        (
            Labels::from_pairs(crate::families::ALERTS, &[("state", "firing")]),
            firing as f64,
        ),
        (
            Labels::from_pairs(crate::families::ALERTS, &[("state", "pending")]),
            (e.alerts.len() - firing) as f64,
        ),
    ]);
    if let Some(at) = e.last_evaluation {
        series.push((
            Labels::from_pairs(crate::families::HEARTBEAT, &[]),
            at.timestamp_millis() as f64 / 1000.0,
        ));
    }
    if let Some(p) = &state.paging {
        series.extend(metrics::paging_series(&p.view(), Utc::now()));
    }
    if let Some(p) = &state.publish {
        series.extend(metrics::publish_series(&p.borrow()));
    }
    if let Some(e) = &state.ecs {
        series.extend(e.borrow().series.iter().cloned());
    }
    let body = metrics::render(&series);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
