//! What the status page's tests share: a webhook receiver, rules with a Watchdog, a
//! critical and a warning alert on the cache, a routing file with a lease, silences
//! made through the API, and signals sent to a daemon.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{TOKEN, Vigil};

/// Requests the receiver got: (path, body).
pub type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver that accepts everything.
pub async fn receiver() -> (std::net::SocketAddr, Received) {
    use axum::extract::{Path, State};
    let got: Received = Received::default();
    async fn handle(
        State(got): State<Received>,
        Path(path): Path<String>,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        got.lock().unwrap().push((path, v));
        axum::http::StatusCode::OK
    }
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(handle))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, got)
}

pub const RULES: &str = r#"groups:
  - name: g
    rules:
      - alert: Watchdog
        expr: vector(1)
        labels:
          severity: none
      - alert: CacheDown
        expr: vigil_probe_success{probe="cache"} == 0
        labels:
          severity: critical
        annotations:
          summary: "Redis does not answer"
          runbook_url: https://example.com/CacheDown.md
      - alert: CacheDegraded
        expr: vigil_probe_success{probe="cache"} == 0
        labels:
          severity: warning
        annotations:
          summary: "The cache is degraded"
"#;

/// A directory with the rules, a routing file (pages to `/oncall`, the Watchdog to
/// `/beat`, the lease on `lease`), and the config body probing `redis`.
pub fn setup(hook: std::net::SocketAddr, redis: &str, lease: &str) -> (tempfile::TempDir, String) {
    let (dir, body) = (tempfile::tempdir().unwrap(), body(redis));
    write_routing(dir.path(), hook, lease, "");
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    (dir, body)
}

/// Writes the routing file of [`setup`] into `dir` with `extra` appended (say,
/// `maintenance_windows:`).
pub fn write_routing(dir: &std::path::Path, hook: std::net::SocketAddr, lease: &str, extra: &str) {
    std::fs::write(
        dir.join("routing.yaml"),
        format!(
            "receivers:\n  - name: oncall\n    webhook:\n      url: http://{hook}/oncall\n  - name: heartbeat\n    webhook:\n      url: http://{hook}/beat\nroute:\n  receiver: oncall\n  group_by: ['...']\n  group_wait: 0s\n  routes:\n    - matchers: ['alertname=\"Watchdog\"']\n      receiver: heartbeat\n      group_interval: 1s\n      repeat_interval: 1s\ndelivery:\n  initial_backoff: 100ms\n  max_backoff: 300ms\n  timeout: 1s\nlease:\n  redis: {lease}\n  ttl: 3s\n  alerts:\n    - ['severity=\"critical\"']\n{extra}"
        ),
    )
    .unwrap();
}

/// The config body probing `redis` every 200 ms with the rules and routing of
/// [`setup`].
pub fn body(redis: &str) -> String {
    format!(
        "rule_files: [rules.yaml]\nrouting: routing.yaml\nevaluation_interval: 200ms\nprobes:\n  - name: cache\n    interval: 200ms\n    timeout: 150ms\n    redis:\n      url: {redis}\n"
    )
}

/// Silences `alertname` for two hours as alice, through the API; its id.
pub async fn silence(vigil: &Vigil, alertname: &str) -> String {
    let ends = chrono::Utc::now() + chrono::Duration::hours(2);
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/silences", vigil.addr))
        .bearer_auth(TOKEN)
        .json(&json!({
            "matchers": [{"name": "alertname", "value": alertname}],
            "endsAt": ends.to_rfc3339(),
            "createdBy": "alice",
            "comment": "cache migration",
        }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let v: Value = resp.json().await.unwrap();
    v["silenceID"]
        .as_str()
        .or(v["id"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Sends `sig` (`-STOP`, `-CONT`, …) to the daemon.
pub fn signal(vigil: &Vigil, sig: &str) {
    super::send_signal(&vigil.child, sig);
}
