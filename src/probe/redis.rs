//! `redis`: a PING round trip over a kept connection, plus figures from `INFO`:
//! keyspace hits and misses, used memory versus `maxmemory`, evictions, clients.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;
use tokio::sync::Mutex;

use super::{Observation, Probe, Sample};
use crate::settings::Collector;
use crate::settings::secret::SecretUrl;

/// `redis:` as written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port/db`; usually `${REDIS_URL}`.
    url: Spanned<String>,
}

/// Validated `redis` settings.
#[derive(Debug, Clone)]
pub struct RedisSpec {
    /// The URL, password kept secret.
    pub url: SecretUrl,
}

impl RedisSettings {
    /// Checks the URL is a Redis URL.
    pub fn validate(self, c: &mut Collector) -> Option<RedisSpec> {
        Some(RedisSpec {
            url: redis_url("url", &self.url, c)?,
        })
    }
}

/// Reads a Redis URL setting named `key` (`redis://` or `rediss://`, and one the
/// redis client accepts), recording at its position why it is not one: the probe's
/// `url` and the paging lease's `redis`.
pub fn redis_url(key: &str, value: &Spanned<String>, c: &mut Collector) -> Option<SecretUrl> {
    let v = &value.value;
    if !(v.starts_with("redis://") || v.starts_with("rediss://")) {
        c.at(
            value.referenced,
            format!("{key} must start with redis:// or rediss://"),
        );
        return None;
    }
    let url = match SecretUrl::parse(v) {
        Ok(u) => u,
        Err(e) => {
            c.at(value.referenced, format!("invalid {key}: {e}"));
            return None;
        }
    };
    if let Err(e) = redis::Client::open(v.as_str()) {
        c.at(
            value.referenced,
            format!("invalid {key}: {}", url.scrub(&e.to_string())),
        );
        return None;
    }
    Some(url)
}

/// Checks a Redis server over one kept connection.
pub struct RedisProbe {
    /// What to connect to.
    spec: RedisSpec,
    /// Opens connections.
    client: redis::Client,
    /// Connection and response timeouts, set to the probe's timeout.
    config: redis::AsyncConnectionConfig,
    /// The kept connection, taken out while in use (see the postgres probe).
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisProbe {
    /// A probe for `spec`.
    pub fn new(spec: RedisSpec, timeout: Duration) -> Result<RedisProbe, String> {
        let client =
            redis::Client::open(spec.url.expose()).map_err(|e| spec.url.scrub(&e.to_string()))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Ok(RedisProbe {
            spec,
            client,
            config,
            conn: Mutex::new(None),
        })
    }
}

/// The figures of an `INFO` reply, as samples.
pub(crate) fn info_samples(info: &str) -> Vec<Sample> {
    let field = |key: &str| -> Option<f64> {
        info.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    };
    let mut samples = Vec::new();
    for (key, name) in [
        ("keyspace_hits", crate::families::REDIS_KEYSPACE_HITS_TOTAL),
        (
            "keyspace_misses",
            crate::families::REDIS_KEYSPACE_MISSES_TOTAL,
        ),
        ("used_memory", crate::families::REDIS_USED_MEMORY_BYTES),
        ("maxmemory", crate::families::REDIS_MAXMEMORY_BYTES),
        ("evicted_keys", crate::families::REDIS_EVICTED_KEYS_TOTAL),
        (
            "connected_clients",
            crate::families::REDIS_CONNECTED_CLIENTS,
        ),
    ] {
        if let Some(v) = field(key) {
            samples.push(Sample::new(name, v));
        }
    }
    if let (Some(used), Some(max)) = (field("used_memory"), field("maxmemory"))
        && max > 0.0
    {
        samples.push(Sample::new(
            crate::families::REDIS_MEMORY_USED_RATIO,
            used / max,
        ));
    }
    samples
}

impl Probe for RedisProbe {
    async fn check(&self) -> Observation {
        let shown = self.spec.url.redacted();
        let mut slot = self.conn.lock().await;
        let mut conn = match slot.take() {
            Some(c) => c,
            None => match self
                .client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    return Observation::failed(
                        self.spec
                            .url
                            .scrub(&format!("cannot connect to {shown}: {e}")),
                    );
                }
            },
        };
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
        match pong {
            Ok(p) if p == "PONG" => {}
            Ok(p) => return Observation::failed(format!("{shown} answered PING with {p:?}")),
            Err(e) => {
                return Observation::failed(
                    self.spec.url.scrub(&format!("PING to {shown} failed: {e}")),
                );
            }
        }
        let info: Result<String, _> = redis::cmd("INFO").query_async(&mut conn).await;
        match info {
            Ok(info) => {
                *slot = Some(conn);
                Observation::ok(info_samples(&info))
            }
            Err(e) => {
                Observation::failed(self.spec.url.scrub(&format!("INFO on {shown} failed: {e}")))
            }
        }
    }

    fn target(&self) -> String {
        self.spec.url.redacted().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_figures_become_samples() {
        let info = "# Stats\r\nkeyspace_hits:30\r\nkeyspace_misses:10\r\nevicted_keys:2\r\n# Memory\r\nused_memory:1000\r\nused_memory_human:1000B\r\nmaxmemory:4000\r\n# Clients\r\nconnected_clients:7\r\n";
        let s = info_samples(info);
        let get = |n: &str| s.iter().find(|x| x.name == n).map(|x| x.value);
        assert_eq!(get("vigil_redis_keyspace_hits_total"), Some(30.0));
        assert_eq!(get("vigil_redis_keyspace_misses_total"), Some(10.0));
        assert_eq!(get("vigil_redis_used_memory_bytes"), Some(1000.0));
        assert_eq!(get("vigil_redis_memory_used_ratio"), Some(0.25));
        assert_eq!(get("vigil_redis_evicted_keys_total"), Some(2.0));
        assert_eq!(get("vigil_redis_connected_clients"), Some(7.0));
    }

    #[test]
    fn no_ratio_without_a_memory_limit() {
        let s = info_samples("used_memory:1000\r\nmaxmemory:0\r\n");
        assert!(s.iter().all(|x| x.name != "vigil_redis_memory_used_ratio"));
    }
}
