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
    /// The id of the request being served, as the header it is answered in (a
    /// reference-counted buffer: the task and the answer share it).
    static REQUEST_ID: header::HeaderValue;
}

/// The id of the request this task serves (`none` outside a request).
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.to_str().unwrap_or("none").to_owned())
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
fn request_id_for(request: &Request) -> header::HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: OnceLock<String> = OnceLock::new();
    let given = request.headers().get("x-request-id").filter(|v| {
        let v = v.as_bytes();
        !v.is_empty()
            && v.len() <= 64
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
    });
    match given {
        Some(id) => id.clone(),
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
            let id = format!("{prefix}-{:06x}", NEXT.fetch_add(1, Ordering::Relaxed));
            header::HeaderValue::from_maybe_shared(axum::body::Bytes::from(id))
                .expect("hex digits and a dash are a valid header value")
        }
    }
}

/// Whether this process's recorder is installed: a handle taken before it would
/// count nothing for ever, so none is kept until then.
fn recording() -> bool {
    HANDLE.get().is_some()
}

/// One kept handle: its metric, its labels, and the handle.
struct Kept<H> {
    name: &'static str,
    labels: Vec<(&'static str, &'static str)>,
    handle: H,
}

/// The counter and the histogram of one (route, method, status).
struct RequestSeries {
    route: Box<str>,
    method: &'static str,
    status: u16,
    count: metrics::Counter,
    duration: metrics::Histogram,
}

thread_local! {
    /// Each worker thread's handles, found once through the registry and then used
    /// without building labels or hashing again: a request or a WebSocket message
    /// costs an atomic update per series. The lists are short (the series of this
    /// file's table whose labels come from fixed sets, and the request series of the
    /// router's templates times ten method labels times the statuses answered), so
    /// they are searched in order.
    static COUNTERS: RefCell<Vec<Kept<metrics::Counter>>> = const { RefCell::new(Vec::new()) };
    static HISTOGRAMS: RefCell<Vec<Kept<metrics::Histogram>>> = const { RefCell::new(Vec::new()) };
    static REQUESTS: RefCell<Vec<RequestSeries>> = const { RefCell::new(Vec::new()) };
}

/// The key of a metric whose name and label values are all `&'static str`.
fn static_key(name: &'static str, labels: &[(&'static str, &'static str)]) -> metrics::Key {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|&(k, v)| metrics::Label::from_static_parts(k, v))
        .collect();
    metrics::Key::from_parts(name, labels)
}

/// Looks up (or keeps) the handle of `name{labels}` in `kept` and applies `use_it`.
fn with_kept<H>(
    kept: &RefCell<Vec<Kept<H>>>,
    name: &'static str,
    labels: &[(&'static str, &'static str)],
    register: impl FnOnce(&metrics::Key) -> H,
    use_it: impl FnOnce(&H),
) {
    let mut kept = kept.borrow_mut();
    let found = kept
        .iter()
        .position(|k| k.name == name && k.labels.as_slice() == labels);
    let index = found.unwrap_or_else(|| {
        kept.push(Kept {
            name,
            labels: labels.to_vec(),
            handle: register(&static_key(name, labels)),
        });
        kept.len() - 1
    });
    use_it(&kept[index].handle);
}

/// The metadata of the series registered through [`increment`] and [`record`].
const META: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Adds one to the counter `name{labels}`.
pub fn increment(name: &'static str, labels: &[(&'static str, &'static str)]) {
    if !recording() {
        return;
    }
    COUNTERS.with(|kept| {
        with_kept(
            kept,
            name,
            labels,
            |key| metrics::with_recorder(|r| r.register_counter(key, &META)),
            |c| c.increment(1),
        );
    });
}

/// Records `value` in the histogram `name{labels}`.
pub fn record(name: &'static str, labels: &[(&'static str, &'static str)], value: f64) {
    if !recording() {
        return;
    }
    HISTOGRAMS.with(|kept| {
        with_kept(
            kept,
            name,
            labels,
            |key| metrics::with_recorder(|r| r.register_histogram(key, &META)),
            |h| h.record(value),
        );
    });
}

/// Counts and times one answered request.
fn record_request(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    if !recording() {
        return;
    }
    REQUESTS.with(|series| {
        let mut series = series.borrow_mut();
        let found = series
            .iter()
            .position(|s| s.status == status && s.method == method && &*s.route == route);
        let index = found.unwrap_or_else(|| {
            series.push(RequestSeries {
                route: route.into(),
                method,
                status,
                count: metrics::counter!(
                    "http_requests_total",
                    "method" => method,
                    "route" => route.to_owned(),
                    "status" => status.to_string()
                ),
                duration: metrics::histogram!(
                    "http_request_duration_seconds",
                    "method" => method,
                    "route" => route.to_owned()
                ),
            });
            series.len() - 1
        });
        series[index].count.increment(1);
        series[index].duration.record(elapsed.as_secs_f64());
    });
}

/// Serves every request under its request id and, where `metrics` is on, counts and
/// times it by method, route template and status. The request id stays with the
/// metrics off: a failure's answer and log line are matched by it.
pub async fn serve_request(
    axum::extract::State(metrics): axum::extract::State<bool>,
    request: Request,
    next: Next,
) -> Response {
    let id = request_id_for(&request);
    let timed = metrics.then(|| {
        let route = request.extensions().get::<MatchedPath>().cloned();
        (Instant::now(), method_label(request.method()), route)
    });
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    response.headers_mut().insert("x-request-id", id);
    if let Some((start, method, route)) = timed {
        record_request(
            route.as_ref().map_or("unmatched", MatchedPath::as_str),
            method,
            response.status().as_u16(),
            start.elapsed(),
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the first sample line of `series` on the rendered page.
    fn sample(series: &str) -> Option<f64> {
        prometheus()
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn kept_handles_count_every_use_on_every_thread() {
        prometheus();
        for _ in 0..3 {
            increment("test_kept_total", &[("kind", "a")]);
        }
        increment("test_kept_total", &[("kind", "b")]);
        std::thread::spawn(|| increment("test_kept_total", &[("kind", "a")]))
            .join()
            .unwrap();
        record("test_kept_seconds", &[("kind", "a")], 0.2);
        record("test_kept_seconds", &[("kind", "a")], 0.3);
        assert_eq!(sample(r#"test_kept_total{kind="a"}"#), Some(4.0));
        assert_eq!(sample(r#"test_kept_total{kind="b"}"#), Some(1.0));
        prometheus().run_upkeep();
        assert_eq!(sample(r#"test_kept_seconds_count{kind="a"}"#), Some(2.0));
    }

    #[test]
    fn request_series_are_kept_per_route_method_and_status() {
        prometheus();
        let wait = Duration::from_millis(3);
        record_request("/test/{id}", "GET", 200, wait);
        record_request("/test/{id}", "GET", 200, wait);
        record_request("/test/{id}", "GET", 404, wait);
        record_request("/test/{id}", "POST", 200, wait);
        let key = |m: &str, s: u16| {
            format!(r#"http_requests_total{{method="{m}",route="/test/{{id}}",status="{s}"}}"#)
        };
        assert_eq!(sample(&key("GET", 200)), Some(2.0));
        assert_eq!(sample(&key("GET", 404)), Some(1.0));
        assert_eq!(sample(&key("POST", 200)), Some(1.0));
    }
}
