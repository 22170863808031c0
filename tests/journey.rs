//! The `journey` probe against the real Watch Together server, two instances of it
//! sharing one Redis: it passes while viewers can watch together, fails when Redis
//! stops — and the shipped `SyncBroken` rule fires — while the app's own health
//! endpoint still answers ok.

mod common;

use common::{Vigil, component};
use serde_json::Value;
use vigil_testkit::{Postgres, Redis};

/// The shipped critical rules with `for: 1m` cut to 1 s, so the test sees them fire.
fn shipped_rules_fast() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/critical.yaml"))
        .unwrap();
    assert!(text.contains("alert: SyncBroken"));
    text.replace("for: 1m", "for: 1s")
}

fn alert<'a>(alerts: &'a [Value], name: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_fails_and_pages_when_redis_stops_while_health_still_answers() {
    let pg = Postgres::start();
    let mut redis = Redis::start();
    let a = common::start_app(&pg.url(), &redis.url()).await;
    let b = common::start_app(&pg.url(), &redis.url()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("critical.yaml"), shipped_rules_fast()).unwrap();
    let vigil = Vigil::start_in(
        dir,
        &format!(
            "rule_files: [critical.yaml]
evaluation_interval: 200ms
probes:
  - name: app
    interval: 200ms
    http:
      url: http://{a}/api/health
  - name: journey
    interval: 1s
    timeout: 1s
    journey:
      url: http://{a}
      second_url: http://{b}
",
            a = a.local_addr(),
            b = b.local_addr()
        ),
    );

    // Healthy: journeys pass across the two instances, with every step measured.
    let status = vigil
        .wait_for("three good journeys", |s| {
            let j = component(s, "journey");
            j["status"] == "ok" && j["checks_total"].as_u64() >= Some(3)
        })
        .await;
    let journey = component(&status, "journey");
    let figures: Vec<String> = journey["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let step = s["labels"]
                .as_array()
                .and_then(|l| l.first())
                .and_then(|p| p[1].as_str())
                .unwrap_or("");
            format!("{}{step}", s["name"].as_str().unwrap())
        })
        .collect();
    for want in [
        "vigil_journey_step_secondscreate",
        "vigil_journey_step_secondsjoin",
        "vigil_journey_step_secondsconnect",
        "vigil_journey_step_secondssync",
        "vigil_journey_step_secondsdelete",
        "vigil_journey_sync_seconds",
    ] {
        assert!(
            figures.iter().any(|f| f == want),
            "{want} missing: {journey}"
        );
    }
    let (_, metrics) = vigil.get("/metrics").await;
    assert!(
        metrics.contains("vigil_journey_sync_seconds{probe=\"journey\"}"),
        "{metrics}"
    );
    // Journeys clean up after themselves: at most the one under way is left.
    let rooms: Vec<Value> = reqwest::get(format!("http://{}/api/rooms", a.local_addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(rooms.len() <= 1, "rooms left behind: {rooms:?}");

    // Redis stops: the health endpoint still says ok, the journey fails at the sockets,
    // and SyncBroken fires.
    redis.kill();
    let alerts = vigil
        .wait_for_alerts("SyncBroken firing", |a| {
            alert(a, "SyncBroken").is_some_and(|s| s["state"] == "firing")
        })
        .await;
    let fired = alert(&alerts, "SyncBroken").unwrap();
    assert_eq!(fired["labels"]["severity"], "critical");
    assert!(alert(&alerts, "AppDown").is_none(), "{alerts:?}");
    let status = vigil.status().await.1;
    assert_eq!(component(&status, "app")["status"], "ok", "{status}");
    let reason = component(&status, "journey")["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("socket"), "{reason}");
    let health = reqwest::get(format!("http://{}/api/health", a.local_addr()))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // Redis returns: journeys pass again and the alert resolves.
    redis.restart();
    vigil
        .wait_for_alerts("SyncBroken resolved", |a| alert(a, "SyncBroken").is_none())
        .await;
    drop(b);
}
