//! The Watch Together server: the rooms API, the health endpoints that the load
//! balancer and Vigil probe, and Prometheus metrics.
//!
//! - [`config`]: settings from the environment (`PORT`, `DATABASE_URL`, `REDIS_URL`,
//!   `LOG_FORMAT`, timeouts).
//! - [`telemetry`]: logging, the Prometheus recorder and the request-metrics middleware.
//! - [`routes`]: `/api/health`, `/api/health/database`, `/api/health/cache`,
//!   `/api/rooms` (create, fetch, join, delete), `/api/rooms/{id}/ws`, `/metrics`.
//! - [`domain`]: the checked values every request is read into.
//! - [`sync`]: synchronized playback across instances through Redis.
//! - [`Application`]: builds the whole server on a bound port (0 in tests) and runs it
//!   until a shutdown future completes.

pub mod config;
pub mod domain;
pub mod error;
pub mod routes;
pub mod state;
pub mod sync;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

pub use config::{Config, LogFormat};
use state::AppState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listening socket could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The database could not be reached or migrated.
    #[error("running database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL is not valid.
    #[error("invalid DATABASE_URL: {0}")]
    DatabaseUrl(sqlx::Error),
    /// The Redis URL is not valid.
    #[error("invalid REDIS_URL: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A built server: the socket is bound, the database is migrated, nothing is served
/// until [`Application::run_until_stopped`].
pub struct Application {
    /// The bound socket, so that tests can ask for port 0 and learn the real port.
    listener: TcpListener,
    /// The routes with their middleware.
    router: Router,
    /// Kept to stop the metrics upkeep task when the server stops.
    state: AppState,
    /// Whether the server is instrumented ([`Config::metrics`]).
    metrics: bool,
}

impl Application {
    /// Connects the pools, runs the migrations and binds the port.
    pub async fn build(config: Config) -> Result<Application, StartError> {
        let state = AppState::connect(&config)?;
        sqlx::migrate!("./migrations").run(&state.db).await?;
        let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
        let addr = if config.bind_localhost {
            SocketAddr::from(([127, 0, 0, 1], config.port))
        } else {
            addr
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let router = router(state.clone(), config.request_timeout, config.metrics);
        Ok(Application {
            listener,
            router,
            state,
            metrics: config.metrics,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Serves until `shutdown` completes, then drains in-flight requests (each bounded
    /// by the request timeout) and closes the pools.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // Without metrics no recorder is installed, and every metric is a no-op.
        let upkeep = self.metrics.then(telemetry::spawn_upkeep);
        let hub = self.state.hub.clone();
        let tasks = hub.spawn();
        let stop_hub = hub.clone();
        let shutdown = async move {
            shutdown.await;
            // WebSockets first: each gets a close frame (1001) while HTTP drains.
            stop_hub.shutdown();
        };
        use axum::serve::ListenerExt;
        let listener = self.listener.tap_io(|tcp| tune_accepted(tcp));
        let result = axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        // Upgraded sockets are not connections axum waits for: give them the time to
        // send their close frame and leave.
        let drained = async {
            while hub.connections() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drained).await;
        hub.shutdown();
        for t in tasks {
            t.abort();
        }
        if let Some(upkeep) = upkeep {
            upkeep.abort();
        }
        self.state.db.close().await;
        result
    }
}

/// A server running on a background task; stops (gracefully) when dropped.
pub struct Running {
    /// Where it listens.
    addr: SocketAddr,
    /// Dropping it is the shutdown signal.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Application {
    /// Serves on a background task of the current runtime until the returned handle
    /// is dropped: for tests and for embedding the server in another program.
    pub fn spawn(self) -> Running {
        let addr = self.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(self.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Running { addr, _stop: stop }
    }
}

/// Sets the options of an accepted connection: `TCP_NODELAY`, so that a small write
/// (a WebSocket event, an HTTP answer) leaves at once instead of waiting, under Nagle's
/// algorithm, for the peer to acknowledge the previous one.
fn tune_accepted(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(message = "Could not set TCP_NODELAY.", error = %e);
    }
}

/// The routes and middleware of the server; `metrics` off leaves out the counting and
/// timing of requests, every other series and the `/metrics` route (to measure their
/// cost), and keeps request ids.
pub fn router(state: AppState, request_timeout: std::time::Duration, metrics: bool) -> Router {
    let routes = Router::new()
        .merge(routes::health::router())
        .merge(routes::rooms::router())
        .fallback(error::not_found);
    let routes = if metrics {
        // Installed before the first request: the middleware keeps the handles it is
        // given, and a handle taken before the recorder would count nothing.
        telemetry::prometheus();
        routes.route("/metrics", axum::routing::get(telemetry::render_metrics))
    } else {
        routes
    };
    let routes = routes.layer(axum::middleware::from_fn_with_state(
        metrics,
        telemetry::serve_request,
    ));
    routes
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .with_state(state)
}

/// Completes on SIGTERM (what ECS sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!(message = "Shutdown requested; draining requests.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_send_small_writes_at_once() {
        // Nagle's algorithm holds a small write while an earlier one is unacknowledged,
        // up to the peer's delayed ACK (40 ms on Linux): a WebSocket event to a busy
        // member would wait for it (bench/app.sh's fan-out p99 was 45 ms for that).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr);
        let (accepted, _client) = tokio::join!(listener.accept(), client);
        let (stream, _) = accepted.unwrap();
        assert!(!stream.nodelay().unwrap(), "a fresh socket has Nagle on");
        tune_accepted(&stream);
        assert!(
            stream.nodelay().unwrap(),
            "accepted sockets have TCP_NODELAY"
        );
    }
}
