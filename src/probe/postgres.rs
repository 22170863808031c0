//! `postgres`: a `SELECT 1` round trip over a kept connection, plus connections in use
//! versus `max_connections` and the longest running query.

use std::str::FromStr;

use serde::Deserialize;
use serde_saphyr::Spanned;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
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
pub struct PostgresProbe {
    /// What to connect to.
    spec: PostgresSpec,
    /// Parsed once.
    options: PgConnectOptions,
    /// The kept connection; taken out while in use, so that a check cancelled by its
    /// timeout drops a connection in an unknown state instead of putting it back.
    conn: Mutex<Option<PgConnection>>,
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

    async fn run(&self, conn: &mut PgConnection) -> Result<Vec<Sample>, sqlx::Error> {
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
        let mut conn = match slot.take() {
            Some(c) => c,
            None => match PgConnection::connect_with(&self.options).await {
                Ok(c) => c,
                Err(e) => {
                    return Observation::failed(self.spec.dsn.scrub(&format!(
                        "cannot connect to {}: {e}",
                        self.spec.dsn.redacted()
                    )));
                }
            },
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

    fn target(&self) -> String {
        self.spec.dsn.redacted().to_string()
    }
}
