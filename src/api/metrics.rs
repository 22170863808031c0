//! Vigil's own `/metrics`, in the Prometheus text exposition format (0.0.4).
//!
//! The names follow one scheme, documented in `docs/metrics.md`: `vigil_` first, then
//! the subsystem (`probe`, `http`, `postgres`, `redis`, `disk`), then the quantity
//! with its unit (`_seconds`, `_bytes`, `_ratio`, `_total` for counters). Every
//! probe-derived series carries `probe="<name>"`; label values come from the config,
//! so cardinality is bounded by it.

use std::fmt::Write;

use crate::promql::format_value;
use crate::store::Labels;
use crate::store::labels::NAME;

/// A metric family Vigil exposes.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// The family's name.
    pub name: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    /// Labels besides `probe` (documentation only).
    pub labels: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    kind: &'static str,
    labels: &'static str,
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
    }
}

/// Every family Vigil exposes, in exposition order.
pub const CATALOG: &[MetricDef] = &[
    def(
        "vigil_build_info",
        "gauge",
        "version",
        "Always 1; the version label says which Vigil runs.",
    ),
    def(
        "vigil_start_time_seconds",
        "gauge",
        "",
        "When the daemon started, in seconds since the Unix epoch.",
    ),
    def(
        "vigil_status",
        "gauge",
        "",
        "Overall verdict: 0 ok, 1 degraded, 2 down.",
    ),
    def(
        "vigil_store_series",
        "gauge",
        "",
        "Series in the in-memory store.",
    ),
    def(
        "vigil_store_samples",
        "gauge",
        "",
        "Samples in the in-memory store.",
    ),
    def(
        "vigil_store_series_dropped_total",
        "counter",
        "",
        "New series refused because the store was full.",
    ),
    def(
        "vigil_store_bytes",
        "gauge",
        "",
        "Bytes the store holds: labels, index entries, sample buffers.",
    ),
    def(
        "vigil_store_max_bytes",
        "gauge",
        "",
        "The store's byte budget.",
    ),
    def(
        "vigil_store_retention_seconds",
        "gauge",
        "",
        "The retention in effect: the configured one, or less while the byte budget is tight.",
    ),
    def(
        "vigil_store_samples_evicted_total",
        "counter",
        "",
        "Samples dropped before their retention to stay within the byte budget.",
    ),
    def(
        "vigil_rule_evaluations_total",
        "counter",
        "",
        "Rule evaluation rounds since the start.",
    ),
    def(
        "vigil_rule_evaluation_duration_seconds",
        "gauge",
        "",
        "How long the last rule evaluation round took.",
    ),
    def(
        "vigil_rule_evaluation_failures",
        "gauge",
        "",
        "Rules whose last evaluation failed.",
    ),
    def(
        "vigil_alerts",
        "gauge",
        "state",
        "Alerts by state (pending, firing).",
    ),
    def(
        "vigil_probe_success",
        "gauge",
        "probe, target",
        "1 when the probe's last check succeeded, else 0.",
    ),
    def(
        "vigil_probe_duration_seconds",
        "gauge",
        "probe, target",
        "How long the probe's last check took.",
    ),
    def(
        "vigil_probe_checks_total",
        "counter",
        "probe",
        "Checks run since the daemon started.",
    ),
    def(
        "vigil_probe_failures_total",
        "counter",
        "probe",
        "Failed checks since the daemon started.",
    ),
    def(
        "vigil_probe_consecutive_failures",
        "gauge",
        "probe",
        "Failed checks since the last success.",
    ),
    def(
        "vigil_http_status_code",
        "gauge",
        "probe",
        "HTTP status code of the last answer.",
    ),
    def(
        "vigil_tls_cert_days_left",
        "gauge",
        "probe",
        "Days until the server certificate expires.",
    ),
    def(
        "vigil_postgres_connections",
        "gauge",
        "probe",
        "Client connections open on the server.",
    ),
    def(
        "vigil_postgres_max_connections",
        "gauge",
        "probe",
        "The server's max_connections.",
    ),
    def(
        "vigil_postgres_connections_used_ratio",
        "gauge",
        "probe",
        "Client connections over max_connections.",
    ),
    def(
        "vigil_postgres_longest_query_seconds",
        "gauge",
        "probe",
        "Age of the longest running statement (0 when none).",
    ),
    def(
        "vigil_redis_keyspace_hits_total",
        "counter",
        "probe",
        "Successful key lookups (INFO keyspace_hits).",
    ),
    def(
        "vigil_redis_keyspace_misses_total",
        "counter",
        "probe",
        "Failed key lookups (INFO keyspace_misses).",
    ),
    def(
        "vigil_redis_used_memory_bytes",
        "gauge",
        "probe",
        "Memory used by Redis (INFO used_memory).",
    ),
    def(
        "vigil_redis_maxmemory_bytes",
        "gauge",
        "probe",
        "Redis's memory limit; 0 means none (INFO maxmemory).",
    ),
    def(
        "vigil_redis_memory_used_ratio",
        "gauge",
        "probe",
        "used_memory over maxmemory, when a limit is set.",
    ),
    def(
        "vigil_redis_evicted_keys_total",
        "counter",
        "probe",
        "Keys evicted for the memory limit (INFO evicted_keys).",
    ),
    def(
        "vigil_redis_connected_clients",
        "gauge",
        "probe",
        "Client connections (INFO connected_clients).",
    ),
    def(
        "vigil_disk_used_ratio",
        "gauge",
        "probe, mount",
        "Used share of the filesystem, counted like df.",
    ),
    def(
        "vigil_disk_free_bytes",
        "gauge",
        "probe, mount",
        "Bytes available to unprivileged users.",
    ),
    def(
        "vigil_disk_size_bytes",
        "gauge",
        "probe, mount",
        "Size of the filesystem.",
    ),
    def(
        "vigil_heartbeat",
        "gauge",
        "",
        "When the rules were last evaluated, in seconds since the Unix epoch; alert on time() - vigil_heartbeat.",
    ),
    def(
        "vigil_outbox_depth",
        "gauge",
        "target",
        "Notifications waiting for delivery, per integration (receiver/kind).",
    ),
    def(
        "vigil_storage_ok",
        "gauge",
        "",
        "1 while notify.redb is written; 0 while paging runs from memory because the file cannot be written.",
    ),
    def(
        "vigil_outbox_dead_letters",
        "gauge",
        "",
        "Outbox entries that could not be decoded, kept aside (dead_letters in notify.redb).",
    ),
    def(
        "vigil_outbox_oldest_age_seconds",
        "gauge",
        "target",
        "Age of the oldest waiting notification (0 when none).",
    ),
    def(
        "vigil_notification_attempts_total",
        "counter",
        "target",
        "Delivery attempts since the start.",
    ),
    def(
        "vigil_notifications_delivered_total",
        "counter",
        "target",
        "Notifications the receiver accepted since the start.",
    ),
    def(
        "vigil_notification_failures_total",
        "counter",
        "target",
        "Failed delivery attempts since the start (retried unless dropped).",
    ),
    def(
        "vigil_notifications_dropped_total",
        "counter",
        "target",
        "Notifications the receiver refused for good (HTTP 400, invalid parameters).",
    ),
    def(
        "vigil_alerts_muted",
        "gauge",
        "by",
        "Firing alerts held back, by what holds them: silence, window, inhibited, lease.",
    ),
    def(
        "vigil_paging_lease_held",
        "gauge",
        "",
        "1 when this sidecar pages for shared alerts (it holds the lease, or Redis is unreachable and everyone pages).",
    ),
    def(
        "vigil_publish_datums_total",
        "counter",
        "",
        "Datums sent to CloudWatch (or written as EMF).",
    ),
    def(
        "vigil_publish_calls_total",
        "counter",
        "",
        "PutMetricData calls (or EMF writes) that succeeded.",
    ),
    def(
        "vigil_publish_errors_total",
        "counter",
        "",
        "PutMetricData calls (or EMF writes) that failed.",
    ),
    def(
        "vigil_publish_dropped_total",
        "counter",
        "",
        "Datums dropped: the queue was full while CloudWatch was unreachable, or CloudWatch refused a batch.",
    ),
    def(
        "vigil_publish_skipped_values_total",
        "counter",
        "",
        "Values left out because CloudWatch cannot take them (NaN, +Inf, -Inf).",
    ),
    def(
        "vigil_publish_queue_datums",
        "gauge",
        "",
        "Datums waiting to be sent.",
    ),
    def(
        "vigil_publish_last_success_timestamp_seconds",
        "gauge",
        "",
        "When a publish last succeeded (Unix time); absent before the first.",
    ),
    def(
        "vigil_task_memory_used_bytes",
        "gauge",
        "",
        "Memory the ECS task's containers use, page cache excluded.",
    ),
    def(
        "vigil_task_memory_limit_bytes",
        "gauge",
        "",
        "The ECS task's memory limit.",
    ),
    def(
        "vigil_task_memory_used_ratio",
        "gauge",
        "",
        "The ECS task's memory used over its limit.",
    ),
    def(
        "vigil_task_cpu_used_ratio",
        "gauge",
        "",
        "The ECS task's CPU used over its vCPU limit, between the last two polls.",
    ),
    def(
        "vigil_container_memory_used_bytes",
        "gauge",
        "container",
        "Memory one container of the task uses, page cache excluded.",
    ),
    def(
        "vigil_container_cpu_used_ratio",
        "gauge",
        "container",
        "CPU one container uses over the task's vCPU limit.",
    ),
];

/// The publisher's series.
pub fn publish_series(v: &crate::publish::PublishView) -> Vec<(Labels, f64)> {
    let l = |name: &str| Labels::from_pairs(name, &[]);
    let mut out = vec![
        (l("vigil_publish_datums_total"), v.datums_sent as f64),
        (l("vigil_publish_calls_total"), v.calls as f64),
        (l("vigil_publish_errors_total"), v.errors as f64),
        (l("vigil_publish_dropped_total"), v.dropped as f64),
        (
            l("vigil_publish_skipped_values_total"),
            v.skipped_values as f64,
        ),
        (l("vigil_publish_queue_datums"), v.queued as f64),
    ];
    if let Some(t) = v.last_success {
        out.push((
            l("vigil_publish_last_success_timestamp_seconds"),
            t.timestamp_millis() as f64 / 1000.0,
        ));
    }
    out
}

/// The paging stage's series: the outbox per integration, muted alerts, the lease.
pub fn paging_series(
    v: &crate::paging::PagingView,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    for (target, s) in &v.targets {
        let l = |name: &str| Labels::from_pairs(name, &[("target", target)]);
        let age = s
            .oldest
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        out.extend([
            (l("vigil_outbox_depth"), s.depth as f64),
            (l("vigil_outbox_oldest_age_seconds"), age),
            (l("vigil_notification_attempts_total"), s.attempts as f64),
            (l("vigil_notifications_delivered_total"), s.delivered as f64),
            (l("vigil_notification_failures_total"), s.failures as f64),
            (l("vigil_notifications_dropped_total"), s.dropped as f64),
        ]);
    }
    for by in ["silence", "window", "inhibited", "lease"] {
        let n = v
            .muted
            .values()
            .filter(|m| {
                matches!(
                    (by, m),
                    ("silence", crate::route::router::Muted::Silence { .. })
                        | ("window", crate::route::router::Muted::Window { .. })
                        | ("inhibited", crate::route::router::Muted::Inhibited { .. })
                        | ("lease", crate::route::router::Muted::Lease)
                )
            })
            .count();
        out.push((
            Labels::from_pairs("vigil_alerts_muted", &[("by", by)]),
            n as f64,
        ));
    }
    out.push((
        Labels::from_pairs("vigil_outbox_dead_letters", &[]),
        v.dead_letters as f64,
    ));
    out.push((
        Labels::from_pairs("vigil_storage_ok", &[]),
        if v.storage.error.is_none() { 1.0 } else { 0.0 },
    ));
    if let Some(l) = v.lease {
        out.push((
            Labels::from_pairs("vigil_paging_lease_held", &[]),
            if l.pages() { 1.0 } else { 0.0 },
        ));
    }
    out
}

/// Escapes a label value for the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the exposition of `series` (each with `__name__`), grouped by family in
/// catalog order, with `# HELP` and `# TYPE`.
pub fn render(series: &[(Labels, f64)]) -> String {
    let mut families: Vec<Vec<String>> = vec![Vec::new(); CATALOG.len()];
    for (labels, value) in series {
        let name = labels.name();
        let Some(i) = CATALOG.iter().position(|d| d.name == name) else {
            debug_assert!(false, "metric {name} is not in the catalog");
            continue;
        };
        let mut line = name.to_string();
        let mut first = true;
        for (k, v) in labels.iter().filter(|(k, _)| *k != NAME) {
            line.push(if first { '{' } else { ',' });
            first = false;
            let _ = write!(line, "{k}=\"{}\"", escape(v));
        }
        if !first {
            line.push('}');
        }
        let _ = write!(line, " {}", format_value(*value));
        families[i].push(line);
    }
    let mut out = String::with_capacity(4096);
    for (d, lines) in CATALOG.iter().zip(families) {
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", d.name, d.help);
        let _ = writeln!(out, "# TYPE {} {}", d.name, d.kind);
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Component, ComponentStatus, Health};
    use crate::probe::Sample;
    use std::time::Duration;

    #[test]
    fn renders_families_with_help_type_and_escaped_labels() {
        let d = Duration::from_secs(1);
        let mut c = Component::new("disk", "disk", "/a\"b".into(), false, d, d);
        c.status = ComponentStatus::Ok;
        c.latency_ms = Some(2.5);
        c.checks_total = 4;
        c.samples = vec![Sample::labelled("vigil_disk_used_ratio", "mount", "/", 0.5)];
        let unknown = Component::new("later", "tcp", "h:1".into(), true, d, d);
        let mut series = vec![(
            Labels::from_pairs("vigil_build_info", &[("version", "1.2.3")]),
            1.0,
        )];
        series.extend(Health::new(vec![c, unknown]).series());
        let text = render(&series);
        assert!(text.starts_with("# HELP vigil_build_info"), "{text}");
        assert!(text.contains("vigil_build_info{version=\"1.2.3\"} 1\n"));
        assert!(text.contains("# TYPE vigil_probe_checks_total counter\nvigil_probe_checks_total{probe=\"disk\"} 4\nvigil_probe_checks_total{probe=\"later\"} 0\n"), "{text}");
        assert!(
            text.contains("vigil_probe_success{probe=\"disk\",target=\"/a\\\"b\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "vigil_probe_duration_seconds{probe=\"disk\",target=\"/a\\\"b\"} 0.0025\n"
            )
        );
        assert!(
            text.contains("vigil_disk_used_ratio{mount=\"/\",probe=\"disk\"} 0.5\n"),
            "{text}"
        );
        assert!(
            !text.contains("vigil_probe_success{probe=\"later\""),
            "an unchecked probe has no success value"
        );
        assert!(text.contains("vigil_status 1\n"));
    }

    #[test]
    fn special_values_use_the_text_format_spelling() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(-f64::INFINITY), "-Inf");
        assert_eq!(format_value(1e6), "1000000");
    }

    #[test]
    fn the_metrics_document_names_every_family() {
        let doc = include_str!("../../docs/metrics.md");
        for d in CATALOG {
            assert!(
                doc.contains(&format!("`{}`", d.name)),
                "docs/metrics.md lacks {}",
                d.name
            );
        }
    }
}
