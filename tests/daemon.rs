//! The real daemon probing the real app, PostgreSQL and Redis (the test's own
//! instances), driven through its HTTP API.

mod common;

use std::process::Command;

use common::{Vigil, component, start_app};
use vigil_testkit::{HangingListener, Postgres, Redis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_killed_is_down_within_two_checks_and_recovers() {
    let pg = Postgres::start();
    let mut redis = Redis::start();
    let app = start_app(&pg.url(), &redis.url()).await;
    let vigil = Vigil::start(&format!(
        "  - name: app
    interval: 200ms
    http:
      url: http://{app}/api/health
      json: {{pointer: /status, equals: ok}}
  - name: database
    interval: 200ms
    postgres:
      dsn: {pg}
  - name: cache
    interval: 200ms
    redis:
      url: {redis}
  - name: cache-port
    interval: 200ms
    tcp:
      address: 127.0.0.1:{port}
  - name: disk
    critical: false
    interval: 1s
    disk:
      paths: [/]
",
        app = app.local_addr(),
        pg = pg.url(),
        redis = redis.url(),
        port = redis.port(),
    ));

    let status = vigil
        .wait_for("every component ok", |s| s["status"] == "ok")
        .await;
    let (code, _) = vigil.status().await;
    assert_eq!(code, 200);
    for c in status["components"].as_array().unwrap() {
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c["latency_ms"].as_f64().unwrap() >= 0.0);
        assert!(c["last_success"].is_string());
    }
    // With no rules, the store still fills from the probes and says so.
    let status = vigil
        .wait_for("the store to hold the probe series", |s| {
            s["engine"]["series"].as_u64() > Some(10)
        })
        .await;
    let db = component(&status, "database");
    let figures: Vec<&str> = db["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(figures.contains(&"vigil_postgres_max_connections"), "{db}");
    assert_eq!(
        db["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "vigil_postgres_max_connections")
            .unwrap()["value"],
        50.0,
        "the harness server's max_connections"
    );

    let checks_before_kill = vigil.component("cache").await["checks_total"]
        .as_u64()
        .unwrap();
    redis.kill();
    let status = vigil
        .wait_for("the cache to be down", |s| {
            component(s, "cache")["status"] == "down"
        })
        .await;
    let cache = component(&status, "cache");
    let checks_to_notice = cache["checks_total"].as_u64().unwrap() - checks_before_kill;
    assert!(
        checks_to_notice <= 2,
        "the cache was reported down only {checks_to_notice} checks after it died"
    );
    assert_eq!(status["status"], "down");
    assert!(
        cache["last_error"]
            .as_str()
            .unwrap()
            .contains("redis://127.0.0.1"),
        "{cache}"
    );
    let (code, body) = vigil.status().await;
    assert_eq!(code, 503, "{body}");
    let (code, text) = vigil.get("/status?format=text").await;
    assert_eq!(code, 503);
    assert!(text.contains("status DOWN"), "{text}");
    assert_eq!(
        component(&body, "database")["status"],
        "ok",
        "the other probes keep working"
    );

    redis.restart();
    vigil
        .wait_for("everything ok again", |s| s["status"] == "ok")
        .await;
    let (code, _) = vigil.status().await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_target_costs_only_its_own_probe_its_timeout() {
    let hung = HangingListener::start();
    let tcp_target = HangingListener::start();
    let vigil = Vigil::start(&format!(
        "  - name: hung
    critical: false
    interval: 600ms
    timeout: 500ms
    http:
      url: http://{hung}/api/health
  - name: steady
    interval: 100ms
    tcp:
      address: {steady}
",
        hung = hung.addr(),
        steady = tcp_target.addr(),
    ));
    let status = vigil
        .wait_for("three timed-out checks", |s| {
            component(s, "hung")["checks_total"].as_u64() >= Some(3)
        })
        .await;
    let hung_probe = component(&status, "hung");
    let steady = component(&status, "steady");
    assert_eq!(hung_probe["status"], "down");
    let error = hung_probe["last_error"].as_str().unwrap();
    assert!(
        error.contains("timed out") || error.contains("timeout of 500ms"),
        "{error}"
    );
    assert!(
        hung_probe["latency_ms"].as_f64().unwrap() >= 500.0,
        "it waited its timeout"
    );
    // Both ran over the same stretch of time: the steady probe kept its 100 ms cadence
    // (about six checks per hung check) instead of waiting behind the hung one.
    let (h, s) = (
        hung_probe["checks_total"].as_u64().unwrap(),
        steady["checks_total"].as_u64().unwrap(),
    );
    assert!(s >= 3 * h, "steady ran {s} checks while hung ran {h}");
    assert_eq!(steady["status"], "ok");
    assert_eq!(
        status["status"], "degraded",
        "a non-critical component is down"
    );
    assert_eq!(vigil.status().await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_appears_in_no_status_metrics_or_log_and_sigterm_stops_cleanly() {
    const PASSWORD: &str = "Sup3rSecretHunter2";
    let pg = Postgres::start();
    let closed = vigil_testkit::free_port();
    let mut vigil = Vigil::start(&format!(
        "  - name: database
    interval: 100ms
    postgres:
      dsn: postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres
  - name: database-gone
    interval: 100ms
    postgres:
      dsn: postgres://postgres:{PASSWORD}@127.0.0.1:{closed}/postgres?sslmode=disable
  - name: cache-gone
    interval: 100ms
    redis:
      url: redis://:{PASSWORD}@127.0.0.1:{closed}/0
  - name: web-gone
    interval: 100ms
    http:
      url: http://probe:{PASSWORD}@127.0.0.1:{closed}/health
",
        port = pg.port(),
    ));
    let status = vigil
        .wait_for("all four probes to have run twice", |s| {
            s["components"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["checks_total"].as_u64() >= Some(2))
        })
        .await;
    assert_eq!(component(&status, "database")["status"], "ok", "{status}");
    assert_eq!(
        component(&status, "database")["target"],
        format!("postgres://postgres:***@127.0.0.1:{}/postgres", pg.port())
    );
    for name in ["database-gone", "cache-gone", "web-gone"] {
        assert_eq!(component(&status, name)["status"], "down");
        assert!(
            component(&status, name)["last_error"]
                .as_str()
                .unwrap()
                .contains(":***@"),
            "{status}"
        );
    }
    let mut seen = String::new();
    for path in [
        "/status",
        "/status?format=text",
        "/status?format=html",
        "/metrics",
    ] {
        let (_, body) = vigil.get(path).await;
        seen.push_str(&body);
    }
    assert!(seen.contains("***"), "the redacted form is shown");

    let exit = vigil.sigterm().await;
    assert!(exit.success(), "vigil exited with {exit}");
    let log = vigil.log_text();
    assert!(log.contains("Vigil stopped."), "{log}");
    assert!(
        log.contains("Component is down."),
        "the failures were logged: {log}"
    );
    seen.push_str(&log);
    assert!(!seen.contains(PASSWORD), "the password leaked:\n{seen}");
}

/// As on ECS: the DSN carries no password and `DATABASE_PASSWORD` (the RDS-managed
/// secret's `password` key) does. A rotation changes the password under a running
/// task: the kept connection stays up, so the rotation alone pages nothing; a new
/// connection needs the new password, which the restart after a rotation brings
/// (infrastructure/secrets.tf).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_password_comes_apart_from_the_dsn_and_a_rotation_keeps_the_connection() {
    const FIRST: &str = "Rotated0001pw";
    let pg = Postgres::start();
    pg.require_password(FIRST);
    let vigil = Vigil::start_with_env(
        tempfile::tempdir().unwrap(),
        &format!(
            "probes:
  - name: database
    interval: 300ms
    postgres:
      dsn: postgres://postgres@127.0.0.1:{port}/postgres
      password: ${{DATABASE_PASSWORD:-}}
  - name: no-password
    interval: 300ms
    postgres:
      dsn: postgres://postgres@127.0.0.1:{port}/postgres
      password: ${{UNSET_PASSWORD:-}}
",
            port = pg.port()
        ),
        &[("DATABASE_PASSWORD", FIRST)],
    );
    // A SCRAM exchange, or its refusal, can outlast a short timeout in a debug build
    // on a loaded machine (sqlx's PBKDF2 yields every 5 of its 4096 rounds): wait for
    // each verdict, never assume the first checks made it.
    let status = vigil
        .wait_for(
            "the database up and the probe without a password refused for it",
            |s| {
                let refused = component(s, "no-password");
                component(s, "database")["status"] == "ok"
                    && refused["status"] == "down"
                    && refused["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("password"))
            },
        )
        .await;

    pg.require_password("Rotated0002pw");
    let database = component(&status, "database");
    let before = database["checks_total"].as_u64().unwrap();
    let failures = database["failures_total"].as_u64().unwrap();
    let status = vigil
        .wait_for("ten more checks after the rotation", |s| {
            component(s, "database")["checks_total"].as_u64() >= Some(before + 10)
        })
        .await;
    let database = component(&status, "database");
    assert_eq!(database["status"], "ok", "{status}");
    assert_eq!(
        database["failures_total"].as_u64(),
        Some(failures),
        "the rotation failed a check: {status}"
    );
    let (_, text) = vigil.get("/status?format=text").await;
    assert!(!text.contains(FIRST), "the password leaked: {text}");
}

/// A kept connection the server closes is checked at once, not at the next tick: with
/// an hour between ticks, only that explains a second check within the test. Closed
/// under a running server (an idle timeout, a failover), the check reconnects and the
/// component stays ok; closed by a server gone, it is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_checked_at_once_and_is_down_only_when_the_server_is_gone() {
    let mut pg = Postgres::start();
    let mut redis = Redis::start();
    let vigil = Vigil::start(&format!(
        "  - name: database
    interval: 1h
    postgres:
      dsn: {pg}
  - name: cache
    interval: 1h
    redis:
      url: {redis}
",
        pg = pg.url(),
        redis = redis.url(),
    ));
    let checks = |s: &serde_json::Value, name: &str| component(s, name)["checks_total"].as_u64();
    vigil
        .wait_for("both checked once, up", |s| {
            s["status"] == "ok" && checks(s, "database") == Some(1) && checks(s, "cache") == Some(1)
        })
        .await;
    // The figures parse as well over the watched connection (RESP3 for Redis).
    let (_, metrics) = vigil.get("/metrics").await;
    for family in [
        "vigil_redis_connected_clients{",
        "vigil_redis_keyspace_hits_total{",
        "vigil_postgres_connections{",
    ] {
        assert!(metrics.contains(family), "no {family} in {metrics}");
    }

    let killed = redis.command("CLIENT KILL TYPE normal");
    assert!(killed.starts_with(':'), "CLIENT KILL answered {killed}");
    pg.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vigil'",
    );
    let status = vigil
        .wait_for(
            "both checked again after their connection was closed",
            |s| checks(s, "database") >= Some(2) && checks(s, "cache") >= Some(2),
        )
        .await;
    for name in ["database", "cache"] {
        let c = component(&status, name);
        assert_eq!(c["status"], "ok", "{name}: {status}");
        assert_eq!(c["failures_total"].as_u64(), Some(0), "{name}: {status}");
    }

    redis.kill();
    pg.stop();
    let status = vigil
        .wait_for("both down, checked when their server went", |s| {
            component(s, "database")["status"] == "down"
                && component(s, "cache")["status"] == "down"
        })
        .await;
    assert_eq!(status["status"], "down", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_json_and_healthz_answers() {
    let target = HangingListener::start();
    let vigil = Vigil::start(&format!(
        "  - name: port\n    interval: 100ms\n    tcp:\n      address: {}\n",
        target.addr()
    ));
    let (code, body) = vigil.get("/healthz").await;
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (code, body) = vigil.get("/status?format=xml").await;
    assert_eq!(code, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "bad_request");
    assert_eq!(
        v["reason"],
        "format \"xml\" is not known; use json, text or html"
    );
    let (code, body) = vigil.get("/nope").await;
    assert_eq!(code, 404);
    assert!(body.contains("\"reason\""), "{body}");
    // What axum's extractors refuse on their own is JSON too, with their reason.
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", vigil.addr);
    for (what, req, code, says) in [
        (
            "a query parameter twice",
            client.get(url("/status?format=json&format=html")),
            400,
            "duplicate field",
        ),
        (
            "a path that is not UTF-8",
            client.get(url("/badge/%FF/status.svg")),
            400,
            "",
        ),
        (
            "a body over the limit",
            client.post(url("/api/silences")).body(vec![b' '; 3 << 20]),
            413,
            "length limit",
        ),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), code, "{what}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{what}: {:?}",
            resp.headers()
        );
        let v: serde_json::Value = resp.json().await.unwrap();
        let reason = v["reason"].as_str().unwrap_or_default();
        assert!(!reason.is_empty() && reason.contains(says), "{what}: {v}");
        assert!(v["error"].is_string(), "{what}: {v}");
    }
    let resp = reqwest::Client::new()
        .post(format!("http://{}/status", vigil.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "method_not_allowed");
    let html = reqwest::Client::new()
        .get(format!("http://{}/status", vigil.addr))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(html.text().await.unwrap().contains("<table>"));
}

#[test]
fn vigil_status_prints_the_table_and_exits_by_verdict() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = HangingListener::start();
    let vigil = Vigil::start(&format!(
        "  - name: port\n    interval: 100ms\n    tcp:\n      address: {}\n",
        target.addr()
    ));
    rt.block_on(vigil.wait_for("the port to be ok", |s| s["status"] == "ok"));
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["status", "--url", &format!("http://{}", vigil.addr)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("status ok"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("port ") && l.contains(" ok ")),
        "{text}"
    );
    let healthz = format!("http://{}/healthz", vigil.addr);
    let check = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["healthcheck", "--url", url])
            .output()
            .unwrap()
    };
    assert_eq!(check(&healthz).status.code(), Some(0));
    drop(vigil);
    let down = check(&healthz);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "status",
            "--url",
            &format!("http://127.0.0.1:{}", vigil_testkit::free_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach Vigil"));
}

/// One token stops every stage: a daemon running every kind of stage (probes, a
/// scrape, rules, the router with a delivery worker and the lease, the publisher)
/// ends on SIGTERM with every stage ended by itself, none cancelled at the stop's
/// deadline, and its last flush written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_every_stage_by_the_shutdown_token() {
    let redis = vigil_testkit::Redis::start();
    let hook = vigil_testkit::Peer::start(vigil_testkit::Behaviour::Answer(
        200,
        vec!["Content-Type: text/plain; version=0.0.4".into()],
        b"up_hook 1\n".to_vec(),
    ));
    let dir = tempfile::tempdir().unwrap();
    common::write_always_paging(
        dir.path(),
        "Always",
        &format!("    webhook:\n      url: http://{}/hook\n", hook.addr()),
        &format!("redis://127.0.0.1:{}/0", redis.port()),
    );
    let mut vigil = Vigil::start_in(
        dir,
        &format!(
            "probes:
  - name: cache
    interval: 100ms
    redis:
      url: redis://127.0.0.1:{port}/0
scrape:
  - job: hook
    url: http://{hook}/metrics
    interval: 200ms
rule_files: [rules.yaml]
evaluation_interval: 200ms
routing: routing.yaml
publish:
  cloudwatch:
    mode: emf
    interval: 30m
    metrics:
      - series: vigil_probe_success
        stat: summary
        labels: [probe]
",
            port = redis.port(),
            hook = hook.addr(),
        ),
    );
    vigil
        .wait_for("the alert to be paged", |s| {
            s["paging"]["targets"]["oncall/webhook"]["delivered"].as_u64() >= Some(1)
        })
        .await;
    let exit = vigil.sigterm().await;
    let log = vigil.log_text();
    assert!(exit.success(), "vigil exited with {exit}: {log}");
    assert!(log.contains("Vigil stopped."), "{log}");
    assert!(
        !log.contains("Stages still running"),
        "a stage outlived the shutdown token: {log}"
    );
    assert!(
        vigil.stdout_text().contains("\"vigil_heartbeat\""),
        "the last flush was written: {}",
        vigil.stdout_text()
    );
}
