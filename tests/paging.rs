//! Paging end to end: the real daemon, a real Redis or PostgreSQL that the test
//! kills, and `moto_server` as SNS. Messages are read back from moto.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{DEADLINE, Vigil, component};
use serde_json::Value;
use vigil_testkit::{Moto, Postgres, Redis, SnsMessage};

const RULES: &str = r#"groups:
  - name: critical
    rules:
      - alert: CacheDown
        expr: vigil_probe_success{probe="cache"} == 0
        labels:
          severity: critical
          component: cache
        annotations:
          summary: "Redis does not answer"
          description: "PING to {{ $labels.target }} failed."
          runbook_url: https://example.com/runbooks/CacheDown.md
      - alert: DatabaseDown
        expr: vigil_probe_success{probe="database"} == 0
        labels:
          severity: critical
          component: database
        annotations:
          summary: "PostgreSQL does not answer"
"#;

/// The environment that points the AWS SDK at moto.
fn aws_env(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// A directory with the rules, a routing file sending everything to `topic_arn`
/// (with `extra_routing` appended) and a config with `probes`.
fn setup(topic_arn: &str, extra_routing: &str, probes: &str) -> (tempfile::TempDir, String) {
    setup_with_routing(
        &format!(
            "receivers:\n  - name: critical\n    sns:\n      topic_arn: {topic_arn}\nroute:\n  receiver: critical\n  group_by: ['...']\ndelivery:\n  initial_backoff: 100ms\n  max_backoff: 500ms\n  timeout: 2s\n{extra_routing}"
        ),
        probes,
    )
}

/// A directory with the rules and `routing`, and a config with `probes` that reads
/// them.
fn setup_with_routing(routing: &str, probes: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    std::fs::write(dir.path().join("routing.yaml"), routing).unwrap();
    let body = format!(
        "rule_files: [rules.yaml]\nrouting: routing.yaml\nevaluation_interval: 1s\nprobes:\n{probes}"
    );
    (dir, body)
}

fn start(dir: tempfile::TempDir, body: &str, moto: &Moto) -> Vigil {
    let env = aws_env(moto);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Vigil::start_with_env(dir, body, &env)
}

fn redis_probe(url: &str) -> String {
    format!(
        "  - name: cache\n    interval: 200ms\n    timeout: 150ms\n    redis:\n      url: {url}\n"
    )
}

/// Waits until moto holds at least `n` messages for `arn`.
async fn wait_messages(moto: &Moto, arn: &str, n: usize, vigil: &Vigil) -> Vec<SnsMessage> {
    at_least(n, || moto.messages(arn), vigil, || "SNS messages".into()).await
}

/// Polls `read` until it returns at least `n` items; fails with what it last read
/// and the daemon's log at the deadline.
async fn at_least<T: std::fmt::Debug>(
    n: usize,
    read: impl Fn() -> Vec<T>,
    vigil: &Vigil,
    what: impl Fn() -> String,
) -> Vec<T> {
    let start = Instant::now();
    loop {
        let got = read();
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "waited for {n} {}, have {got:?}\nlog:\n{}",
            what(),
            vigil.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the rules have run `n` more times: later pages would have left by then.
async fn more_evaluations(vigil: &Vigil, n: u64) {
    let (_, s) = vigil.status().await;
    let now = s["engine"]["evaluations_total"].as_u64().unwrap();
    vigil
        .wait_for("more evaluations", |s| {
            s["engine"]["evaluations_total"].as_u64().unwrap() >= now + n
        })
        .await;
}

/// The Message, as JSON, with what varies between runs replaced.
fn normalised(m: &SnsMessage, alarm: &str, port: u16) -> String {
    let text = m
        .message
        .replace(alarm, "<AlarmName>")
        .replace(&port.to_string(), "<port>");
    let time = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000").unwrap();
    let text = time.replace_all(&text, "<time>");
    let v: Value = serde_json::from_str(&text).expect("the Message is JSON");
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(actual, expected, "{name} differs from the golden file");
}

/// What PagerDuty's Amazon CloudWatch integration reads: the Subject's state and
/// name, and the Message's AlarmName and NewStateValue, which must agree.
fn pagerduty_view(m: &SnsMessage) -> (String, String) {
    let subject = regex::Regex::new(r#"^(ALARM|OK): "(.+)" in (.+)$"#).unwrap();
    let caps = subject
        .captures(&m.subject)
        .unwrap_or_else(|| panic!("subject {:?} is not CloudWatch's", m.subject));
    assert!(m.subject.len() <= 100);
    let v: Value = serde_json::from_str(&m.message).unwrap();
    assert_eq!(v["NewStateValue"], caps[1], "{m:?}");
    assert_eq!(v["AlarmName"], caps[2], "{m:?}");
    assert_eq!(v["Region"], caps[3], "{m:?}");
    for key in [
        "AlarmDescription",
        "AWSAccountId",
        "NewStateReason",
        "StateChangeTime",
        "OldStateValue",
        "Trigger",
    ] {
        assert!(!v[key].is_null(), "{key} missing in {v}");
    }
    (caps[1].to_string(), caps[2].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_outage_pages_once_and_resolves_once() {
    let moto = Moto::start();
    let arn = moto.create_topic("us-east-1", "critical");
    let mut redis = Redis::start();
    let (dir, body) = setup(&arn, "", &redis_probe(&redis.url()));
    let vigil = start(dir, &body, &moto);
    vigil
        .wait_for("the cache to be up", |s| {
            component(s, "cache")["status"] == "ok"
        })
        .await;
    more_evaluations(&vigil, 2).await;
    assert!(
        moto.messages(&arn).is_empty(),
        "nothing pages while all is well"
    );

    redis.kill();
    let m = wait_messages(&moto, &arn, 1, &vigil).await;
    let (state, alarm) = pagerduty_view(&m[0]);
    assert_eq!(state, "ALARM");
    assert!(alarm.starts_with("test-CacheDown-"), "{alarm}");
    assert!(
        m[0].attributes
            .contains(r#""severity":{"Type":"String","Value":"critical"}"#),
        "{}",
        m[0].attributes
    );

    redis.restart();
    let m = wait_messages(&moto, &arn, 2, &vigil).await;
    assert_eq!(pagerduty_view(&m[1]), ("OK".to_string(), alarm.clone()));
    more_evaluations(&vigil, 5).await;
    let m = moto.messages(&arn);
    assert_eq!(m.len(), 2, "exactly one page and one resolve: {m:#?}");
    assert_eq!(
        m[0].subject,
        format!("ALARM: \"{alarm}\" in US East (N. Virginia)")
    );
    golden("sns_alarm.json", &normalised(&m[0], &alarm, redis.port()));
    golden("sns_ok.json", &normalised(&m[1], &alarm, redis.port()));
    let (_, s) = vigil.status().await;
    let t = &s["paging"]["targets"]["critical/sns"];
    assert_eq!(
        (t["delivered"].as_u64(), t["depth"].as_u64()),
        (Some(2), Some(0)),
        "{s:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_survives_an_sns_outage_and_a_sigkill_and_is_sent_once() {
    let mut moto = Moto::start();
    let arn = "arn:aws:sns:us-east-1:123456789012:critical".to_string();
    moto.stop();
    let mut redis = Redis::start();
    let (dir, body) = setup(&arn, "", &redis_probe(&redis.url()));
    let vigil = start(dir, &body, &moto);
    vigil
        .wait_for("the cache to be up", |s| {
            component(s, "cache")["status"] == "ok"
        })
        .await;
    redis.kill();
    // The page is decided and queued, and SNS keeps failing.
    vigil
        .wait_for("failed deliveries", |s| {
            let t = &s["paging"]["targets"]["critical/sns"];
            t["depth"].as_u64() == Some(1) && t["failures"].as_u64() >= Some(2)
        })
        .await;
    // SIGKILL in the middle, and a restart with SNS still down.
    let dir = vigil.kill();
    let vigil = start(dir, &body, &moto);
    vigil
        .wait_for("retries after the restart", |s| {
            let t = &s["paging"]["targets"]["critical/sns"];
            t["depth"].as_u64() == Some(1) && t["failures"].as_u64() >= Some(2)
        })
        .await;
    more_evaluations(&vigil, 3).await;
    // SNS is back: the page leaves, once.
    moto.restart();
    moto.create_topic("us-east-1", "critical");
    let m = wait_messages(&moto, &arn, 1, &vigil).await;
    let (state, alarm) = pagerduty_view(&m[0]);
    assert_eq!(state, "ALARM");
    redis.restart();
    let m = wait_messages(&moto, &arn, 2, &vigil).await;
    assert_eq!(pagerduty_view(&m[1]), ("OK".to_string(), alarm));
    more_evaluations(&vigil, 5).await;
    assert_eq!(moto.messages(&arn).len(), 2, "{:#?}", moto.messages(&arn));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_the_group_interval_holds_back_is_paged_after_a_sigkill_during_the_hold() {
    // Paged and resolved; Redis fails again within the group interval (30 s from the
    // page), which holds the second page back, and is back before the hold ends. The
    // sidecar is SIGKILLed during the hold: restarted, it still tells the outage when
    // the hold ends, its page then its resolve, once.
    let moto = Moto::start();
    let arn = moto.create_topic("us-east-1", "critical");
    let mut redis = Redis::start();
    let routing = format!(
        "receivers:\n  - name: critical\n    sns:\n      topic_arn: {arn}\nroute:\n  receiver: critical\n  group_by: ['...']\n  group_wait: 0s\n  group_interval: 30s\ndelivery:\n  initial_backoff: 100ms\n  max_backoff: 500ms\n  timeout: 2s\n"
    );
    let (dir, body) = setup_with_routing(&routing, &redis_probe(&redis.url()));
    let vigil = start(dir, &body, &moto);
    vigil
        .wait_for("the cache to be up", |s| {
            component(s, "cache")["status"] == "ok"
        })
        .await;
    redis.kill();
    let alarm = pagerduty_view(&wait_messages(&moto, &arn, 1, &vigil).await[0]).1;
    redis.restart();
    wait_messages(&moto, &arn, 2, &vigil).await;
    redis.kill();
    let s = vigil
        .wait_for("the second page held back", |s| {
            s["paging"]["held"].get(&alarm).is_some()
        })
        .await;
    assert!(s["paging"]["held"][&alarm].is_string(), "{s:#}");
    redis.restart();
    vigil
        .wait_for_alerts("the second outage resolved", |alerts| {
            alerts
                .iter()
                .all(|a| a["labels"]["alertname"] != "CacheDown")
        })
        .await;
    more_evaluations(&vigil, 2).await;
    assert_eq!(
        moto.messages(&arn).len(),
        2,
        "the page is still held when the sidecar is killed"
    );
    let dir = vigil.kill();
    let vigil = start(dir, &body, &moto);
    let m = wait_messages(&moto, &arn, 4, &vigil).await;
    assert_eq!(pagerduty_view(&m[2]), ("ALARM".to_string(), alarm.clone()));
    assert_eq!(pagerduty_view(&m[3]), ("OK".to_string(), alarm));
    more_evaluations(&vigil, 5).await;
    let (_, s) = vigil.status().await;
    assert_eq!(s["paging"]["held"], serde_json::json!({}), "{s:#}");
    assert_eq!(moto.messages(&arn).len(), 4, "{:#?}", moto.messages(&arn));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_page_once_with_the_lease_and_under_one_name_without_it() {
    let moto = Moto::start();
    let arn = moto.create_topic("us-east-1", "critical");
    let mut pg = Postgres::start();
    let mut lease = Redis::start();
    let lease_routing = format!(
        "lease:\n  redis: {}\n  ttl: 2s\n  alerts:\n    - ['component=~\"database|cache\"']\n",
        lease.url()
    );
    let probe = format!(
        "  - name: database\n    interval: 1s\n    timeout: 1s\n    postgres:\n      dsn: {}\n",
        pg.url()
    );
    let sidecars: Vec<Vigil> = (0..3)
        .map(|_| {
            let (dir, body) = setup(&arn, &lease_routing, &probe);
            start(dir, &body, &moto)
        })
        .collect();
    for v in &sidecars {
        v.wait_for("the lease to be settled and the database up", |s| {
            component(s, "database")["status"] == "ok"
                && matches!(s["paging"]["lease"].as_str(), Some("holder" | "standby"))
        })
        .await;
    }
    pg.stop();
    let m = wait_messages(&moto, &arn, 1, &sidecars[0]).await;
    let (_, alarm) = pagerduty_view(&m[0]);
    for v in &sidecars {
        more_evaluations(v, 5).await;
    }
    assert_eq!(moto.messages(&arn).len(), 1, "one page for three sidecars");
    pg.restart();
    let m = wait_messages(&moto, &arn, 2, &sidecars[0]).await;
    assert_eq!(pagerduty_view(&m[1]), ("OK".to_string(), alarm.clone()));

    // Without the lease's Redis, every sidecar pages, under the same name.
    lease.kill();
    for v in &sidecars {
        v.wait_for("the lease to be unreachable", |s| {
            s["paging"]["lease"] == "unavailable"
        })
        .await;
    }
    pg.stop();
    // Every sidecar pages; a probe that times out under load may add a resolve
    // and a second page, but never under another name.
    let start = Instant::now();
    loop {
        let m = moto.messages(&arn);
        let names: Vec<(String, String)> = m[2..].iter().map(pagerduty_view).collect();
        assert!(names.iter().all(|(_, n)| *n == alarm), "{names:?}");
        if names.iter().filter(|(s, _)| s == "ALARM").count() >= 3 {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "three pages expected: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `vigil silence …` against `vigil` with `token`; returns the exit code and
/// stdout (or stderr when it failed).
fn silence_cli(vigil: &Vigil, token: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("silence")
        .args(args)
        .args(["--url", &format!("http://{}", vigil.addr)])
        .env("VIGIL_API_TOKEN", token)
        .output()
        .unwrap();
    let text = if out.status.success() {
        out.stdout
    } else {
        out.stderr
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&text).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_need_the_token_persist_and_hold_pages_back_until_expired() {
    let moto = Moto::start();
    let arn = moto.create_topic("us-east-1", "critical");
    let mut redis = Redis::start();
    let (dir, body) = setup(&arn, "", &redis_probe(&redis.url()));
    let token = "s3cret-token-for-tests";
    let mut env = aws_env(&moto);
    env.push(("VIGIL_API_TOKEN", token.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let vigil = Vigil::start_with_env(dir, &body, &env);

    // No token, a wrong token: 401 with a JSON reason.
    let (code, text) = vigil.get("/api/silences").await;
    assert_eq!(code, 401, "{text}");
    assert!(text.contains(r#""reason":"#), "{text}");
    assert_eq!(silence_cli(&vigil, "wrong", &["list"]).0, 2);
    // A bad request: 400 with the reason.
    let (code, text) = silence_cli(
        &vigil,
        token,
        &["add", "severity", "--comment", "x", "--author", "t"],
    );
    assert_eq!(code, 2);
    assert!(text.contains("is not a matcher"), "{text}");

    let (code, id) = silence_cli(
        &vigil,
        token,
        &[
            "add",
            r#"alertname="CacheDown""#,
            "--duration",
            "1h",
            "--author",
            "ana",
            "--comment",
            "failover drill",
        ],
    );
    assert_eq!(code, 0, "{id}");
    // It survives a restart.
    let dir = vigil.stop();
    let vigil = Vigil::start_with_env(dir, &body, &env);
    let (code, list) = silence_cli(&vigil, token, &["list"]);
    assert_eq!(code, 0);
    assert!(
        list.contains(&id) && list.contains("active") && list.contains("failover drill"),
        "{list}"
    );

    vigil
        .wait_for("the cache to be up", |s| {
            component(s, "cache")["status"] == "ok"
        })
        .await;
    redis.kill();
    let s = vigil
        .wait_for("the alert to be held back by the silence", |s| {
            s["paging"]["muted"].as_object().is_some_and(|m| {
                m.values()
                    .any(|v| v["by"] == "silence" && v["id"] == id.as_str())
            })
        })
        .await;
    assert_eq!(s["paging"]["active_silences"], 1);
    more_evaluations(&vigil, 3).await;
    assert!(moto.messages(&arn).is_empty(), "silenced");

    assert_eq!(silence_cli(&vigil, token, &["expire", &id]).0, 0);
    let m = wait_messages(&moto, &arn, 1, &vigil).await;
    assert_eq!(pagerduty_view(&m[0]).0, "ALARM");
    more_evaluations(&vigil, 3).await;
    assert_eq!(moto.messages(&arn).len(), 1);
    let (code, text) = vigil.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        text.contains("vigil_notifications_delivered_total{target=\"critical/sns\"} 1"),
        "{text}"
    );
    assert!(text.contains("vigil_heartbeat "), "{text}");
}

/// What the local receiver got: (path, body, the status it answered).
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Value, u16)>>>;

/// A local HTTP receiver for PagerDuty and webhook deliveries. `/pd` answers 429
/// once, then 202; `/hook` answers 500, then hangs once (past Vigil's timeout), then
/// 200. Every request is recorded.
async fn receiver() -> (std::net::SocketAddr, Received) {
    use axum::extract::{Path as UrlPath, State};
    let got: Received = Default::default();
    async fn handle(
        State(got): State<Received>,
        UrlPath(path): UrlPath<String>,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let seen = got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| *p == path)
            .count();
        let code = match (path.as_str(), seen) {
            ("pd", 0) => 429,
            ("pd", _) => 202,
            ("hook", 0) => 500,
            ("hook", 1) => {
                got.lock().unwrap().push((path, v, 0));
                tokio::time::sleep(Duration::from_secs(30)).await;
                return axum::http::StatusCode::OK;
            }
            _ => 200,
        };
        got.lock().unwrap().push((path, v, code));
        axum::http::StatusCode::from_u16(code).unwrap()
    }
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(handle))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, got)
}

/// The accepted requests to `path`.
fn accepted(got: &Received, path: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(p, _, code)| p == path && (200..300).contains(code))
        .map(|(_, v, _)| v.clone())
        .collect()
}

async fn wait_accepted(got: &Received, path: &str, n: usize, vigil: &Vigil) -> Vec<Value> {
    let what = || format!("accepted /{path} (all requests: {:?})", got.lock().unwrap());
    at_least(n, || accepted(got, path), vigil, what).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_and_webhook_retry_429_500_and_a_hang_and_deliver_page_and_resolve_once() {
    let (addr, got) = receiver().await;
    let mut redis = Redis::start();
    let (dir, body) = setup_with_routing(
        &format!(
            "receivers:\n  - name: oncall\n    pagerduty:\n      routing_key: ${{PD_KEY}}\n      url: http://{addr}/pd\n    webhook:\n      url: http://{addr}/hook\nroute:\n  receiver: oncall\n  group_by: ['...']\ndelivery:\n  initial_backoff: 100ms\n  max_backoff: 300ms\n  timeout: 1s\n"
        ),
        &redis_probe(&redis.url()),
    );
    let key = "0123456789abcdef0123456789abcdef";
    let vigil = Vigil::start_with_env(dir, &body, &[("PD_KEY", key)]);
    vigil
        .wait_for("the cache to be up", |s| {
            component(s, "cache")["status"] == "ok"
        })
        .await;
    redis.kill();
    let pd = wait_accepted(&got, "pd", 1, &vigil).await;
    let hook = wait_accepted(&got, "hook", 1, &vigil).await;
    redis.restart();
    let pd_all = wait_accepted(&got, "pd", 2, &vigil).await;
    let hook_all = wait_accepted(&got, "hook", 2, &vigil).await;
    more_evaluations(&vigil, 3).await;
    assert_eq!(accepted(&got, "pd").len(), 2, "{:?}", got.lock().unwrap());
    assert_eq!(accepted(&got, "hook").len(), 2, "{:?}", got.lock().unwrap());

    // PagerDuty: a trigger after the 429, then its resolve, one dedup_key.
    let (t, r) = (&pd_all[0], &pd_all[1]);
    assert_eq!(t, &pd[0]);
    assert_eq!(
        (t["event_action"].as_str(), r["event_action"].as_str()),
        (Some("trigger"), Some("resolve"))
    );
    assert_eq!(t["routing_key"], key);
    assert_eq!(t["dedup_key"], r["dedup_key"]);
    assert!(
        t["dedup_key"]
            .as_str()
            .unwrap()
            .starts_with("test-CacheDown-")
    );
    assert_eq!(t["payload"]["severity"], "critical");
    assert_eq!(t["payload"]["summary"], "[test] Redis does not answer");
    assert_eq!(t["payload"]["component"], "cache");
    assert_eq!(
        t["payload"]["custom_details"]["labels"]["alertname"],
        "CacheDown"
    );
    assert_eq!(
        t["links"][0]["href"],
        "https://example.com/runbooks/CacheDown.md"
    );
    // Webhook: Alertmanager's version 4, after a 500 and a hang.
    let (f, r) = (&hook_all[0], &hook_all[1]);
    assert_eq!(f, &hook[0]);
    assert_eq!(
        (f["version"].as_str(), f["status"].as_str()),
        (Some("4"), Some("firing"))
    );
    assert_eq!(r["status"], "resolved");
    assert_eq!(f["receiver"], "oncall");
    assert_eq!(f["alerts"][0]["labels"]["alertname"], "CacheDown");
    assert_eq!(f["alerts"][0]["fingerprint"], r["alerts"][0]["fingerprint"]);
    assert_eq!(r["alerts"][0]["status"], "resolved");
    let (_, s) = vigil.status().await;
    let t = &s["paging"]["targets"];
    assert!(
        t["oncall/pagerduty"]["failures"].as_u64() >= Some(1),
        "{t:#}"
    );
    assert!(t["oncall/webhook"]["failures"].as_u64() >= Some(2), "{t:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_routing_file_sends_the_next_page_to_its_new_receiver() {
    let moto = Moto::start();
    let old = moto.create_topic("us-east-1", "old-critical");
    let new = moto.create_topic("us-east-1", "new-critical");
    let mut redis = Redis::start();
    let (dir, body) = setup(&old, "", &redis_probe(&redis.url()));
    let vigil = start(dir, &body, &moto);
    vigil
        .wait_for("the cache to be up", |s| {
            component(s, "cache")["status"] == "ok"
        })
        .await;
    let routing = vigil.dir.path().join("routing.yaml");
    let text = std::fs::read_to_string(&routing).unwrap();

    // A broken routing file is refused with its position; the old routing stays.
    std::fs::write(
        &routing,
        text.replace("receiver: critical", "receiver: nobody"),
    )
    .unwrap();
    let (code, answer) = vigil.reload().await;
    assert_eq!(code, 400, "{answer}");
    let reason = answer["reason"].as_str().unwrap();
    assert!(
        reason.contains("routing.yaml:") && reason.contains("nobody"),
        "{reason}"
    );

    // A good one: the next page goes to the new topic, and only there.
    std::fs::write(&routing, text.replace(&old, &new)).unwrap();
    let (code, answer) = vigil.reload().await;
    assert_eq!(code, 200, "{answer}");
    redis.kill();
    let m = wait_messages(&moto, &new, 1, &vigil).await;
    assert_eq!(pagerduty_view(&m[0]).0, "ALARM");
    more_evaluations(&vigil, 3).await;
    assert!(moto.messages(&old).is_empty(), "the old topic got nothing");
    let (_, s) = vigil.status().await;
    assert_eq!(
        s["paging"]["targets"]["critical/sns"]["delivered"].as_u64(),
        Some(1),
        "{s:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_disk_still_pages_and_loses_nothing_once_space_is_freed() {
    let moto = Moto::start();
    let arn = moto.create_topic("us-east-1", "critical");
    let mut redis = Redis::start();
    let (dir, body) = setup(&arn, "", &redis_probe(&redis.url()));
    // A page too big for what is left on the disk: the commit cannot be written.
    let rules = RULES.replace(
        "description: \"PING to {{ $labels.target }} failed.\"",
        &format!("description: \"PING failed. {}\"", "x".repeat(600_000)),
    );
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    let fs = vigil_testkit::Tmpfs::mount(&dir.path().join("state"), "4m");
    let vigil = start(dir, &body, &moto);
    vigil
        .wait_for("the cache to be up", |s| {
            component(s, "cache")["status"] == "ok"
        })
        .await;
    let filler = vigil_testkit::fill(&fs.path);

    redis.kill();
    let m = wait_messages(&moto, &arn, 1, &vigil).await;
    assert_eq!(pagerduty_view(&m[0]).0, "ALARM");
    let s = vigil
        .wait_for("storage to be reported failing", |s| {
            s["paging"]["storage"]["error"].is_string()
        })
        .await;
    assert_eq!(
        s["paging"]["targets"]["critical/sns"]["delivered"].as_u64(),
        Some(1),
        "{s:#}"
    );
    let (code, health) = vigil.get("/healthz").await;
    assert_eq!(code, 200, "paging works: the task is not replaced");
    assert!(health.contains("\"storage\":\"failing: "), "{health}");
    let (_, metrics) = vigil.get("/metrics").await;
    assert!(metrics.contains("\nvigil_storage_ok 0\n"), "{metrics}");

    std::fs::remove_file(&filler).unwrap();
    vigil
        .wait_for("storage to recover", |s| {
            s["paging"]["storage"]["error"].is_null()
        })
        .await;
    // A SIGKILL right after: what was decided during the outage is on disk, so the
    // restarted daemon neither pages again nor forgets to resolve.
    let dir = vigil.kill();
    let vigil = start(dir, &body, &moto);
    vigil
        .wait_for("the cache to be seen down again", |s| {
            component(s, "cache")["status"] == "down"
        })
        .await;
    more_evaluations(&vigil, 5).await;
    assert_eq!(moto.messages(&arn).len(), 1, "{:#?}", moto.messages(&arn));
    redis.restart();
    let m = wait_messages(&moto, &arn, 2, &vigil).await;
    assert_eq!(pagerduty_view(&m[1]).0, "OK");
    more_evaluations(&vigil, 3).await;
    assert_eq!(moto.messages(&arn).len(), 2, "{:#?}", moto.messages(&arn));
    drop(vigil);
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_locked_at_the_start_still_gets_the_resolve_of_the_page_sent_before() {
    let moto = Moto::start();
    let arn = moto.create_topic("us-east-1", "critical");
    let mut redis = Redis::start();
    // A timeout no busy machine reaches: the counts of messages are exact.
    let probe = format!(
        "  - name: cache\n    interval: 1s\n    timeout: 900ms\n    redis:\n      url: {}\n",
        redis.url()
    );
    let (dir, body) = setup(&arn, "", &probe);
    let vigil = start(dir, &body, &moto);
    vigil
        .wait_for("the cache to be up", |s| {
            component(s, "cache")["status"] == "ok"
        })
        .await;
    redis.kill();
    let m = wait_messages(&moto, &arn, 1, &vigil).await;
    let (state, alarm) = pagerduty_view(&m[0]);
    assert_eq!(state, "ALARM");
    vigil
        .wait_for("the page recorded as delivered", |s| {
            let t = &s["paging"]["targets"]["critical/sns"];
            t["delivered"].as_u64() == Some(1) && t["depth"].as_u64() == Some(0)
        })
        .await;
    // The daemon dies; the cache comes back while it is away; and as it starts
    // again, another process holds its outbox file (a copy still stopping).
    let dir = vigil.kill();
    redis.restart();
    let holder = redb::Database::create(dir.path().join("state/notify.redb")).unwrap();
    let vigil = start(dir, &body, &moto);
    vigil
        .wait_for("the cache up and the outbox file failing", |s| {
            component(s, "cache")["status"] == "ok" && s["paging"]["storage"]["error"].is_string()
        })
        .await;
    more_evaluations(&vigil, 3).await;
    assert_eq!(
        moto.messages(&arn).len(),
        1,
        "nothing known to resolve yet: {:?}",
        moto.messages(&arn)
            .iter()
            .map(pagerduty_view)
            .collect::<Vec<_>>()
    );
    // The file is let go: merged in, it says what was paged, and the page is resolved.
    drop(holder);
    let m = wait_messages(&moto, &arn, 2, &vigil).await;
    assert_eq!(
        pagerduty_view(&m[1]),
        ("OK".to_string(), alarm),
        "{}",
        vigil.log_text()
    );
    more_evaluations(&vigil, 5).await;
    assert_eq!(moto.messages(&arn).len(), 2, "{:#?}", moto.messages(&arn));
}

/// Routing for several tasks: the shared database and cache page from the lease
/// holder, alerts about a task's app or host from that task.
fn per_task_routing(lease: &Redis) -> String {
    format!(
        "lease:\n  redis: {}\n  ttl: 2s\n  alerts:\n    - ['component=~\"database|cache\"']\nper_task:\n  - ['component=~\"app|host\"']\n",
        lease.url()
    )
}

/// Starts the sidecar of task `i` (`VIGIL_TASK_ID=task-<i>`).
fn start_task(i: usize, dir: tempfile::TempDir, body: &str, moto: &Moto) -> Vigil {
    let mut env = aws_env(moto);
    env.push(("VIGIL_TASK_ID", format!("task-{i}")));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Vigil::start_with_env(dir, body, &env)
}

/// `m` is a page of `alertname` about task 1, under its own name.
fn assert_paged_from_task_1(m: &SnsMessage, alertname: &str) {
    let (state, alarm) = pagerduty_view(m);
    assert_eq!(state, "ALARM");
    assert!(alarm.starts_with(&format!("test-{alertname}-")), "{alarm}");
    assert!(
        m.message.contains(r#"{"name":"task","value":"task-1"}"#),
        "{}",
        m.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tasks_each_page_for_their_own_app_and_once_for_the_shared_database() {
    let moto = Moto::start();
    let arn = moto.create_topic("us-east-1", "critical");
    let mut pg = Postgres::start();
    let cache = Redis::start();
    let lease = Redis::start();
    let app = common::start_app(&pg.url(), &cache.url()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rules = format!(
        "{RULES}      - alert: AppDown\n        expr: vigil_probe_success{{probe=\"app\"}} == 0\n        labels:\n          severity: critical\n          component: app\n"
    );
    let extra = per_task_routing(&lease);
    let sidecars: Vec<Vigil> = (0..3)
        .map(|i| {
            // Task 1's app does not answer; the others' does.
            let url = if i == 1 {
                format!("http://127.0.0.1:{closed}/api/health")
            } else {
                format!("http://{}/api/health", app.local_addr())
            };
            let probes = format!(
                "  - name: database\n    interval: 1s\n    timeout: 1s\n    postgres:\n      dsn: {}\n  - name: app\n    interval: 1s\n    timeout: 1s\n    http:\n      url: {url}\n",
                pg.url()
            );
            let (dir, body) = setup(&arn, &extra, &probes);
            std::fs::write(dir.path().join("rules.yaml"), &rules).unwrap();
            start_task(i, dir, &body, &moto)
        })
        .collect();
    for v in &sidecars {
        v.wait_for("the lease to be settled and the database up", |s| {
            component(s, "database")["status"] == "ok"
                && matches!(s["paging"]["lease"].as_str(), Some("holder" | "standby"))
        })
        .await;
    }
    // One page for task 1's app, from task 1's sidecar, whichever holds the lease.
    let m = wait_messages(&moto, &arn, 1, &sidecars[1]).await;
    for v in &sidecars {
        more_evaluations(v, 3).await;
    }
    let m2 = moto.messages(&arn);
    assert_eq!(m2.len(), 1, "{m2:#?}");
    assert_paged_from_task_1(&m[0], "AppDown");
    let (_, s) = sidecars[1].status().await;
    assert_eq!(s["paging"]["task"], "task-1", "{s:#}");

    // The shared database goes down: one page, from the lease holder.
    pg.stop();
    let m = wait_messages(&moto, &arn, 2, &sidecars[0]).await;
    for v in &sidecars {
        more_evaluations(v, 3).await;
    }
    let all = moto.messages(&arn);
    let db: Vec<_> = all
        .iter()
        .map(pagerduty_view)
        .filter(|(_, a)| a.starts_with("test-DatabaseDown-"))
        .collect();
    assert_eq!(db.len(), 1, "{all:#?}");
    assert!(m.len() >= 2);
}

/// The Watch Together server as a process of its own (each process keeps its own
/// request counters, as each ECS task does), on a free port; killed when dropped.
/// `cargo test --workspace` (scripts/test.sh) builds the binary for the app's own
/// tests, beside Vigil's.
async fn app_process(database_url: &str, redis_url: &str) -> (vigil_testkit::ChildGuard, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_vigil")).with_file_name("watch-together");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (cargo test --workspace, as scripts/test.sh does)",
        bin.display()
    );
    let port = vigil_testkit::free_port();
    let child = std::process::Command::new(bin)
        .env("PORT", port.to_string())
        .env("BIND_LOCALHOST", "1")
        .env("LOG_FORMAT", "json")
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url)
        .env("DB_TIMEOUT_MS", "300")
        .env("CACHE_TIMEOUT_MS", "300")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let child = vigil_testkit::ChildGuard(child);
    let health = format!("{url}/api/health");
    let start = Instant::now();
    while !reqwest::get(&health)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(start.elapsed() < DEADLINE, "the app at {url} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_burst_in_one_task_pages_from_that_task_only_under_its_own_name() {
    let moto = Moto::start();
    let arn = moto.create_topic("us-east-1", "critical");
    let shared = Postgres::start();
    let mut own = Postgres::start();
    let cache = Redis::start();
    let lease = Redis::start();
    // Task 1's app has a database of its own, which fails under it; the others'
    // keeps working. Each sidecar scrapes its own task's app.
    let mut apps = Vec::new();
    for i in 0..3 {
        let db = if i == 1 { own.url() } else { shared.url() };
        apps.push(app_process(&db, &cache.url()).await);
    }
    let rules = r#"groups:
  - name: app
    rules:
      - alert: HighErrorRate
        expr: |
          sum(rate(http_requests_total{job="app", route!~"/metrics|/api/health.*", status=~"5.."}[20s]))
            / sum(rate(http_requests_total{job="app", route!~"/metrics|/api/health.*"}[20s])) > 0.05
        labels:
          severity: critical
          component: app
"#;
    let extra = per_task_routing(&lease);
    let sidecars: Vec<Vigil> = apps
        .iter()
        .enumerate()
        .map(|(i, (_, url))| {
            let probes = format!(
                "  - name: app\n    interval: 1s\n    timeout: 1s\n    http:\n      url: {url}/api/health\nscrape:\n  - job: app\n    url: {url}/metrics\n    interval: 1s\n"
            );
            let (dir, body) = setup(&arn, &extra, &probes);
            std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
            start_task(i, dir, &body, &moto)
        })
        .collect();
    for v in &sidecars {
        v.wait_for("the lease to be settled", |s| {
            matches!(s["paging"]["lease"].as_str(), Some("holder" | "standby"))
        })
        .await;
    }
    own.stop();
    // Traffic on every task until the page arrives: task 1 answers 5xx.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic: Vec<_> = apps
        .iter()
        .map(|(_, url)| {
            let (url, stop) = (format!("{url}/api/rooms"), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = client.get(&url).send().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    let m = wait_messages(&moto, &arn, 1, &sidecars[1]).await;
    for v in &sidecars {
        more_evaluations(v, 3).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in traffic {
        t.await.unwrap();
    }
    let all = moto.messages(&arn);
    assert_eq!(all.len(), 1, "one page, from task 1 only: {all:#?}");
    assert_paged_from_task_1(&m[0], "HighErrorRate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_never_cuts_a_delivery_in_flight() {
    use vigil_testkit::{Behaviour, Peer};
    // The receiver takes 3 s to answer: the page is in flight when the reloads come.
    let hook = Peer::start(Behaviour::Slow(Duration::from_secs(3), 200, Vec::new()));
    let moved = Peer::start(Behaviour::Answer(200, Vec::new(), Vec::new()));
    let routing = |url: String| {
        format!(
            "receivers:\n  - name: oncall\n    webhook:\n      url: {url}\nroute:\n  receiver: oncall\n  group_by: ['...']\ndelivery:\n  initial_backoff: 100ms\n  max_backoff: 300ms\n  timeout: 10s\n"
        )
    };
    let mut redis = Redis::start();
    let (dir, body) = setup_with_routing(&routing(hook.url("/hook")), &redis_probe(&redis.url()));
    let vigil = Vigil::start_in(dir, &body);
    vigil
        .wait_for("the cache to be up", |s| {
            component(s, "cache")["status"] == "ok"
        })
        .await;
    redis.kill();
    at_least(
        1,
        || hook.requests(),
        &vigil,
        || "the page in flight".into(),
    )
    .await;

    // The same files: nothing restarts. Then the webhook moves: its worker is
    // retired, but only once the delivery it has started is done.
    let (code, answer) = vigil.reload().await;
    assert_eq!(code, 200, "{answer}");
    std::fs::write(
        vigil.dir.path().join("routing.yaml"),
        routing(moved.url("/hook")),
    )
    .unwrap();
    let (code, answer) = vigil.reload().await;
    assert_eq!(code, 200, "{answer}");
    let s = vigil
        .wait_for("the page in flight to be delivered", |s| {
            s["paging"]["targets"]["oncall/webhook"]["delivered"].as_u64() == Some(1)
        })
        .await;
    assert_eq!(
        s["paging"]["targets"]["oncall/webhook"]["failures"].as_u64(),
        Some(0),
        "{s:#}"
    );
    more_evaluations(&vigil, 2).await;
    assert_eq!(
        hook.requests().len(),
        1,
        "delivered once, never cut and resent"
    );
    assert!(
        moved.requests().is_empty(),
        "the page was not sent a second time to the new URL"
    );
    assert!(
        vigil
            .log_text()
            .contains("Reload asked for; no file changed, so nothing restarts.")
    );
}
