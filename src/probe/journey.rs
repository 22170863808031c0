//! `journey`: a synthetic viewer. Each check creates a room on the Watch Together
//! server, joins it twice, opens two WebSockets (through the load balancer in ECS, so
//! they may land on different tasks), sends a `seek` on one and times its arrival on
//! the other, then deletes the room. It fails when any step does — with the step in
//! the reason — even while `/api/health` still answers ok, which is the point: this
//! is what a viewer needs to work.
//!
//! Figures: `vigil_journey_step_seconds{step}` for `create`, `join`, `connect`,
//! `sync` and `delete` (each step that completed), and `vigil_journey_sync_seconds`,
//! from sending the seek to its arrival on the other socket.
//!
//! The room is deleted also when the check fails or is cancelled by its timeout (a
//! guard sends the delete on a task of its own), so probing leaves no rooms behind.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;
use tokio_tungstenite::tungstenite::Message;

use super::{Observation, Probe, Sample};
use crate::settings::Collector;
use crate::settings::secret::SecretUrl;

/// Answers of the app's API are read up to this size.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// WebSocket messages from the app are read up to this size.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Messages the second socket may receive before the seek counts as lost.
const MAX_MESSAGES: usize = 1000;
/// The synthetic room's media length; the seek lands inside it.
const MEDIA_SECONDS: f64 = 3600.0;

/// `journey:` as written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneySettings {
    /// The app's base URL, `http(s)://host[:port]` (the load balancer's in ECS).
    url: Spanned<String>,
    /// Where the second viewer goes, when it must be another instance than the first
    /// (default: `url`).
    #[serde(default)]
    second_url: Option<Spanned<String>>,
}

/// Validated `journey` settings.
#[derive(Debug, Clone)]
pub struct JourneySpec {
    /// The first viewer's base URL.
    pub url: SecretUrl,
    /// The second viewer's base URL.
    pub second_url: SecretUrl,
}

impl JourneySettings {
    /// Checks both URLs.
    pub fn validate(self, c: &mut Collector) -> Option<JourneySpec> {
        let url = crate::settings::secret::http_url(&self.url, c);
        let second = match &self.second_url {
            Some(s) => crate::settings::secret::http_url(s, c),
            None => url.clone(),
        };
        Some(JourneySpec {
            url: url?,
            second_url: second?,
        })
    }
}

/// The synthetic viewer.
pub struct JourneyProbe {
    spec: JourneySpec,
    client: reqwest::Client,
}

/// Deletes the room when dropped unless disarmed: a failed or cancelled journey
/// cleans up after itself.
struct Cleanup {
    client: reqwest::Client,
    url: String,
    token: String,
    armed: bool,
}

impl Cleanup {
    fn request(&self) -> reqwest::RequestBuilder {
        self.client.delete(&self.url).bearer_auth(&self.token)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let request = self.request();
            rt.spawn(async move {
                let _ = request.send().await;
            });
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn base(url: &SecretUrl) -> String {
    url.expose().trim_end_matches('/').to_string()
}

impl JourneyProbe {
    /// A probe for `spec`; requests are bounded by `timeout`.
    pub fn new(spec: JourneySpec, timeout: Duration) -> Result<JourneyProbe, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("vigil-journey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(JourneyProbe { spec, client })
    }

    /// POSTs `body` and reads the JSON answer, expecting 201.
    async fn post(&self, url: &str, body: Value) -> Result<Value, String> {
        let mut response = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| crate::peer::error_text(&e))?;
        let status = response.status();
        let bytes = crate::peer::read_body(&mut response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        if status != reqwest::StatusCode::CREATED {
            return Err(format!(
                "HTTP {}: {}",
                status.as_u16(),
                crate::peer::truncate(String::from_utf8_lossy(&bytes).trim(), 200)
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("the answer is not JSON: {e}"))
    }

    /// Opens a member's socket and reads its first message, the room's state.
    async fn connect(&self, base: &str, room: i64, token: &str) -> Result<(Socket, u64), String> {
        let ws_base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", base.trim_start_matches("http://"))
        };
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("{ws_base}/api/rooms/{room}/ws?token={token}"),
            Some(config),
            // TCP_NODELAY: the seek is one small write, timed to its arrival.
            true,
        )
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => format!(
                "the upgrade answered HTTP {}: {}",
                r.status().as_u16(),
                crate::peer::truncate(
                    String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).trim(),
                    200
                )
            ),
            other => other.to_string(),
        })?;
        let first = next_json(&mut ws).await?;
        if first["type"] != "state" {
            return Err(format!(
                "the first message was not the room's state: {}",
                crate::peer::truncate(&first.to_string(), 200)
            ));
        }
        let seq = first["seq"].as_u64().ok_or("the state has no seq")?;
        Ok((ws, seq))
    }

    async fn journey(&self, samples: &mut Vec<Sample>) -> Result<(), String> {
        let first = base(&self.spec.url);
        let second = base(&self.spec.second_url);
        let step = |samples: &mut Vec<Sample>, name: &str, since: Instant| {
            samples.push(Sample::labelled(
                crate::families::JOURNEY_STEP_SECONDS,
                "step",
                name,
                since.elapsed().as_secs_f64(),
            ));
        };

        let t = Instant::now();
        let room = self
            .post(
                &format!("{first}/api/rooms"),
                json!({
                    "name": "vigil journey probe",
                    "display_name": "vigil",
                    "media": {"title": "Vigil journey probe", "duration": MEDIA_SECONDS},
                }),
            )
            .await
            .map_err(|e| format!("create a room: {e}"))?;
        let (Some(id), Some(host_token)) = (room["id"].as_i64(), room["host_token"].as_str())
        else {
            return Err("create a room: the answer has no id or host_token".into());
        };
        let mut cleanup = Cleanup {
            client: self.client.clone(),
            url: format!("{first}/api/rooms/{id}"),
            token: host_token.to_string(),
            armed: true,
        };
        step(samples, "create", t);

        let t = Instant::now();
        let mut tokens = Vec::new();
        for (base, name) in [(&first, "viewer 1"), (&second, "viewer 2")] {
            let seat = self
                .post(
                    &format!("{base}/api/rooms/{id}/join"),
                    json!({"display_name": name}),
                )
                .await
                .map_err(|e| format!("join room {id} as {name}: {e}"))?;
            let token = seat["token"]
                .as_str()
                .ok_or_else(|| format!("join room {id}: the answer has no token"))?;
            tokens.push(token.to_string());
        }
        step(samples, "join", t);

        let t = Instant::now();
        let (mut a, _) = self
            .connect(&first, id, &tokens[0])
            .await
            .map_err(|e| format!("open viewer 1's socket: {e}"))?;
        let (mut b, b_seq) = self
            .connect(&second, id, &tokens[1])
            .await
            .map_err(|e| format!("open viewer 2's socket: {e}"))?;
        step(samples, "connect", t);

        // A position of this check's own, so an older event cannot be taken for it.
        let position = (chrono::Utc::now().timestamp_subsec_millis() as f64) + 1.0;
        let t = Instant::now();
        a.send(Message::Text(
            json!({"type": "seek", "position": position})
                .to_string()
                .into(),
        ))
        .await
        .map_err(|e| format!("send a seek on viewer 1's socket: {e}"))?;
        let mut seen = 0;
        loop {
            let v = next_json(&mut b)
                .await
                .map_err(|e| format!("wait for the seek on viewer 2's socket: {e}"))?;
            if v["type"] == "error" {
                return Err(format!(
                    "the seek was refused: {}",
                    crate::peer::truncate(v["reason"].as_str().unwrap_or(""), 200)
                ));
            }
            if v["type"] == "seek" && v["position"].as_f64() == Some(position) {
                if v["seq"].as_u64().is_none_or(|s| s <= b_seq) {
                    return Err("the seek arrived with a seq not past the room's state".into());
                }
                break;
            }
            seen += 1;
            if seen >= MAX_MESSAGES {
                return Err(format!(
                    "the seek never reached viewer 2 ({MAX_MESSAGES} other messages came)"
                ));
            }
        }
        let sync = t.elapsed().as_secs_f64();
        samples.push(Sample::new(crate::families::JOURNEY_SYNC_SECONDS, sync));
        step(samples, "sync", t);
        let _ = a.close(None).await;
        let _ = b.close(None).await;

        let t = Instant::now();
        cleanup.armed = false;
        let response = cleanup
            .request()
            .send()
            .await
            .map_err(|e| format!("delete room {id}: {}", crate::peer::error_text(&e)))?;
        if response.status() != reqwest::StatusCode::NO_CONTENT {
            return Err(format!(
                "delete room {id}: HTTP {}",
                response.status().as_u16()
            ));
        }
        step(samples, "delete", t);
        Ok(())
    }
}

/// The next text message as JSON; pings and pongs are skipped.
async fn next_json(ws: &mut Socket) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t)
                    .map_err(|e| format!("a message that is not JSON: {e}"));
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(f) => format!(
                        "the server closed the socket ({}: {})",
                        u16::from(f.code),
                        crate::peer::truncate(&f.reason, 200)
                    ),
                    None => "the server closed the socket".into(),
                });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the socket ended".into()),
        }
    }
}

impl Probe for JourneyProbe {
    async fn check(&self) -> Observation {
        let mut samples = Vec::new();
        let result = self.journey(&mut samples).await;
        Observation {
            result: result.map_err(|e| {
                crate::peer::bounded(
                    self.spec
                        .url
                        .scrub(&format!("{}: {e}", self.spec.url.redacted())),
                )
            }),
            samples,
        }
    }

    fn target(&self) -> String {
        self.spec.url.redacted().to_string()
    }
}
