//! Rooms, members and synchronized playback against a real PostgreSQL and Redis of
//! the test's own, with two server instances sharing the Redis as they do behind the
//! load balancer.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vigil_testkit::{Postgres, Redis};
use watch_together::{Application, Config, Running};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start(database_url: &str, redis_url: &str) -> Running {
    watch_together::telemetry::init_logging(watch_together::LogFormat::Pretty);
    let (db, cache) = (database_url.to_string(), redis_url.to_string());
    let config = Config::from_lookup(|name| match name {
        "PORT" => Some("0".into()),
        "BIND_LOCALHOST" => Some("1".into()),
        "LOG_FORMAT" => Some("json".into()),
        "DATABASE_URL" => Some(db.clone()),
        "REDIS_URL" => Some(cache.clone()),
        "DB_TIMEOUT_MS" => Some("2000".into()),
        "CACHE_TIMEOUT_MS" => Some("500".into()),
        _ => None,
    })
    .unwrap();
    Application::build(config)
        .await
        .expect("server starts")
        .spawn()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn call(
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    body: Option<Value>,
    bearer: Option<&str>,
) -> (u16, Value) {
    let mut req = client().request(method, format!("http://{addr}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create(addr: SocketAddr, body: Value) -> Value {
    let (status, room) = call(reqwest::Method::POST, addr, "/api/rooms", Some(body), None).await;
    assert_eq!(status, 201, "{room}");
    room
}

async fn join(addr: SocketAddr, room: i64, name: &str) -> Value {
    let (status, member) = call(
        reqwest::Method::POST,
        addr,
        &format!("/api/rooms/{room}/join"),
        Some(json!({"display_name": name})),
        None,
    )
    .await;
    assert_eq!(status, 201, "{member}");
    member
}

async fn connect(addr: SocketAddr, room: i64, token: &str) -> Socket {
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/rooms/{room}/ws?token={token}"))
            .await
            .expect("the socket opens");
    ws
}

/// The next text message that satisfies `want`, skipping others; panics after 10 s.
async fn until(ws: &mut Socket, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if want(&v) {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended waiting for {what}: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s"))
}

/// The first message, which must be the room's state.
async fn first(ws: &mut Socket) -> Value {
    let v = until(ws, "any message", |_| true).await;
    assert_eq!(v["type"], "state", "the first message is the state: {v}");
    v
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The close frame's code, skipping messages before it.
async fn close_code(ws: &mut Socket) -> u16 {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(Message::Close(None))) | None => return 1005,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("socket failed before a close frame: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("a close frame within 10 s")
}

fn movie() -> Value {
    json!({"name": "Movie night", "media": {"title": "Alien", "plex_key": "/library/metadata/12", "duration": 7020.0}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_created_joined_fetched_and_deleted_by_its_host() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = start(&pg.url(), &redis.url()).await;
    let addr = app.local_addr();

    let room = create(addr, movie()).await;
    let id = room["id"].as_i64().unwrap();
    assert_eq!(room["media"]["duration"], 7020.0);
    assert_eq!(room["has_passphrase"], false);
    let host_token = room["host_token"].as_str().unwrap().to_string();
    assert_eq!(host_token.len(), 64);

    let (status, fetched) = call(
        reqwest::Method::GET,
        addr,
        &format!("/api/rooms/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(fetched["name"], "Movie night");
    assert!(
        fetched.get("host_token").is_none(),
        "the token is handed out once"
    );
    assert_eq!(
        fetched["state"],
        Value::Null,
        "no live state before anyone joined"
    );

    let viewer = join(addr, id, "Ripley").await;
    let mut ws = connect(addr, id, viewer["token"].as_str().unwrap()).await;
    let state = first(&mut ws).await;
    assert_eq!(state["you"], viewer["member_id"]);
    assert_eq!(state["playing"], false);
    send(&mut ws, json!({"type": "seek", "position": 300.0})).await;
    until(&mut ws, "the seek", |v| v["type"] == "seek").await;
    let (_, fetched) = call(
        reqwest::Method::GET,
        addr,
        &format!("/api/rooms/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(fetched["state"]["position"], 300.0, "{fetched}");
    assert_eq!(fetched["state"]["members_online"], 1);

    // Only the host deletes, and members connected are told and disconnected.
    let path = format!("/api/rooms/{id}");
    let (status, body) = call(reqwest::Method::DELETE, addr, &path, None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = call(
        reqwest::Method::DELETE,
        addr,
        &path,
        None,
        viewer["token"].as_str(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, _) = call(
        reqwest::Method::DELETE,
        addr,
        &path,
        None,
        Some(&host_token),
    )
    .await;
    assert_eq!(status, 204);
    until(&mut ws, "closed", |v| v["type"] == "closed").await;
    assert_eq!(close_code(&mut ws).await, 1000);
    let (status, _) = call(reqwest::Method::GET, addr, &path, None, None).await;
    assert_eq!(status, 404);
    let (status, body) = call(
        reqwest::Method::POST,
        addr,
        &format!("{path}/join"),
        Some(json!({"display_name": "late"})),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_instances_see_each_others_events_in_seq_order() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let a = start(&pg.url(), &redis.url()).await;
    let b = start(&pg.url(), &redis.url()).await;

    let room = create(a.local_addr(), movie()).await;
    let id = room["id"].as_i64().unwrap();
    let host = room["host_token"].as_str().unwrap();
    let guest = join(b.local_addr(), id, "Dallas").await;
    let mut on_a = connect(a.local_addr(), id, host).await;
    first(&mut on_a).await;
    let mut on_b = connect(b.local_addr(), id, guest["token"].as_str().unwrap()).await;
    let state_b = first(&mut on_b).await;
    let names: Vec<&str> = state_b["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["display_name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Host") && names.contains(&"Dallas"),
        "{state_b}"
    );
    // A sees B arrive.
    let presence = until(&mut on_a, "B's presence", |v| v["type"] == "presence").await;
    assert_eq!(presence["display_name"], "Dallas");
    assert_eq!(presence["present"], true);

    send(&mut on_a, json!({"type": "seek", "position": 1234.5})).await;
    let seen_b = until(&mut on_b, "the seek on B", |v| v["type"] == "seek").await;
    let seen_a = until(&mut on_a, "the seek echoed on A", |v| v["type"] == "seek").await;
    assert_eq!(seen_b, seen_a, "the sender gets the same event");
    assert_eq!(seen_b["position"], 1234.5);
    assert!(seen_b["seq"].as_u64().unwrap() > presence["seq"].as_u64().unwrap());
    assert!(seen_b["server_time"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(seen_b["member"], room["member_id"]);

    // A burst from both sides arrives on both in one order, seq strictly rising.
    for i in 0..10 {
        send(&mut on_a, json!({"type": "chat", "text": format!("a{i}")})).await;
        send(&mut on_b, json!({"type": "chat", "text": format!("b{i}")})).await;
    }
    let mut orders = Vec::new();
    for ws in [&mut on_a, &mut on_b] {
        let mut seqs = Vec::new();
        let mut texts = Vec::new();
        while texts.len() < 20 {
            let v = until(ws, "the chats", |v| v["type"] == "chat").await;
            seqs.push(v["seq"].as_u64().unwrap());
            texts.push(v["text"].as_str().unwrap().to_string());
        }
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        orders.push(texts);
    }
    assert_eq!(orders[0], orders[1], "both instances deliver one order");

    // Play on B, pause on A: the position moved by the elapsed time at the rate.
    send(&mut on_b, json!({"type": "rate", "rate": 2.0})).await;
    send(&mut on_b, json!({"type": "play"})).await;
    let play = until(&mut on_a, "play", |v| v["type"] == "play").await;
    send(&mut on_a, json!({"type": "pause"})).await;
    let pause = until(&mut on_b, "pause", |v| v["type"] == "pause").await;
    let elapsed = (pause["server_time"].as_i64().unwrap() - play["server_time"].as_i64().unwrap())
        as f64
        / 1000.0;
    let moved = pause["position"].as_f64().unwrap() - play["position"].as_f64().unwrap();
    assert!(
        (moved - 2.0 * elapsed).abs() < 0.01,
        "moved {moved} in {elapsed} s at 2×"
    );
    assert_eq!(pause["playing"], false);

    // Control: the host locks playback; the guest is refused, chat still flows.
    send(&mut on_a, json!({"type": "control", "locked": true})).await;
    until(&mut on_b, "the lock", |v| {
        v["type"] == "control" && v["locked"] == true
    })
    .await;
    send(&mut on_b, json!({"type": "play"})).await;
    let err = until(&mut on_b, "a refusal", |v| v["type"] == "error").await;
    assert_eq!(err["reason"], "playback is locked to the host");
    // Handing control over lets the guest play again.
    send(
        &mut on_a,
        json!({"type": "control", "host": guest["member_id"]}),
    )
    .await;
    until(&mut on_b, "the hand-over", |v| {
        v["type"] == "control" && v["host"] == guest["member_id"]
    })
    .await;
    send(&mut on_b, json!({"type": "play"})).await;
    until(&mut on_a, "the guest's play", |v| v["type"] == "play").await;

    // B leaves: A hears it.
    on_b.close(None).await.unwrap();
    let gone = until(&mut on_a, "B leaving", |v| {
        v["type"] == "presence" && v["present"] == false
    })
    .await;
    assert_eq!(gone["display_name"], "Dallas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_the_current_state_first() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = start(&pg.url(), &redis.url()).await;
    let addr = app.local_addr();
    let room = create(addr, movie()).await;
    let id = room["id"].as_i64().unwrap();
    let mut host = connect(addr, id, room["host_token"].as_str().unwrap()).await;
    first(&mut host).await;
    send(&mut host, json!({"type": "seek", "position": 600.0})).await;
    send(&mut host, json!({"type": "play"})).await;
    let play = until(&mut host, "play", |v| v["type"] == "play").await;

    let late = join(addr, id, "Lambert").await;
    let mut ws = connect(addr, id, late["token"].as_str().unwrap()).await;
    let state = first(&mut ws).await;
    assert_eq!(state["playing"], true);
    assert!(state["seq"].as_u64().unwrap() > play["seq"].as_u64().unwrap());
    let position = state["position"].as_f64().unwrap();
    let since = (state["server_time"].as_i64().unwrap() - play["server_time"].as_i64().unwrap())
        as f64
        / 1000.0;
    assert!(
        (position - (600.0 + since)).abs() < 0.01,
        "state at {position}, expected 600 + {since}"
    );
    // The periodic state corrects drift: it comes within its period.
    let periodic = until(&mut ws, "a periodic state", |v| v["type"] == "state").await;
    assert!(periodic["position"].as_f64().unwrap() >= position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_documented_error() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = start(&pg.url(), &redis.url()).await;
    let addr = app.local_addr();
    let post = |body: Value| call(reqwest::Method::POST, addr, "/api/rooms", Some(body), None);

    for (body, reason) in [
        (
            json!({"name": "", "media": {"title": "x"}}),
            "name must be 1 to 100 characters",
        ),
        (
            json!({"name": "x".repeat(101), "media": {"title": "x"}}),
            "name must be 1 to 100 characters",
        ),
        (json!({"name": "x"}), "missing field `media`"),
        (
            json!({"name": "x", "media": {"title": "x", "duration": -1}}),
            "media.duration must be",
        ),
        (
            json!({"name": "x", "media": {"title": "x", "plex_key": "a b"}}),
            "media.plex_key must be",
        ),
        (
            json!({"name": "x", "media": {"title": "x"}, "passphrase": ""}),
            "passphrase must be",
        ),
        (
            json!({"name": "x", "media": {"title": "x"}, "owner": 1}),
            "unknown field `owner`",
        ),
    ] {
        let (status, answer) = post(body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["error"], "bad_request");
        assert!(
            answer["reason"].as_str().unwrap().contains(reason),
            "{body} → {answer}"
        );
    }

    // A passphrase: missing is 401, wrong is 403, right is a seat.
    let locked = create(
        addr,
        json!({"name": "Private", "media": {"title": "Aliens"}, "passphrase": "nostromo"}),
    )
    .await;
    assert_eq!(locked["has_passphrase"], true);
    let id = locked["id"].as_i64().unwrap();
    let path = format!("/api/rooms/{id}/join");
    let join_with = |p: Option<&str>| {
        let mut b = json!({"display_name": "Ash"});
        if let Some(p) = p {
            b["passphrase"] = json!(p);
        }
        call(reqwest::Method::POST, addr, &path, Some(b), None)
    };
    assert_eq!(join_with(None).await.0, 401);
    let (status, body) = join_with(Some("sulaco")).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("wrong passphrase"))
    );
    let (status, seat) = join_with(Some("nostromo")).await;
    assert_eq!(status, 201, "{seat}");
    let (status, body) = call(
        reqwest::Method::POST,
        addr,
        &path,
        Some(json!({"display_name": " "})),
        None,
    )
    .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (400, Some("display_name must be 1 to 50 characters"))
    );

    // The socket: no token, a malformed one, an unknown one, another room's.
    let other = create(addr, movie()).await;
    for (query, status) in [
        ("", 401),
        ("?token=abc", 401),
        (&*format!("?token={}", "0".repeat(64)), 401),
        (
            &*format!("?token={}", other["host_token"].as_str().unwrap()),
            403,
        ),
    ] {
        let url = format!("ws://{addr}/api/rooms/{id}/ws{query}");
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), status, "{query}");
                let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
                assert!(body["reason"].is_string(), "{body}");
            }
            other => panic!("{query}: expected HTTP {status}, got {other:?}"),
        }
    }
    let (status, body) = call(
        reqwest::Method::GET,
        addr,
        &format!(
            "/api/rooms/{id}/ws?token={}",
            seat["token"].as_str().unwrap()
        ),
        None,
        None,
    )
    .await;
    assert_eq!(status, 400, "a plain GET is not an upgrade: {body}");

    // Bad messages get an error and the socket stays.
    let mut ws = connect(addr, id, seat["token"].as_str().unwrap()).await;
    first(&mut ws).await;
    for (msg, reason) in [
        (json!({"type": "seek", "position": -5}), "position must be"),
        (
            json!({"type": "seek", "position": 1e300}),
            "position must be",
        ),
        (json!({"type": "rate", "rate": 0}), "rate must be"),
        (
            json!({"type": "chat", "text": "x".repeat(501)}),
            "text must be 1 to 500",
        ),
        (
            json!({"type": "dance"}),
            "not a message this server understands",
        ),
        (json!({"type": "control", "locked": true}), "only the host"),
    ] {
        send(&mut ws, msg.clone()).await;
        let err = until(&mut ws, "an error", |v| v["type"] == "error").await;
        assert!(
            err["reason"].as_str().unwrap().contains(reason),
            "{msg} → {err}"
        );
    }
    // "position" past a known duration.
    let film = create(addr, movie()).await;
    let mut host = connect(
        addr,
        film["id"].as_i64().unwrap(),
        film["host_token"].as_str().unwrap(),
    )
    .await;
    first(&mut host).await;
    send(&mut host, json!({"type": "seek", "position": 7020.5})).await;
    let err = until(&mut host, "an error", |v| v["type"] == "error").await;
    assert!(
        err["reason"].as_str().unwrap().contains("past the end"),
        "{err}"
    );

    // Flooding: refused past the burst, then closed with 1008.
    let mut refused = false;
    for i in 0..200 {
        if host
            .send(Message::Text(
                json!({"type": "chat", "text": format!("{i}")})
                    .to_string()
                    .into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), host.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => {
                refused |= t.contains("rate limited");
            }
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert!(refused, "messages past the burst are refused first");
    assert_eq!(code, 1008);

    // A message over the size limit closes with 1009.
    ws.send(Message::Text("x".repeat(5000).into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_live_sockets_resubscribes_and_resyncs_without_repeats() {
    let pg = Postgres::start();
    let mut redis = Redis::start();
    let a = start(&pg.url(), &redis.url()).await;
    let b = start(&pg.url(), &redis.url()).await;
    let room = create(a.local_addr(), movie()).await;
    let id = room["id"].as_i64().unwrap();
    let guest = join(a.local_addr(), id, "Kane").await;
    let mut on_a = connect(a.local_addr(), id, room["host_token"].as_str().unwrap()).await;
    first(&mut on_a).await;
    let mut on_b = connect(b.local_addr(), id, guest["token"].as_str().unwrap()).await;
    first(&mut on_b).await;
    send(&mut on_a, json!({"type": "seek", "position": 42.0})).await;
    let before = until(&mut on_b, "the seek", |v| v["type"] == "seek").await;
    let before_seq = before["seq"].as_u64().unwrap();

    redis.restart();

    // Each member gets a fresh state, its seq past everything before: Redis came back
    // empty, and the instances re-seeded it with what they had seen.
    for ws in [&mut on_a, &mut on_b] {
        // Each instance re-counts its own members: the last resync holds them all.
        let fresh = until(ws, "a full resync", |v| {
            v["type"] == "state"
                && v["resync"] == true
                && v["members"].as_array().unwrap().len() == 2
        })
        .await;
        assert!(fresh["seq"].as_u64().unwrap() > before_seq, "{fresh}");
        assert_eq!(fresh["position"], 42.0);
    }
    // Events flow again, and nothing arrives twice.
    send(&mut on_b, json!({"type": "seek", "position": 84.0})).await;
    let after = until(&mut on_a, "the seek after", |v| v["type"] == "seek").await;
    assert_eq!(after["position"], 84.0);
    assert!(after["seq"].as_u64().unwrap() > before_seq);
    send(&mut on_a, json!({"type": "chat", "text": "still here"})).await;
    let mut last = 0;
    for _ in 0..2 {
        let v = until(&mut on_b, "events", |v| {
            v["type"] == "seek" || v["type"] == "chat"
        })
        .await;
        let seq = v["seq"].as_u64().unwrap();
        assert!(seq > last, "seq {seq} after {last}: {v}");
        last = seq;
        if v["type"] == "chat" {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_socket_with_going_away() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = start(&pg.url(), &redis.url()).await;
    let addr = app.local_addr();
    let room = create(addr, movie()).await;
    let mut ws = connect(
        addr,
        room["id"].as_i64().unwrap(),
        room["host_token"].as_str().unwrap(),
    )
    .await;
    first(&mut ws).await;
    drop(app);
    assert_eq!(close_code(&mut ws).await, 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_and_rooms_are_measured() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = start(&pg.url(), &redis.url()).await;
    let addr = app.local_addr();
    let room = create(addr, movie()).await;
    let mut ws = connect(
        addr,
        room["id"].as_i64().unwrap(),
        room["host_token"].as_str().unwrap(),
    )
    .await;
    first(&mut ws).await;
    send(&mut ws, json!({"type": "seek", "position": 1.0})).await;
    until(&mut ws, "the seek", |v| v["type"] == "seek").await;
    let page = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "app_ws_connections ",
        "app_rooms_active ",
        "app_room_members ",
        "app_ws_messages_total{type=\"seek\"}",
        "app_pubsub_delivery_lag_seconds_bucket",
        "app_db_query_duration_seconds_bucket{query=\"insert_room\"",
        "app_cache_requests_total{operation=\"get_room\",result=\"miss\"}",
    ] {
        assert!(page.contains(name), "{name} missing from /metrics:\n{page}");
    }
}
