//! `redis`: a PING round trip over a kept connection, plus figures from `INFO`:
//! keyspace hits and misses, used memory versus `maxmemory`, evictions, clients.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;
use tokio::sync::{Mutex, watch};

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

/// Checks a Redis server over one kept connection, watched: the connection speaks
/// RESP3, so the client's driver reports its close at once ([`Probe::lost`]). A server
/// that refuses RESP3 (`HELLO`, Redis before 6) is spoken to in RESP2, unwatched.
pub struct RedisProbe {
    /// What to connect to.
    spec: RedisSpec,
    /// Opens RESP3 connections.
    resp3: redis::Client,
    /// Opens connections as the URL says (RESP2 unless it names `protocol=resp3`).
    plain: redis::Client,
    /// Set once a RESP3 connection was refused and a plain one accepted.
    resp2_only: AtomicBool,
    /// Connection and response timeouts, set to the probe's timeout.
    config: redis::AsyncConnectionConfig,
    /// The kept connection, taken out while in use (see the postgres probe).
    conn: Mutex<Option<Kept>>,
}

/// A kept connection and the flag its driver sets when it is closed.
struct Kept {
    /// The connection.
    conn: redis::aio::MultiplexedConnection,
    /// Turns `true` on `PushKind::Disconnection`; also ends when the driver is gone.
    /// `None` for an unwatched (RESP2) connection.
    closed: Option<watch::Receiver<bool>>,
}

impl RedisProbe {
    /// A probe for `spec`.
    pub fn new(spec: RedisSpec, timeout: Duration) -> Result<RedisProbe, String> {
        let scrub = |e: redis::RedisError| spec.url.scrub(&e.to_string());
        let plain = redis::Client::open(spec.url.expose()).map_err(scrub)?;
        let info = plain.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let resp3 = redis::Client::open(info.set_redis_settings(settings)).map_err(scrub)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Ok(RedisProbe {
            spec,
            resp3,
            plain,
            resp2_only: AtomicBool::new(false),
            config,
            conn: Mutex::new(None),
        })
    }

    /// Opens a connection: watched in RESP3 unless the server refused it once.
    async fn connect(&self) -> redis::RedisResult<Kept> {
        if self.resp2_only.load(Ordering::Relaxed) {
            return self.connect_plain().await;
        }
        match self.connect_resp3().await {
            // An I/O error says nothing of the protocol; a server error may be `HELLO`
            // refused: try as the URL says, and remember if that works.
            Err(e) if !(e.is_io_error() || e.is_timeout()) => {
                let kept = self.connect_plain().await.map_err(|_| e)?;
                self.resp2_only.store(true, Ordering::Relaxed);
                Ok(kept)
            }
            result => result,
        }
    }

    /// A RESP3 connection whose driver's `Disconnection` push sets its flag.
    async fn connect_resp3(&self) -> redis::RedisResult<Kept> {
        let (tx, rx) = watch::channel(false);
        let config = self
            .config
            .clone()
            .set_push_sender(move |info: redis::PushInfo| {
                if info.kind == redis::PushKind::Disconnection {
                    tx.send_replace(true);
                }
                Ok::<(), std::convert::Infallible>(())
            });
        let conn = self
            .resp3
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Kept {
            conn,
            closed: Some(rx),
        })
    }

    /// A connection as the URL says, unwatched.
    async fn connect_plain(&self) -> redis::RedisResult<Kept> {
        let conn = self
            .plain
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        Ok(Kept { conn, closed: None })
    }

    /// PING, then INFO, on `conn`.
    async fn run(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<Vec<Sample>, String> {
        let shown = self.spec.url.redacted();
        let pong: String = redis::cmd("PING")
            .query_async(conn)
            .await
            .map_err(|e| self.spec.url.scrub(&format!("PING to {shown} failed: {e}")))?;
        if pong != "PONG" {
            return Err(format!("{shown} answered PING with {pong:?}"));
        }
        let info: String = redis::cmd("INFO")
            .query_async(conn)
            .await
            .map_err(|e| self.spec.url.scrub(&format!("INFO on {shown} failed: {e}")))?;
        Ok(info_samples(&info))
    }

    /// See [`Probe::lost`].
    pub async fn lost(&self) {
        let closed = self
            .conn
            .lock()
            .await
            .as_ref()
            .and_then(|k| k.closed.clone());
        let Some(mut closed) = closed else {
            return std::future::pending().await;
        };
        // `Err`: the driver is gone, which is a close too.
        let _ = closed.wait_for(|c| *c).await;
        let mut slot = self.conn.lock().await;
        if slot
            .as_ref()
            .and_then(|k| k.closed.as_ref())
            .is_some_and(|c| c.same_channel(&closed))
        {
            slot.take();
        }
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
        let mut slot = self.conn.lock().await;
        // A kept connection that fails may have been closed since the last check
        // (a failover, an idle timeout): the verdict is a fresh connection's.
        if let Some(mut kept) = slot.take()
            && let Ok(samples) = self.run(&mut kept.conn).await
        {
            *slot = Some(kept);
            return Observation::ok(samples);
        }
        let mut kept = match self.connect().await {
            Ok(k) => k,
            Err(e) => {
                let shown = self.spec.url.redacted();
                return Observation::failed(
                    self.spec
                        .url
                        .scrub(&format!("cannot connect to {shown}: {e}")),
                );
            }
        };
        match self.run(&mut kept.conn).await {
            Ok(samples) => {
                *slot = Some(kept);
                Observation::ok(samples)
            }
            Err(reason) => Observation::failed(reason),
        }
    }

    async fn lost(&self) {
        RedisProbe::lost(self).await
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

    /// A Redis before 6: `HELLO` is an unknown command, everything else answers RESP2.
    /// Returns its address and how many connections it accepted.
    async fn resp2_server() -> (
        std::net::SocketAddr,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    // Commands come as RESP arrays; the first bulk string names each.
                    let mut name_next = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.starts_with('*') {
                            name_next = true;
                            continue;
                        }
                        if line.starts_with('$') || !name_next {
                            continue;
                        }
                        name_next = false;
                        let reply = match line.to_ascii_uppercase().as_str() {
                            "PING" => "+PONG\r\n".to_string(),
                            "INFO" => {
                                let body = "connected_clients:3\r\n";
                                format!("${}\r\n{body}\r\n", body.len())
                            }
                            other => format!("-ERR unknown command '{other}'\r\n"),
                        };
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn a_server_refusing_resp3_is_checked_in_resp2_and_remembered() {
        let (addr, accepted) = resp2_server().await;
        let url = SecretUrl::parse(&format!("redis://{addr}/0")).unwrap();
        let spec = RedisSpec { url };
        let probe = RedisProbe::new(spec, Duration::from_secs(5)).unwrap();
        let first = probe.check().await;
        assert_eq!(first.result, Ok(()), "{first:?}");
        assert_eq!(
            first.samples,
            vec![Sample::new(crate::families::REDIS_CONNECTED_CLIENTS, 3.0)]
        );
        assert!(probe.resp2_only.load(Ordering::SeqCst));
        // Kept and unwatched: the next check reuses it, and nothing waits on it.
        assert_eq!(probe.check().await.result, Ok(()));
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "one refused in RESP3, one kept"
        );
        let slot = probe.conn.lock().await;
        assert!(slot.as_ref().is_some_and(|k| k.closed.is_none()));
    }

    #[test]
    fn no_ratio_without_a_memory_limit() {
        let s = info_samples("used_memory:1000\r\nmaxmemory:0\r\n");
        assert!(s.iter().all(|x| x.name != "vigil_redis_memory_used_ratio"));
    }
}
