//! Alert rules evaluated inside the daemon against the real app, PostgreSQL and Redis:
//! the error-rate and latency alerts go pending, fire after `for`, and resolve when the
//! dependency is back; a restart keeps a firing alert firing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::Vigil;
use serde_json::Value;
use vigil_testkit::{Postgres, Redis};

/// Rules with the shipped rules' expressions, on windows short enough for a test.
const RULES: &str = r#"groups:
  - name: test
    interval: 200ms
    rules:
      - alert: HighErrorRate
        expr: |
          sum(rate(http_requests_total{job="app", route!~"/metrics|/api/health.*", status=~"5.."}[3s]))
            / sum(rate(http_requests_total{job="app", route!~"/metrics|/api/health.*"}[3s])) > 0.05
        for: 1s
        labels:
          severity: critical
        annotations:
          summary: More than 5 % of requests fail
          description: "{{ $value | humanizePercentage }} of requests answered 5xx."
          runbook_url: https://example.com/runbooks/HighErrorRate.md
      - alert: HighLatency
        expr: |
          histogram_quantile(0.95,
            sum by (le) (rate(http_request_duration_seconds_bucket{job="app", route="/api/rooms/{id}"}[3s]))) > 0.25
        for: 1s
        labels:
          severity: warning
        annotations:
          summary: p95 latency above 250 ms
"#;

/// Sends GET /api/rooms/1 (a database-backed route) in a loop until dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
}

impl Traffic {
    fn start(app: std::net::SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        // Four clients at once, so that requests keep arriving while some wait out
        // the database timeout.
        for _ in 0..4 {
            let (s, n) = (stop.clone(), sent.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !s.load(Ordering::Relaxed) {
                    let _ = client
                        .get(format!("http://{app}/api/rooms/1"))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    n.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
        Traffic { stop, sent }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn named<'a>(alerts: &'a [Value], name: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["name"] == name)
}

async fn setup() -> (Postgres, Redis, watch_together::Running, Vigil) {
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = common::start_app(&pg.url(), &redis.url()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    let vigil = Vigil::start_in(
        dir,
        &format!(
            "rule_files: [rules.yaml]
evaluation_interval: 200ms
scrape:
  - job: app
    url: http://{app}/metrics
    interval: 200ms
probes:
  - name: app
    interval: 200ms
    http:
      url: http://{app}/api/health
",
            app = app.local_addr()
        ),
    );
    (pg, redis, app, vigil)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_alert_goes_pending_fires_and_resolves_with_the_database() {
    let (mut pg, _redis, app, vigil) = setup().await;
    let traffic = Traffic::start(app.local_addr());
    // Healthy traffic first: the rules run and nothing is pending.
    vigil
        .wait_for("a rule evaluation over scraped traffic", |s| {
            s["engine"]["evaluations_total"].as_u64() >= Some(5)
                && s["engine"]["series"].as_u64() > Some(20)
        })
        .await;
    assert!(
        named(
            &vigil.wait_for_alerts("no alerts", |a| a.is_empty()).await,
            "HighErrorRate"
        )
        .is_none()
    );

    pg.stop();
    let pending = vigil
        .wait_for_alerts("HighErrorRate pending", |a| {
            named(a, "HighErrorRate").is_some()
        })
        .await;
    let alert = named(&pending, "HighErrorRate").unwrap().clone();
    assert_eq!(alert["state"], "pending", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(alert["value"].as_f64().unwrap() > 0.05);
    let firing = vigil
        .wait_for_alerts("HighErrorRate firing", |a| {
            named(a, "HighErrorRate").is_some_and(|x| x["state"] == "firing")
        })
        .await;
    let fired = named(&firing, "HighErrorRate").unwrap();
    assert_eq!(
        fired["active_at"], alert["active_at"],
        "the same alert, promoted after `for`"
    );
    assert!(
        fired["annotations"]["description"]
            .as_str()
            .unwrap()
            .ends_with("% of requests answered 5xx.")
    );
    let (_, text) = vigil.get("/status?format=text").await;
    assert!(text.contains("FIRING   HighErrorRate"), "{text}");
    assert!(
        text.contains("runbook: https://example.com/runbooks/HighErrorRate.md"),
        "{text}"
    );

    pg.restart();
    vigil
        .wait_for_alerts("HighErrorRate resolved", |a| {
            named(a, "HighErrorRate").is_none()
        })
        .await;
    assert!(traffic.sent.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_alert_fires_with_a_hung_database_and_resolves() {
    let (mut pg, _redis, app, vigil) = setup().await;
    let _traffic = Traffic::start(app.local_addr());
    vigil
        .wait_for("rules running", |s| {
            s["engine"]["evaluations_total"].as_u64() >= Some(5)
        })
        .await;
    // Frozen, the database accepts and never answers: each request waits the app's
    // 500 ms database timeout.
    pg.freeze();
    let firing = vigil
        .wait_for_alerts("HighLatency firing", |a| {
            named(a, "HighLatency").is_some_and(|x| x["state"] == "firing")
        })
        .await;
    assert!(
        named(&firing, "HighLatency").unwrap()["value"]
            .as_f64()
            .unwrap()
            > 0.25
    );
    pg.thaw();
    vigil
        .wait_for_alerts("HighLatency resolved", |a| {
            named(a, "HighLatency").is_none()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_a_firing_alert_firing_without_a_new_pending_phase() {
    let closed = vigil_testkit::free_port();
    let body = format!(
        "rule_files: [rules.yaml]
evaluation_interval: 100ms
probes:
  - name: gone
    interval: 100ms
    tcp:
      address: 127.0.0.1:{closed}
"
    );
    let rules = "groups:
  - name: g
    rules:
      - alert: GoneDown
        expr: vigil_probe_success{probe=\"gone\"} == 0
        for: 3s
        labels:
          severity: critical
";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    let vigil = Vigil::start_in(dir, &body);
    let before = vigil
        .wait_for_alerts("GoneDown firing", |a| {
            named(a, "GoneDown").is_some_and(|x| x["state"] == "firing")
        })
        .await;
    let before = named(&before, "GoneDown").unwrap().clone();
    let dir = vigil.stop();
    assert!(dir.path().join("state/alerts.json").exists());

    let vigil = Vigil::start_in(dir, &body);
    // Past the warm-up, the rules have run on fresh data: the alert is the same one,
    // still firing — it never went back to pending, so nothing would page again.
    let status = vigil
        .wait_for("the first evaluation after the restart", |s| {
            s["engine"]["evaluations_total"].as_u64() >= Some(1)
        })
        .await;
    let after = status["engine"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "GoneDown")
        .cloned()
        .expect("the alert survived the restart");
    assert_eq!(after["state"], "firing");
    assert_eq!(after["active_at"], before["active_at"]);
    assert_eq!(after["fired_at"], before["fired_at"]);
}
