//! What every handler shares: the database pool, the Redis connection and the sync hub.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::Config;

/// Shared handles, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The PostgreSQL pool; connections are opened lazily and capped.
    pub db: PgPool,
    /// The Redis connection; it reconnects by itself and never blocks startup, so
    /// the server starts (and reports the cache down) when Redis is not there.
    pub cache: ConnectionManager,
    /// Longest wait for a database round trip, enforced around every query.
    pub db_timeout: Duration,
    /// Longest wait for a Redis round trip.
    pub cache_timeout: Duration,
    /// When the process started, for `/api/health`'s uptime.
    pub started: Instant,
    /// The rooms with members connected here, and their Redis subscription.
    pub hub: std::sync::Arc<crate::sync::Hub>,
}

impl AppState {
    /// Creates the pool and the Redis connection manager without connecting yet.
    pub fn connect(config: &Config) -> Result<AppState, crate::StartError> {
        let mut options: PgConnectOptions = config
            .database_url
            .parse()
            .map_err(crate::StartError::DatabaseUrl)?;
        if let Some(password) = &config.database_password {
            options = options.password(password.expose());
        }
        // A server-side statement timeout as well, so a query abandoned by our
        // client-side timeout does not keep running on the database.
        let statement_timeout = format!("{}", config.db_timeout.as_millis().max(1));
        let options = options.options([("statement_timeout", statement_timeout.as_str())]);
        let db = PgPoolOptions::new()
            .max_connections(config.db_max_connections)
            .acquire_timeout(config.db_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            .connect_lazy_with(options);
        // Many commands share one multiplexed connection: Nagle's algorithm would hold
        // each small write behind the previous one's acknowledgement.
        let info = redis::IntoConnectionInfo::into_connection_info(config.redis_url.as_str())?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)?;
        let cache = ConnectionManager::new_lazy_with_config(
            client.clone(),
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.cache_timeout))
                .set_response_timeout(Some(config.cache_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500)),
        )?;
        let hub = crate::sync::Hub::new(client, cache.clone());
        Ok(AppState {
            db,
            cache,
            hub,
            db_timeout: config.db_timeout,
            cache_timeout: config.cache_timeout,
            started: Instant::now(),
        })
    }
}
