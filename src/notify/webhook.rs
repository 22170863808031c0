//! `webhook`: POSTs Alertmanager's webhook payload (version 4), so receivers written
//! for Alertmanager work unchanged. One request per group flush, with every alert
//! change of that flush.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;

use super::{AlertEvent, Notification, Notifier};
use crate::peer::SendError;
use crate::settings::Collector;
use crate::settings::secret::SecretUrl;

/// `webhook:` as written in `alerts/routing.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where to POST; may hold a token (it is redacted everywhere).
    url: Spanned<String>,
    /// Send resolved alerts (default true).
    #[serde(default)]
    send_resolved: Option<bool>,
}

/// Validated webhook settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    /// The URL.
    pub url: SecretUrl,
    /// Whether resolves are sent.
    pub send_resolved: bool,
}

impl WebhookSettings {
    /// Checks the URL.
    pub fn validate(self, c: &mut Collector) -> Option<WebhookSpec> {
        Some(WebhookSpec {
            url: crate::settings::secret::http_endpoint(&self.url, c)?,
            send_resolved: self.send_resolved.unwrap_or(true),
        })
    }
}

fn alert(e: &AlertEvent, external_url: &str) -> Value {
    json!({
        "status": if e.firing { "firing" } else { "resolved" },
        "labels": e.labels,
        "annotations": e.annotations,
        "startsAt": e.starts_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "endsAt": e.ends_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        "generatorURL": format!("{external_url}/status"),
        "fingerprint": e.fingerprint,
    })
}

/// The version-4 payload for a notification.
pub fn render(n: &Notification, external_url: &str) -> Value {
    let alerts: Vec<Value> = n.events.iter().map(|e| alert(e, external_url)).collect();
    let firing = n.events.iter().any(|e| e.firing);
    // Labels and annotations every alert shares.
    let common = |get: fn(&AlertEvent) -> &std::collections::BTreeMap<String, String>| {
        let mut it = n.events.iter();
        let mut out = it.next().map(get).cloned().unwrap_or_default();
        for e in it {
            out.retain(|k, v| get(e).get(k) == Some(v));
        }
        out
    };
    let common_labels = common(|e| &e.labels);
    let group_labels: std::collections::BTreeMap<_, _> = common_labels
        .iter()
        .filter(|(k, _)| n.group_key.contains(&format!("{k}=")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": n.receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common(|e| &e.annotations),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

/// POSTs to one URL.
pub struct WebhookNotifier {
    /// The URL.
    spec: WebhookSpec,
    /// The HTTP client, with the attempt timeout.
    http: reqwest::Client,
    /// Vigil's address, for `externalURL`.
    external_url: String,
}

impl WebhookNotifier {
    /// A notifier whose attempts each take at most `timeout`; fails only when the
    /// platform refuses an HTTP client.
    pub fn new(
        spec: WebhookSpec,
        timeout: Duration,
        external_url: &str,
    ) -> Result<WebhookNotifier, String> {
        Ok(WebhookNotifier {
            spec,
            http: crate::peer::client(timeout)?,
            external_url: external_url.to_string(),
        })
    }
}

impl Notifier for WebhookNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let resp = self
            .http
            .post(self.spec.url.expose())
            .json(&render(n, &self.external_url))
            .send()
            .await
            .map_err(|e| SendError::retry(self.spec.url.scrub(&crate::peer::error_text(&e))))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = self.spec.url.scrub(&crate::peer::error_body(resp).await);
        Err(SendError::from_status(status, &text))
    }
}
