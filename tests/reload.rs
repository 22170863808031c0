//! Reloading with SIGHUP and `POST /-/reload`: a good config replaces probes and
//! rules; a bad one is refused with every problem, and the old one keeps running.

mod common;

use std::process::Command;

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
    let resp = reqwest::Client::new()
        .post(format!("http://{}/-/reload", vigil.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
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
    let pid = vigil.child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
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
