//! Reloading with SIGHUP and `POST /-/reload`: a good config replaces probes and
//! rules; a bad one is refused with every problem, and the old one keeps running.

mod common;

use common::{Vigil, component};
use vigil_testkit::HangingListener;

fn write_config(vigil: &Vigil, body: &str) {
    let text = format!("listen: 127.0.0.1:0\nstate_dir: state\nenvironment: test\n{body}");
    std::fs::write(vigil.dir.path().join("vigil.yaml"), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_keeps_the_old_config_and_a_good_one_replaces_it() {
    let a = HangingListener::start();
    let b = HangingListener::start();
    let one = format!(
        "probes:\n  - name: first\n    interval: 100ms\n    tcp:\n      address: {}\n",
        a.addr()
    );
    let vigil = Vigil::start(&one.replacen("probes:\n", "", 1));
    let status = vigil
        .wait_for("the first probe ok", |s| s["status"] == "ok")
        .await;
    let hash_before = status["config_hash"].as_str().unwrap().to_string();

    // A broken file: refused, with the position, and the old probe keeps running.
    write_config(&vigil, "probes:\n  - name: first\n    intreval: 1s\n");
    let (code, body) = vigil.reload().await;
    assert_eq!(code, 400);
    assert_eq!(body["error"], "reload_failed");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("vigil.yaml:6:5: unknown field `intreval`"),
        "{reason}"
    );
    let checks = vigil.component("first").await["checks_total"]
        .as_u64()
        .unwrap();
    let status = vigil
        .wait_for("the old probe to keep running", |s| {
            component(s, "first")["checks_total"].as_u64() > Some(checks + 2)
        })
        .await;
    assert_eq!(status["config_hash"], hash_before.as_str());
    assert_eq!(status["last_reload"]["ok"], false);
    let (_, text) = vigil.get("/status?format=text").await;
    assert!(text.contains("RELOAD FAILED"), "{text}");
    assert!(text.contains("unknown field `intreval`"), "{text}");
    assert!(
        vigil
            .log_text()
            .contains("Reload failed; the previous configuration keeps running.")
    );

    // A good file, by SIGHUP: both probes run, and the rules are loaded.
    std::fs::write(
        vigil.dir.path().join("rules.yaml"),
        "groups:\n  - name: g\n    rules:\n      - alert: Always\n        expr: vector(1)\n",
    )
    .unwrap();
    write_config(
        &vigil,
        &format!(
            "rule_files: [rules.yaml]\nevaluation_interval: 100ms\n{one}  - name: second\n    interval: 100ms\n    tcp:\n      address: {}\n",
            b.addr()
        ),
    );
    common::send_signal(&vigil.child, "-HUP");
    let status = vigil
        .wait_for("two probes and the rule after the reload", |s| {
            s["components"].as_array().unwrap().len() == 2
                && s["status"] == "ok"
                && s["engine"]["rules"] == 1
        })
        .await;
    assert_eq!(status["last_reload"]["ok"], true);
    assert_ne!(status["config_hash"], hash_before.as_str());
    vigil
        .wait_for_alerts("the new rule's alert", |a| {
            a.iter().any(|x| x["name"] == "Always")
        })
        .await;
    assert!(vigil.log_text().contains("Reloaded the configuration."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_over_http_needs_the_token_and_a_reload_resets_no_unchanged_probe() {
    let a = HangingListener::start();
    let first = format!(
        "  - name: first\n    interval: 100ms\n    tcp:\n      address: {}\n",
        a.addr()
    );
    let vigil = Vigil::start(&first);
    vigil
        .wait_for("the first probe ok", |s| s["status"] == "ok")
        .await;

    // No token, a wrong one: 401 with a JSON reason, and nothing reloads.
    for token in [None, Some("wrong")] {
        let (code, body) = vigil.reload_with(token).await;
        assert_eq!(code, 401, "{body}");
        assert_eq!(body["error"], "unauthorized");
    }
    let (_, s) = vigil.status().await;
    assert!(s["last_reload"].is_null(), "{s:#}");

    // A burst of reloads of the same files: all answered, nothing restarted.
    let checks = vigil.component("first").await["checks_total"]
        .as_u64()
        .unwrap();
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let url = format!("http://{}/-/reload", vigil.addr);
        burst.spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(common::TOKEN)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        });
    }
    while let Some(code) = burst.join_next().await {
        assert_eq!(code.unwrap(), 200);
    }
    let c = vigil.component("first").await;
    assert_eq!(c["status"], "ok", "{c:#}");
    assert!(c["checks_total"].as_u64() >= Some(checks), "{c:#}");

    // A changed file adds a probe: the unchanged one keeps its state and counts.
    let b = HangingListener::start();
    write_config(
        &vigil,
        &format!(
            "probes:\n{first}  - name: second\n    interval: 100ms\n    tcp:\n      address: {}\n",
            b.addr()
        ),
    );
    let checks = vigil.component("first").await["checks_total"]
        .as_u64()
        .unwrap();
    let (code, body) = vigil.reload().await;
    assert_eq!(code, 200, "{body}");
    let (_, s) = vigil.status().await;
    let c = component(&s, "first");
    assert_eq!(c["status"], "ok", "not reset to unknown: {c:#}");
    assert!(c["checks_total"].as_u64() >= Some(checks), "{c:#}");

    // Without a token configured, reloading over HTTP is off (SIGHUP still works).
    let open = Vigil::start_with_env(
        tempfile::tempdir().unwrap(),
        &format!("probes:\n{first}"),
        &[("VIGIL_API_TOKEN", "")],
    );
    let (code, body) = open.reload().await;
    assert_eq!(code, 401, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("reloading over HTTP is disabled: start Vigil with VIGIL_API_TOKEN set"),
        "{body}"
    );
}

/// A SIGHUP while the daemon is still starting (here held reading its ECS task
/// metadata, which can take seconds on ECS; AWS credentials can too) is a reload once
/// it has started, not the end of the process: until the reload control ran, SIGHUP
/// had no handler, and its default action killed the daemon.
#[tokio::test]
async fn a_sighup_while_starting_is_a_reload_once_started_not_the_end() {
    use std::io::{Read, Write};
    let (arrived_tx, arrived_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    // The task metadata endpoint: holds the first request until told, answers `{}`.
    let metadata = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", metadata.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut first = true;
        for conn in metadata.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.read(&mut [0u8; 4096]);
            if std::mem::take(&mut first) {
                let _ = arrived_tx.send(());
                let _ = go_rx.recv();
            }
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    let starting = Vigil::spawn_with_env(
        tempfile::tempdir().unwrap(),
        "probes:\n  - name: disk\n    disk:\n      paths: [/]\n",
        &[("ECS_CONTAINER_METADATA_URI_V4", &endpoint)],
    );
    arrived_rx
        .recv_timeout(common::DEADLINE)
        .expect("vigil asks for its task metadata while it starts");
    common::send_signal(&starting.child, "-HUP");
    go_tx.send(()).unwrap();
    // Fails at once if the SIGHUP ended the process.
    let mut vigil = starting.listening();
    let start = std::time::Instant::now();
    while !vigil
        .log_text()
        .contains("Reload asked for; no file changed, so nothing restarts.")
    {
        assert!(
            start.elapsed() < common::DEADLINE,
            "the SIGHUP was not a reload:\n{}",
            vigil.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(vigil.child.0.try_wait().unwrap().is_none(), "vigil ended");
    vigil.component("disk").await;
}

/// The ECS task's stats are polled at the evaluation interval; a reload that changes
/// the interval reaches the poller (it kept the one of the start: a reload from 1 m to
/// 10 s left the task's memory read once a minute).
#[tokio::test]
async fn a_reloaded_evaluation_interval_reaches_the_ecs_stats_poller() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let polls = std::sync::Arc::new(AtomicUsize::new(0));
    // The task metadata endpoint: counts the stats requests, answers `{}`.
    let metadata = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", metadata.local_addr().unwrap());
    let counted = polls.clone();
    std::thread::spawn(move || {
        for conn in metadata.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut request = [0u8; 4096];
            let n = conn.read(&mut request).unwrap_or(0);
            let line = String::from_utf8_lossy(&request[..n]);
            if line.lines().next().is_some_and(|l| l.contains("/stats")) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    let vigil = Vigil::start_with_env(
        tempfile::tempdir().unwrap(),
        "evaluation_interval: 1h\nprobes:\n  - name: disk\n    disk:\n      paths: [/]\n",
        &[("ECS_CONTAINER_METADATA_URI_V4", &endpoint)],
    );
    let wait_polls = |n: usize| {
        let polls = polls.clone();
        let vigil = &vigil;
        async move {
            let start = std::time::Instant::now();
            while polls.load(Ordering::SeqCst) < n {
                assert!(
                    start.elapsed() < common::DEADLINE,
                    "{} stats polls, waited for {n}:\n{}",
                    polls.load(Ordering::SeqCst),
                    vigil.log_text()
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    wait_polls(1).await; // the first, at the start; the next would be in an hour
    let file = vigil.dir.path().join("vigil.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("evaluation_interval: 1h", "evaluation_interval: 100ms"),
    )
    .unwrap();
    let (code, answer) = vigil.reload().await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["restart_needed"], serde_json::json!([]), "{answer}");
    wait_polls(5).await;
}

/// A reload that changes what only a restart applies (the environment, the store's
/// bounds) says so — in its answer, `/status` and its text — and `/status` goes on
/// showing the environment the daemon runs with; it once answered a plain success and
/// showed the new environment while the old one ran on (in the lease's key, alarm
/// names, the history). Changing them back clears it.
#[tokio::test]
async fn a_reload_changing_what_only_a_restart_applies_says_so() {
    let probe = "probes:\n  - name: disk\n    disk:\n      paths: [/]\n";
    let vigil = Vigil::start_in(tempfile::tempdir().unwrap(), probe);
    let file = vigil.dir.path().join("vigil.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        original.replace("environment: test", "environment: staging")
            + "store:\n  max_series: 1000\n",
    )
    .unwrap();
    let (code, answer) = vigil.reload().await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        answer["restart_needed"],
        serde_json::json!(["environment", "store"]),
        "{answer}"
    );
    let (_, status) = vigil.status().await;
    assert_eq!(status["environment"], "test", "the one it runs with");
    assert_eq!(
        status["last_reload"]["restart_needed"],
        serde_json::json!(["environment", "store"]),
        "{status:#}"
    );
    let (_, text) = vigil.get("/status?format=text").await;
    assert!(
        text.contains("take effect only at the next restart: environment, store"),
        "{text}"
    );
    // A reload refused after it still says what waits for a restart.
    std::fs::write(&file, original.clone() + "probes: [\n").unwrap();
    let (code, _) = vigil.reload().await;
    assert_eq!(code, 400);
    let (_, status) = vigil.status().await;
    assert_eq!(status["last_reload"]["ok"], false, "{status:#}");
    assert_eq!(
        status["last_reload"]["restart_needed"],
        serde_json::json!(["environment", "store"]),
        "{status:#}"
    );

    std::fs::write(&file, &original).unwrap();
    let (code, answer) = vigil.reload().await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["restart_needed"], serde_json::json!([]), "{answer}");
    let (_, status) = vigil.status().await;
    assert!(
        status["last_reload"].get("restart_needed").is_none(),
        "{status:#}"
    );
}
