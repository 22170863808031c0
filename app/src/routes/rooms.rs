//! The rooms API: create a room, list and fetch rooms, join one, delete one.
//!
//! Rooms and members live in PostgreSQL; a room read by id goes through the Redis cache
//! (`room:<id>`, 60 s), which is where the app's cache hit and miss counters come from,
//! and carries the room's live playback state from [`crate::sync`].
//!
//! | request | answers |
//! | --- | --- |
//! | `POST /api/rooms` `{name, media: {title, plex_key?, duration?}, passphrase?, display_name?}` | 201, the room with `host_token` and `member_id` |
//! | `GET /api/rooms` | the 100 newest rooms |
//! | `GET /api/rooms/{id}` | the room and its `state` |
//! | `POST /api/rooms/{id}/join` `{display_name, passphrase?}` | 201, `{room_id, member_id, token}` |
//! | `DELETE /api/rooms/{id}` with `Authorization: Bearer <host_token>` | 204; members get `closed` |

use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::{DisplayName, Media, MemberId, Passphrase, RoomId, RoomName, Token};
use crate::error::ApiError;
use crate::state::AppState;
use crate::sync::RoomInfo;

/// How long a fetched room stays in the cache.
const CACHE_TTL_SECONDS: u64 = 60;
/// Most members (seats handed out by joins) a room may have.
pub const MAX_MEMBERS: i64 = 200;

/// The rooms routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/rooms", get(list).post(create))
        .route("/api/rooms/{id}", get(fetch).delete(delete))
        .route("/api/rooms/{id}/join", post(join))
        .route("/api/rooms/{id}/ws", get(super::ws::upgrade))
}

/// A room as the API returns it (and the cache keeps it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Room {
    /// The room's id.
    pub id: i64,
    /// Its display name, 1 to 100 characters.
    pub name: String,
    /// What it plays.
    pub media: Media,
    /// Whether joining needs a passphrase.
    pub has_passphrase: bool,
    /// The member who created the room (0 for rooms made before members existed).
    pub host: MemberId,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Room {
    /// What the sync hub needs of the room.
    pub fn info(&self) -> RoomInfo {
        RoomInfo {
            id: RoomId(self.id),
            creator: self.host,
            duration: self.media.duration,
        }
    }
}

#[derive(sqlx::FromRow)]
struct RoomRow {
    id: i64,
    name: String,
    created_at: chrono::DateTime<chrono::Utc>,
    media_title: String,
    media_plex_key: Option<String>,
    media_duration: Option<f64>,
    passphrase_hash: Option<String>,
    host: Option<i64>,
}

impl RoomRow {
    fn room(&self) -> Room {
        Room {
            id: self.id,
            name: self.name.clone(),
            media: Media {
                title: self.media_title.clone(),
                plex_key: self.media_plex_key.clone(),
                duration: self.media_duration,
            },
            has_passphrase: self.passphrase_hash.is_some(),
            host: self.host.unwrap_or(0),
            created_at: self.created_at,
        }
    }
}

/// The room query; a macro so that each use is one literal (bound parameters only).
macro_rules! select_room {
    ($tail:literal) => {
        concat!(
            "SELECT r.id, r.name, r.created_at, r.media_title, r.media_plex_key, ",
            "r.media_duration, r.passphrase_hash, m.id AS host ",
            "FROM rooms r LEFT JOIN members m ON m.room_id = r.id AND m.is_host ",
            $tail
        )
    };
}

/// The body of `POST /api/rooms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoom {
    /// The display name.
    pub name: String,
    /// What the room plays.
    pub media: Media,
    /// Needed to join, when set.
    #[serde(default)]
    pub passphrase: Option<String>,
    /// The host's display name (default `Host`).
    #[serde(default)]
    pub display_name: Option<String>,
}

/// The body of `POST /api/rooms/{id}/join`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// The member's display name.
    pub display_name: String,
    /// The room's passphrase, when it has one.
    #[serde(default)]
    pub passphrase: Option<String>,
}

/// Runs a query under the database timeout and records its duration.
pub async fn timed<T>(
    state: &AppState,
    query: &'static str,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, ApiError> {
    let start = Instant::now();
    let result = tokio::time::timeout(state.db_timeout, fut).await;
    crate::telemetry::record(
        "app_db_query_duration_seconds",
        &[("query", query)],
        start.elapsed().as_secs_f64(),
    );
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if !matches!(e, sqlx::Error::PoolTimedOut) => Err(ApiError::Unavailable(
            crate::error::hidden("the database failed", e),
        )),
        Ok(Err(_)) | Err(_) => Err(ApiError::Unavailable(format!(
            "database did not answer within {:?}",
            state.db_timeout
        ))),
    }
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// Hashes off the async threads: argon2 takes tens of milliseconds on purpose.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Unavailable(crate::error::hidden("hashing failed", e)))
}

async fn create(
    State(state): State<AppState>,
    raw: Result<Json<NewRoom>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new = body(raw)?;
    let name = RoomName::parse(&new.name)?;
    let media = Media::parse(new.media)?;
    let host_name = DisplayName::parse(new.display_name.as_deref().unwrap_or("Host"))?;
    let passphrase = new
        .passphrase
        .as_deref()
        .map(Passphrase::parse)
        .transpose()?;
    let hash = match passphrase {
        Some(p) => Some(blocking(move || p.hash()).await?.map_err(|e| {
            ApiError::Unavailable(crate::error::hidden("hashing the passphrase failed", e))
        })?),
        None => None,
    };
    let token = Token::generate().map_err(ApiError::Unavailable)?;
    let (id, created_at, member_id) = timed(&state, "insert_room", async {
        let mut tx = state.db.begin().await?;
        let (id, created_at): (i64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
            "INSERT INTO rooms (name, media_title, media_plex_key, media_duration, passphrase_hash) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
        )
        .bind(name.as_str())
        .bind(&media.title)
        .bind(&media.plex_key)
        .bind(media.duration)
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await?;
        let member: i64 = sqlx::query_scalar(
            "INSERT INTO members (room_id, display_name, token_sha256, is_host) \
             VALUES ($1, $2, $3, true) RETURNING id",
        )
        .bind(id)
        .bind(host_name.as_str())
        .bind(token.digest())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((id, created_at, member))
    })
    .await?;
    let room = Room {
        id,
        name: name.as_str().to_string(),
        media,
        has_passphrase: hash.is_some(),
        host: member_id,
        created_at,
    };
    let mut answer = serde_json::to_value(&room).unwrap_or_default();
    answer["host_token"] = json!(token.reveal());
    answer["member_id"] = json!(member_id);
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<Room>>, ApiError> {
    let rows = timed(
        &state,
        "list_rooms",
        sqlx::query_as::<_, RoomRow>(select_room!("ORDER BY r.id DESC LIMIT 100"))
            .fetch_all(&state.db),
    )
    .await?;
    Ok(Json(rows.iter().map(RoomRow::room).collect()))
}

fn cache_result(result: &'static str) {
    crate::telemetry::increment(
        "app_cache_requests_total",
        &[("operation", "get_room"), ("result", result)],
    );
}

/// A room by id, through the cache.
pub async fn load(state: &AppState, id: RoomId) -> Result<Room, ApiError> {
    let key = format!("room:{id}");
    let mut conn = state.cache.clone();
    // The cache is an optimisation: when Redis fails we count it and read the database.
    let cached =
        tokio::time::timeout(state.cache_timeout, conn.get::<_, Option<String>>(&key)).await;
    match cached {
        Ok(Ok(Some(json))) => {
            if let Ok(room) = serde_json::from_str::<Room>(&json) {
                cache_result("hit");
                return Ok(room);
            }
            cache_result("miss");
        }
        Ok(Ok(None)) => cache_result("miss"),
        _ => cache_result("error"),
    }
    let room = timed(
        state,
        "get_room",
        sqlx::query_as::<_, RoomRow>(select_room!("WHERE r.id = $1"))
            .bind(id.0)
            .fetch_optional(&state.db),
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("room {id} does not exist")))?
    .room();
    if let Ok(json) = serde_json::to_string(&room) {
        let _ = tokio::time::timeout(
            state.cache_timeout,
            conn.set_ex::<_, _, ()>(&key, json, CACHE_TTL_SECONDS),
        )
        .await;
    }
    Ok(room)
}

/// The room's live state from Redis: `null` before anyone joined, or when Redis
/// cannot be asked (the room itself is still answered).
async fn live_state(state: &AppState, room: &Room) -> Value {
    let mut conn = state.cache.clone();
    let ask = async {
        let fields: std::collections::HashMap<String, String> =
            conn.hgetall(format!("wt:room:{}:state", room.id)).await?;
        let online: std::collections::HashMap<String, i64> =
            conn.hgetall(format!("wt:room:{}:online", room.id)).await?;
        Ok::<_, redis::RedisError>((fields, online))
    };
    let Ok(Ok((fields, online))) = tokio::time::timeout(state.cache_timeout, ask).await else {
        return Value::Null;
    };
    let num = |k: &str| fields.get(k).and_then(|v| v.parse::<f64>().ok());
    let (Some(seq), Some(position), Some(rate), Some(at)) =
        (num("seq"), num("position"), num("rate"), num("at"))
    else {
        return Value::Null;
    };
    let playing = fields.get("playing").is_some_and(|p| p == "1");
    let now = chrono::Utc::now().timestamp_millis() as f64;
    let mut at_now = if playing {
        position + ((now - at).max(0.0) / 1000.0) * rate
    } else {
        position
    };
    if let Some(d) = room.media.duration {
        at_now = at_now.min(d);
    }
    json!({
        "seq": seq as u64,
        "position": at_now,
        "playing": playing,
        "rate": rate,
        "host": num("host").map(|h| h as i64),
        "locked": fields.get("locked").is_some_and(|l| l == "1"),
        "members_online": online.values().filter(|&&n| n > 0).count(),
        "server_time": now as i64,
    })
}

async fn fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = RoomId::parse(&id)?;
    let room = load(&state, id).await?;
    let live = live_state(&state, &room).await;
    let mut answer = serde_json::to_value(&room).unwrap_or_default();
    answer["state"] = live;
    Ok(Json(answer))
}

async fn join(
    State(state): State<AppState>,
    Path(id): Path<String>,
    raw: Result<Json<Join>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = RoomId::parse(&id)?;
    let join = body(raw)?;
    let name = DisplayName::parse(&join.display_name)?;
    let row = timed(
        &state,
        "get_room_for_join",
        sqlx::query_as::<_, RoomRow>(select_room!("WHERE r.id = $1"))
            .bind(id.0)
            .fetch_optional(&state.db),
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("room {id} does not exist")))?;
    if let Some(stored) = row.passphrase_hash {
        let Some(given) = join.passphrase.as_deref() else {
            return Err(ApiError::Unauthorized(
                "this room needs its passphrase".into(),
            ));
        };
        let given = Passphrase::parse(given)?;
        if !blocking(move || given.matches(&stored)).await? {
            return Err(ApiError::Forbidden("wrong passphrase".into()));
        }
    }
    let token = Token::generate().map_err(ApiError::Unavailable)?;
    // The member count and the insert in one statement, so concurrent joins cannot
    // pass the limit together.
    let member: Option<i64> = timed(
        &state,
        "insert_member",
        sqlx::query_scalar(
            "INSERT INTO members (room_id, display_name, token_sha256) \
             SELECT $1, $2, $3 WHERE (SELECT count(*) FROM members WHERE room_id = $1) < $4 \
             RETURNING id",
        )
        .bind(id.0)
        .bind(name.as_str())
        .bind(token.digest())
        .bind(MAX_MEMBERS)
        .fetch_optional(&state.db),
    )
    .await?;
    let Some(member) = member else {
        return Err(ApiError::Conflict(format!(
            "room {id} is full ({MAX_MEMBERS} members)"
        )));
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({"room_id": id.0, "member_id": member, "token": token.reveal()})),
    ))
}

/// A member found by token.
pub struct Member {
    /// Their id.
    pub id: MemberId,
    /// The room they belong to.
    pub room: i64,
    /// Their display name.
    pub display_name: String,
    /// Whether they created the room.
    pub is_host: bool,
}

/// The member a token belongs to, if any.
pub async fn member_by_token(state: &AppState, token: &Token) -> Result<Option<Member>, ApiError> {
    let row: Option<(i64, i64, String, bool)> = timed(
        state,
        "get_member",
        sqlx::query_as(
            "SELECT id, room_id, display_name, is_host FROM members WHERE token_sha256 = $1",
        )
        .bind(token.digest())
        .fetch_optional(&state.db),
    )
    .await?;
    Ok(row.map(|(id, room, display_name, is_host)| Member {
        id,
        room,
        display_name,
        is_host,
    }))
}

async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = RoomId::parse(&id)?;
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized("send the host token as Authorization: Bearer <token>".into())
        })?;
    let token = Token::parse(token.trim()).map_err(|e| ApiError::Unauthorized(e.0))?;
    let room = load(&state, id).await?;
    match member_by_token(&state, &token).await? {
        Some(m) if m.room == id.0 && m.is_host => {}
        Some(_) => {
            return Err(ApiError::Forbidden(
                "only the room's host can delete it".into(),
            ));
        }
        None => return Err(ApiError::Unauthorized("unknown token".into())),
    }
    timed(
        &state,
        "delete_room",
        sqlx::query("DELETE FROM rooms WHERE id = $1")
            .bind(id.0)
            .execute(&state.db),
    )
    .await?;
    let mut conn = state.cache.clone();
    let _ =
        tokio::time::timeout(state.cache_timeout, conn.del::<_, ()>(format!("room:{id}"))).await;
    // Members still connected are told and disconnected; without Redis their sockets
    // stay until they drop, and no token of the room opens one again.
    if let Err(e) = state.hub.close_room(room.info()).await {
        tracing::warn!(message = "Room deleted; its members were not told.", room = %id, error = %e);
    }
    Ok(StatusCode::NO_CONTENT)
}
