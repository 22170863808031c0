//! The status page as a person sees it, in Debian's chromium (headless) driven by
//! playwright-core (`tests/browser/look.mjs`): everything ok; a component down; an
//! alert fired and resolved, in the timeline; a silence and a maintenance window
//! active; a fleet of three with one missing. What is asserted is what is on the
//! screen — the verdict's words, today's square red, the incident's row — and each
//! scene leaves a screenshot (desktop and phone) under `target/screenshots/`.
//!
//! Needs `chromium` and `tests/browser/node_modules` (`npm ci --prefix
//! tests/browser`); `scripts/test.sh` installs both.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::page::{receiver, setup, signal, silence, write_routing};
use common::{TOKEN, Vigil};
use serde_json::Value;
use vigil_testkit::Redis;

/// Red, as the page paints an outage: `#cf222e`.
const RED: &str = "rgb(207, 34, 46)";
/// Green: `#1a7f37`.
const GREEN: &str = "rgb(26, 127, 55)";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Opens `vigil`'s page in chromium; what is seen. Screenshots go to
/// `target/screenshots/<scene>-{desktop,phone}.png`.
fn look(vigil: &Vigil, scene: &str) -> Value {
    let shots = repo().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    assert!(
        repo()
            .join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let prefix: PathBuf = shots.join(scene);
    let out = Command::new("node")
        .arg(repo().join("tests/browser/look.mjs"))
        .arg(format!("http://{}/status?format=html", vigil.addr))
        .arg(&prefix)
        .output()
        .expect("node runs (scripts/test.sh installs Node.js and chromium)");
    assert!(
        out.status.success(),
        "look.mjs failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("look.mjs prints JSON");
    assert!(
        prefix
            .with_file_name(format!("{scene}-desktop.png"))
            .exists()
    );
    // True of every scene: no script, a refresh, and nothing wider than a phone.
    assert_eq!(seen["scripts"], 0);
    assert_eq!(seen["refresh"], "10");
    assert!(
        seen["phone"]["scrollWidth"].as_u64() <= seen["phone"]["innerWidth"].as_u64(),
        "{scene}: wider than a phone: {}",
        seen["phone"]
    );
    seen
}

fn cache(seen: &Value) -> &Value {
    &seen["components"][0]
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_on_call_sees_through_an_outage_a_silence_and_a_window() {
    let (hook, _got) = receiver().await;
    let mut redis = Redis::start();
    let lease = Redis::start();
    let (dir, config) = setup(hook, &redis.url(), &lease.url());
    let vigil = Vigil::start_in(dir, &config);
    vigil
        .wait_for("healthy, with time watched today", |s| {
            s["history"]["pipeline"]["state"] == "healthy"
                && s["history"]["components"][0]["days"][89]["watched_minutes"]
                    .as_f64()
                    .is_some_and(|m| m > 0.0)
        })
        .await;

    let seen = look(&vigil, "1-everything-ok");
    assert_eq!(seen["httpStatus"], 200);
    assert_eq!(text(&seen["verdict"]), "All systems operational");
    assert_eq!(seen["verdictColour"], GREEN);
    assert!(
        text(&seen["pipeline"]["text"]).contains("alerting pipeline healthy — heartbeat delivered"),
        "{seen:#}"
    );
    assert_eq!(cache(&seen)["status"], "ok");
    assert_eq!(cache(&seen)["squares"], 90);
    assert_eq!(cache(&seen)["todayGrade"], "ok");
    assert_eq!(cache(&seen)["todayFill"], GREEN);
    assert!(
        text(&cache(&seen)["uptime"]).starts_with("uptime: 24 h 100%"),
        "{seen:#}"
    );
    assert_eq!(
        seen["alerts"],
        serde_json::json!([]),
        "the Watchdog is not an alert"
    );
    assert_eq!(seen["incidents"], serde_json::json!([]));

    redis.kill();
    vigil
        .wait_for("CacheDown firing", |s| {
            s["engine"]["alerts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|a| a["name"] == "CacheDown" && a["state"] == "firing")
            })
        })
        .await;
    let seen = look(&vigil, "2-cache-down");
    assert_eq!(seen["httpStatus"], 503, "a critical component down");
    assert!(
        text(&seen["verdict"]).starts_with("DOWN: cache not answering"),
        "{seen:#}"
    );
    assert_eq!(seen["verdictColour"], RED);
    assert_eq!(cache(&seen)["status"], "DOWN");
    assert_eq!(cache(&seen)["todayGrade"], "outage", "a red square today");
    assert_eq!(cache(&seen)["todayFill"], RED);
    assert!(
        text(&cache(&seen)["todayTitle"]).ends_with("down now"),
        "{seen:#}"
    );
    assert!(
        text(&cache(&seen)["text"]).contains("Connection refused")
            || text(&cache(&seen)["text"]).contains("refused"),
        "{seen:#}"
    );
    let firing: Vec<&str> = seen["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| text(&a["text"]))
        .collect();
    assert!(
        firing.iter().any(|a| a.starts_with("CacheDown FIRING")),
        "{firing:?}"
    );
    let row = &seen["incidents"][0];
    assert_eq!(row["state"], "firing");
    assert!(text(&row["text"]).contains("still firing"), "{row}");

    redis.restart();
    vigil
        .wait_for("CacheDown resolved and its resolve delivered", |s| {
            s["history"]["incidents"].as_array().is_some_and(|i| {
                i.iter().any(|i| {
                    i["alertname"] == "CacheDown"
                        && i["resolved_at"].is_string()
                        && i["pages"]
                            .as_array()
                            .is_some_and(|p| p.iter().any(|p| p["firing"] == false))
                })
            })
        })
        .await;
    let seen = look(&vigil, "3-fired-and-resolved");
    assert_eq!(text(&seen["verdict"]), "All systems operational");
    assert_eq!(cache(&seen)["status"], "ok");
    assert_ne!(cache(&seen)["todayGrade"], "ok", "today keeps the outage");
    let row = seen["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "CacheDown")
        .unwrap_or_else(|| panic!("no CacheDown row: {seen:#}"));
    assert_eq!(row["state"], "resolved");
    let row = text(&row["text"]);
    assert!(
        row.contains("oncall/webhook firing") && row.contains("✓ delivered"),
        "{row}"
    );
    assert!(row.contains("oncall/webhook resolved"), "{row}");
    assert!(row.contains("(resolved 20"), "{row}");
    assert!(
        text(&cache(&seen)["uptime"]).contains("24 h 99")
            || !text(&cache(&seen)["uptime"]).contains("24 h 100%"),
        "{seen:#}"
    );

    // A silence, and a maintenance window that is always under way, reloaded in.
    let id = silence(&vigil, "CacheDegraded").await;
    write_routing(
        vigil.dir.path(),
        hook,
        &lease.url(),
        "maintenance_windows:\n  - name: always\n    schedule: 0 * * * * *\n    duration: 5m\n    matchers: ['severity=\"info\"']\n",
    );
    let (code, answer) = vigil.reload_with(Some(TOKEN)).await;
    assert_eq!(code, 200, "{answer}");
    vigil
        .wait_for("the window under way", |s| {
            s["paging"]["windows"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| w["active_until"].is_string()))
        })
        .await;
    let seen = look(&vigil, "4-silence-and-window");
    let muting: Vec<&str> = seen["muting"]
        .as_array()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert_eq!(muting.len(), 2, "{muting:?}");
    assert!(
        muting[0].starts_with(&format!("silence {id}"))
            && muting[0].contains("alertname=\"CacheDegraded\"")
            && muting[0].contains("left)")
            && muting[0].contains("alice: cache migration"),
        "{muting:?}"
    );
    assert!(
        muting[1].starts_with("maintenance window always")
            && muting[1].contains("severity=\"info\""),
        "{muting:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_with_one_missing() {
    let (hook, _got) = receiver().await;
    let redis = Redis::start();
    let lease = Redis::start();
    let mut fleet = Vec::new();
    for task in ["task-1", "task-2", "task-3"] {
        let (dir, config) = setup(hook, &redis.url(), &lease.url());
        fleet.push(Vigil::start_with_env(
            dir,
            &config,
            &[("VIGIL_TASK_ID", task)],
        ));
    }
    fleet[0]
        .wait_for("three tasks", |s| {
            s["fleet"]["tasks"]
                .as_array()
                .is_some_and(|t| t.len() == 3 && t.iter().all(|t| t["state"] == "present"))
        })
        .await;
    signal(&fleet[2], "-STOP");
    fleet[0]
        .wait_for("task-3 missing", |s| {
            s["fleet"]["tasks"].as_array().is_some_and(|t| {
                t.iter()
                    .any(|t| t["task"] == "task-3" && t["state"] == "missing")
            })
        })
        .await;
    let seen = look(&fleet[0], "5-fleet-one-missing");
    let rows: Vec<(&str, &str, &str)> = seen["fleet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (text(&r["task"]), text(&r["state"]), text(&r["text"])))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows[0].0 == "task-1" && rows[0].2.contains("(this task)"),
        "{rows:?}"
    );
    assert!(
        rows[1].0 == "task-2" && rows[1].2.contains(" ok "),
        "{rows:?}"
    );
    assert!(
        rows[2].0 == "task-3" && rows[2].1 == "missing" && rows[2].2.contains("MISSING"),
        "{rows:?}"
    );
    signal(&fleet[2], "-CONT");
}
