//! The whole fleet: the service runs 2 to 10 tasks, each with its own sidecar. Every
//! third of the lease's TTL (1 to 5 s: 5 s with the default 15 s lease) each sidecar
//! writes a small snapshot of itself (task, zone, verdict, components, firing
//! alerts, lease) to the Redis that holds the paging lease, expiring after four such
//! rounds, and reads everyone's; any sidecar's `/status` shows every task.
//!
//! ```text
//!  vigil:fleet:<env>            sorted set: task → last seen (ms)
//!  vigil:fleet:<env>:<task>     the snapshot (JSON), expiring after TTL_ROUNDS rounds
//! ```
//!
//! A task in the set whose snapshot expired is *missing* (its sidecar or its task
//! died, or it lost Redis); one not seen for [`FORGET_AFTER`] is forgotten. A
//! sidecar that stops as asked takes itself out, so a deployment's old tasks do not
//! show as missing. Without Redis the page shows this task alone, and says why.
//!
//! What other sidecars wrote is read as untrusted input: at most [`MAX_TASKS`] tasks
//! and [`MAX_SNAPSHOT_BYTES`] per snapshot, bounded in Redis before anything is
//! sent (one script reads the set and a prefix of each snapshot); one that cannot
//! be read is shown as such.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::health::{ComponentStatus, Health, Overall};
use crate::notify::lease::LeaseState;
use crate::paging::PagingView;
use crate::rules::manager::EngineView;
use crate::settings::secret::SecretUrl;

/// How often a sidecar writes its snapshot and reads the others', for a lease of
/// `lease_ttl`: as often as the lease is renewed, within 1 to 5 s.
pub fn every(lease_ttl: Duration) -> Duration {
    (lease_ttl / 3).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// How many rounds a snapshot outlives: three missed writes are not yet missing.
pub const TTL_ROUNDS: u32 = 4;

/// A missing task not seen for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Tasks read at most.
pub const MAX_TASKS: usize = 100;

/// A snapshot's size at most.
pub const MAX_SNAPSHOT_BYTES: usize = 64 * 1024;

/// What one sidecar says of its task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The task: the ECS task id, `VIGIL_TASK_ID`, or host name and port.
    pub task: String,
    /// The availability zone (`local` off ECS).
    pub availability_zone: String,
    /// Vigil's version.
    pub version: String,
    /// The task's verdict.
    pub status: Overall,
    /// Each component's status, in config order.
    pub components: Vec<(String, ComponentStatus)>,
    /// Alerts firing there (the pipeline's own heartbeat left out).
    pub firing: Vec<String>,
    /// Where it stands on the paging lease.
    pub lease: Option<LeaseState>,
    /// When it wrote this.
    pub seen_at: DateTime<Utc>,
}

/// A task as the fleet view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetTask {
    /// The task.
    pub task: String,
    /// Whether it is this sidecar's task.
    pub this: bool,
    /// `present`, `missing` (its snapshot expired) or `unreadable`.
    pub state: TaskState,
    /// When it last wrote a snapshot.
    pub last_seen: Option<DateTime<Utc>>,
    /// Its snapshot, while present.
    pub snapshot: Option<Snapshot>,
}

/// Whether a task's sidecar answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Its snapshot is fresh.
    Present,
    /// Its snapshot expired.
    Missing,
    /// Its snapshot could not be read.
    Unreadable,
}

/// The fleet, as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    /// Every task, this one first, then by name.
    pub tasks: Vec<FleetTask>,
    /// Why the fleet cannot be seen (no Redis configured, or it does not answer):
    /// then `tasks` holds this task alone.
    pub unavailable: Option<String>,
    /// When the fleet was last read.
    pub updated_at: Option<DateTime<Utc>>,
}

/// What the stage reads to write this task's snapshot.
pub struct Sources {
    /// Component states.
    pub health: watch::Receiver<Health>,
    /// Alerts.
    pub engine: watch::Receiver<EngineView>,
    /// The lease, when paging runs.
    pub paging: Option<watch::Receiver<PagingView>>,
}

/// This task's snapshot now.
pub fn snapshot(task: &str, zone: &str, s: &Sources, now: DateTime<Utc>) -> Snapshot {
    let health = s.health.borrow();
    let engine = s.engine.borrow();
    Snapshot {
        task: task.to_string(),
        availability_zone: zone.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        status: health.overall(),
        components: health
            .components
            .iter()
            .map(|c| (c.name.clone(), c.status))
            .collect(),
        firing: engine
            .alerts
            .iter()
            .filter(|a| {
                a.state == crate::rules::alerting::State::Firing
                    && a.labels.get("severity").map(String::as_str)
                        != Some(crate::history::PIPELINE_SEVERITY)
            })
            .map(|a| a.name.clone())
            .collect(),
        lease: s.paging.as_ref().and_then(|p| p.borrow().lease),
        seen_at: now,
    }
}

/// The view of this task alone, and why.
pub fn alone(me: Snapshot, why: String) -> FleetView {
    FleetView {
        tasks: vec![FleetTask {
            task: me.task.clone(),
            this: true,
            state: TaskState::Present,
            last_seen: Some(me.seen_at),
            snapshot: Some(me),
        }],
        unavailable: Some(why),
        updated_at: None,
    }
}

/// Builds the view from what Redis answered: the set's members with their last
/// seen (ms) and their snapshots (`None` when expired).
pub fn assemble(
    me: &Snapshot,
    members: Vec<(String, f64)>,
    snapshots: Vec<Option<Vec<u8>>>,
    now: DateTime<Utc>,
) -> FleetView {
    let mut tasks: BTreeMap<String, FleetTask> = BTreeMap::new();
    for ((task, seen), snap) in members.into_iter().zip(snapshots) {
        let last_seen = DateTime::from_timestamp_millis(seen as i64);
        let (state, snapshot) = match snap {
            None => (TaskState::Missing, None),
            Some(b) if b.len() > MAX_SNAPSHOT_BYTES => (TaskState::Unreadable, None),
            Some(b) => match serde_json::from_slice::<Snapshot>(&b) {
                Ok(s) if s.task == task => (TaskState::Present, Some(s)),
                _ => (TaskState::Unreadable, None),
            },
        };
        tasks.insert(
            task.clone(),
            FleetTask {
                this: task == me.task,
                task,
                state,
                last_seen,
                snapshot,
            },
        );
    }
    // This task as it is now, whatever Redis held for it.
    tasks.insert(
        me.task.clone(),
        FleetTask {
            task: me.task.clone(),
            this: true,
            state: TaskState::Present,
            last_seen: Some(me.seen_at),
            snapshot: Some(me.clone()),
        },
    );
    let mut tasks: Vec<FleetTask> = tasks.into_values().collect();
    tasks.sort_by(|a, b| b.this.cmp(&a.this).then_with(|| a.task.cmp(&b.task)));
    FleetView {
        tasks,
        unavailable: None,
        updated_at: Some(now),
    }
}

/// Where the fleet is kept.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The Redis (the lease's).
    pub redis: SecretUrl,
    /// `vigil:fleet:<environment>`.
    pub key: String,
    /// How often to write and read.
    pub every: Duration,
}

impl Spec {
    /// The fleet of `environment` in `redis`.
    pub fn new(redis: SecretUrl, environment: &str, lease_ttl: Duration) -> Spec {
        Spec {
            redis,
            key: format!("vigil:fleet:{environment}"),
            every: every(lease_ttl),
        }
    }

    fn snapshot_key(&self, task: &str) -> String {
        format!("{}:{task}", self.key)
    }
}

/// One round: writes `me`, forgets the long gone, reads everyone.
async fn round(
    spec: &Spec,
    c: &mut redis::aio::MultiplexedConnection,
    me: &Snapshot,
) -> redis::RedisResult<FleetView> {
    let now_ms = me.seen_at.timestamp_millis();
    let body = serde_json::to_vec(me).unwrap_or_default();
    let (members,): (Vec<redis::Value>,) = redis::pipe()
        .cmd("SET")
        .arg(spec.snapshot_key(&me.task))
        .arg(body)
        .arg("PX")
        .arg((spec.every * TTL_ROUNDS).as_millis() as u64)
        .ignore()
        .cmd("ZADD")
        .arg(&spec.key)
        .arg(now_ms)
        .arg(&me.task)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(&spec.key)
        .arg("-inf")
        .arg(now_ms - FORGET_AFTER.as_millis() as i64)
        .ignore()
        .cmd("EVAL")
        .arg(READ)
        .arg(1)
        .arg(&spec.key)
        .arg(MAX_TASKS)
        .arg(MAX_SNAPSHOT_BYTES)
        .arg(MAX_TASK_BYTES)
        .query_async(c)
        .await?;
    let (members, snapshots) = members
        .chunks_exact(3)
        .map(|t| {
            let text = |v: &redis::Value| match v {
                redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                redis::Value::SimpleString(s) => s.clone(),
                _ => String::new(),
            };
            let snapshot = match &t[2] {
                redis::Value::BulkString(b) => Some(b.clone()),
                _ => None,
            };
            ((text(&t[0]), text(&t[1]).parse().unwrap_or(0.0)), snapshot)
        })
        .unzip();
    Ok(assemble(me, members, snapshots, me.seen_at))
}

/// The longest task name read from the fleet's set (an ECS task id is 32 characters).
const MAX_TASK_BYTES: usize = 256;

/// Reads the fleet in Redis, bounded whatever its keys hold: the newest
/// [`MAX_TASKS`] members of the set with their last seen, a name longer than
/// [`MAX_TASK_BYTES`] skipped, and at most one byte past [`MAX_SNAPSHOT_BYTES`] of
/// each snapshot (enough to call it unreadable; nil when it is not a string). A
/// flat array of (task, last seen, snapshot).
const READ: &str = r"
local members = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #members, 2 do
  local task = members[i]
  if #task <= tonumber(ARGV[3]) then
    local key = KEYS[1] .. ':' .. task
    local snapshot = false
    if redis.call('TYPE', key)['ok'] == 'string' then
      snapshot = redis.call('GETRANGE', key, 0, tonumber(ARGV[2]))
    end
    out[#out + 1] = task
    out[#out + 1] = members[i + 1]
    out[#out + 1] = snapshot
  end
end
return out
";

/// Writes this task's snapshot and reads the fleet every round until the
/// shutdown token fires; then takes this task out of the fleet.
pub async fn run(
    spec: Spec,
    task: String,
    zone: String,
    sources: Sources,
    view: watch::Sender<FleetView>,
    mut shutdown: crate::supervise::Shutdown,
) {
    let client = match redis::Client::open(spec.redis.expose()) {
        Ok(c) => c,
        Err(e) => {
            let why = format!(
                "the fleet's Redis URL is invalid ({}); showing this task alone",
                spec.redis.scrub(&e.to_string())
            );
            loop {
                view.send_replace(alone(
                    snapshot(&task, &zone, &sources, Utc::now()),
                    why.clone(),
                ));
                tokio::select! {
                    () = shutdown.requested() => return,
                    () = tokio::time::sleep(spec.every) => {}
                }
            }
        }
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(spec.every / 2))
        .set_response_timeout(Some(spec.every / 2));
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut ticks = tokio::time::interval(spec.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.requested() => break,
            _ = ticks.tick() => {}
        }
        let me = snapshot(&task, &zone, &sources, Utc::now());
        let attempt = async {
            let mut c = match conn.take() {
                Some(c) => c,
                None => {
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?
                }
            };
            let v = round(&spec, &mut c, &me).await?;
            Ok::<_, redis::RedisError>((c, v))
        };
        let next = tokio::select! {
            () = shutdown.requested() => break,
            r = tokio::time::timeout(spec.every, attempt) => r,
        };
        let next = match next {
            Ok(Ok((c, v))) => {
                conn = Some(c);
                v
            }
            Ok(Err(e)) => alone(
                me,
                format!(
                    "the fleet's Redis does not answer ({}); showing this task alone",
                    spec.redis.scrub(&e.to_string())
                ),
            ),
            Err(_) => alone(
                me,
                "the fleet's Redis did not answer in time; showing this task alone".into(),
            ),
        };
        view.send_replace(next);
    }
    // Asked to stop: leave the fleet, so this task is not shown as missing (on a
    // new connection if the stop came in the middle of a round).
    let conn = match conn {
        Some(c) => Some(c),
        None => tokio::time::timeout(
            Duration::from_secs(1),
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .ok()
        .and_then(Result::ok),
    };
    if let Some(mut c) = conn {
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(&spec.key)
            .arg(&task)
            .ignore()
            .cmd("DEL")
            .arg(spec.snapshot_key(&task))
            .ignore();
        let leave = pipe.query_async::<()>(&mut c);
        match tokio::time::timeout(Duration::from_secs(1), leave).await {
            Ok(Ok(())) => tracing::info!(message = "Left the fleet.", task = %task),
            _ => {
                tracing::warn!(message = "Could not leave the fleet; other sidecars will show this task as missing for a while.", task = %task)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(task: &str, at: DateTime<Utc>) -> Snapshot {
        Snapshot {
            task: task.into(),
            availability_zone: "eu-west-1a".into(),
            version: "0".into(),
            status: Overall::Ok,
            components: vec![("db".into(), ComponentStatus::Ok)],
            firing: vec![],
            lease: Some(LeaseState::Standby),
            seen_at: at,
        }
    }

    proptest::proptest! {
        #[test]
        fn whatever_another_sidecar_wrote_reading_it_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            seen in proptest::prelude::any::<f64>(),
        ) {
            let now = Utc::now();
            let v = assemble(&snap("me", now), vec![("x".into(), seen)], vec![Some(bytes)], now);
            proptest::prop_assert_eq!(v.tasks.len(), 2);
            proptest::prop_assert!(v.tasks[1].state != TaskState::Present);
        }
    }

    /// Redis's count of the bytes it has sent to clients.
    async fn sent_by_redis(c: &mut redis::aio::MultiplexedConnection) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(c)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    #[tokio::test]
    async fn a_huge_snapshot_or_task_name_in_redis_is_not_read_whole() {
        // Anything that can write to the lease's Redis (another sidecar gone wrong,
        // any client) could make every sidecar read hundreds of MB a round.
        let redis = vigil_testkit::Redis::start();
        let spec = Spec::new(
            SecretUrl::parse(&redis.url()).unwrap(),
            "test",
            Duration::from_secs(15),
        );
        let client = redis::Client::open(redis.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let now = Utc::now();
        let long_name = "t".repeat(1 << 20);
        let _: () = redis::pipe()
            .cmd("ZADD")
            .arg(&spec.key)
            .arg(now.timestamp_millis())
            .arg("big")
            .ignore()
            .cmd("SET")
            .arg(spec.snapshot_key("big"))
            .arg(vec![b'x'; 8 << 20])
            .ignore()
            .cmd("ZADD")
            .arg(&spec.key)
            .arg(now.timestamp_millis())
            .arg(&long_name)
            .ignore()
            .cmd("HSET")
            .arg(spec.snapshot_key("hash"))
            .arg("f")
            .arg("v")
            .ignore()
            .cmd("ZADD")
            .arg(&spec.key)
            .arg(now.timestamp_millis())
            .arg("hash")
            .ignore()
            .query_async(&mut c)
            .await
            .unwrap();
        let before = sent_by_redis(&mut c).await;
        let v = round(&spec, &mut c, &snap("me", now)).await.unwrap();
        let read = sent_by_redis(&mut c).await - before;
        assert!(read < 1 << 20, "{read} bytes read in one round");
        let got: Vec<_> = v.tasks.iter().map(|t| (t.task.as_str(), t.state)).collect();
        assert_eq!(
            got,
            [
                ("me", TaskState::Present),
                ("big", TaskState::Unreadable),
                ("hash", TaskState::Missing),
            ]
        );
    }

    #[test]
    fn an_expired_snapshot_is_missing_a_foreign_one_unreadable_and_this_task_first() {
        let now = Utc::now();
        let me = snap("b", now);
        let other = serde_json::to_vec(&snap("c", now)).unwrap();
        let liar = serde_json::to_vec(&snap("someone-else", now)).unwrap();
        let v = assemble(
            &me,
            vec![
                ("a".into(), 1.0e12),
                ("c".into(), 2.0e12),
                ("d".into(), 3.0e12),
                ("e".into(), 3.0e12),
            ],
            vec![
                None,
                Some(other),
                Some(liar),
                Some(vec![b'x'; MAX_SNAPSHOT_BYTES + 1]),
            ],
            now,
        );
        let got: Vec<_> = v
            .tasks
            .iter()
            .map(|t| (t.task.as_str(), t.state, t.this))
            .collect();
        assert_eq!(
            got,
            [
                ("b", TaskState::Present, true),
                ("a", TaskState::Missing, false),
                ("c", TaskState::Present, false),
                ("d", TaskState::Unreadable, false),
                ("e", TaskState::Unreadable, false),
            ]
        );
        assert_eq!(
            v.tasks[1].last_seen.unwrap().timestamp_millis(),
            1_000_000_000_000
        );
    }
}
