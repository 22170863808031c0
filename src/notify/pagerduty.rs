//! `pagerduty`: PagerDuty Events API v2. A page is a `trigger` and a resolve a
//! `resolve`, both keyed by `dedup_key` = the alert's stable alarm name, so a restart
//! or a second sidecar never opens a second incident.
//!
//! 202 is success; 400 (a malformed event or a wrong key) is never retried; 429 and
//! 5xx are retried with backoff.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;

use super::{AlertEvent, Notification, Notifier};
use crate::peer::{SendError, truncate};
use crate::settings::Collector;
use crate::settings::secret::Secret;

/// PagerDuty's Events API v2 endpoint.
pub(crate) const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `pagerduty:` as written in `alerts/routing.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySettings {
    /// The integration's routing key (32 characters); from the environment.
    routing_key: Spanned<String>,
    /// The Events API URL; PagerDuty's unless testing.
    #[serde(default)]
    url: Option<Spanned<String>>,
    /// Send `resolve` when the alert resolves (default true).
    #[serde(default)]
    send_resolved: Option<bool>,
}

/// Validated PagerDuty settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutySpec {
    /// The routing key.
    pub routing_key: Secret,
    /// Where events go.
    pub url: String,
    /// Whether resolves are sent.
    pub send_resolved: bool,
}

impl PagerDutySettings {
    /// Checks the key's length and the URL.
    pub fn validate(self, c: &mut Collector) -> Option<PagerDutySpec> {
        let key = &self.routing_key;
        if key.value.len() != 32 || !key.value.bytes().all(|b| b.is_ascii_alphanumeric()) {
            c.at(
                key.referenced,
                format!(
                    "routing_key must be the 32 letters and digits of an Events API v2 integration key (got {} characters)",
                    key.value.len()
                ),
            );
            return None;
        }
        let url = match &self.url {
            None => EVENTS_URL.to_string(),
            Some(u) if u.value.starts_with("https://") || u.value.starts_with("http://") => {
                u.value.clone()
            }
            Some(u) => {
                c.at(u.referenced, "url must start with https:// or http://");
                return None;
            }
        };
        Some(PagerDutySpec {
            routing_key: Secret::new(key.value.clone()),
            url,
            send_resolved: self.send_resolved.unwrap_or(true),
        })
    }
}

/// PagerDuty's severities: `critical`, `error`, `warning`, `info`.
fn severity(s: &str) -> &'static str {
    match s {
        "critical" | "page" => "critical",
        "warning" => "warning",
        "info" | "none" => "info",
        _ => "error",
    }
}

/// The event for one alert change, without the routing key (added when sending, so
/// it is never written to the outbox).
pub fn render(e: &AlertEvent, client_url: &str) -> Value {
    let action = if e.firing { "trigger" } else { "resolve" };
    let mut details = serde_json::Map::new();
    details.insert("labels".into(), json!(e.labels));
    details.insert("value".into(), json!(crate::promql::format_value(e.value)));
    details.insert("expr".into(), json!(e.expr));
    details.insert("environment".into(), json!(e.environment));
    for (k, v) in &e.annotations {
        details.insert(k.clone(), json!(v));
    }
    let mut links = Vec::new();
    if let Some(r) = e.annotations.get("runbook_url") {
        links.push(json!({"href": r, "text": "Runbook"}));
    }
    let source = e
        .labels
        .get("target")
        .or_else(|| e.labels.get("instance"))
        .cloned()
        .unwrap_or_else(|| format!("vigil/{}", e.environment));
    json!({
        "event_action": action,
        "dedup_key": e.alarm_name,
        "payload": {
            "summary": truncate(&format!("[{}] {}", e.environment, e.summary()), 1024),
            "source": truncate(&source, 255),
            "severity": severity(e.severity()),
            "timestamp": e.changed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "component": e.labels.get("component").cloned().unwrap_or_default(),
            "group": e.environment,
            "class": e.alertname(),
            "custom_details": details,
        },
        "links": links,
        "client": "Vigil",
        "client_url": client_url,
    })
}

/// Sends events to PagerDuty.
pub struct PagerDutyNotifier {
    /// Key and URL.
    spec: PagerDutySpec,
    /// The HTTP client, with the attempt timeout.
    http: reqwest::Client,
    /// Vigil's `/status`, linked from the incident.
    client_url: String,
}

impl PagerDutyNotifier {
    /// A notifier whose attempts each take at most `timeout`; fails only when the
    /// platform refuses an HTTP client.
    pub fn new(
        spec: PagerDutySpec,
        timeout: Duration,
        external_url: &str,
    ) -> Result<PagerDutyNotifier, String> {
        Ok(PagerDutyNotifier {
            spec,
            http: crate::peer::client(timeout)?,
            client_url: format!("{external_url}/status"),
        })
    }
}

impl Notifier for PagerDutyNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        for e in &n.events {
            let mut body = render(e, &self.client_url);
            body["routing_key"] = json!(self.spec.routing_key.expose());
            let resp = self
                .http
                .post(&self.spec.url)
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    SendError::retry(self.spec.routing_key.scrub(&crate::peer::error_text(&e)))
                })?;
            let status = resp.status();
            if status.as_u16() != 202 && !status.is_success() {
                let text = self
                    .spec
                    .routing_key
                    .scrub(&crate::peer::error_body(resp).await);
                return Err(SendError::from_status(status, &text));
            }
        }
        Ok(())
    }
}
