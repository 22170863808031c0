//! The paging lease: with one sidecar per ECS task, alerts about what the tasks share
//! (the database, the cache, the app's overall error rate) would page once per task.
//! One sidecar holds a short lease in Redis and pages for those; the others stand by
//! and take over when it lapses (the holder died or lost Redis).
//!
//! When Redis itself cannot be reached nobody can know who holds the lease, so every
//! sidecar pages; the alarm name is the same in all of them (it depends only on the
//! alert's labels and the environment), so SNS → PagerDuty merges the pages into one
//! incident.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::settings::secret::SecretUrl;

/// Renews the lease if this sidecar holds it; answers 1 when it did.
const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// Where this sidecar stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Not asked yet (the first attempt is under way).
    Unknown,
    /// This sidecar pages for shared alerts.
    Holder,
    /// Another sidecar does.
    Standby,
    /// Redis cannot be reached: everyone pages.
    Unavailable,
}

impl LeaseState {
    /// Whether this sidecar should page for shared alerts now.
    pub fn pages(self) -> bool {
        matches!(self, LeaseState::Holder | LeaseState::Unavailable)
    }
}

/// The lease's settings.
#[derive(Debug, Clone)]
pub struct LeaseSpec {
    /// The Redis holding it.
    pub redis: SecretUrl,
    /// How long a lease lasts without renewal; renewed every third of it.
    pub ttl: Duration,
    /// The key (per environment, so staging and production never share one).
    pub key: String,
}

/// Keeps trying to hold the lease, publishing where this sidecar stands, until the
/// task is dropped. `id` names this sidecar in Redis.
pub async fn run(spec: LeaseSpec, id: String, state: watch::Sender<LeaseState>) {
    let client = match redis::Client::open(spec.redis.expose()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(message = "Invalid lease Redis URL; every sidecar will page.", error = %spec.redis.scrub(&e.to_string()));
            state.send_replace(LeaseState::Unavailable);
            // Not a stage failure: everyone pages, which is what this state says.
            std::future::pending::<()>().await;
            return;
        }
    };
    let step = spec.ttl / 3;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(step))
        .set_response_timeout(Some(step));
    let ttl_ms = spec.ttl.as_millis() as u64;
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut ticks = tokio::time::interval(step);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let attempt = async {
            let c = match conn.take() {
                Some(c) => c,
                None => {
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?
                }
            };
            let mut c2 = c.clone();
            let renewed: i64 = redis::cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(&spec.key)
                .arg(&id)
                .arg(ttl_ms)
                .query_async(&mut c2)
                .await?;
            let held = if renewed == 1 {
                true
            } else {
                let set: Option<String> = redis::cmd("SET")
                    .arg(&spec.key)
                    .arg(&id)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut c2)
                    .await?;
                set.is_some()
            };
            Ok::<_, redis::RedisError>((c, held))
        };
        let next = match tokio::time::timeout(step, attempt).await {
            Ok(Ok((c, held))) => {
                conn = Some(c);
                if held {
                    LeaseState::Holder
                } else {
                    LeaseState::Standby
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(message = "Lease Redis failed.", error = %spec.redis.scrub(&e.to_string()));
                LeaseState::Unavailable
            }
            Err(_) => LeaseState::Unavailable,
        };
        let before = *state.borrow();
        if before != next {
            tracing::info!(message = "Paging lease changed.", from = ?before, to = ?next, key = %spec.key);
            state.send_replace(next);
        }
    }
}
