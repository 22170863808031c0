//! The Watch Together server against a real PostgreSQL and Redis of the test's own.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use vigil_testkit::{HangingListener, Postgres, Redis};
use watch_together::{Application, Config, Running};

/// Starts the server on a free port of 127.0.0.1 with short dependency timeouts.
async fn start(database_url: String, redis_url: String) -> Running {
    start_with(database_url, redis_url, "on").await
}

/// [`start`] with `METRICS` set to `metrics`.
async fn start_with(database_url: String, redis_url: String, metrics: &str) -> Running {
    start_env(database_url, redis_url, metrics, None).await
}

/// [`start_with`], with `DATABASE_PASSWORD` when `password` is given.
async fn start_env(
    database_url: String,
    redis_url: String,
    metrics: &str,
    password: Option<&str>,
) -> Running {
    let config = Config::from_lookup(|name| match name {
        "DATABASE_PASSWORD" => password.map(str::to_string),
        "METRICS" => Some(metrics.into()),
        "PORT" => Some("0".into()),
        "BIND_LOCALHOST" => Some("1".into()),
        "LOG_FORMAT" => Some("json".into()),
        "DATABASE_URL" => Some(database_url.clone()),
        "REDIS_URL" => Some(redis_url.clone()),
        "DB_TIMEOUT_MS" => Some("500".into()),
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
    // Far longer than any server-side timeout: the server must answer first.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The value of the sample whose line starts with `prefix` in a text exposition.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(addr: SocketAddr) -> String {
    client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_answer_ok_with_real_dependencies() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let server = start(pg.url(), redis.url()).await;

    let (status, body) = get(server.local_addr(), "/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");

    let (status, body) = get(server.local_addr(), "/api/health/database").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert!(body["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(body["pool"]["size"].as_u64().unwrap() >= 1);
    assert_eq!(body["pool"]["max"], 10);

    let (status, body) = get(server.local_addr(), "/api/health/cache").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    // The first check found no sentinel key in the fresh Redis and wrote it; the
    // second found it.
    assert_eq!(get(server.local_addr(), "/api/health/cache").await.0, 200);
    let text = metrics(server.local_addr()).await;
    let miss = sample(
        &text,
        r#"app_cache_requests_total{operation="health_check",result="miss"}"#,
    );
    let hit = sample(
        &text,
        r#"app_cache_requests_total{operation="health_check",result="hit"}"#,
    );
    assert!(miss >= 1.0 && hit >= 1.0, "{text}");
    assert!(
        text.contains(r#"app_db_query_duration_seconds_count{query="health_select_1"}"#),
        "{text}"
    );
}

/// As on ECS: `DATABASE_URL` carries no password, `DATABASE_PASSWORD` (the RDS-managed
/// secret's `password` key) does, and the server connects with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_comes_from_its_own_variable() {
    let (pg, redis) = (Postgres::start(), Redis::start());
    pg.require_password("rotated-0001");
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port());
    // Without it the database refuses the server, which stops at its migrations.
    let config = Config::from_lookup(|name| match name {
        "PORT" => Some("0".into()),
        "BIND_LOCALHOST" => Some("1".into()),
        "DATABASE_URL" => Some(url.clone()),
        "REDIS_URL" => Some(redis.url()),
        _ => None,
    })
    .unwrap();
    let refused = Application::build(config).await.err().expect("refused");
    assert!(
        format!("{refused:?}").contains("password authentication failed"),
        "{refused:?}"
    );

    let with = start_env(url, redis.url(), "on", Some("rotated-0001")).await;
    let (status, body) = get(with.local_addr(), "/api/health/database").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cache_is_503_with_a_reason_and_the_rest_still_serves() {
    let pg = Postgres::start();
    let mut redis = Redis::start();
    let server = start(pg.url(), redis.url()).await;
    redis.kill();

    let (status, body) = get(server.local_addr(), "/api/health/cache").await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "error");
    assert!(body["reason"].as_str().unwrap().contains("cache"), "{body}");
    let (status, _) = get(server.local_addr(), "/api/health").await;
    assert_eq!(status, 200);

    redis.restart();
    let mut last = 0;
    vigil_testkit::wait_until(
        "the cache to be healthy again",
        Duration::from_secs(30),
        || {
            last = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(get(server.local_addr(), "/api/health/cache"))
                    .0
            });
            last == 200
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_dependencies_cost_only_their_timeout() {
    let mut pg = Postgres::start();
    let hung_cache = HangingListener::start();
    let server = start(pg.url(), format!("redis://{}/0", hung_cache.addr())).await;
    // Warm the pool so a connection exists, then freeze the whole database.
    assert_eq!(
        get(server.local_addr(), "/api/health/database").await.0,
        200
    );
    pg.freeze();

    let (status, body) = get(server.local_addr(), "/api/health/database").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["reason"], "database did not answer within 500ms",
        "{body}"
    );
    let (status, body) = get(server.local_addr(), "/api/health/cache").await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("timed out") || reason.contains("within 500ms"),
        "{body}"
    );
    pg.thaw();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_template() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let server = start(pg.url(), redis.url()).await;
    let before = metrics(server.local_addr()).await;
    let key_404 = r#"http_requests_total{method="GET",route="/api/rooms/{id}",status="404"}"#;
    let key_200 = r#"http_requests_total{method="GET",route="/api/rooms/{id}",status="200"}"#;
    let key_201 = r#"http_requests_total{method="POST",route="/api/rooms",status="201"}"#;
    let unmatched = r#"http_requests_total{method="GET",route="unmatched",status="404"}"#;

    let created: Value = client()
        .post(format!("http://{}/api/rooms", server.local_addr()))
        .json(&serde_json::json!({"name": "movie night", "media": {"title": "Alien"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    for path in [
        "/api/rooms/900001",
        "/api/rooms/900002",
        "/api/rooms/900003",
    ] {
        assert_eq!(get(server.local_addr(), path).await.0, 404);
    }
    let (status, room) = get(server.local_addr(), &format!("/api/rooms/{id}")).await;
    assert_eq!((status, room["name"].as_str()), (200, Some("movie night")));
    let (status, _) = get(server.local_addr(), &format!("/api/rooms/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(get(server.local_addr(), "/no/such/thing").await.0, 404);

    let after = metrics(server.local_addr()).await;
    assert_eq!(
        sample(&after, key_404) - sample(&before, key_404),
        3.0,
        "{after}"
    );
    assert_eq!(sample(&after, key_200) - sample(&before, key_200), 2.0);
    assert_eq!(sample(&after, key_201) - sample(&before, key_201), 1.0);
    assert_eq!(sample(&after, unmatched) - sample(&before, unmatched), 1.0);
    assert!(!after.contains("900001"), "a raw path became a label");
    // The second fetch of the room was served from the cache.
    let hits = r#"app_cache_requests_total{operation="get_room",result="hit"}"#;
    assert_eq!(sample(&after, hits) - sample(&before, hits), 1.0);
    assert!(after.contains(
        r#"http_request_duration_seconds_bucket{method="GET",route="/api/rooms/{id}",le="2"}"#
    ));
    assert!(after.contains("app_db_query_duration_seconds_bucket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_reasons() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let server = start(pg.url(), redis.url()).await;
    let resp = client()
        .post(format!("http://{}/api/rooms", server.local_addr()))
        .header("content-type", "application/json")
        .body("{\"nme\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    assert!(body["reason"].as_str().unwrap().contains("nme"), "{body}");
    let (status, body) = get(server.local_addr(), "/api/rooms/abc").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["reason"],
        "room id \"abc\" is not a positive whole number"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_and_stops_cleanly_on_sigterm() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("watch-together.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_watch-together"))
        .env("PORT", vigil_testkit::free_port().to_string())
        .env("BIND_LOCALHOST", "1")
        .env("LOG_FORMAT", "json")
        .env("DATABASE_URL", pg.url())
        .env("REDIS_URL", redis.url())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = vigil_testkit::ChildGuard(child);
    let mut addr = None;
    vigil_testkit::wait_until("the Listening. log line", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        addr = text.lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "Listening.").then(|| {
                v["addr"]
                    .as_str()?
                    .replace("0.0.0.0", "127.0.0.1")
                    .parse()
                    .ok()
            })?
        });
        addr.is_some()
    });
    let addr: SocketAddr = addr.unwrap();
    assert_eq!(get(addr, "/api/health").await.0, 200);
    // The container health check: the binary asks its own server.
    let healthcheck = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_watch-together"))
            .arg("healthcheck")
            .env("PORT", addr.port().to_string())
            .output()
            .unwrap()
    };
    let ok = healthcheck();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let pid = child.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exit = None;
    vigil_testkit::wait_until("the server to exit", Duration::from_secs(60), || {
        exit = child.0.try_wait().unwrap();
        exit.is_some()
    });
    assert!(exit.unwrap().success(), "{:?}", exit);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Stopped cleanly."), "{text}");
    let down = healthcheck();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_share_one_label_and_database_errors_stay_in_the_log() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let server = start(pg.url(), redis.url()).await;
    let addr = server.local_addr();
    let other = r#"http_requests_total{method="other",route="/api/rooms","#;
    let before = metrics(addr).await;
    for i in 0..200 {
        let method = reqwest::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
        client()
            .request(method, format!("http://{addr}/api/rooms"))
            .send()
            .await
            .unwrap();
    }
    let after = metrics(addr).await;
    let counted: f64 = after
        .lines()
        .filter(|l| l.starts_with(other))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        - before
            .lines()
            .filter(|l| l.starts_with(other))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    assert_eq!(counted, 200.0, "{after}");
    assert!(
        !after.contains("method=\"M1\""),
        "a made-up method became a label"
    );
    assert!(
        after.lines().count() < before.lines().count() + 40,
        "200 made-up methods grew the page from {} to {} lines",
        before.lines().count(),
        after.lines().count()
    );

    // A database error: the client gets a request id, never the database's text.
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    sqlx::query("ALTER TABLE rooms RENAME TO rooms_gone")
        .execute(&pool)
        .await
        .unwrap();
    let resp = client()
        .get(format!("http://{addr}/api/rooms"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["x-request-id"], "trace-42");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["request_id"], "trace-42");
    let reason = body["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        "the database failed; the server log has the details under request id trace-42"
    );
    let (status, health) = get(addr, "/api/health/database").await;
    assert_eq!(status, 200, "SELECT 1 needs no table: {health}");
    // An id that is not a plain token is replaced by one of the server's.
    let resp = client()
        .get(format!("http://{addr}/api/rooms"))
        .header("x-request-id", "<script>")
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.len() > 8 && !id.contains('<'), "{id}");
    let body: Value = resp.json().await.unwrap();
    assert!(
        !body.to_string().contains("rooms\\\" does not exist"),
        "{body}"
    );
    assert!(!body.to_string().contains("relation"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_serves_no_metrics_and_keeps_request_ids() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let server = start_with(pg.url(), redis.url(), "off").await;
    let addr = server.local_addr();

    let resp = client()
        .get(format!("http://{addr}/metrics"))
        .header("x-request-id", "trace-off-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.headers()["x-request-id"], "trace-off-1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "not_found", "{body}");
    assert_eq!(body["request_id"], "trace-off-1", "{body}");

    // A new id for a request that brings none, the same in the header and the body.
    let resp = client()
        .get(format!("http://{addr}/api/rooms/999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str(), "{body}");
    let (status, _) = get(addr, "/api/health").await;
    assert_eq!(status, 200);
}
