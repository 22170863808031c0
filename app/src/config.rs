//! Settings from the environment, with defaults that suit a laptop.

use std::time::Duration;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for CloudWatch Logs.
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP port to listen on (`PORT`, default 3000; 0 picks a free one).
    pub port: u16,
    /// Listen on 127.0.0.1 only instead of all interfaces (`BIND_LOCALHOST=1`; tests and
    /// laptops). In a container the load balancer must reach the port, so the default
    /// is all interfaces.
    pub bind_localhost: bool,
    /// PostgreSQL connection URL (`DATABASE_URL`).
    pub database_url: String,
    /// The database password (`DATABASE_PASSWORD`), when it is not in the URL: on ECS
    /// it is the `password` key of the RDS-managed master secret, which RDS rotates, so
    /// it cannot be baked into a URL parameter. When set, it takes the place of the
    /// URL's password. Unset or empty: the URL's own (or none).
    pub database_password: Option<Password>,
    /// Redis connection URL (`REDIS_URL`).
    pub redis_url: String,
    /// Log format (`LOG_FORMAT`: `json` or `pretty`; default json when not a terminal).
    pub log_format: LogFormat,
    /// Longest a request may take before it is answered 503 (`REQUEST_TIMEOUT_MS`, 10 s).
    pub request_timeout: Duration,
    /// Longest wait for a database connection or query (`DB_TIMEOUT_MS`, 2 s).
    pub db_timeout: Duration,
    /// Longest wait for a Redis connection or reply (`CACHE_TIMEOUT_MS`, 1 s).
    pub cache_timeout: Duration,
    /// Most connections in the database pool (`DB_MAX_CONNECTIONS`, 10).
    pub db_max_connections: u32,
    /// Whether the server is instrumented (`METRICS`, `on` or `off`; default on): the
    /// counting and timing of every request, the Prometheus recorder behind every other
    /// metric, and `/metrics`. Request ids stay either way. Off only to measure what
    /// instrumentation costs (`bench/app.sh`).
    pub metrics: bool,
}

/// A password: its `Debug` prints `***`, so a logged [`Config`] shows none.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The value itself, for the connection that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?} is not valid: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What was expected.
    pub reason: &'static str,
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, so tests need not touch the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match lookup(name) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| ConfigError {
                    name,
                    value: v,
                    reason: "expected a whole number",
                }),
            }
        };
        let millis = |name, default| number(name, default).map(Duration::from_millis);
        let port = number("PORT", 3000)?;
        let port = u16::try_from(port).map_err(|_| ConfigError {
            name: "PORT",
            value: port.to_string(),
            reason: "expected a port number up to 65535",
        })?;
        let log_format = match lookup("LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("pretty") | Some("text") => LogFormat::Pretty,
            None => {
                use std::io::IsTerminal;
                if std::io::stderr().is_terminal() {
                    LogFormat::Pretty
                } else {
                    LogFormat::Json
                }
            }
            Some(other) => {
                return Err(ConfigError {
                    name: "LOG_FORMAT",
                    value: other.to_string(),
                    reason: "expected json or pretty",
                });
            }
        };
        Ok(Config {
            port,
            bind_localhost: matches!(lookup("BIND_LOCALHOST").as_deref(), Some("1" | "true")),
            database_url: lookup("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/watch_together".to_string()),
            database_password: lookup("DATABASE_PASSWORD")
                .filter(|p| !p.is_empty())
                .map(Password),
            redis_url: lookup("REDIS_URL")
                .unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_string()),
            log_format,
            request_timeout: millis("REQUEST_TIMEOUT_MS", 10_000)?,
            db_timeout: millis("DB_TIMEOUT_MS", 2_000)?,
            cache_timeout: millis("CACHE_TIMEOUT_MS", 1_000)?,
            db_max_connections: number("DB_MAX_CONNECTIONS", 10)? as u32,
            metrics: match lookup("METRICS").as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => {
                    return Err(ConfigError {
                        name: "METRICS",
                        value: other.to_string(),
                        reason: "expected on or off",
                    });
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_lookup(|n| match n {
            "PORT" => Some("8080".into()),
            "LOG_FORMAT" => Some("json".into()),
            "DB_TIMEOUT_MS" => Some("250".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.db_timeout, Duration::from_millis(250));
        assert_eq!(c.cache_timeout, Duration::from_secs(1));
        assert!(c.redis_url.starts_with("redis://"));
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let err = Config::from_lookup(|n| (n == "PORT").then(|| "70000".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PORT=\"70000\" is not valid: expected a port number up to 65535"
        );
        let err = Config::from_lookup(|n| (n == "LOG_FORMAT").then(|| "xml".into())).unwrap_err();
        assert!(err.to_string().starts_with("LOG_FORMAT=\"xml\""));
    }

    #[test]
    fn the_database_password_is_read_apart_and_never_printed() {
        let c = Config::from_lookup(|n| (n == "DATABASE_PASSWORD").then(|| "s3cr3t-pw".into()))
            .unwrap();
        assert_eq!(
            c.database_password.as_ref().map(Password::expose),
            Some("s3cr3t-pw")
        );
        assert!(!format!("{c:?}").contains("s3cr3t-pw"), "{c:?}");
        let empty = Config::from_lookup(|n| (n == "DATABASE_PASSWORD").then(String::new)).unwrap();
        assert_eq!(empty.database_password, None);
    }
}
