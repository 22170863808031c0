//! `postgres`: a `SELECT 1` round trip over a kept connection, plus connections in use
//! versus `max_connections` and the longest running query.

use std::str::FromStr;

use serde::Deserialize;
use serde_saphyr::Spanned;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Mutex;

use super::{Observation, Probe, Sample};
use crate::settings::Collector;
use crate::settings::secret::{Secret, SecretUrl};

/// One round trip for the figures: client connections, the server's limit, and the
/// age in seconds of the longest running statement (ours excluded).
const FIGURES: &str = "SELECT \
    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::float8 AS connections, \
    current_setting('max_connections')::float8 AS max_connections, \
    COALESCE((SELECT EXTRACT(EPOCH FROM max(clock_timestamp() - query_start)) FROM pg_stat_activity \
              WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()), 0)::float8 AS longest";

/// `postgres:` as written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/db?sslmode=...`; usually `${DATABASE_URL}`.
    dsn: Spanned<String>,
    /// The password, when it is not in the DSN; usually `${DATABASE_PASSWORD:-}`, the
    /// `password` key of the RDS-managed master secret that ECS puts in the task's
    /// environment. It takes the place of the DSN's password. Empty: none.
    #[serde(default)]
    password: Option<Spanned<String>>,
}

/// Validated `postgres` settings.
#[derive(Debug, Clone)]
pub struct PostgresSpec {
    /// The DSN, password kept secret.
    pub dsn: SecretUrl,
    /// The password given apart from the DSN, if any.
    pub password: Option<Secret>,
}

impl PostgresSettings {
    /// Checks the DSN parses as a PostgreSQL URL.
    pub fn validate(self, c: &mut Collector) -> Option<PostgresSpec> {
        let v = &self.dsn.value;
        if !(v.starts_with("postgres://") || v.starts_with("postgresql://")) {
            c.at(
                self.dsn.referenced,
                "dsn must be a URL starting with postgres:// or postgresql://",
            );
            return None;
        }
        let dsn = match SecretUrl::parse(v) {
            Ok(d) => d,
            Err(e) => {
                c.at(self.dsn.referenced, format!("invalid dsn: {e}"));
                return None;
            }
        };
        if let Err(e) = PgConnectOptions::from_str(v) {
            c.at(
                self.dsn.referenced,
                format!("invalid dsn: {}", dsn.scrub(&e.to_string())),
            );
            return None;
        }
        let password = self
            .password
            .map(|p| p.value)
            .filter(|p| !p.is_empty())
            .map(Secret::new);
        Some(PostgresSpec { dsn, password })
    }
}

/// Checks a PostgreSQL server over one kept connection, reconnecting when it breaks.
/// Keeping it avoids an authentication (SCRAM is deliberately CPU-costly) per check.
/// The connection is a [`PgListener`]'s, listening on nothing: between checks it reads
/// the socket, so the server's close is seen at once ([`Probe::lost`]).
pub struct PostgresProbe {
    /// What to connect to.
    spec: PostgresSpec,
    /// Parsed once.
    options: PgConnectOptions,
    /// The kept connection; taken out while in use, so that a check cancelled by its
    /// timeout drops a connection in an unknown state instead of putting it back.
    conn: Mutex<Option<PgListener>>,
}

impl PostgresProbe {
    /// A probe for `spec`.
    pub fn new(spec: PostgresSpec) -> Result<PostgresProbe, String> {
        let mut options = PgConnectOptions::from_str(spec.dsn.expose())
            .map_err(|e| spec.dsn.scrub(&e.to_string()))?
            .application_name("vigil");
        if let Some(password) = &spec.password {
            options = options.password(password.expose());
        }
        Ok(PostgresProbe {
            spec,
            options,
            conn: Mutex::new(None),
        })
    }

    /// Opens a connection. `PgListener` takes it from a pool, so each gets a pool of
    /// its own that never takes a connection back (one dropped mid-query is closed).
    async fn connect(&self) -> Result<PgListener, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .after_release(|_, _| Box::pin(async { Ok(false) }))
            .connect_lazy_with(self.options.clone());
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        Ok(listener)
    }

    /// See [`Probe::lost`]. Holds the slot while it reads; the check takes it only
    /// once this is dropped, and `try_recv` is cancel-safe.
    pub async fn lost(&self) {
        let mut slot = self.conn.lock().await;
        let Some(listener) = slot.as_mut() else {
            drop(slot);
            return std::future::pending().await;
        };
        // Notifications (nobody LISTENs, but NOTIFY may reach us) are not closes.
        while let Ok(Some(_)) = listener.try_recv().await {}
        slot.take();
    }

    async fn run(&self, conn: &mut PgListener) -> Result<Vec<Sample>, sqlx::Error> {
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await?;
        if one != 1 {
            return Err(sqlx::Error::Protocol(format!("SELECT 1 returned {one}")));
        }
        let row = sqlx::query(FIGURES).fetch_one(&mut *conn).await?;
        let connections: f64 = row.try_get("connections")?;
        let max: f64 = row.try_get("max_connections")?;
        let longest: f64 = row.try_get("longest")?;
        Ok(vec![
            Sample::new(crate::families::POSTGRES_CONNECTIONS, connections),
            Sample::new(crate::families::POSTGRES_MAX_CONNECTIONS, max),
            Sample::new(
                crate::families::POSTGRES_CONNECTIONS_USED_RATIO,
                if max > 0.0 { connections / max } else { 0.0 },
            ),
            Sample::new(crate::families::POSTGRES_LONGEST_QUERY_SECONDS, longest),
        ])
    }
}

impl Probe for PostgresProbe {
    async fn check(&self) -> Observation {
        let mut slot = self.conn.lock().await;
        // A kept connection that fails may have been closed since the last check
        // (a failover, an idle timeout): the verdict is a fresh connection's.
        if let Some(mut kept) = slot.take()
            && let Ok(samples) = self.run(&mut kept).await
        {
            *slot = Some(kept);
            return Observation::ok(samples);
        }
        let mut conn = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                return Observation::failed(self.spec.dsn.scrub(&format!(
                    "cannot connect to {}: {e}",
                    self.spec.dsn.redacted()
                )));
            }
        };
        match self.run(&mut conn).await {
            Ok(samples) => {
                *slot = Some(conn);
                Observation::ok(samples)
            }
            Err(e) => Observation::failed(self.spec.dsn.scrub(&format!(
                "query on {} failed: {e}",
                self.spec.dsn.redacted()
            ))),
        }
    }

    async fn lost(&self) {
        PostgresProbe::lost(self).await
    }

    fn target(&self) -> String {
        self.spec.dsn.redacted().to_string()
    }
}
