//! `sns`: publishes each alert change to an SNS topic as a CloudWatch alarm state
//! change, so PagerDuty's Amazon CloudWatch integration (subscribed to the topic)
//! opens an incident on `ALARM` and resolves it on `OK` by itself, keyed by
//! `AlarmName`.
//!
//! The endpoint and credentials come from the AWS SDK's usual chain (the ECS task
//! role in production; `AWS_ENDPOINT_URL` points tests at `moto_server`). The SDK's
//! own retries are off: the outbox retries, with its own backoff and ordering.

use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;
use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;

use super::{AlertEvent, Notification, Notifier};
use crate::peer::{SendError, truncate};
use crate::settings::Collector;

/// `sns:` as written in `alerts/routing.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsSettings {
    /// The topic, `arn:aws:sns:<region>:<account>:<name>`.
    topic_arn: Spanned<String>,
    /// Optional; must agree with the ARN's region when given.
    #[serde(default)]
    region: Option<Spanned<String>>,
    /// Send `OK` when the alert resolves (default true).
    #[serde(default)]
    send_resolved: Option<bool>,
}

/// Validated SNS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SnsSpec {
    /// The topic's ARN.
    pub topic_arn: String,
    /// The region, from the ARN.
    pub region: String,
    /// The account, from the ARN (the message's `AWSAccountId`).
    pub account: String,
    /// Whether resolves are sent.
    pub send_resolved: bool,
}

impl SnsSettings {
    /// Checks the ARN's shape and the region.
    pub fn validate(self, c: &mut Collector) -> Option<SnsSpec> {
        let arn = &self.topic_arn;
        let parts: Vec<&str> = arn.value.split(':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "sns"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && !parts[5].is_empty();
        if !ok {
            c.at(
                arn.referenced,
                format!(
                    "invalid topic_arn {:?}: expected arn:aws:sns:<region>:<12-digit account>:<topic>",
                    arn.value
                ),
            );
            return None;
        }
        if let Some(r) = &self.region
            && r.value != parts[3]
        {
            c.at(
                r.referenced,
                format!(
                    "region {:?} differs from the topic's region {:?}; SNS publishes only in the topic's region",
                    r.value, parts[3]
                ),
            );
            return None;
        }
        Some(SnsSpec {
            topic_arn: arn.value.clone(),
            region: parts[3].to_string(),
            account: parts[4].to_string(),
            send_resolved: self.send_resolved.unwrap_or(true),
        })
    }
}

/// AWS's display name of a region, as CloudWatch writes it in alarm messages.
pub(crate) fn region_name(code: &str) -> String {
    let name = match code {
        "us-east-1" => "US East (N. Virginia)",
        "us-east-2" => "US East (Ohio)",
        "us-west-1" => "US West (N. California)",
        "us-west-2" => "US West (Oregon)",
        "af-south-1" => "Africa (Cape Town)",
        "ap-east-1" => "Asia Pacific (Hong Kong)",
        "ap-south-1" => "Asia Pacific (Mumbai)",
        "ap-south-2" => "Asia Pacific (Hyderabad)",
        "ap-southeast-1" => "Asia Pacific (Singapore)",
        "ap-southeast-2" => "Asia Pacific (Sydney)",
        "ap-southeast-3" => "Asia Pacific (Jakarta)",
        "ap-southeast-4" => "Asia Pacific (Melbourne)",
        "ap-northeast-1" => "Asia Pacific (Tokyo)",
        "ap-northeast-2" => "Asia Pacific (Seoul)",
        "ap-northeast-3" => "Asia Pacific (Osaka)",
        "ca-central-1" => "Canada (Central)",
        "ca-west-1" => "Canada West (Calgary)",
        "eu-central-1" => "EU (Frankfurt)",
        "eu-central-2" => "EU (Zurich)",
        "eu-west-1" => "EU (Ireland)",
        "eu-west-2" => "EU (London)",
        "eu-west-3" => "EU (Paris)",
        "eu-south-1" => "EU (Milan)",
        "eu-south-2" => "EU (Spain)",
        "eu-north-1" => "EU (Stockholm)",
        "il-central-1" => "Israel (Tel Aviv)",
        "me-south-1" => "Middle East (Bahrain)",
        "me-central-1" => "Middle East (UAE)",
        "sa-east-1" => "South America (Sao Paulo)",
        "us-gov-east-1" => "AWS GovCloud (US-East)",
        "us-gov-west-1" => "AWS GovCloud (US-West)",
        other => other,
    };
    name.to_string()
}

/// SNS's Subject limit.
pub(crate) const MAX_SUBJECT: usize = 100;
/// CloudWatch's limit on `AlarmDescription`.
const MAX_DESCRIPTION: usize = 1024;
/// CloudWatch's limit on `NewStateReason`.
const MAX_REASON: usize = 1023;

/// The rendered publish: Subject, Message and the message attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// `ALARM: "<AlarmName>" in <Region>`, at most 100 ASCII characters.
    pub subject: String,
    /// The CloudWatch-alarm-shaped JSON.
    pub message: String,
    /// `severity`, `alertname`, `environment` (those that are not empty).
    pub attributes: Vec<(&'static str, String)>,
}

/// The subject: `ALARM: "<name>" in <Region>`, the name shortened inside its quotes
/// when the whole would pass 100 characters; ASCII only, as SNS requires.
fn subject(state: &str, name: &str, region: &str) -> String {
    let ascii = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    };
    let (name, region) = (ascii(name), ascii(region));
    let whole = format!("{state}: \"{name}\" in {region}");
    if whole.len() <= MAX_SUBJECT {
        return whole;
    }
    let room = MAX_SUBJECT.saturating_sub(format!("{state}: \"...\" in {region}").len());
    format!(
        "{state}: \"{}...\" in {region}",
        &name[..room.min(name.len())]
    )
}

/// The comparison at the end of an expression (`… > 0.05`), as CloudWatch names it,
/// and its threshold.
fn comparison(expr: &str) -> (&'static str, f64) {
    let expr = expr.trim();
    let ops = [
        (">=", "GreaterThanOrEqualToThreshold"),
        ("<=", "LessThanOrEqualToThreshold"),
        ("==", "EqualToThreshold"),
        ("!=", "NotEqualToThreshold"),
        (">", "GreaterThanThreshold"),
        ("<", "LessThanThreshold"),
    ];
    for (op, name) in ops {
        if let Some(i) = expr.rfind(op)
            && let Ok(v) = expr[i + op.len()..].trim().parse::<f64>()
            // CloudWatch's Threshold is a finite number; `> Inf` has none to show.
            && v.is_finite()
        {
            return (name, v);
        }
    }
    ("GreaterThanThreshold", 0.0)
}

/// Renders one alert change as CloudWatch would describe an alarm's state change.
pub fn render(e: &AlertEvent, spec: &SnsSpec) -> Rendered {
    let (new, old) = if e.firing {
        ("ALARM", "OK")
    } else {
        ("OK", "ALARM")
    };
    let region = region_name(&spec.region);
    let mut description = e.summary();
    if let Some(d) = e.annotations.get("description") {
        description.push_str("\n\n");
        description.push_str(d);
    }
    if let Some(r) = e.annotations.get("runbook_url") {
        description.push_str("\n\nRunbook: ");
        description.push_str(r);
    }
    let labels: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let reason = if e.firing {
        format!(
            "Threshold Crossed: {} held for at least {}s (value {}) with labels {{{}}}.",
            e.expr.split_whitespace().collect::<Vec<_>>().join(" "),
            e.for_seconds,
            crate::promql::format_value(e.value),
            labels.join(", ")
        )
    } else {
        format!(
            "Resolved: {} no longer holds (last value {}) with labels {{{}}}.",
            e.expr.split_whitespace().collect::<Vec<_>>().join(" "),
            crate::promql::format_value(e.value),
            labels.join(", ")
        )
    };
    let (operator, threshold) = comparison(&e.expr);
    let dimensions: Vec<Value> = e
        .labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
        .take(30)
        .map(|(k, v)| json!({"name": truncate(k, 255), "value": truncate(v, 255)}))
        .collect();
    let message = json!({
        "AlarmName": e.alarm_name,
        "AlarmDescription": truncate(&description, MAX_DESCRIPTION),
        "AWSAccountId": spec.account,
        "AlarmConfigurationUpdatedTimestamp": e.starts_at.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string(),
        "NewStateValue": new,
        "NewStateReason": truncate(&reason, MAX_REASON),
        "StateChangeTime": e.changed_at.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string(),
        "Region": region,
        "AlarmArn": format!("arn:aws:cloudwatch:{}:{}:alarm:{}", spec.region, spec.account, e.alarm_name),
        "OldStateValue": old,
        "OKActions": [spec.topic_arn],
        "AlarmActions": [spec.topic_arn],
        "InsufficientDataActions": [],
        "Trigger": {
            "MetricName": e.alertname(),
            "Namespace": "Vigil",
            "StatisticType": "Statistic",
            "Statistic": "MAXIMUM",
            "Unit": null,
            "Dimensions": dimensions,
            "Period": 60,
            "EvaluationPeriods": 1,
            "ComparisonOperator": operator,
            "Threshold": threshold,
            "TreatMissingData": "notBreaching",
            "EvaluateLowSampleCountPercentile": "",
            "Expression": truncate(&e.expr, 1024),
        },
    });
    let attributes = [
        ("severity", e.severity().to_string()),
        ("alertname", e.alertname().to_string()),
        ("environment", e.environment.clone()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k, truncate(&v, 256)))
    .collect();
    Rendered {
        subject: subject(new, &e.alarm_name, &region),
        message: message.to_string(),
        attributes,
    }
}

/// Publishes to one topic.
pub struct SnsNotifier {
    /// The topic and its region.
    spec: SnsSpec,
    /// The SDK client, in the topic's region.
    client: aws_sdk_sns::Client,
}

impl SnsNotifier {
    /// A client for the topic's region, each call bounded by `timeout`.
    pub async fn new(spec: SnsSpec, timeout: Duration) -> SnsNotifier {
        let config = crate::aws::sdk_config(Some(&spec.region), timeout).await;
        SnsNotifier {
            spec,
            client: aws_sdk_sns::Client::from_conf(
                aws_sdk_sns::config::Builder::from(&config)
                    .interceptor(crate::aws::AnswerLimit)
                    .build(),
            ),
        }
    }
}

impl Notifier for SnsNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        for e in &n.events {
            let r = render(e, &self.spec);
            let mut req = self
                .client
                .publish()
                .topic_arn(&self.spec.topic_arn)
                .subject(r.subject)
                .message(r.message);
            for (k, v) in r.attributes {
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
                    .map_err(|e| SendError::permanent(e.to_string()))?;
                req = req.message_attributes(k, value);
            }
            req.send().await.map_err(classify)?;
        }
        Ok(())
    }
}

/// Invalid parameters cannot succeed on a retry; everything else (throttling,
/// timeouts, a missing topic or role that may yet appear) is retried.
fn classify(
    e: aws_sdk_sns::error::SdkError<aws_sdk_sns::operation::publish::PublishError>,
) -> SendError {
    use aws_sdk_sns::error::ProvideErrorMetadata;
    let code = e.code().unwrap_or("").to_string();
    let reason = match e.message() {
        Some(m) => format!("{code}: {m}"),
        None => aws_sdk_sns::error::DisplayErrorContext(&e).to_string(),
    };
    if matches!(code.as_str(), "InvalidParameter" | "InvalidParameterValue") {
        SendError::permanent(reason)
    } else {
        SendError::retry(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_stay_within_100_ascii_characters() {
        let s = subject("ALARM", &"x".repeat(150), "US East (N. Virginia)");
        assert_eq!(s.len(), 100);
        assert!(s.starts_with("ALARM: \"xxx") && s.ends_with("...\" in US East (N. Virginia)"));
        assert_eq!(
            subject("OK", "prod-CacheDown", "EU (Ireland)"),
            "OK: \"prod-CacheDown\" in EU (Ireland)"
        );
        assert_eq!(subject("OK", "é", "X"), "OK: \"?\" in X");
    }

    #[test]
    fn the_trailing_comparison_is_the_threshold() {
        assert_eq!(comparison("a / b > 0.05"), ("GreaterThanThreshold", 0.05));
        assert_eq!(comparison("up == 0"), ("EqualToThreshold", 0.0));
        assert_eq!(comparison("x >= 2"), ("GreaterThanOrEqualToThreshold", 2.0));
        assert_eq!(comparison("absent(up)"), ("GreaterThanThreshold", 0.0));
    }
}
