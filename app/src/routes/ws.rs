//! `GET /api/rooms/{id}/ws?token=…`: a member's WebSocket.
//!
//! The token is a query parameter because browsers cannot set headers on a
//! WebSocket; it is checked (and the room found) before the upgrade, so a bad one is
//! answered with a 4xx JSON body like any other request.
//!
//! Members send JSON text messages with a `type`:
//!
//! | type | fields | who |
//! | --- | --- | --- |
//! | `play`, `pause` | | anyone, or only the host while locked |
//! | `seek` | `position` (seconds, within the media) | likewise |
//! | `rate` | `rate` (0.25 to 4) | likewise |
//! | `chat` | `text` (1 to 500 characters) | anyone |
//! | `control` | `locked` (bool) and/or `host` (a member in the room) | the host or the creator |
//!
//! The server answers with the room's `state` first, then every accepted event with
//! its `seq` and `server_time` (milliseconds, Redis's clock) and the state after it
//! (`position` at `server_time`, `playing`, `rate`, `host`, `locked`, `members`); a
//! `state` every five seconds; `presence` when members come and go; `closed` when the
//! host deletes the room; and `{"type":"error","reason":…}` for a message it refused.
//!
//! Limits: messages of at most [`MAX_MESSAGE_BYTES`] (a larger one closes with 1009);
//! [`RATE_PER_SECOND`] messages a second with bursts of [`BURST`] (more are refused
//! with an error, and a socket that keeps on is closed with 1008); a socket that does
//! not read its messages is closed with 1008 ([`crate::sync::QUEUE`]); shutdown closes
//! every socket with 1001.

use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::domain::{ChatText, Position, Rate, RoomId, Token};
use crate::error::ApiError;
use crate::state::AppState;
use crate::sync::{CloseReason, Command, Joined, Outbound, RoomInfo};

/// The largest message a member may send.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Messages a member may send per second, sustained.
pub const RATE_PER_SECOND: f64 = 10.0;
/// Messages a member may send at once.
pub const BURST: f64 = 20.0;
/// Refused messages in a row before the socket is closed.
const MAX_REFUSED_IN_A_ROW: u32 = 50;
/// Longest wait for one message to go out before the socket is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The query of the upgrade request.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// The member's token, from the join.
    token: Option<String>,
}

/// A message from a member, as sent.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Play,
    Pause,
    Seek {
        position: f64,
    },
    Rate {
        rate: f64,
    },
    Chat {
        text: String,
    },
    Control {
        #[serde(default)]
        locked: Option<bool>,
        #[serde(default)]
        host: Option<i64>,
    },
}

/// Reads one text message into a command, or says why not.
pub fn parse(text: &str, duration: Option<f64>) -> Result<Command, String> {
    let msg: ClientMessage = serde_json::from_str(text).map_err(|e| {
        format!("not a message this server understands ({e}); send JSON with a type of play, pause, seek, rate, chat or control")
    })?;
    Ok(match msg {
        ClientMessage::Play => Command::Play,
        ClientMessage::Pause => Command::Pause,
        ClientMessage::Seek { position } => {
            Command::Seek(Position::parse(position, duration).map_err(|e| e.0)?)
        }
        ClientMessage::Rate { rate } => Command::Rate(Rate::parse(rate).map_err(|e| e.0)?),
        ClientMessage::Chat { text } => Command::Chat(ChatText::parse(&text).map_err(|e| e.0)?),
        ClientMessage::Control { locked, host } => {
            if locked.is_none() && host.is_none() {
                return Err("control needs locked, host or both".into());
            }
            Command::Control { locked, host }
        }
    })
}

/// Checks the token and the room, then upgrades.
pub async fn upgrade(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<WsQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let id = RoomId::parse(&id)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let token = query.token.ok_or_else(|| {
        ApiError::Unauthorized("add ?token=<the member token the join answered>".into())
    })?;
    let token = Token::parse(&token).map_err(|e| ApiError::Unauthorized(e.0))?;
    let ws = ws.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let member = super::rooms::member_by_token(&state, &token)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))?;
    if member.room != id.0 {
        return Err(ApiError::Forbidden(
            "this token belongs to another room".into(),
        ));
    }
    let room = super::rooms::load(&state, id).await?;
    let info = room.info();
    Ok(ws
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(state, info, member.id, member.display_name, socket)))
}

/// A token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * RATE_PER_SECOND).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn serve(state: AppState, info: RoomInfo, member: i64, name: String, socket: WebSocket) {
    let hub = state.hub.clone();
    let (mut sink, mut stream) = socket.split();
    let Joined {
        conn,
        mut rx,
        close: hub_close,
        ..
    } = match hub.join(info, member, &name).await {
        Ok(j) => j,
        Err(e) => {
            let _ = sink
                .send(Message::Text(
                    Outbound::error(&e.to_string()).json.as_ref().into(),
                ))
                .await;
            let _ = sink.send(close(1011, "playback sync is unavailable")).await;
            return;
        }
    };
    let (reply_tx, mut replies) = mpsc::channel::<Outbound>(16);
    // A close of the reader's own, apart from the replies so a full queue cannot lose it.
    let (close_tx, mut close_rx) = tokio::sync::oneshot::channel::<CloseReason>();
    let mut stopping = hub.stopping();

    let writer = async {
        // The last seq sent: later events only, a state at least as new.
        let mut sent: Option<u64> = None;
        loop {
            enum Next {
                Stop,
                Out(Outbound),
                Close(CloseReason),
                Done,
            }
            let next = tokio::select! {
                biased;
                _ = stopping.wait_for(|s| *s) => Next::Stop,
                r = &mut close_rx => match r {
                    Ok(reason) => Next::Close(reason),
                    Err(_) => Next::Done,
                },
                r = replies.recv() => match r {
                    Some(out) => Next::Out(out),
                    None => Next::Done,
                },
                m = rx.recv() => match m {
                    Some(out) => Next::Out(out),
                    None => Next::Close(
                        hub_close.get().copied().unwrap_or((1011, "the server dropped this socket")),
                    ),
                },
            };
            let out = match next {
                Next::Out(out) => out,
                Next::Stop => {
                    let _ = sink.send(close(1001, "the server is shutting down")).await;
                    return;
                }
                Next::Close((code, reason)) => {
                    // The replies that explain the close go out before it.
                    while let Ok(out) = replies.try_recv() {
                        let _ = sink.feed(Message::Text(out.json.as_ref().into())).await;
                    }
                    let _ = sink.send(close(code, reason)).await;
                    return;
                }
                Next::Done => return,
            };
            if let Some(seq) = out.seq {
                let skip = match sent {
                    None => !out.state,
                    Some(s) => seq < s || (seq == s && !out.state),
                };
                if skip {
                    continue;
                }
                sent = Some(seq);
            }
            match tokio::time::timeout(
                SEND_TIMEOUT,
                sink.send(Message::Text(out.json.as_ref().into())),
            )
            .await
            {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    };

    let reader = async {
        let mut bucket = Bucket {
            tokens: BURST,
            at: Instant::now(),
        };
        let mut refused = 0u32;
        let reply = |out: Outbound| {
            // A member who floods errors and never reads them loses some: fine.
            let _ = reply_tx.try_send(out);
        };
        while let Some(frame) = stream.next().await {
            let text = match frame {
                Ok(Message::Text(t)) => t,
                Ok(Message::Binary(_)) => {
                    reply(Outbound::error(
                        "binary frames are not accepted; send JSON text",
                    ));
                    continue;
                }
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(e) => {
                    let e = e.to_string();
                    return (e.contains("Space limit") || e.contains("too long"))
                        .then_some((1009, "message too big: at most 4096 bytes"));
                }
            };
            if !bucket.take() {
                refused += 1;
                crate::telemetry::increment("app_ws_messages_total", &[("type", "rate_limited")]);
                if refused >= MAX_REFUSED_IN_A_ROW {
                    return Some((1008, "too many messages: at most 10 a second"));
                }
                reply(Outbound::error(
                    "rate limited: at most 10 messages a second, bursts of 20",
                ));
                continue;
            }
            refused = 0;
            match parse(text.as_str(), info.duration) {
                Ok(command) => {
                    crate::telemetry::increment(
                        "app_ws_messages_total",
                        &[("type", command.kind())],
                    );
                    if let Err(e) = hub.apply(info, member, &command).await {
                        reply(Outbound::error(&e.to_string()));
                    }
                }
                Err(reason) => {
                    crate::telemetry::increment("app_ws_messages_total", &[("type", "invalid")]);
                    reply(Outbound::error(&reason));
                }
            }
        }
        None
    };

    tokio::pin!(writer);
    tokio::select! {
        reason = reader => {
            if let Some(reason) = reason {
                let _ = close_tx.send(reason);
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
            }
        }
        () = &mut writer => {}
    }
    hub.leave(info, conn, &name).await;
    // After a close frame of ours, read until the member's answer (briefly), so the
    // socket ends with the closing handshake rather than a reset over unread input.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_parsed_into_checked_commands() {
        assert!(matches!(
            parse(r#"{"type":"play"}"#, None),
            Ok(Command::Play)
        ));
        assert!(matches!(
            parse(r#"{"type":"seek","position":12.5}"#, Some(100.0)),
            Ok(Command::Seek(p)) if p.seconds() == 12.5
        ));
        assert!(parse(r#"{"type":"seek","position":120}"#, Some(100.0)).is_err());
        assert!(parse(r#"{"type":"seek","position":-1}"#, None).is_err());
        assert!(parse(r#"{"type":"seek"}"#, None).is_err());
        assert!(parse(r#"{"type":"rate","rate":9}"#, None).is_err());
        assert!(parse(r#"{"type":"chat","text":""}"#, None).is_err());
        assert!(parse(r#"{"type":"control"}"#, None).is_err());
        assert!(parse(r#"{"type":"dance"}"#, None).is_err());
        assert!(parse("not json", None).is_err());
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket {
            tokens: BURST,
            at: Instant::now(),
        };
        let allowed = (0..100).filter(|_| b.take()).count();
        // The burst, plus whatever refilled while the loop ran (well under one).
        assert_eq!(allowed, BURST as usize);
    }
}
