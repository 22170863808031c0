//! The canary: a secret planted in every URL, DSN and token the config can hold,
//! every one of them failing (so that error texts are made from them), then every
//! output Vigil has is searched for any of them: `/status` as JSON, HTML and text,
//! `/metrics`, `/api/*`, `/healthz`, the log, and `vigil check` and `vigil status`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Vigil;
use vigil_testkit::{Behaviour, Peer, free_port};

/// Every planted secret contains this.
const CANARY: &str = "CANARY";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_reaches_any_output() {
    // One peer that refuses everything, echoing what a careless receiver echoes:
    // the URL it was called on and the key it was sent.
    let peer = Peer::start(Behaviour::Answer(500, Vec::new(), Vec::new()));
    let hook = format!(
        "http://{}/hook/CANARYhookpath?key=CANARYhookkey",
        peer.addr()
    );
    let pd_key = "CANARYpdkey000000000000000000000";
    assert_eq!(pd_key.len(), 32);
    peer.set(Behaviour::Answer(
        500,
        Vec::new(),
        format!("no such hook {hook} for routing key {pd_key}").into_bytes(),
    ));
    let refused = free_port();
    let dir = tempfile::tempdir().unwrap();
    common::write_always_paging(
        dir.path(),
        "Canary",
        &format!(
            "    webhook:\n      url: {hook}\n    pagerduty:\n      routing_key: {pd_key}\n      url: http://{}/pd\n",
            peer.addr()
        ),
        &format!("redis://:CANARYleasepw@127.0.0.1:{refused}/0"),
    );
    let addr = peer.addr();
    let body = [
        "rule_files: [rules.yaml]".to_string(),
        "routing: routing.yaml".into(),
        "evaluation_interval: 200ms".into(),
        "scrape:".into(),
        "  - job: app".into(),
        "    interval: 200ms".into(),
        format!("    url: http://u:CANARYscrapepw@{addr}/metrics?token=CANARYscrapetoken"),
        "probes:".into(),
        "  - name: app".into(),
        "    interval: 200ms".into(),
        "    timeout: 150ms".into(),
        "    http:".into(),
        format!("      url: http://user:CANARYhttppw@{addr}/health?token=CANARYhttptoken"),
        "  - name: database".into(),
        "    interval: 200ms".into(),
        "    timeout: 150ms".into(),
        "    postgres:".into(),
        format!(
            "      dsn: postgres://vigil:CANARYpgpw@127.0.0.1:{refused}/app?sslpassword=CANARYsslpw"
        ),
        "  - name: cache".into(),
        "    interval: 200ms".into(),
        "    timeout: 150ms".into(),
        "    redis:".into(),
        format!("      url: redis://:CANARYredispw@127.0.0.1:{refused}/0"),
    ]
    .join("\n")
        + "\n";
    let token = "CANARYapitoken";
    let vigil = Vigil::start_with_env(dir, &body, &[("VIGIL_API_TOKEN", token)]);
    let s = vigil
        .wait_for(
            "both receivers to have failed and every probe to be down",
            |s| {
                let t = &s["paging"]["targets"];
                t["oncall/webhook"]["failures"].as_u64() >= Some(2)
                    && t["oncall/pagerduty"]["failures"].as_u64() >= Some(2)
                    && s["components"]
                        .as_array()
                        .is_some_and(|c| c.iter().all(|c| c["status"] == "down"))
                    && s["scrapes"][0]["error"].is_string()
            },
        )
        .await;
    // The failures are named, their secrets are not.
    let webhook_error = s["paging"]["targets"]["oncall/webhook"]["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(webhook_error.starts_with("HTTP 500"), "{webhook_error}");

    let mut outputs = Vec::new();
    for path in [
        "/status",
        "/status?format=html",
        "/status?format=text",
        "/metrics",
        "/api/alerts",
        "/healthz",
        "/no/such/page",
    ] {
        outputs.push((path.to_string(), vigil.get(path).await.1));
    }
    let silences = reqwest::Client::new()
        .get(format!("http://{}/api/silences", vigil.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(silences.status().as_u16(), 200);
    outputs.push(("/api/silences".into(), silences.text().await.unwrap()));
    let bin = env!("CARGO_BIN_EXE_vigil");
    let run = |args: &[&str]| {
        let out = Command::new(bin).args(args).output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let url = format!("http://{}", vigil.addr);
    outputs.push(("vigil status".into(), run(&["status", "--url", &url])));
    outputs.push((
        "vigil status --json".into(),
        run(&["status", "--json", "--url", &url]),
    ));
    let config = vigil.dir.path().join("vigil.yaml");
    outputs.push((
        "vigil check".into(),
        run(&["check", "--config", config.to_str().unwrap()]),
    ));
    // A broken copy: its problems quote the file, never a secret's value.
    let broken = vigil.dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&config).unwrap().replace(
            "interval: 200ms\n    timeout",
            "intreval: 200ms\n    timeout",
        ),
    )
    .unwrap();
    outputs.push((
        "vigil check (broken)".into(),
        run(&["check", "--config", broken.to_str().unwrap()]),
    ));
    // Give the log time to hold a few rounds of every failure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    outputs.push(("the log".into(), vigil.log_text()));
    outputs.push((
        "stdout".into(),
        std::fs::read_to_string(vigil.dir.path().join("vigil.out")).unwrap_or_default(),
    ));
    for (what, text) in &outputs {
        assert!(!text.is_empty() || what == "stdout", "{what} is empty");
        if let Some(at) = text.find(CANARY) {
            let from = at.saturating_sub(200);
            panic!(
                "{what} shows a secret: …{}…",
                &text[from..(at + 60).min(text.len())]
            );
        }
    }
    // And the log did see the failures (the search above searched something).
    let log = vigil.log_text();
    assert!(log.contains("Delivery failed; will retry."), "{log}");
    assert!(log.contains("Scrape failed."));
}
