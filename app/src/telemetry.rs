//! Logging, the Prometheus recorder, and the middleware that measures every request.
//!
//! Metric names (all in the Prometheus text format at `/metrics`):
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `http_requests_total` | counter | `method`, `route`, `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route` |
//! | `app_db_query_duration_seconds` | histogram | `query` |
//! | `app_cache_requests_total` | counter | `operation` (`get_room`, `health_check`), `result` (`hit`, `miss`, `error`) |
//! | `cache_command_duration_seconds` | histogram | `command` |
//! | `db_pool_connections` | gauge | `state` (`idle`, `in_use`) |
//! | `app_ws_connections` | gauge | |
//! | `app_rooms_active` | gauge | |
//! | `app_room_members` | gauge | |
//! | `app_ws_messages_total` | counter | `type` |
//! | `app_ws_slow_consumers_total` | counter | |
//! | `app_pubsub_delivery_lag_seconds` | histogram | |
//!
//! `route` is the matched route template (`/api/rooms/{id}`), never the raw path, and
//! requests that match no route share the value `unmatched`; `method` is one of the
//! nine standard methods or `other`: the label set stays small whatever clients send.
//!
//! Every request has an id: the client's `X-Request-Id` when it is a plain token of
//! at most 64 characters, else a new one. It is echoed in the answer's
//! `X-Request-Id`, and a failure's details are logged under it while the client is
//! told only the id ([`crate::error::hidden`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::LogFormat;

/// Histogram buckets in seconds: fine below 100 ms, and edges at 2 s, 5 s and 10 s so
/// that "latency above 2 s" can be answered from the buckets exactly.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0,
];

/// Buckets of the pub/sub delivery lag: from a millisecond to 2.5 s.
pub const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. Tests that build
/// several servers in one process share it, so they compare counts before and after.
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), DURATION_BUCKETS)
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(
                Matcher::Full("app_pubsub_delivery_lag_seconds".into()),
                LAG_BUCKETS,
            )
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours renders an
        // empty page, which the tests would notice.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Drains histogram samples into their buckets every 5 s so memory stays flat.
pub fn spawn_upkeep() -> tokio::task::JoinHandle<()> {
    let handle = prometheus().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

/// `GET /metrics`.
pub async fn render_metrics(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
) -> impl IntoResponse {
    let idle = state.db.num_idle() as f64;
    let size = f64::from(state.db.size());
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "in_use").set(size - idle);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus().render(),
    )
}

tokio::task_local! {
    /// The id of the request being served.
    static REQUEST_ID: String;
}

/// The id of the request this task serves (`none` outside a request).
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "none".to_string())
}

/// The `method` label: a standard method's name, or `other` for anything a client
/// made up (each made-up method would otherwise be a new series, kept for ever).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The client's request id when it is a plain token, else a new one.
fn request_id_for(request: &Request) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: OnceLock<String> = OnceLock::new();
    let given = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    match given {
        Some(id) => id.to_string(),
        None => {
            let prefix = PREFIX.get_or_init(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or_default();
                format!(
                    "{:08x}",
                    (nanos ^ u64::from(std::process::id()) << 32) as u32
                )
            });
            format!("{prefix}-{:06x}", NEXT.fetch_add(1, Ordering::Relaxed))
        }
    }
}

/// The counter and the histogram of one (route, method, status).
struct RequestSeries {
    count: metrics::Counter,
    duration: metrics::Histogram,
}

/// One route template's series by (method label, status).
type RouteSeries = HashMap<(&'static str, u16), RequestSeries>;

thread_local! {
    /// Each worker thread's handles by route template, then (method, status): found
    /// once, then used without building the labels or searching the registry again.
    /// Bounded by the router's templates (and `unmatched`) times the ten method labels
    /// times the statuses the handlers answer.
    static SERIES: RefCell<HashMap<Box<str>, RouteSeries>> = RefCell::new(HashMap::new());
}

/// Counts and times one answered request.
fn record_request(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    SERIES.with(|series| {
        let mut series = series.borrow_mut();
        if !series.contains_key(route) {
            series.insert(route.into(), HashMap::new());
        }
        let by_route = series.get_mut(route).expect("inserted above");
        let handles = by_route.entry((method, status)).or_insert_with(|| {
            let route = route.to_owned();
            RequestSeries {
                count: metrics::counter!(
                    "http_requests_total",
                    "method" => method,
                    "route" => route.clone(),
                    "status" => status.to_string()
                ),
                duration: metrics::histogram!(
                    "http_request_duration_seconds",
                    "method" => method,
                    "route" => route
                ),
            }
        });
        handles.count.increment(1);
        handles.duration.record(elapsed.as_secs_f64());
    });
}

/// Counts and times every request by method, route template and status, and serves
/// it under its request id.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let id = request_id_for(&request);
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    if let Ok(v) = header::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    record_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        response.status().as_u16(),
        start.elapsed(),
    );
    response
}

/// Installs the tracing subscriber (`RUST_LOG` filters, default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
