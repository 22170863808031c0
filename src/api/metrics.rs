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
];

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
