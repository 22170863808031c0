//! The fault suite: every external thing Vigil talks to — the app (probe and
//! scrape), PostgreSQL, Redis (probe and lease), SNS, PagerDuty, the webhook,
//! CloudWatch and the ECS task metadata endpoint — all at once in one failure mode:
//! refused, hung (accepts and never answers), slow (answers after the timeout),
//! garbage (bytes of no protocol), and huge (a 100 MB answer from every HTTP peer,
//! a non-RESP reply from Redis, a PostgreSQL that hangs up mid-handshake).
//!
//! In every mode the daemon stays up, `/status` and `/healthz` answer, every
//! failing peer is named with a reason, the daemon's peak memory stays within half
//! its container's 256 MiB, and a healthy control probe keeps its cadence.

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, Vigil, component};
use serde_json::Value;
use vigil_testkit::{Behaviour, HangingListener, Peer, free_port};

#[derive(Debug, Clone, Copy)]
enum Mode {
    Refused,
    Hung,
    Slow,
    Garbage,
    Huge,
}

/// Where each peer is, for a mode: `http` for the HTTP peers, `pg` and `redis`.
struct Peers {
    /// Kept alive for the test.
    _servers: Vec<Peer>,
    http: String,
    pg: String,
    redis: String,
}

fn peers(mode: Mode) -> Peers {
    let serve = |b: Behaviour| Peer::start(b);
    let (http, pg, redis) = match mode {
        Mode::Refused => {
            let port = free_port();
            return Peers {
                _servers: Vec::new(),
                http: format!("127.0.0.1:{port}"),
                pg: format!("127.0.0.1:{port}"),
                redis: format!("127.0.0.1:{port}"),
            };
        }
        Mode::Hung => (
            serve(Behaviour::Hang),
            serve(Behaviour::Hang),
            serve(Behaviour::Hang),
        ),
        Mode::Slow => {
            let late = || Behaviour::Slow(Duration::from_secs(30), 200, b"ok\n".to_vec());
            (serve(late()), serve(late()), serve(late()))
        }
        Mode::Garbage => {
            let junk =
                || Behaviour::Garbage(b"\x00\xff\x13 no protocol at all\r\n\r\n\x7f".to_vec());
            (serve(junk()), serve(junk()), serve(junk()))
        }
        Mode::Huge => (
            serve(Behaviour::Huge {
                total: 100 << 20,
                line: b"x_total{a=\"0123456789abcdef0123456789abcdef\"} 1\n".to_vec(),
            }),
            serve(Behaviour::Close),
            serve(Behaviour::Garbage(
                b"HTTP/1.1 200 OK\r\n\r\nnot RESP\r\n".to_vec(),
            )),
        ),
    };
    Peers {
        http: http.addr().to_string(),
        pg: pg.addr().to_string(),
        redis: redis.addr().to_string(),
        _servers: vec![http, pg, redis],
    }
}

fn vm(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
        * 1024
}

async fn run(mode: Mode) {
    let p = peers(mode);
    let live = HangingListener::start();
    let dir = tempfile::tempdir().unwrap();
    common::write_always_paging(
        dir.path(),
        "Always",
        &format!(
            "    webhook:\n      url: http://{http}/hook\n    pagerduty:\n      routing_key: abcdefghijabcdefghijabcdefghij12\n      url: http://{http}/pd\n    sns:\n      topic_arn: arn:aws:sns:us-east-1:123456789012:critical\n",
            http = p.http
        ),
        &format!("redis://{}/0", p.redis),
    );
    let body = [
        "rule_files: [rules.yaml]".to_string(),
        "routing: routing.yaml".into(),
        "evaluation_interval: 200ms".into(),
        "scrape:".into(),
        "  - job: app".into(),
        "    interval: 300ms".into(),
        "    timeout: 250ms".into(),
        format!("    url: http://{}/metrics", p.http),
        "publish:".into(),
        "  cloudwatch:".into(),
        "    namespace: VigilFaults".into(),
        "    interval: 1s".into(),
        "    region: us-east-1".into(),
        "    metrics:".into(),
        "      - series: vigil_probe_success".into(),
        "        stat: last".into(),
        "        labels: [probe]".into(),
        "probes:".into(),
        "  - name: control".into(),
        "    interval: 100ms".into(),
        "    timeout: 100ms".into(),
        "    tcp:".into(),
        format!("      address: {}", live.addr()),
        "  - name: app".into(),
        "    interval: 200ms".into(),
        "    timeout: 150ms".into(),
        "    http:".into(),
        format!("      url: http://{}/api/health", p.http),
        "  - name: database".into(),
        "    interval: 200ms".into(),
        "    timeout: 150ms".into(),
        "    postgres:".into(),
        format!("      dsn: postgres://vigil@{}/app", p.pg),
        "  - name: cache".into(),
        "    interval: 200ms".into(),
        "    timeout: 150ms".into(),
        "    redis:".into(),
        format!("      url: redis://{}/0", p.redis),
    ]
    .join("\n")
        + "\n";
    let aws = format!("http://{}", p.http);
    let ecs = format!("http://{}/v4/task-1", p.http);
    let vigil = Vigil::start_with_env(
        dir,
        &body,
        &[
            ("AWS_ENDPOINT_URL", aws.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("ECS_CONTAINER_METADATA_URI_V4", ecs.as_str()),
        ],
    );
    // A 100 MB answer with status 200 is a healthy health check (the probe reads no
    // body without a body condition) and a delivered page (receivers' bodies are
    // not read on success): there, only what must read the body fails.
    let huge = matches!(mode, Mode::Huge);
    let s = vigil
        .wait_for(&format!("{mode:?}: every peer named as failing"), |s| {
            let t = &s["paging"]["targets"];
            let failed =
                |k: &str| t[k]["failures"].as_u64() >= Some(1) && t[k]["last_error"].is_string();
            let down = |c: &str| {
                component(s, c)["status"] == "down" && component(s, c)["last_error"].is_string()
            };
            let delivered = |k: &str| t[k]["delivered"].as_u64() >= Some(1);
            (huge || down("app"))
                && down("database")
                && down("cache")
                && component(s, "control")["status"] == "ok"
                && s["scrapes"][0]["error"].is_string()
                && (if huge {
                    delivered("oncall/webhook")
                } else {
                    failed("oncall/webhook")
                })
                && (if huge {
                    delivered("oncall/pagerduty")
                } else {
                    failed("oncall/pagerduty")
                })
                && failed("oncall/sns")
                && s["publishing"]["last_error"]["message"].is_string()
                && s["task"]["last_error"].is_string()
        })
        .await;
    // The report the fault table is made from.
    let line =
        |what: &str, v: &Value| eprintln!("{mode:?} | {what} | {}", v.as_str().unwrap_or("?"));
    for c in ["app", "database", "cache"] {
        match component(&s, c)["status"].as_str() {
            Some("ok") => line(c, &serde_json::json!("ok")),
            _ => line(c, &component(&s, c)["last_error"]),
        }
    }
    line("scrape", &s["scrapes"][0]["error"]);
    for t in ["oncall/webhook", "oncall/pagerduty", "oncall/sns"] {
        let target = &s["paging"]["targets"][t];
        if target["delivered"].as_u64() >= Some(1) {
            line(t, &serde_json::json!("delivered"));
        } else {
            line(t, &target["last_error"]);
        }
    }
    line(
        "lease",
        &serde_json::json!(format!("{}", s["paging"]["lease"])),
    );
    line("cloudwatch", &s["publishing"]["last_error"]["message"]);
    line("ecs", &s["task"]["last_error"]);

    // The control probe keeps its cadence while all of that fails: over a window,
    // at least half the checks its interval allows.
    let before = component(&s, "control")["checks_total"].as_u64().unwrap();
    let start = Instant::now();
    let mut status = s.clone();
    while start.elapsed() < Duration::from_secs(3) {
        // /status and /healthz keep answering, each well inside a client's patience.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let r = client
            .get(format!("http://{}/status", vigil.addr))
            .send()
            .await
            .expect("/status answers while every peer fails");
        status = r.json().await.unwrap();
        let h = client
            .get(format!("http://{}/healthz", vigil.addr))
            .send()
            .await
            .expect("/healthz answers");
        assert_eq!(
            h.status().as_u16(),
            200,
            "{mode:?}: {}",
            h.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = start.elapsed();
    let checks = component(&status, "control")["checks_total"]
        .as_u64()
        .unwrap()
        - before;
    let allowed = elapsed.as_millis() as u64 / 100;
    assert!(
        checks * 2 >= allowed,
        "{mode:?}: the control probe ran {checks} checks in a window that allows {allowed}"
    );
    assert!(start.elapsed() < DEADLINE);
    // Memory: the daemon's peak, far inside the container.
    let pid = vigil.child.0.id();
    let peak = vm(pid, "VmHWM:");
    eprintln!(
        "{mode:?} | peak resident memory | {:.1} MiB",
        peak as f64 / 1048576.0
    );
    // Half a 256 MiB task: what the store's default budget leaves to the rest.
    assert!(
        peak < 128 << 20,
        "{mode:?}: peak resident memory {peak} bytes"
    );
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_ok(),
        "{mode:?}: the daemon is up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_peer_refused() {
    run(Mode::Refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_peer_hung() {
    run(Mode::Hung).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_peer_slow() {
    run(Mode::Slow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_peer_answers_garbage() {
    run(Mode::Garbage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_peer_answers_too_much_or_hangs_up() {
    run(Mode::Huge).await;
}
