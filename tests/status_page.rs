//! `/status` as on-call reads it: the history kept past a SIGKILL, the incident log
//! with its pages and the silence that held one back, the pipeline's heartbeat, the
//! badges, the Statuspage summary, and the fleet of three sidecars with one stopped.
//! Real daemons, a real Redis the test kills, a local webhook receiver.

mod common;

use std::time::Instant;

use common::page::{receiver, setup, signal, silence};
use common::{DEADLINE, Vigil};
use serde_json::{Value, json};
use vigil_testkit::Redis;

fn incident<'a>(status: &'a Value, alert: &str) -> Option<&'a Value> {
    status["history"]["incidents"]
        .as_array()?
        .iter()
        .find(|i| i["alertname"] == alert)
}

fn today(status: &Value, component: &str) -> Value {
    let c = status["history"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == component)
        .unwrap_or_else(|| panic!("no history for {component}: {status:#}"));
    c["days"].as_array().unwrap().last().unwrap().clone()
}

fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_its_pages_and_its_silence_are_kept_past_a_sigkill() {
    let (hook, got) = receiver().await;
    let mut redis = Redis::start();
    let lease = Redis::start();
    let (dir, body) = setup(hook, &redis.url(), &lease.url());
    let vigil = Vigil::start_in(dir, &body);
    // The Watchdog is the pipeline's heartbeat, not an alert needing a human.
    let s = vigil
        .wait_for("the heartbeat delivered", |s| {
            s["history"]["pipeline"]["state"] == "healthy"
        })
        .await;
    assert!(
        s["history"]["pipeline"]["text"]
            .as_str()
            .unwrap()
            .starts_with("alerting pipeline healthy — heartbeat delivered"),
        "{s:#}"
    );
    assert!(incident(&s, "Watchdog").is_none());
    let (_, html) = vigil.get("/status?format=html").await;
    assert!(!html.contains(r#"data-alert="Watchdog""#), "{html}");
    let id = silence(&vigil, "CacheDegraded").await;
    assert!(!id.is_empty());

    redis.kill();
    let s = vigil
        .wait_for("CacheDown paged and CacheDegraded held back", |s| {
            let paged = incident(s, "CacheDown").is_some_and(|i| {
                i["pages"].as_array().is_some_and(|p| {
                    p.iter()
                        .any(|p| p["delivered"] == true && p["firing"] == true)
                })
            });
            let muted = incident(s, "CacheDegraded")
                .is_some_and(|i| i["mutes"].as_array().is_some_and(|m| !m.is_empty()));
            paged && muted
        })
        .await;
    let down = incident(&s, "CacheDown").unwrap().clone();
    assert_eq!(down["severity"], "critical");
    assert_eq!(down["resolved_at"], Value::Null);
    assert_eq!(down["pages"][0]["target"], "oncall/webhook");
    let held = incident(&s, "CacheDegraded").unwrap().clone();
    assert_eq!(held["mutes"][0]["by"], "alice");
    assert!(
        held["mutes"][0]["why"]
            .as_str()
            .unwrap()
            .ends_with(": cache migration"),
        "{held:#}"
    );
    assert_eq!(held["pages"], json!([]), "a silenced alert pages nobody");
    // Statuspage's indicator: a critical component down.
    let (_, summary) = vigil.get("/api/v2/summary.json").await;
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["status"]["indicator"], "critical", "{summary:#}");
    assert_eq!(summary["components"][0]["status"], "major_outage");
    assert!(
        summary["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "Redis does not answer" && i["impact"] == "critical")
    );

    redis.restart();
    let s = vigil
        .wait_for("both resolved and the resolve paged", |s| {
            incident(s, "CacheDown").is_some_and(|i| {
                i["resolved_at"].is_string()
                    && i["pages"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["firing"] == false)
            }) && incident(s, "CacheDegraded").is_some_and(|i| i["resolved_at"].is_string())
        })
        .await;
    let resolved = ts(&incident(&s, "CacheDown").unwrap()["resolved_at"]);
    let day = today(&s, "cache");
    assert!(day["down_minutes"].as_f64().unwrap() > 0.0, "{day:#}");
    let downtime = day["down_minutes"].as_f64().unwrap();
    let uptime = s["history"]["components"][0]["uptime"]["24h"]
        .as_f64()
        .unwrap();
    assert!(uptime < 1.0 && uptime > 0.0, "{uptime}");
    // On disk at least up to the resolve: what a SIGKILL now cannot take away.
    let s = vigil
        .wait_for("the history written past the resolve", |s| {
            s["history"]["written_at"].is_string()
                && ts(&s["history"]["written_at"]) > resolved + chrono::Duration::seconds(1)
        })
        .await;
    let incidents_before = s["history"]["incidents"].clone();
    let dir = vigil.kill();

    let vigil = Vigil::start_in(dir, &body);
    let s = vigil
        .wait_for("the history read back", |s| {
            s["history"]["incidents"]
                .as_array()
                .is_some_and(|i| i.len() >= 2)
        })
        .await;
    assert_eq!(s["history"]["incidents"], incidents_before);
    let day = today(&s, "cache");
    assert!(
        day["down_minutes"].as_f64().unwrap() >= downtime,
        "{day:#} after a SIGKILL, before it {downtime}"
    );
    assert_eq!(s["history"]["problems"], Value::Null, "{s:#}");
    // Both day files are on disk.
    let history = vigil.dir.path().join("state/history");
    assert!(history.join("minutes/p-cache").read_dir().unwrap().count() >= 1);
    assert!(history.join("incidents").read_dir().unwrap().count() >= 1);
    assert!(
        got.lock().unwrap().iter().any(|(p, _)| p == "beat"),
        "the heartbeat reached its receiver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badges_are_svg_and_bad_badge_requests_get_a_json_reason() {
    let redis = Redis::start();
    let vigil = Vigil::start(&format!(
        "  - name: cache\n    interval: 200ms\n    timeout: 150ms\n    redis:\n      url: {}\n",
        redis.url()
    ));
    vigil
        .wait_for("cache ok", |s| {
            common::component(s, "cache")["status"] == "ok"
        })
        .await;
    let client = reqwest::Client::new();
    for (path, word) in [
        ("/badge/cache/status.svg", ">up<"),
        ("/badge/cache/latency.svg", " ms<"),
        ("/badge/cache/uptime/24h.svg", "cache uptime 24h"),
        ("/badge/cache/uptime/90d.svg", "cache uptime 90d"),
    ] {
        let resp = client
            .get(format!("http://{}{path}", vigil.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "image/svg+xml; charset=utf-8",
            "{path}"
        );
        let body = resp.text().await.unwrap();
        assert!(body.starts_with("<svg xmlns="), "{path}: {body}");
        assert!(body.contains(word), "{path}: {body}");
        assert!(
            !body.contains("redis://") && !body.contains("127.0.0.1"),
            "{path} leaks the target: {body}"
        );
    }
    for (path, error) in [
        ("/badge/nope/status.svg", "unknown_component"),
        ("/badge/cache/uptime/1y.svg", "not_found"),
        ("/badge/cache/colour.svg", "not_found"),
    ] {
        let (code, body) = vigil.get(path).await;
        assert_eq!(code, 404, "{path}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], error, "{path}: {v}");
        assert!(v["reason"].as_str().unwrap().len() > 10);
    }
    let (_, status) = vigil.get("/api/v2/status.json").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["status"]["indicator"], "none", "{status:#}");
    assert_eq!(status["status"]["description"], "All Systems Operational");
}

fn tasks(s: &Value) -> Vec<(String, String)> {
    s["fleet"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sidecar_shows_the_fleet_and_a_stopped_one_goes_missing() {
    let (hook, _got) = receiver().await;
    let redis = Redis::start();
    let lease = Redis::start();
    let mut fleet = Vec::new();
    for task in ["task-1", "task-2", "task-3"] {
        let (dir, body) = setup(hook, &redis.url(), &lease.url());
        fleet.push(Vigil::start_with_env(
            dir,
            &body,
            &[("VIGIL_TASK_ID", task)],
        ));
    }
    let all_present = |s: &Value| {
        s["fleet"]["tasks"]
            .as_array()
            .is_some_and(|t| t.len() == 3 && t.iter().all(|t| t["state"] == "present"))
    };
    for v in &fleet {
        let s = v.wait_for("three tasks present", all_present).await;
        assert_eq!(s["fleet"]["tasks"][0]["this"], true);
    }
    // Each snapshot carries its sidecar's standing on the lease: one holds it.
    let s = fleet[0]
        .wait_for("three tasks present, one holding the lease", |s| {
            all_present(s)
                && s["fleet"]["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["snapshot"]["lease"] == "holder")
                    .count()
                    == 1
        })
        .await;
    assert_eq!(s["fleet"]["tasks"][0]["task"], "task-1");

    // Frozen, as a hung task is: its snapshot expires.
    signal(&fleet[2], "-STOP");
    let start = Instant::now();
    let s = fleet[0]
        .wait_for("task-3 missing", |s| {
            tasks(s).contains(&("task-3".into(), "missing".into()))
        })
        .await;
    assert!(start.elapsed() < DEADLINE);
    assert_eq!(
        tasks(&s),
        [
            ("task-1".to_string(), "present".to_string()),
            ("task-2".into(), "present".into()),
            ("task-3".into(), "missing".into())
        ]
    );
    let (_, html) = fleet[0].get("/status?format=html").await;
    assert!(
        html.contains(r#"data-task="task-3" data-state="missing""#),
        "{html}"
    );
    // Stopped as asked (a deployment): it leaves the fleet instead of going missing.
    let mut second = fleet.remove(1);
    assert!(second.sigterm().await.success());
    let s = fleet[0]
        .wait_for("task-2 gone", |s| {
            !tasks(s).iter().any(|(t, _)| t == "task-2")
        })
        .await;
    assert_eq!(tasks(&s).len(), 2);
    signal(&fleet[1], "-CONT");
    fleet[0]
        .wait_for("task-3 back", |s| {
            tasks(s).contains(&("task-3".into(), "present".into()))
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_page_shows_this_task_alone_and_says_so() {
    let vigil = Vigil::start("  - name: disk\n    disk:\n      paths: [/]\n");
    let s = vigil
        .wait_for("disk checked", |s| {
            common::component(s, "disk")["status"] != "unknown"
        })
        .await;
    assert_eq!(s["fleet"]["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(s["fleet"]["tasks"][0]["this"], true);
    assert!(
        s["fleet"]["unavailable"]
            .as_str()
            .unwrap()
            .contains("this task alone"),
        "{s:#}"
    );
    let (_, html) = vigil.get("/status?format=html").await;
    assert!(html.contains("this task alone"));
}
