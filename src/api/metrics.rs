//! Vigil's own `/metrics`, in the Prometheus text exposition format (0.0.4).
//!
//! The names follow one scheme, documented in `docs/metrics.md`: `vigil_` first, then
//! the subsystem (`probe`, `http`, `postgres`, `redis`, `disk`), then the quantity
//! with its unit (`_seconds`, `_bytes`, `_ratio`, `_total` for counters). Every
//! probe-derived series carries `probe="<name>"`; label values come from the config,
//! so cardinality is bounded by it.

use crate::families::CATALOG;
use std::fmt::Write;

use crate::promql::format_value;
use crate::store::Labels;
use crate::store::labels::NAME;

/// The publisher's series.
pub(crate) fn publish_series(v: &crate::publish::PublishView) -> Vec<(Labels, f64)> {
    let l = |name: &str| Labels::from_pairs(name, &[]);
    let mut out = vec![
        (
            l(crate::families::PUBLISH_DATUMS_TOTAL),
            v.datums_sent as f64,
        ),
        (l(crate::families::PUBLISH_CALLS_TOTAL), v.calls as f64),
        (l(crate::families::PUBLISH_ERRORS_TOTAL), v.errors as f64),
        (l(crate::families::PUBLISH_DROPPED_TOTAL), v.dropped as f64),
        (
            l(crate::families::PUBLISH_SKIPPED_VALUES_TOTAL),
            v.skipped_values as f64,
        ),
        (l(crate::families::PUBLISH_QUEUE_DATUMS), v.queued as f64),
    ];
    if let Some(t) = v.last_success {
        out.push((
            l(crate::families::PUBLISH_LAST_SUCCESS_TIMESTAMP_SECONDS),
            t.timestamp_millis() as f64 / 1000.0,
        ));
    }
    out
}

/// The paging stage's series: the outbox per integration, muted alerts, the lease.
pub(crate) fn paging_series(
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
            (l(crate::families::OUTBOX_DEPTH), s.depth as f64),
            (l(crate::families::OUTBOX_OLDEST_AGE_SECONDS), age),
            (
                l(crate::families::NOTIFICATION_ATTEMPTS_TOTAL),
                s.attempts as f64,
            ),
            (
                l(crate::families::NOTIFICATIONS_DELIVERED_TOTAL),
                s.delivered as f64,
            ),
            (
                l(crate::families::NOTIFICATION_FAILURES_TOTAL),
                s.failures as f64,
            ),
            (
                l(crate::families::NOTIFICATIONS_DROPPED_TOTAL),
                s.dropped as f64,
            ),
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
            Labels::from_pairs(crate::families::ALERTS_MUTED, &[("by", by)]),
            n as f64,
        ));
    }
    out.push((
        Labels::from_pairs(crate::families::OUTBOX_DEAD_LETTERS, &[]),
        v.dead_letters as f64,
    ));
    out.push((
        Labels::from_pairs(crate::families::STORAGE_OK, &[]),
        if v.storage.error.is_none() { 1.0 } else { 0.0 },
    ));
    if let Some(l) = v.lease {
        out.push((
            Labels::from_pairs(crate::families::PAGING_LEASE_HELD, &[]),
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
    // A family missing from the catalog is a bug the tests catch (debug builds
    // assert); a release build still shows it, untyped, rather than drop it.
    let mut unknown: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (labels, value) in series {
        let name = labels.name();
        let position = CATALOG.iter().position(|d| d.name == name);
        debug_assert!(position.is_some(), "metric {name} is not in the catalog");
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
        match position {
            Some(i) => families[i].push(line),
            None => unknown.entry(name).or_default().push(line),
        }
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
    for (name, lines) in unknown {
        let _ = writeln!(out, "# TYPE {name} untyped");
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
