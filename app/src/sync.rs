//! Synchronized playback across instances.
//!
//! A room's playback state lives in Redis (`wt:room:<id>:state`, a hash). Every change
//! — play, pause, seek, rate, chat, control, presence — runs one Lua script
//! ([`APPLY`]) that reads the state, checks the member may do it, computes the new
//! state at Redis's own clock (`TIME`, one clock for every instance), gives the event
//! the room's next `seq`, stores the state and publishes the event on
//! `wt:room:<id>`, all atomically: events of a room are numbered and published in one
//! order, and Redis delivers a connection's publications in that order.
//!
//! Each instance holds one pub/sub connection subscribed to `wt:room:*` and a [`Hub`]
//! of the rooms its members are in. An event for a room with members here is fanned
//! out to their sockets through a bounded queue per socket; a socket whose queue is
//! full is a slow consumer and is closed (code 1008) instead of buffered without bound.
//! Each socket forwards only events whose `seq` is past what it last sent, so nothing
//! reaches a member twice; every [`STATE_EVERY`] each member also gets a `state`
//! message to correct drift.
//!
//! When Redis goes away the subscriber reconnects with backoff; once subscribed again
//! it re-seeds each of its rooms with the last state it saw (the script keeps whichever
//! `seq` is higher, so a restarted, empty Redis continues the numbering instead of
//! starting again at 1) and every member gets a fresh `state`. While Redis is away a
//! change is refused with a reason, never queued and applied later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::domain::{ChatText, MemberId, Position, Rate, RoomId};

/// How often each member gets a `state` message.
pub const STATE_EVERY: Duration = Duration::from_secs(5);
/// Messages queued for one socket before it counts as a slow consumer.
pub const QUEUE: usize = 256;
/// The channel pattern every instance subscribes to.
const PATTERN: &str = "wt:room:*";

/// The script behind every change: see the module documentation. An idle room's
/// keys expire after a week (604 800 s).
///
/// KEYS: state hash, online-count hash, names hash. ARGV: 1 kind, 2 member, 3 value
/// (position, rate or chat text), 4 display name, 5 "1" when the member is the room's
/// creator, 6–12 the seed (seq, position, playing, rate, at, host, locked), 13 the
/// media's duration or "", 14 the channel, 15 the new lock ("", "0", "1"), 16 the new
/// host or "", then pairs of member id and name to count online again (resync).
/// Returns `{1, seq}` or `{0, reason}`.
pub const APPLY: &str = r#"
local st, online, names = KEYS[1], KEYS[2], KEYS[3]
local kind, member = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur_seq = tonumber(redis.call('HGET', st, 'seq') or '-1')
if cur_seq < tonumber(ARGV[6]) then
  redis.call('HSET', st, 'seq', ARGV[6], 'position', ARGV[7], 'playing', ARGV[8], 'rate', ARGV[9],
    'at', ARGV[10], 'host', ARGV[11], 'locked', ARGV[12])
end
local s = redis.call('HMGET', st, 'seq', 'position', 'playing', 'rate', 'at', 'host', 'locked')
local seq, pos, playing, rate, at = tonumber(s[1]), tonumber(s[2]), s[3] == '1', tonumber(s[4]), tonumber(s[5])
local host, locked = s[6], s[7] == '1'
local dur = tonumber(ARGV[13])
local cur = pos
if playing then cur = pos + (now - at) / 1000 * rate end
if dur and cur > dur then cur = dur end
if cur < 0 then cur = 0 end
local creator = ARGV[5] == '1'
local playback = kind == 'play' or kind == 'pause' or kind == 'seek' or kind == 'rate'
if playback and locked and member ~= host and not creator then
  return {0, 'playback is locked to the host'}
end
if kind == 'control' and member ~= host and not creator then
  return {0, 'only the host can hand over or lock control'}
end
local event = {type = kind, member = tonumber(member)}
if kind == 'play' then pos = cur; playing = true; at = now
elseif kind == 'pause' then pos = cur; playing = false; at = now
elseif kind == 'seek' then pos = tonumber(ARGV[3]); cur = pos; at = now
elseif kind == 'rate' then pos = cur; rate = tonumber(ARGV[3]); at = now
elseif kind == 'chat' then event.text = ARGV[3]
elseif kind == 'control' then
  if ARGV[16] ~= '' then
    if (tonumber(redis.call('HGET', online, ARGV[16]) or '0')) <= 0 then
      return {0, 'member ' .. ARGV[16] .. ' is not in the room'}
    end
    host = ARGV[16]
  end
  if ARGV[15] ~= '' then locked = ARGV[15] == '1' end
elseif kind == 'joined' then
  redis.call('HINCRBY', online, member, 1)
  redis.call('HSET', names, member, ARGV[4])
  event.type = 'presence'; event.present = true; event.display_name = ARGV[4]
elseif kind == 'left' then
  if redis.call('HINCRBY', online, member, -1) <= 0 then
    redis.call('HDEL', online, member); redis.call('HDEL', names, member)
  end
  event.type = 'presence'; event.present = false; event.display_name = ARGV[4]
elseif kind == 'resync' then
  local i = 17
  while ARGV[i] do
    redis.call('HINCRBY', online, ARGV[i], 1)
    redis.call('HSET', names, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  event.type = 'state'; event.resync = true
elseif kind == 'closed' then
  event.type = 'closed'
else
  return {0, 'unknown kind ' .. kind}
end
seq = seq + 1
redis.call('HSET', st, 'seq', seq, 'position', pos, 'playing', playing and '1' or '0',
  'rate', rate, 'at', at, 'host', host, 'locked', locked and '1' or '0')
local members = {}
local counts = redis.call('HGETALL', online)
for i = 1, #counts, 2 do
  if tonumber(counts[i + 1]) > 0 then
    table.insert(members, {id = tonumber(counts[i]), display_name = redis.call('HGET', names, counts[i]) or ''})
  end
end
event.seq = seq; event.server_time = now; event.position = cur; event.playing = playing
event.rate = rate; event.host = tonumber(host); event.locked = locked; event.members = members
local payload = cjson.encode(event)
if kind == 'closed' then
  redis.call('DEL', st, online, names)
else
  for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, 604800) end
end
redis.call('PUBLISH', ARGV[14], payload)
return {1, seq, payload}
"#;

/// What a member asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Start playing from the current position.
    Play,
    /// Stop at the current position.
    Pause,
    /// Jump to a position.
    Seek(Position),
    /// Change the playback rate.
    Rate(Rate),
    /// Say something.
    Chat(ChatText),
    /// Lock playback to the host or unlock it, and/or hand control to another member.
    Control {
        /// `Some(true)` locks playback to the host.
        locked: Option<bool>,
        /// The member to hand control to.
        host: Option<MemberId>,
    },
}

impl Command {
    /// The event's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Play => "play",
            Command::Pause => "pause",
            Command::Seek(_) => "seek",
            Command::Rate(_) => "rate",
            Command::Chat(_) => "chat",
            Command::Control { .. } => "control",
        }
    }
}

/// Why a change was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// Redis cannot be reached; nothing was applied.
    #[error("playback sync is unavailable right now ({0}); nothing was applied, try again")]
    Unavailable(String),
    /// The member may not do this.
    #[error("{0}")]
    Refused(String),
}

/// What a socket is sent: the JSON text, and its `seq` when it is an event or a state.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The room's sequence number this message reflects (none for errors).
    pub seq: Option<u64>,
    /// A `state` message (sent when its seq is at least the last one sent).
    pub state: bool,
    /// The message.
    pub json: Arc<str>,
}

impl Outbound {
    /// An error reply to one socket.
    pub fn error(reason: &str) -> Outbound {
        Outbound {
            seq: None,
            state: false,
            json: json!({"type": "error", "reason": reason})
                .to_string()
                .into(),
        }
    }
}

/// Why the server closes a socket.
pub type CloseReason = (u16, &'static str);

/// What the server knows of a room from the database: fixed for the room's life.
#[derive(Debug, Clone, Copy)]
pub struct RoomInfo {
    /// The room.
    pub id: RoomId,
    /// The member who created it.
    pub creator: MemberId,
    /// The media's duration, bounding positions.
    pub duration: Option<f64>,
}

/// The last state an instance saw of a room.
#[derive(Debug, Clone, PartialEq)]
struct Live {
    seq: u64,
    server_time: i64,
    position: f64,
    playing: bool,
    rate: f64,
    host: MemberId,
    locked: bool,
    members: Value,
}

impl Live {
    fn from_event(v: &Value) -> Option<Live> {
        Some(Live {
            seq: v.get("seq")?.as_u64()?,
            server_time: v.get("server_time")?.as_i64()?,
            position: v.get("position")?.as_f64()?,
            playing: v.get("playing")?.as_bool()?,
            rate: v.get("rate")?.as_f64()?,
            host: v.get("host")?.as_i64()?,
            locked: v.get("locked")?.as_bool()?,
            // cjson writes an empty list as {}.
            members: match v.get("members") {
                Some(Value::Array(a)) => Value::Array(a.clone()),
                _ => Value::Array(Vec::new()),
            },
        })
    }

    /// The position at `now` (ms), as a client computes it.
    fn position_at(&self, now: i64, duration: Option<f64>) -> f64 {
        let mut p = self.position;
        if self.playing {
            p += (now - self.server_time).max(0) as f64 / 1000.0 * self.rate;
        }
        if let Some(d) = duration {
            p = p.min(d);
        }
        p.max(0.0)
    }

    fn state_message(&self, now: i64, duration: Option<f64>, you: Option<MemberId>) -> Value {
        let mut v = json!({
            "type": "state",
            "seq": self.seq,
            "server_time": now,
            "position": self.position_at(now, duration),
            "playing": self.playing,
            "rate": self.rate,
            "host": self.host,
            "locked": self.locked,
            "members": self.members,
        });
        if let Some(you) = you {
            v["you"] = json!(you);
        }
        v
    }
}

/// One socket of a member in a room on this instance.
struct Conn {
    member: MemberId,
    name: String,
    tx: mpsc::Sender<Outbound>,
    close: Arc<OnceLock<CloseReason>>,
}

/// A room with members on this instance.
struct Room {
    info: RoomInfo,
    last: Option<Live>,
    conns: HashMap<u64, Conn>,
}

/// A socket's end of the hub: its queue, and why the hub closed it when it did.
pub struct Joined {
    /// The socket's id within the hub.
    pub conn: u64,
    /// The member's id.
    pub member: MemberId,
    /// Messages for the socket, the initial `state` first.
    pub rx: mpsc::Receiver<Outbound>,
    /// Set before the hub drops the queue's sender.
    pub close: Arc<OnceLock<CloseReason>>,
}

/// The rooms with members on this instance, and the one subscription that feeds them.
pub struct Hub {
    rooms: Mutex<HashMap<RoomId, Room>>,
    cache: ConnectionManager,
    client: redis::Client,
    script: redis::Script,
    next_conn: AtomicU64,
    subscribed: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
}

fn state_key(id: RoomId) -> String {
    format!("wt:room:{id}:state")
}

fn channel(id: RoomId) -> String {
    format!("wt:room:{id}")
}

/// Milliseconds since the Unix epoch by this instance's clock.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Hub {
    /// A hub using `cache` for changes and `client` for its subscription (not yet
    /// started: see [`Hub::spawn`]).
    pub fn new(client: redis::Client, cache: ConnectionManager) -> Arc<Hub> {
        Arc::new(Hub {
            rooms: Mutex::new(HashMap::new()),
            cache,
            client,
            script: redis::Script::new(APPLY),
            next_conn: AtomicU64::new(1),
            subscribed: watch::channel(false).0,
            shutdown: watch::channel(false).0,
        })
    }

    /// Starts the subscriber and the periodic `state` messages; both end at
    /// [`Hub::shutdown`].
    pub fn spawn(self: &Arc<Hub>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(Arc::clone(self).subscribe_forever()),
            tokio::spawn(Arc::clone(self).send_states_forever()),
        ]
    }

    /// Whether the subscription is live (for `/api/health/sync` and tests).
    pub fn subscribed(&self) -> watch::Receiver<bool> {
        self.subscribed.subscribe()
    }

    /// Closes every socket with 1001 and stops the hub's tasks.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// A receiver that turns true at shutdown.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Sockets connected to this instance.
    pub fn connections(&self) -> usize {
        self.lock().values().map(|r| r.conns.len()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, Room>> {
        // A panic while holding the lock leaves plain data behind: keep serving.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seed(&self, info: &RoomInfo) -> Vec<String> {
        let rooms = self.lock();
        let last = rooms.get(&info.id).and_then(|r| r.last.clone());
        match last {
            Some(l) => vec![
                l.seq.to_string(),
                l.position.to_string(),
                if l.playing { "1" } else { "0" }.into(),
                l.rate.to_string(),
                l.server_time.to_string(),
                l.host.to_string(),
                if l.locked { "1" } else { "0" }.into(),
            ],
            None => vec![
                "0".into(),
                "0".into(),
                "0".into(),
                "1".into(),
                "0".into(),
                info.creator.to_string(),
                "0".into(),
            ],
        }
    }

    /// Runs [`APPLY`]; answers the event's seq and payload.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        info: &RoomInfo,
        kind: &str,
        member: MemberId,
        value: &str,
        name: &str,
        control: (&str, &str),
        extra: &[String],
    ) -> Result<(u64, String), SyncError> {
        let id = info.id;
        let mut inv = self.script.prepare_invoke();
        inv.key(state_key(id))
            .key(format!("wt:room:{id}:online"))
            .key(format!("wt:room:{id}:names"))
            .arg(kind)
            .arg(member)
            .arg(value)
            .arg(name)
            .arg(if member == info.creator { "1" } else { "0" });
        for s in self.seed(info) {
            inv.arg(s);
        }
        inv.arg(info.duration.map(|d| d.to_string()).unwrap_or_default())
            .arg(channel(id))
            .arg(control.0)
            .arg(control.1);
        for e in extra {
            inv.arg(e);
        }
        let mut conn = self.cache.clone();
        let reply: Vec<redis::Value> =
            tokio::time::timeout(Duration::from_secs(2), inv.invoke_async(&mut conn))
                .await
                .map_err(|_| SyncError::Unavailable("Redis did not answer within 2 s".into()))?
                .map_err(|e| {
                    tracing::warn!(message = "Sync script failed.", room = %id, error = %e);
                    SyncError::Unavailable("Redis failed".into())
                })?;
        let text = |v: &redis::Value| -> String {
            match v {
                redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                redis::Value::SimpleString(s) => s.clone(),
                redis::Value::Int(i) => i.to_string(),
                _ => String::new(),
            }
        };
        match reply.as_slice() {
            [redis::Value::Int(1), redis::Value::Int(seq), payload] => {
                Ok((u64::try_from(seq.to_owned()).unwrap_or(0), text(payload)))
            }
            [redis::Value::Int(0), reason] => Err(SyncError::Refused(text(reason))),
            other => Err(SyncError::Unavailable(format!(
                "unexpected script reply {other:?}"
            ))),
        }
    }

    /// Adds a member's socket to a room: the member is announced (`presence`), and
    /// the socket's queue starts with the room's current `state`.
    pub async fn join(
        &self,
        info: RoomInfo,
        member: MemberId,
        name: &str,
    ) -> Result<Joined, SyncError> {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        let close = Arc::new(OnceLock::new());
        // Registered before the presence runs, so no event after it is missed; the
        // socket skips the ones its first state already holds.
        self.lock()
            .entry(info.id)
            .or_insert_with(|| Room {
                info,
                last: None,
                conns: HashMap::new(),
            })
            .conns
            .insert(
                conn,
                Conn {
                    member,
                    name: name.to_string(),
                    tx: tx.clone(),
                    close: Arc::clone(&close),
                },
            );
        match self
            .run(&info, "joined", member, "", name, ("", ""), &[])
            .await
        {
            Ok((_, payload)) => {
                let first = serde_json::from_str::<Value>(&payload)
                    .ok()
                    .as_ref()
                    .and_then(Live::from_event);
                let Some(live) = first else {
                    self.remove(info.id, conn);
                    return Err(SyncError::Unavailable("unreadable state".into()));
                };
                let msg = live.state_message(live.server_time, info.duration, Some(member));
                let _ = tx.try_send(Outbound {
                    seq: Some(live.seq),
                    state: true,
                    json: msg.to_string().into(),
                });
                self.note(info.id, live);
                metrics::gauge!("app_ws_connections").increment(1.0);
                self.count_rooms();
                Ok(Joined {
                    conn,
                    member,
                    rx,
                    close,
                })
            }
            Err(e) => {
                self.remove(info.id, conn);
                Err(e)
            }
        }
    }

    /// Removes a socket; the member is announced gone when it was their last.
    pub async fn leave(&self, info: RoomInfo, conn: u64, name: &str) {
        let Some(member) = self.remove(info.id, conn) else {
            return;
        };
        metrics::gauge!("app_ws_connections").decrement(1.0);
        self.count_rooms();
        if let Err(e) = self
            .run(&info, "left", member, "", name, ("", ""), &[])
            .await
        {
            tracing::debug!(message = "Presence not announced.", room = %info.id, error = %e);
        }
    }

    fn remove(&self, id: RoomId, conn: u64) -> Option<MemberId> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(&id)?;
        let gone = room.conns.remove(&conn).map(|c| c.member);
        if room.conns.is_empty() {
            rooms.remove(&id);
        }
        gone
    }

    fn count_rooms(&self) {
        let rooms = self.lock();
        let members: std::collections::HashSet<MemberId> = rooms
            .values()
            .flat_map(|r| r.conns.values().map(|c| c.member))
            .collect();
        metrics::gauge!("app_rooms_active").set(rooms.len() as f64);
        metrics::gauge!("app_room_members").set(members.len() as f64);
    }

    fn note(&self, id: RoomId, live: Live) {
        if let Some(room) = self.lock().get_mut(&id)
            && room.last.as_ref().is_none_or(|l| l.seq < live.seq)
        {
            room.last = Some(live);
        }
    }

    /// Applies a member's change; answers the event's seq. The event itself reaches
    /// every member, the sender included, through the subscription.
    pub async fn apply(
        &self,
        info: RoomInfo,
        member: MemberId,
        command: &Command,
    ) -> Result<u64, SyncError> {
        let (value, control) = match command {
            Command::Seek(p) => (p.seconds().to_string(), (String::new(), String::new())),
            Command::Rate(r) => (r.factor().to_string(), (String::new(), String::new())),
            Command::Chat(t) => (t.as_str().to_string(), (String::new(), String::new())),
            Command::Control { locked, host } => (
                String::new(),
                (
                    locked
                        .map(|l| if l { "1" } else { "0" }.to_string())
                        .unwrap_or_default(),
                    host.map(|h| h.to_string()).unwrap_or_default(),
                ),
            ),
            Command::Play | Command::Pause => (String::new(), (String::new(), String::new())),
        };
        self.run(
            &info,
            command.kind(),
            member,
            &value,
            "",
            (&control.0, &control.1),
            &[],
        )
        .await
        .map(|(seq, _)| seq)
    }

    /// Closes the room for everyone: members get `closed` and their sockets close.
    pub async fn close_room(&self, info: RoomInfo) -> Result<(), SyncError> {
        self.run(&info, "closed", info.creator, "", "", ("", ""), &[])
            .await
            .map(|_| ())
    }

    /// Hands one published event to the sockets of its room on this instance.
    fn deliver(&self, channel: &str, payload: &str) {
        let Some(id) = channel
            .strip_prefix("wt:room:")
            .and_then(|s| s.parse::<i64>().ok())
            .map(RoomId)
        else {
            return;
        };
        let Ok(event) = serde_json::from_str::<Value>(payload) else {
            return;
        };
        let Some(live) = Live::from_event(&event) else {
            return;
        };
        let lag = (now_ms() - live.server_time).max(0) as f64 / 1000.0;
        crate::telemetry::record("app_pubsub_delivery_lag_seconds", &[], lag);
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let closed = kind == "closed";
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(&id) else {
            return;
        };
        if room.last.as_ref().is_some_and(|l| l.seq >= live.seq) && kind != "state" {
            // Seen already (delivered again after a resubscribe).
            return;
        }
        let seq = live.seq;
        if room.last.as_ref().is_none_or(|l| l.seq < seq) {
            room.last = Some(live);
        }
        let out = Outbound {
            seq: Some(seq),
            state: kind == "state",
            json: payload.into(),
        };
        room.conns.retain(|_, c| {
            if closed {
                let _ = c.tx.try_send(out.clone());
                let _ = c.close.set((1000, "the room was closed"));
                return false;
            }
            match c.tx.try_send(out.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = c.close.set((1008, "too slow: messages were not read in time"));
                    tracing::info!(message = "Dropped a slow consumer.", room = %id, member = c.member);
                    crate::telemetry::increment("app_ws_slow_consumers_total", &[]);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if room.conns.is_empty() {
            rooms.remove(&id);
        }
    }

    /// Keeps one pattern subscription alive for as long as the server runs.
    async fn subscribe_forever(self: Arc<Hub>) {
        let mut stop = self.stopping();
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.psubscribe(PATTERN).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(2), attempt) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            match pubsub {
                Ok(Ok(pubsub)) => {
                    backoff = Duration::from_millis(100);
                    self.subscribed.send_replace(true);
                    tracing::info!(message = "Subscribed to room events.");
                    self.resync().await;
                    let mut messages = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(m) => {
                                    let channel = m.get_channel_name().to_string();
                                    if let Ok(payload) = m.get_payload::<String>() {
                                        self.deliver(&channel, &payload);
                                    }
                                }
                                None => break,
                            },
                            _ = stop.wait_for(|s| *s) => return,
                        }
                    }
                    self.subscribed.send_replace(false);
                    tracing::warn!(message = "Lost the room-event subscription; resubscribing.");
                }
                Ok(Err(e)) => {
                    tracing::debug!(message = "Cannot subscribe to room events.", error = %e)
                }
                Err(_) => tracing::debug!(message = "Subscribing timed out."),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {},
                _ = stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// After (re)subscribing: every room with members here is seeded again with what
    /// this instance last saw and its members counted online again, and a fresh
    /// `state` goes to every member of the room.
    async fn resync(&self) {
        // The shared connection learns of a restart only by failing a command: ping
        // until it answers (a failed PING changes nothing), so the resync runs on a
        // fresh connection.
        let mut conn = self.cache.clone();
        for _ in 0..20 {
            let cmd = redis::cmd("PING");
            let ping =
                tokio::time::timeout(Duration::from_secs(1), cmd.query_async::<String>(&mut conn))
                    .await;
            if matches!(ping, Ok(Ok(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rooms: Vec<(RoomInfo, Vec<String>)> = self
            .lock()
            .values()
            .map(|r| {
                let mut seen = std::collections::HashSet::new();
                let members = r
                    .conns
                    .values()
                    .filter(|c| seen.insert(c.member))
                    .flat_map(|c| [c.member.to_string(), c.name.clone()])
                    .collect();
                (r.info, members)
            })
            .collect();
        for (info, members) in rooms {
            if let Err(e) = self
                .run(&info, "resync", info.creator, "", "", ("", ""), &members)
                .await
            {
                tracing::warn!(message = "Room not resynced.", room = %info.id, error = %e);
            }
        }
    }

    /// Every [`STATE_EVERY`], each member gets the room's state at that moment.
    async fn send_states_forever(self: Arc<Hub>) {
        let mut stop = self.stopping();
        let mut tick = tokio::time::interval(STATE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {},
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = now_ms();
            let rooms = self.lock();
            for room in rooms.values() {
                let Some(live) = &room.last else { continue };
                let out = Outbound {
                    seq: Some(live.seq),
                    state: true,
                    json: live
                        .state_message(now, room.info.duration, None)
                        .to_string()
                        .into(),
                };
                for c in room.conns.values() {
                    // A full queue is handled by the next event; a state can wait.
                    let _ = c.tx.try_send(out.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_advance_while_playing_and_stop_at_the_end() {
        let live = Live {
            seq: 3,
            server_time: 10_000,
            position: 60.0,
            playing: true,
            rate: 2.0,
            host: 1,
            locked: false,
            members: json!([]),
        };
        assert_eq!(live.position_at(12_500, None), 65.0);
        assert_eq!(live.position_at(12_500, Some(62.0)), 62.0);
        // A clock behind the event's never moves the position back.
        assert_eq!(live.position_at(9_000, None), 60.0);
        let paused = Live {
            playing: false,
            ..live.clone()
        };
        assert_eq!(paused.position_at(99_000, None), 60.0);
        let m = live.state_message(12_500, None, Some(7));
        assert_eq!(m["type"], "state");
        assert_eq!(m["seq"], 3);
        assert_eq!(m["you"], 7);
    }

    #[tokio::test]
    async fn a_socket_that_does_not_read_is_dropped_not_buffered() {
        // A lazy connection to nowhere: deliver() never talks to Redis.
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        let cache = ConnectionManager::new_lazy_with_config(
            client.clone(),
            redis::aio::ConnectionManagerConfig::new(),
        )
        .unwrap();
        let hub = Hub::new(client, cache);
        let info = RoomInfo {
            id: RoomId(5),
            creator: 1,
            duration: None,
        };
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let (reader_tx, mut reader_rx) = mpsc::channel(QUEUE);
        let close = Arc::new(OnceLock::new());
        let mut conns = HashMap::new();
        conns.insert(
            1,
            Conn {
                member: 1,
                name: "slow".into(),
                tx,
                close: Arc::clone(&close),
            },
        );
        conns.insert(
            2,
            Conn {
                member: 2,
                name: "quick".into(),
                tx: reader_tx,
                close: Arc::new(OnceLock::new()),
            },
        );
        hub.lock().insert(
            info.id,
            Room {
                info,
                last: None,
                conns,
            },
        );
        for seq in 1..=QUEUE as u64 + 1 {
            let event = json!({"type": "chat", "seq": seq, "server_time": 1, "position": 0.0,
                "playing": false, "rate": 1.0, "host": 1, "locked": false, "members": []});
            hub.deliver("wt:room:5", &event.to_string());
            // The quick member reads as it goes.
            assert_eq!(reader_rx.try_recv().unwrap().seq, Some(seq));
        }
        assert_eq!(
            close.get(),
            Some(&(1008, "too slow: messages were not read in time"))
        );
        assert_eq!(
            hub.connections(),
            1,
            "the slow socket left, the quick one stays"
        );
        // Its queue holds what it was sent, no more, then ends.
        let mut queued = 0;
        while rx.recv().await.is_some() {
            queued += 1;
        }
        assert_eq!(queued, QUEUE);
        // The same event again (a resubscribe) reaches no one twice.
        let again = json!({"type": "chat", "seq": 3, "server_time": 1, "position": 0.0,
            "playing": false, "rate": 1.0, "host": 1, "locked": false, "members": []});
        hub.deliver("wt:room:5", &again.to_string());
        assert!(reader_rx.try_recv().is_err());
    }

    #[test]
    fn events_are_read_whatever_cjson_made_of_an_empty_list() {
        let v: Value = serde_json::from_str(
            r#"{"type":"seek","seq":4,"server_time":1,"position":2.5,"playing":false,"rate":1,"host":9,"locked":false,"members":{}}"#,
        )
        .unwrap();
        let live = Live::from_event(&v).unwrap();
        assert_eq!(live.members, json!([]));
        assert_eq!(live.position, 2.5);
        assert!(Live::from_event(&json!({"type": "seek"})).is_none());
    }
}
